"""MultiMaskTargetAttention: each pool equals TargetAttention, golden means, empty masks."""

import jsr_tf  # noqa: F401  (must precede tensorflow)

import numpy as np
import pytest
import tensorflow as tf

from jsr_tf.layers.multi_mask_target_attention import MultiMaskTargetAttention
from jsr_tf.layers.target_attention import TargetAttention

from ._harness import (DTYPES, HALF_DTYPES, assert_all_finite, assert_honours_dtype,
                       assert_keras_file_round_trip, assert_round_trip, assert_three_ways_agree)


def _masks(rng, b, l):
    masks = [rng.random((b, l)) < 0.6 for _ in range(3)]
    masks[2][0] = False  # one empty pool
    return [tf.constant(m) for m in masks]


def test_each_pool_equals_target_attention_with_the_same_kernel():
    rng = np.random.default_rng(0)
    history = tf.constant(rng.normal(size=(3, 6, 8)), tf.float32)
    candidates = tf.constant(rng.normal(size=(3, 5, 8)), tf.float32)
    masks = _masks(rng, 3, 6)
    layer = MultiMaskTargetAttention()
    out = layer(history, candidates, masks).numpy()
    assert out.shape == (3, 5, 24)
    single = TargetAttention()
    single(history, candidates, masks[0])
    single.set_weights(layer.get_weights())
    for m, mask in enumerate(masks):
        np.testing.assert_allclose(out[..., 8 * m:8 * (m + 1)],
                                   single(history, candidates, mask).numpy(), atol=1e-6)
    np.testing.assert_array_equal(out[0, :, 16:], 0.0)  # empty mask -> zero pool


def test_golden_zero_kernel_is_the_mean_of_each_mask():
    history = tf.constant([[[1.0, 0.0], [3.0, 2.0], [100.0, 100.0]]])
    masks = [tf.constant([[True, True, False]]), tf.constant([[False, False, True]]),
             tf.constant([[True, False, False]])]
    out = MultiMaskTargetAttention(kernel_initializer="zeros")(history, tf.ones([1, 2, 2]), masks)
    np.testing.assert_allclose(out.numpy(), np.full([1, 2, 6], [2, 1, 100, 100, 1, 0]))


def test_candidates_are_scored_independently():
    rng = np.random.default_rng(1)
    history = tf.constant(rng.normal(size=(2, 6, 8)), tf.float32)
    candidates = tf.constant(rng.normal(size=(2, 4, 8)), tf.float32)
    masks = _masks(rng, 2, 6)
    layer = MultiMaskTargetAttention()
    together = layer(history, candidates, masks).numpy()
    for c in range(4):
        np.testing.assert_allclose(layer(history, candidates[:, c:c + 1], masks).numpy()[:, 0],
                                   together[:, c], atol=1e-6)


def test_rows_without_valid_slots_are_zero_with_finite_gradients():
    layer = MultiMaskTargetAttention()
    history, candidates = tf.random.normal([2, 5, 8]), tf.random.normal([2, 3, 8])
    none = tf.constant([[False] * 5, [True] * 5])
    with tf.GradientTape() as tape:
        out = layer(history, candidates, [none, none, none])
    assert_all_finite([out] + tape.gradient(out, layer.trainable_weights))
    np.testing.assert_array_equal(out[0].numpy(), 0.0)
    assert np.abs(out[1].numpy()).sum() > 0


def test_eager_graph_xla_agree():
    rng = np.random.default_rng(2)
    history = tf.constant(rng.normal(size=(4, 6, 8)), tf.float32)
    candidates = tf.constant(rng.normal(size=(4, 5, 8)), tf.float32)
    a, b, c = _masks(rng, 4, 6)
    layer = MultiMaskTargetAttention()
    assert_three_ways_agree(lambda h, e, a, b, c: layer(h, e, [a, b, c]), history, candidates,
                            a, b, c)


def test_config_round_trip_and_empty_masks_rejected():
    history, candidates = tf.random.normal([2, 4, 8]), tf.random.normal([2, 3, 8])
    masks = [tf.constant([[True, True, False, False], [True] * 4])] * 2
    clone = assert_round_trip(MultiMaskTargetAttention(kernel_initializer="glorot_uniform"),
                              lambda l: l(history, candidates, masks))
    assert clone.get_config()["kernel_initializer"]["class_name"] == "GlorotUniform"
    with pytest.raises(ValueError, match="`masks` should be a non-empty sequence"):
        clone(history, candidates, [])


def _pool_inputs(seed=0, b=2, l=5, d=4, c=3):
    rng = np.random.default_rng(seed)
    history = rng.normal(size=(b, l, d)).astype(np.float32)
    candidates = rng.normal(size=(b, c, d)).astype(np.float32)
    return history, candidates, [m.numpy() for m in _masks(rng, b, l)]


def test_keras_file_round_trip(tmp_path):
    history, candidates, masks = _pool_inputs()
    assert_keras_file_round_trip(MultiMaskTargetAttention(), [history, candidates, *masks],
                                 tmp_path, call=lambda l, t: l(t[0], t[1], t[2:]))


@pytest.mark.parametrize("dtype", DTYPES)
def test_output_in_the_compute_dtype(dtype):
    out = assert_honours_dtype(MultiMaskTargetAttention(dtype=dtype),
                               lambda l: l(*_pool_inputs()), dtype)
    np.testing.assert_array_equal(out[0, :, 8:], 0.0)  # Row 0 has an empty third mask.


@pytest.mark.parametrize("dtype", HALF_DTYPES)
def test_golden_empty_mask_pools_exactly_zero_in_half_precision(dtype):
    """Was NaN in float16: the -1e9 fill overflowed to -inf."""
    layer = MultiMaskTargetAttention(kernel_initializer="zeros", dtype=dtype)
    history = np.array([[[1, 0], [3, 2], [100, 100]]], np.float32)
    masks = [np.array([[True, True, False]]), np.array([[False] * 3])]
    out = layer(history, np.ones([1, 2, 2], np.float32), masks)
    assert_all_finite(out)
    np.testing.assert_array_equal(tf.cast(out, tf.float32), [[[2.0, 1.0, 0.0, 0.0]] * 2])
