"""SearchBehaviourEncoder: S = Q(words) + masked mean of I(clicks); padding sessions -> 0."""

import jsr_tf  # noqa: F401  (must precede tensorflow)

import numpy as np
import tensorflow as tf
import pytest

from jsr_tf.layers.search_behaviour_encoder import SearchBehaviourEncoder

from ._harness import (DTYPES, assert_honours_dtype, assert_keras_file_round_trip,
                       assert_round_trip, assert_three_ways_agree)


def _inputs():
    query = np.array([[[1.0, 2.0], [0.5, 0.5], [9.0, 9.0]]], np.float32)  # (1, 3, 2)
    clicks = np.zeros([1, 3, 3, 2], np.float32)
    clicks[0, 0, 0] = [2.0, 0.0]
    clicks[0, 0, 1] = [4.0, 2.0]
    clicks[0, 1, 0] = [1.0, -1.0]
    click_ids = np.array([[[5, 7, 0], [3, 0, 0], [0, 0, 0]]])  # Session 2 is padding.
    return query, clicks, click_ids


def test_golden():
    out = SearchBehaviourEncoder()(*map(tf.constant, _inputs())).numpy()
    np.testing.assert_allclose(out[0, 0], [1.0 + 3.0, 2.0 + 1.0])
    np.testing.assert_allclose(out[0, 1], [0.5 + 1.0, 0.5 - 1.0])
    np.testing.assert_array_equal(out[0, 2], [0.0, 0.0])  # tanh(bias) of an empty query is gone.


def test_padding_click_vectors_are_ignored():
    query, clicks, ids = _inputs()
    clicks[0, 0, 2] = 100.0  # A padding click slot with garbage.
    out = SearchBehaviourEncoder()(query, tf.constant(clicks), tf.constant(ids)).numpy()
    np.testing.assert_allclose(out[0, 0], [4.0, 3.0])


def test_explicit_session_mask():
    query, clicks, ids = _inputs()
    mask = tf.constant([[False, True, False]])
    out = SearchBehaviourEncoder()(query, clicks, ids, session_mask=mask).numpy()
    np.testing.assert_array_equal(out[0, 0], [0.0, 0.0])
    np.testing.assert_allclose(out[0, 1], [1.5, -0.5])


def test_no_search_history_is_finite_zero():
    out = SearchBehaviourEncoder()(tf.ones([2, 4, 8]), tf.zeros([2, 4, 5, 8]),
                                   tf.zeros([2, 4, 5], tf.int64))
    np.testing.assert_array_equal(out, 0.0)


def test_eager_graph_xla_agree():
    rng = np.random.default_rng(0)
    args = (tf.constant(rng.normal(size=(3, 4, 8)), tf.float32),
            tf.constant(rng.normal(size=(3, 4, 5, 8)), tf.float32),
            tf.constant(rng.integers(0, 3, size=(3, 4, 5))))
    assert_three_ways_agree(SearchBehaviourEncoder(), *args)


def test_config_round_trip():
    query, clicks, ids = _inputs()
    assert_round_trip(SearchBehaviourEncoder(name="sessions"), lambda l: l(query, clicks, ids))


def test_keras_file_round_trip(tmp_path):
    assert_keras_file_round_trip(SearchBehaviourEncoder(), _inputs(), tmp_path)


@pytest.mark.parametrize("dtype", DTYPES)
def test_output_in_the_compute_dtype(dtype):
    assert_honours_dtype(SearchBehaviourEncoder(dtype=dtype), lambda l: l(*_inputs()), dtype)
