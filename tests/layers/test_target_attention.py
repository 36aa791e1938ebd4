"""TargetAttention: einsum scoring equals the tiled-per-candidate computation."""

import jsr_tf  # noqa: F401  (must precede tensorflow)

import math

import numpy as np
import tensorflow as tf
import pytest

from jsr_tf.layers.target_attention import TargetAttention

from ._harness import (DTYPES, HALF_DTYPES, assert_all_finite, assert_honours_dtype,
                       assert_keras_file_round_trip, assert_round_trip, assert_three_ways_agree)


def _tiled_reference(history, candidates, mask, kernel):
    """The reference's layout: repeat the history per candidate, (B*C, L, D), then attend."""
    b, c = candidates.shape[:2]
    tiled_history = np.repeat(history, c, axis=0)  # (B*C, L, D)
    tiled_mask = np.repeat(mask, c, axis=0)
    targets = candidates.reshape(b * c, -1)  # (B*C, D)
    out = np.zeros_like(targets)
    for n in range(b * c):
        scores = tiled_history[n] @ kernel @ targets[n]  # (L,)
        scores = np.where(tiled_mask[n], scores, -1e16)
        p = np.exp(scores - scores.max())
        p /= p.sum()
        out[n] = p @ tiled_history[n]
    return out.reshape(b, c, -1)


def test_einsum_equals_tiled_per_candidate_reference():
    rng = np.random.default_rng(0)
    history = rng.normal(size=(3, 6, 8)).astype(np.float32)
    candidates = rng.normal(size=(3, 5, 8)).astype(np.float32)
    mask = rng.random((3, 6)) < 0.6
    mask[:, 0] = True
    layer = TargetAttention()
    layer(history, candidates, mask)
    kernel = rng.normal(0, 0.3, size=(8, 8)).astype(np.float32)
    layer.set_weights([kernel])
    got = layer(history, candidates, mask).numpy()
    np.testing.assert_allclose(got, _tiled_reference(history, candidates, mask, kernel),
                               atol=1e-5)


def test_golden_zero_kernel_is_mean_of_valid_slots():
    layer = TargetAttention(kernel_initializer="zeros")
    history = np.array([[[1.0, 0.0], [3.0, 2.0], [100.0, 100.0]]], np.float32)
    out = layer(history, tf.ones([1, 4, 2]), tf.constant([[True, True, False]])).numpy()
    np.testing.assert_allclose(out, np.full([1, 4, 2], [2.0, 1.0]))


def test_row_without_valid_slot_is_zero_and_finite():
    layer = TargetAttention()
    history = tf.random.normal([2, 5, 8])
    candidates = tf.random.normal([2, 3, 8])
    mask = tf.constant([[False] * 5, [True] * 5])
    with tf.GradientTape() as tape:
        out = layer(history, candidates, mask)
    assert_all_finite([out] + tape.gradient(out, layer.trainable_weights))
    np.testing.assert_array_equal(out[0], 0.0)
    assert np.abs(out[1].numpy()).sum() > 0


def test_any_number_of_candidates():
    layer = TargetAttention()
    history = tf.random.normal([2, 30, 64])
    for c in (1, 5, 100):
        assert layer(history, tf.random.normal([2, c, 64]), tf.ones([2, 30], bool)).shape == (
            2, c, 64)


def test_reference_initialisation_std():
    layer = TargetAttention()
    layer(tf.zeros([1, 2, 64]), tf.zeros([1, 1, 64]), tf.ones([1, 2], bool))
    expected = math.sqrt(2.0 / (64 * 64 + 64))  # xavier_normal_ on a (1, 64, 64) tensor.
    assert abs(float(np.std(layer.kernel.numpy())) - expected) < 0.1 * expected


def test_eager_graph_xla_agree():
    rng = np.random.default_rng(1)
    args = (tf.constant(rng.normal(size=(4, 6, 8)), tf.float32),
            tf.constant(rng.normal(size=(4, 5, 8)), tf.float32),
            tf.constant(rng.random((4, 6)) < 0.5))
    assert_three_ways_agree(TargetAttention(), *args)


def test_config_round_trip():
    history, candidates = tf.random.normal([2, 4, 8]), tf.random.normal([2, 3, 8])
    mask = tf.constant([[True, True, False, False], [True] * 4])
    assert_round_trip(TargetAttention(), lambda l: l(history, candidates, mask))
    clone = assert_round_trip(TargetAttention(kernel_initializer="glorot_uniform"),
                              lambda l: l(history, candidates, mask))
    assert clone.get_config()["kernel_initializer"]["class_name"] == "GlorotUniform"


def _masked_inputs(seed=0):
    rng = np.random.default_rng(seed)
    history = rng.normal(size=(3, 4, 8)).astype(np.float32)
    candidates = rng.normal(size=(3, 2, 8)).astype(np.float32)
    mask = np.array([[True, True, False, False], [False] * 4, [True] * 4])
    return history, candidates, mask


def test_keras_file_round_trip(tmp_path):
    assert_keras_file_round_trip(TargetAttention(), _masked_inputs(), tmp_path)


@pytest.mark.parametrize("dtype", DTYPES)
def test_output_in_the_compute_dtype(dtype):
    out = assert_honours_dtype(TargetAttention(dtype=dtype), lambda l: l(*_masked_inputs()),
                               dtype)
    np.testing.assert_array_equal(out[1], 0.0)


@pytest.mark.parametrize("dtype", HALF_DTYPES)
def test_golden_all_masked_row_is_exactly_zero_in_half_precision(dtype):
    """Was NaN in float16: the -1e9 fill overflowed to -inf."""
    layer = TargetAttention(kernel_initializer="zeros", dtype=dtype)
    history = np.array([[[1, 0], [3, 2], [100, 100]], [[5, 5], [6, 6], [7, 7]]], np.float32)
    mask = np.array([[True, True, False], [False] * 3])
    out = layer(history, np.ones([2, 2, 2], np.float32), mask)
    assert_all_finite(out)
    np.testing.assert_array_equal(tf.cast(out, tf.float32),
                                  [[[2.0, 1.0], [2.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]]])
