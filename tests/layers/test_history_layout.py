"""Golden tests of the one module that builds positions and masks (spec/unisar.md §3-4)."""

import jsr_tf  # noqa: F401  (must precede tensorflow)

import numpy as np
import pytest
import tensorflow as tf

from jsr_tf.layers.history_layout import HistoryLayout, LayoutKey, stable_rank

from ._harness import assert_keras_file_round_trip, assert_three_ways_agree, rebuild_from_config

K = LayoutKey

# Toy sequence of spec/unisar.md §4: slots [r1, r2, r_pad | s1, s_pad] with r1 < s1 < r2.
TOY_FEED_TS = [[10, 30, 0]]
TOY_SEARCH_TS = [[20, 0]]


def _layout(feed_ts, search_ts, causal=False):
    out = HistoryLayout(causal_transitions=causal)(
        tf.constant(feed_ts, tf.int64), tf.constant(search_ts, tf.int64))
    return {key: np.asarray(value) for key, value in out.items()}


def test_toy_global_positions():
    out = _layout(TOY_FEED_TS, TOY_SEARCH_TS)
    np.testing.assert_array_equal(out[K.GLOBAL_POSITIONS], [[0, 2, 3, 1, 4]])


def test_toy_global_mask():
    m = _layout(TOY_FEED_TS, TOY_SEARCH_TS)[K.GLOBAL_MASK][0].astype(int)
    np.testing.assert_array_equal(m[0], [0, 0, 0, 1, 0])  # r1 reads s1 only.
    np.testing.assert_array_equal(m[3], [1, 1, 0, 0, 0])  # s1 reads r1, r2.
    # Every feed row (pads included) reads the valid search slots; every search row the feed ones.
    np.testing.assert_array_equal(m, [[0, 0, 0, 1, 0]] * 3 + [[1, 1, 0, 0, 0]] * 2)
    assert not m.diagonal().any()  # Never the slot itself.


def test_toy_feed_and_search_masks():
    out = _layout(TOY_FEED_TS, TOY_SEARCH_TS)
    np.testing.assert_array_equal(out[K.FEED_MASK][0].astype(int), [[1, 1, 0]] * 3)  # r2r
    np.testing.assert_array_equal(out[K.SEARCH_MASK][0].astype(int), [[1, 0]] * 2)  # s2s
    np.testing.assert_array_equal(out[K.FEED_VALID], [[True, True, False]])
    np.testing.assert_array_equal(out[K.SEARCH_VALID], [[True, False]])


def test_output_shapes_and_dtypes():
    out = _layout(np.ones([4, 30], np.int64), np.ones([4, 20], np.int64))
    assert out[K.GLOBAL_POSITIONS].shape == (4, 50)
    assert out[K.GLOBAL_POSITIONS].dtype == np.int32
    assert out[K.GLOBAL_MASK].shape == (4, 50, 50) and out[K.GLOBAL_MASK].dtype == bool
    assert out[K.FEED_MASK].shape == (4, 30, 30)
    assert out[K.SEARCH_MASK].shape == (4, 20, 20)


def _reference_positions(feed_ts, search_ts):
    """The reference's procedure: merge all slots (feed listed first) by a stable time sort,
    pads (+inf) last, and read off each slot's index in the merged order."""
    keys = [t if t != 0 else np.inf for t in list(feed_ts) + list(search_ts)]
    merged = sorted(range(len(keys)), key=lambda slot: keys[slot])  # Python's sort is stable.
    positions = np.empty(len(keys), np.int64)
    positions[merged] = np.arange(len(keys))
    return positions


def test_positions_match_explicit_stable_sort_with_ties_and_pads():
    rng = np.random.default_rng(0)
    feed_ts = rng.integers(1, 8, size=(16, 30)) * 1_700_000_000_000  # Many ties, > 2^31.
    search_ts = rng.integers(1, 8, size=(16, 30)) * 1_700_000_000_000
    feed_ts[:, 20:] = 0  # Right padding.
    search_ts[:, rng.integers(0, 31):] = 0
    search_ts[3] = 0  # A row with no search history.
    feed_ts[5] = 0  # A row with no feed history.
    got = _layout(feed_ts, search_ts)[K.GLOBAL_POSITIONS]
    for b in range(16):
        np.testing.assert_array_equal(got[b], _reference_positions(feed_ts[b], search_ts[b]))


def test_ties_put_feed_before_search():
    out = _layout([[5, 0]], [[5, 0]])
    np.testing.assert_array_equal(out[K.GLOBAL_POSITIONS], [[0, 2, 1, 3]])


def test_stable_rank_is_inverse_of_stable_argsort():
    keys = tf.constant([[3, 1, 3, 2, 1]], tf.int64)
    np.testing.assert_array_equal(stable_rank(keys), [[3, 0, 4, 2, 1]])


