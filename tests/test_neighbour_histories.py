"""Compact user histories of the grouped LSH layout (jsr_tf/neighbours/histories.py)."""

import numpy as np
import pytest

from jsr_tf.neighbours import histories as hi
from jsr_tf.neighbours import minhash as mh
from jsr_tf.neighbours import rerank as rr
from jsr_tf.pipelines import neighbours as nb
from jsr_tf.neighbours import NeighbourConfig


@pytest.mark.parametrize("token", ["w:0", "i:501", "c2:7", "w:-3", f"i:{(1 << 47) - 1}",
                                   f"w:{-(1 << 47)}"])
def test_token_codes_round_trip(token):
    assert hi.decode_token(hi.encode_token(token)) == token


def test_token_codes_are_distinct_across_prefixes():
    tokens = [f"{p}{v}" for p in hi.PREFIXES for v in (-1, 0, 1, 501)]
    assert len({hi.encode_token(t) for t in tokens}) == len(tokens)


@pytest.mark.parametrize("token, match", [("x:1", "prefix"), ("i:", "canonical"),
                                          ("i:01", "canonical"), ("w:1.5", "canonical"),
                                          (f"i:{1 << 47}", "canonical"), ("i501", "prefix")])
def test_bad_tokens_are_rejected(token, match):
    with pytest.raises(ValueError, match=match):
        hi.encode_token(token)


def test_build_history_orders_tokens_by_first_interval():
    parts = [(3, ("i:5", "w:1")), (1, ("w:2", "w:1")), (2, ()), (1, ("w:3",))]
    history = hi.build_history(7, parts)
    assert history.user == 7 and history.start == 1
    assert [hi.decode_token(c) for c in history.codes] == ["w:1", "w:2", "w:3", "i:5"]
    assert history.first.tolist() == [1, 1, 1, 3]
    assert [history.end(k) for k in range(5)] == [0, 3, 3, 4, 4]
    empty = hi.build_history(8, [(2, ())])
    assert empty.start == 2 and empty.codes.size == 0
    with pytest.raises(ValueError, match="no partial"):
        hi.build_history(9, [])


def test_populations_equal_the_cumulative_signatures():
    """Per snapshot: the same users, token sets and signatures as ``CumulativeSignatures``
    (the ``Indexed`` records the keyed layout and exact mode use)."""
    config = NeighbourConfig(num_perm=16, bands=16, rows=1)
    fn = nb.CumulativeSignatures(config)
    fn.setup()
    rng = np.random.default_rng(3)
    snapshots = [10, 20, 30, 40, 50]
    users = {}
    for user in rng.permutation(30).tolist():
        parts = [(int(rng.integers(0, 5)),
                  tuple(f"i:{v}" for v in rng.choice(40, int(rng.integers(0, 6)), False)))
                 for _ in range(int(rng.integers(1, 4)))]
        users[user] = parts
    expected = {}
    for user, parts in users.items():
        for r in fn.process((("train", "feed", user), parts), snapshots=snapshots):
            if isinstance(r, nb.Indexed):
                expected.setdefault(r.snapshot, []).append(r)
    hasher = mh.MinHasher(16, seed=config.hash_seed)
    found = list(hi.snapshot_populations([hi.build_history(u, p) for u, p in users.items()],
                                         len(snapshots), hasher, "feed"))
    assert [p.snapshot for p in found] == sorted(expected)
    for population in found:
        want = sorted(expected[population.snapshot], key=lambda r: r.user)
        assert population.users.tolist() == [r.user for r in want]
        assert np.array_equal(population.signatures, np.stack([r.signature for r in want]))
        assert population.index.sizes.tolist() == [len(r.tokens) for r in want]
        reference = rr.TokenIndex([r.tokens for r in want])
        every = np.arange(len(want))
        for row in range(len(want)):
            assert population.index.jaccards(row, every).tolist() == \
                reference.jaccards(row, every).tolist()


def test_duplicate_histories_are_rejected():
    history = hi.build_history(4, [(0, ("w:1",))])
    with pytest.raises(ValueError, match="one history"):
        list(hi.snapshot_populations([history, history], 2, mh.MinHasher(8), "search"))


def test_token_index_from_arrays_equals_the_dict_index():
    rows = [np.array([5, 9, 2]), np.array([9, 2, 7]), np.array([100]), np.array([], np.int64)]
    index = rr.TokenIndex.from_arrays(rows)
    reference = rr.TokenIndex([tuple(r.tolist()) for r in rows])
    assert index.sizes.tolist() == reference.sizes.tolist() == [3, 3, 1, 0]
    assert index.vocabulary_size == reference.vocabulary_size == 5
    every = np.arange(4)
    for row in range(4):
        assert index.jaccards(row, every).tolist() == reference.jaccards(row, every).tolist()
    with pytest.raises(ValueError, match="distinct"):
        rr.TokenIndex.from_arrays([np.array([1, 1])])
    assert rr.TokenIndex.from_arrays([]).sizes.size == 0


def test_retrieve_neighbours_refuses_the_grouped_layout():
    """The grouped layout retrieves from histories (``RetrieveGrouped``): handing it ``Indexed``
    records fails with a message, not silently."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    pipeline = beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"]))
    snapshots = pipeline | "Snapshots" >> beam.Create([[10, 20]])
    indexed = pipeline | "Indexed" >> beam.Create([])
    config = NeighbourConfig(lsh_layout="grouped").validate()
    with pytest.raises(ValueError, match="RetrieveGrouped"):
        _ = indexed | nb.RetrieveNeighbours(config, snapshots)
