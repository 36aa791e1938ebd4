"""The window join (jsr_tf/neighbours/windows.py): golden cases, the per-user cap on one huge
bucket, layout parity (grouped vs keyed) and recall on a seeded fixture."""

import collections

import numpy as np
import pytest

from jsr_tf.neighbours import minhash as mh
from jsr_tf.neighbours import windows as w


def _keyed_reference(keys, depth, window, max_candidates):
    """The keyed layout's path: one bucket per (band, key), ``window_members`` on each, collisions
    counted per ordered pair, ``top_candidates`` per user."""
    n, bands = keys.shape
    collisions = collections.Counter()
    met = 0
    for band in range(bands):
        following = w.sort_bands(band, bands, depth)[1:]
        buckets = collections.defaultdict(list)
        for u in range(n):
            buckets[int(keys[u, band])].append((u, tuple(int(keys[u, c]) for c in following)))
        for members in buckets.values():
            for u, others in w.window_members(members, window):
                met += len(others)
                collisions.update((u, v) for v in others)
    per_user = collections.defaultdict(dict)
    for (u, v), count in collisions.items():
        per_user[u][v] = count
    triples = [(u, v, per_user[u][v]) for u in sorted(per_user)
               for v in mh.top_candidates(per_user[u], max_candidates)]
    return triples, met


def test_window_candidates_equal_keyed_reference():
    """Grouped (numpy) == keyed (per bucket) on 150 seeded key tables with few distinct keys:
    buckets of every size, windows smaller and larger than them, truncation at M."""
    rng = np.random.default_rng(3)
    for trial in range(150):
        n, bands = int(rng.integers(0, 30)), int(rng.integers(1, 6))
        keys = rng.integers(0, 4, size=(n, bands)).astype(np.int64)
        depth, window = int(rng.integers(1, bands + 1)), int(rng.integers(1, 6))
        max_candidates = int(rng.integers(1, 8))
        found = w.window_candidates(keys, depth, window, max_candidates,
                                    compact_every=int(rng.integers(1, 50)))
        triples, met = _keyed_reference(keys, depth, window, max_candidates)
        assert list(zip(found.left.tolist(), found.right.tolist(),
                        found.collisions.tolist())) == triples, trial
        assert found.window_pairs == met, trial
        assert found.buckets_skipped == 0


def test_window_candidates_golden():
    # Band 0: one bucket {0, 1, 2, 3}, ordered by band 1's key then row: 1 (5), 3 (5), 0 (6),
    # 2 (7). Band 1: buckets {1, 3} (key 5), {0} and {2}; its sort key (band 1, band 0) orders
    # 1 before 3. Window 1 meets only sorted neighbours: 1-3, 3-0, 0-2 in band 0; 1-3 in band 1.
    keys = np.array([[9, 6], [9, 5], [9, 7], [9, 5]], dtype=np.int64)
    found = w.window_candidates(keys, depth=2, window=1, max_candidates=5)
    assert list(zip(found.left.tolist(), found.right.tolist(), found.collisions.tolist())) == [
        (0, 2, 1), (0, 3, 1), (1, 3, 2), (2, 0, 1), (3, 1, 2), (3, 0, 1)]
    assert found.window_pairs == 2 * 4
    # A window as wide as the bucket pairs it completely, like the bucket join.
    wide = w.window_candidates(keys, depth=2, window=3, max_candidates=5)
    bucket = mh.lsh_candidates(keys, max_bucket=10, max_candidates=5)
    assert np.array_equal(wide.left, bucket.left) and np.array_equal(wide.right, bucket.right)
    assert np.array_equal(wide.collisions, bucket.collisions)


def test_window_members_golden():
    members = [(7, (3,)), (2, (1,)), (5, (3,)), (2, (1,)), (9, (0,))]
    assert w.window_members(members, 1) == [(9, (2,)), (2, (9, 5)), (5, (2, 7)), (7, (5,))]
    assert w.window_members([(4, (1,))], 3) == []


def test_per_user_cap_holds_on_one_huge_bucket():
    """3,000 users with identical band keys: one bucket of 3,000 in each of 16 bands (the bucket
    join would pair 3,000 · 2,999 per band). The window join gives every user exactly its ±W
    in row order: ``min(i, W) + min(n − 1 − i, W)`` candidates and that many window pairs per
    band, each colliding in all 16 bands."""
    n, bands, window = 3000, 16, 4
    keys = np.full((n, bands), 12345, dtype=np.int64)
    found = w.window_candidates(keys, depth=3, window=window, max_candidates=200)
    per_user = np.bincount(found.left, minlength=n)
    rows = np.arange(n)
    expected = np.minimum(rows, window) + np.minimum(n - 1 - rows, window)
    assert np.array_equal(per_user, expected)
    assert per_user.max() == 2 * window
    assert np.all(np.abs(found.left - found.right) <= window)
    assert np.all(found.collisions == bands)
    assert found.window_pairs == bands * int(expected.sum())
    assert found.window_pairs <= 2 * window * bands * n
    assert found.users_truncated == 0


