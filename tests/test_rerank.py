"""The vectorised exact re-rank (jsr_tf/neighbours/rerank.py) against ``minhash``'s rule."""

import numpy as np

from jsr_tf.neighbours import minhash as mh
from jsr_tf.neighbours import rerank as rr


def test_token_index_golden():
    index = rr.TokenIndex([("a", "b", "c"), ("b", "c", "d"), ("x",), ()])
    assert index.sizes.tolist() == [3, 3, 1, 0] and index.vocabulary_size == 5
    assert index.jaccards(0, np.array([1, 2, 3, 0])).tolist() == [0.5, 0.0, 0.0, 1.0]
    assert index.jaccards(3, np.array([3, 0])).tolist() == [0.0, 0.0]
    assert index.jaccards(0, np.array([], dtype=np.int64)).tolist() == []


def test_rerank_user_equals_rank_neighbours():
    """200 seeded users with overlapping sets: for each, 30 random candidate rows (self included
    sometimes): the same neighbours, bit-identical Jaccards and the same dropped count."""
    rng = np.random.default_rng(2)
    pool = [f"t:{i}" for i in range(40)]
    sets = [tuple(rng.choice(pool, size=int(rng.integers(1, 12)), replace=False))
            for _ in range(200)]
    users = np.arange(1000, 1200, dtype=np.int64)[rng.permutation(200)]
    index = rr.TokenIndex(sets)
    for row in range(200):
        candidates = np.unique(rng.integers(0, 200, size=30))
        got = rr.rerank_user(index, row, candidates, users, k=5, min_jaccard=0.1)
        scored = [(int(users[c]), mh.jaccard(set(sets[row]), set(sets[c]))) for c in candidates]
        assert got == mh.rank_neighbours(int(users[row]), scored, 5, 0.1), row