def test_row_without_search_history():
    out = _layout([[10, 20, 0]], [[0, 0]])
    m = out[K.GLOBAL_MASK][0]
    assert not m[:3].any()  # s2r rows: nothing to read (all-masked rows).
    np.testing.assert_array_equal(m[3:].astype(int), [[1, 1, 0, 0, 0]] * 2)
    assert not out[K.SEARCH_MASK].any()
    np.testing.assert_array_equal(out[K.GLOBAL_POSITIONS], [[0, 1, 2, 3, 4]])


def test_row_without_feed_history():
    out = _layout([[0, 0, 0]], [[7, 9]])
    m = out[K.GLOBAL_MASK][0]
    assert not m[3:].any()  # r2s rows: nothing to read.
    np.testing.assert_array_equal(m[:3].astype(int), [[0, 0, 0, 1, 1]] * 3)
    assert not out[K.FEED_MASK].any()
    np.testing.assert_array_equal(out[K.GLOBAL_POSITIONS], [[2, 3, 4, 0, 1]])


def test_all_masked_row_when_history_is_empty():
    out = _layout([[0, 0, 0]], [[0, 0]])
    for key in (K.GLOBAL_MASK, K.FEED_MASK, K.SEARCH_MASK):
        assert not out[key].any()
    np.testing.assert_array_equal(out[K.GLOBAL_POSITIONS], [[0, 1, 2, 3, 4]])


def test_causal_transitions_toy():
    m = _layout(TOY_FEED_TS, TOY_SEARCH_TS, causal=True)[K.GLOBAL_MASK][0].astype(int)
    np.testing.assert_array_equal(m[0], [0, 0, 0, 0, 0])  # r1 is first: reads nothing.
    np.testing.assert_array_equal(m[1], [0, 0, 0, 1, 0])  # r2 reads the earlier s1.
    np.testing.assert_array_equal(m[3], [1, 0, 0, 0, 0])  # s1 reads r1, not the later r2.


def test_causal_transitions_tie_feed_first():
    m = _layout([[5, 0]], [[5, 0]], causal=True)[K.GLOBAL_MASK][0].astype(int)
    np.testing.assert_array_equal(m[0], [0, 0, 0, 0])  # Feed at t=5 does not read search at t=5.
    np.testing.assert_array_equal(m[2], [1, 0, 0, 0])  # Search at t=5 reads feed at t=5.


def test_causal_option_does_not_change_within_type_masks():
    a = _layout(TOY_FEED_TS, TOY_SEARCH_TS)
    b = _layout(TOY_FEED_TS, TOY_SEARCH_TS, causal=True)
    np.testing.assert_array_equal(a[K.FEED_MASK], b[K.FEED_MASK])
    np.testing.assert_array_equal(a[K.SEARCH_MASK], b[K.SEARCH_MASK])


def test_explicit_valid_masks_override_timestamps():
    layer = HistoryLayout()
    out = layer(tf.constant([[10, 30, 0]], tf.int64), tf.constant([[20, 0]], tf.int64),
                feed_valid=tf.constant([[True, False, False]]),
                search_valid=tf.constant([[True, False]]))
    np.testing.assert_array_equal(np.asarray(out[K.GLOBAL_MASK][0, 3]).astype(int),
                                  [1, 0, 0, 0, 0])
    np.testing.assert_array_equal(out[K.GLOBAL_POSITIONS], [[0, 2, 3, 1, 4]])


@pytest.mark.parametrize("causal", [False, True])
def test_eager_graph_xla_agree(causal):
    rng = np.random.default_rng(1)
    feed_ts = tf.constant(rng.integers(0, 5, size=(8, 30)) * 10**12, tf.int64)
    search_ts = tf.constant(rng.integers(0, 5, size=(8, 30)) * 10**12, tf.int64)
    layer = HistoryLayout(causal_transitions=causal)
    assert_three_ways_agree(layer, feed_ts, search_ts)


def test_config_round_trip():
    layer = HistoryLayout(causal_transitions=True, name="layout")
    clone = rebuild_from_config(layer)
    assert clone.causal_transitions is True and clone.name == "layout"
    a = layer(tf.constant(TOY_FEED_TS, tf.int64), tf.constant(TOY_SEARCH_TS, tf.int64))
    b = clone(tf.constant(TOY_FEED_TS, tf.int64), tf.constant(TOY_SEARCH_TS, tf.int64))
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_invalid_argument():
    with pytest.raises(ValueError, match="`causal_transitions` should be a bool. Received: "
                                         "`causal_transitions='yes'`"):
        HistoryLayout(causal_transitions="yes")


def test_keras_file_round_trip(tmp_path):
    feed_ts = np.array([[10, 30, 0], [5, 0, 0]], np.int64)
    search_ts = np.array([[20, 0], [0, 0]], np.int64)
    assert_keras_file_round_trip(HistoryLayout(causal_transitions=True), [feed_ts, search_ts],
                                 tmp_path)