def test_per_user_cap_holds_on_a_huge_minhash_bucket():
    """Real signatures: 2,000 users share one token and each holds two tokens of its own, so in
    every band the shared token is the minimum for about a third of them (buckets of ~650).
    Candidates per user stay within ``min(M, 2·W·b)`` and window pairs within ``2·W·b``."""
    hasher = mh.MinHasher(32, seed=5)
    n, bands, window, cap = 2000, 32, 3, 50
    sigs = np.stack([hasher.signature_of_tokens({"w:1", f"i:{2 * u}", f"i:{2 * u + 1}"},
                                                "search") for u in range(n)])
    keys = mh.band_keys(sigs, bands, 1)
    largest = max(np.unique(keys[:, b], return_counts=True)[1].max() for b in range(bands))
    assert largest > 500
    found = w.window_candidates(keys, depth=4, window=window, max_candidates=cap)
    per_user = np.bincount(found.left, minlength=n)
    assert per_user.max() <= min(cap, 2 * window * bands)
    assert per_user.min() > 0
    assert found.window_pairs <= 2 * window * bands * n
    # The keyed layout emits the same window pairs: at most 2·W per member of any bucket.
    values, counts = np.unique(keys[:, 0], return_counts=True)
    hub = values[np.argmax(counts)]
    members = [(u, (int(keys[u, 1]),)) for u in range(n) if keys[u, 0] == hub]
    assert len(members) > 500
    assert max(len(others) for _, others in w.window_members(members, window)) == 2 * window


def _community_sets(rng, communities=40, size=10):
    """``communities · size`` users: 6 of their community's 12 tokens, 1–2 of 3 tokens everyone
    draws from (buckets that grow with the population), 4 tokens of their own."""
    sets = []
    for c in range(communities):
        for m in range(size):
            user = c * size + m
            own = {f"i:{user}-{j}" for j in range(4)}
            common = {f"w:{t}" for t in rng.choice(3, size=int(rng.integers(1, 3)), replace=False)}
            group = {f"c2:{c}-{t}" for t in rng.choice(12, size=6, replace=False)}
            sets.append(own | common | group)
    return sets


def _top5(user, scored):
    return {v for v, _ in mh.rank_neighbours(user, scored, 5, 0.02)[0]}


def test_recall_of_exact_top5_on_a_community_fixture():
    """400 users in 40 communities (seeded): the window join with the defaults (128 × 1, D 4, W 8,
    M 200) then the exact re-rank finds the exact top-5 of every user; a window of 1 with M 5
    finds fewer (so the measure is not vacuous)."""
    rng = np.random.default_rng(11)
    sets = _community_sets(rng)
    n = len(sets)
    exact = mh.pairwise_jaccard(sets)
    truth = [_top5(u, [(v, exact[u, v]) for v in range(n)]) for u in range(n)]
    hasher = mh.MinHasher(128, seed=1)
    keys = mh.band_keys(np.stack([hasher.signature_of_tokens(s, "feed") for s in sets]), 128, 1)

    def recall(window, cap):
        found = w.window_candidates(keys, depth=4, window=window, max_candidates=cap)
        bounds = np.searchsorted(found.left, np.arange(n + 1))
        hits = 0
        for u in range(n):
            candidates = found.right[bounds[u]:bounds[u + 1]].tolist()
            hits += len(truth[u] & _top5(u, [(v, exact[u, v]) for v in candidates]))
        return hits / sum(len(t) for t in truth)

    assert sum(len(t) for t in truth) == 5 * n
    assert recall(8, 200) == 1.0
    assert recall(1, 5) == pytest.approx(0.7845, abs=1e-4)


@pytest.mark.parametrize("depth,window,match", [
    (0, 4, "`window_depth` should be a positive integer"),
    (3, 0, "`window` should be a positive integer"),
    (9, 4, "`window_depth` should be at most `bands`"),
])
def test_window_candidates_reject_bad_arguments(depth, window, match):
    with pytest.raises(ValueError, match=match):
        w.window_candidates(np.zeros((3, 8), dtype=np.int64), depth, window, 5)
