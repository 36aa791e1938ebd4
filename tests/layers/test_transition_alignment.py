"""TransitionAlignmentLoss: NT-Xent with bilinear W, learnable tau, 2B-2 negatives."""

import jsr_tf  # noqa: F401  (must precede tensorflow)

import math

import numpy as np
import pytest
import tensorflow as tf

from jsr_tf.layers.pooling import masked_mean
from jsr_tf.layers.transition_alignment import TransitionAlignmentLoss

from ._harness import (DTYPES, HALF_DTYPES, assert_all_finite, assert_honours_dtype,
                       assert_keras_file_round_trip, assert_round_trip, assert_three_ways_agree)


def _numpy_nt_xent(first, second, mask, kernel, tau):
    """Reference NT-Xent over all rows (every row must have a valid slot)."""
    m = mask[..., None].astype(np.float64)
    z = np.concatenate([(first * m).sum(1) / m.sum(1), (second * m).sum(1) / m.sum(1)])
    sim = np.tanh(z @ kernel @ z.T) / tau
    n, b = len(z), len(z) // 2
    losses = []
    for i in range(n):
        positive = (i + b) % n
        others = [j for j in range(n) if j != i]  # 2B - 1 logits: 1 positive + 2B - 2 negatives.
        logits = sim[i, others]
        losses.append(np.log(np.exp(logits).sum()) - sim[i, positive])
    return np.mean(losses)


def test_zero_kernel_gives_log_2b_minus_1():
    """All similarities are tanh(0) = 0: each row is a uniform softmax over 2B - 1 entries."""
    layer = TransitionAlignmentLoss(temperature=0.1, kernel_initializer="zeros")
    x = tf.random.normal([3, 4, 8])
    loss = layer(x, tf.random.normal([3, 4, 8]), tf.ones([3, 4], tf.bool))
    np.testing.assert_allclose(loss, math.log(5), rtol=1e-6)


def test_matches_numpy_reference():
    rng = np.random.default_rng(0)
    first, second = rng.normal(size=(2, 4, 5, 6)).astype(np.float32)
    mask = rng.random((4, 5)) < 0.6
    mask[:, 0] = True
    layer = TransitionAlignmentLoss(temperature=0.3)
    layer(first, second, mask)
    kernel = rng.normal(0, 0.5, size=(6, 6)).astype(np.float32)
    layer.set_weights([kernel, np.float32(0.3)])
    got = layer(first, second, mask).numpy()
    np.testing.assert_allclose(got, _numpy_nt_xent(first, second, mask, kernel, 0.3), rtol=1e-5)


def test_masked_slots_do_not_matter():
    rng = np.random.default_rng(1)
    first, second = rng.normal(size=(2, 3, 4, 8)).astype(np.float32)
    mask = np.array([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 0]], bool)
    layer = TransitionAlignmentLoss()
    a = layer(first, second, mask)
    first[~mask] = 50.0
    second[~mask] = -50.0
    np.testing.assert_allclose(layer(first, second, mask), a, rtol=1e-6)


def test_runtime_batch_size():
    """One layer (and one traced function) serves feed batches and smaller search batches."""
    layer = TransitionAlignmentLoss(kernel_initializer="zeros")
    fn = tf.function(layer, input_signature=[tf.TensorSpec([None, 4, 8]),
                                             tf.TensorSpec([None, 4, 8]),
                                             tf.TensorSpec([None, 4], tf.bool)])
    for batch in (3, 5, 1):
        x = tf.random.normal([batch, 4, 8])
        loss = fn(x, x, tf.ones([batch, 4], tf.bool))
        np.testing.assert_allclose(loss, math.log(2 * batch - 1) if batch > 1 else 0.0,
                                   rtol=1e-6, atol=1e-6)


def test_rows_without_history_are_neither_anchors_nor_negatives():
    layer = TransitionAlignmentLoss(kernel_initializer="zeros")
    x = tf.random.normal([3, 4, 8])
    mask = tf.constant([[True] * 4, [False] * 4, [True, False, False, False]])
    # Two valid rows -> 4 valid views; each softmax is over 3 entries.
    np.testing.assert_allclose(layer(x, x, mask), math.log(3), rtol=1e-6)


def test_no_valid_row_is_zero_and_finite():
    layer = TransitionAlignmentLoss()
    x = tf.random.normal([3, 4, 8])
    with tf.GradientTape() as tape:
        loss = layer(x, x, tf.zeros([3, 4], tf.bool))
    assert_all_finite([loss] + tape.gradient(loss, layer.trainable_weights))
    assert float(loss) == 0.0


def test_masked_mean_of_empty_row_is_zero():
    out = masked_mean(tf.ones([2, 3, 4]), tf.constant([[True, False, False], [False] * 3]))
    np.testing.assert_array_equal(out, [[1.0] * 4, [0.0] * 4])


def test_temperature_is_learnable():
    layer = TransitionAlignmentLoss(temperature=0.1)
    x, y = tf.random.normal([4, 3, 8]), tf.random.normal([4, 3, 8])
    with tf.GradientTape() as tape:
        loss = layer(x, y, tf.ones([4, 3], tf.bool))
    names = [w.name.split("/")[-1] for w in layer.trainable_weights]
    assert names == ["kernel:0", "temperature:0"]
    np.testing.assert_allclose(layer.tau, 0.1, rtol=1e-6)
    assert all(float(tf.reduce_sum(tf.abs(g))) > 0 for g in tape.gradient(loss,
                                                                          layer.trainable_weights))


def test_eager_graph_xla_agree():
    layer = TransitionAlignmentLoss()
    rng = np.random.default_rng(2)
    args = (tf.constant(rng.normal(size=(6, 5, 8)), tf.float32),
            tf.constant(rng.normal(size=(6, 5, 8)), tf.float32),
            tf.constant(rng.random((6, 5)) < 0.5))
    assert_three_ways_agree(layer, *args)


def test_config_round_trip():
    layer = TransitionAlignmentLoss(temperature=0.2)
    x = tf.random.normal([3, 4, 8])
    clone = assert_round_trip(layer, lambda l: l(x, x * 2, tf.ones([3, 4], tf.bool)))
    assert clone.temperature == 0.2


def test_invalid_arguments():
    with pytest.raises(ValueError, match="`temperature` should be a positive float. "
                                         "Received: `temperature=0`"):
        TransitionAlignmentLoss(temperature=0)


def _views(seed=0, b=3, l=4, d=8):
    rng = np.random.default_rng(seed)
    mask = rng.random((b, l)) < 0.6
    mask[0] = True
    mask[1] = False  # A row without history.
    return (rng.normal(size=(b, l, d)).astype(np.float32),
            rng.normal(size=(b, l, d)).astype(np.float32), mask)


def test_keras_file_round_trip(tmp_path):
    assert_keras_file_round_trip(TransitionAlignmentLoss(temperature=0.2), _views(), tmp_path)


@pytest.mark.parametrize("dtype", DTYPES)
def test_output_in_the_compute_dtype(dtype):
    assert_honours_dtype(TransitionAlignmentLoss(dtype=dtype), lambda l: l(*_views()), dtype)


@pytest.mark.parametrize("dtype", HALF_DTYPES)
def test_golden_rows_without_history_in_half_precision(dtype):
    """Was NaN in float16: the -1e9 fill overflowed to -inf on a row without history."""
    first, second, mask = _views()
    layer = TransitionAlignmentLoss(kernel_initializer="zeros", dtype=dtype)
    # Zero kernel: every allowed logit is 0; 2 valid rows -> 4 views, 3 allowed per row.
    np.testing.assert_allclose(float(layer(first, second, mask)), math.log(3), rtol=1e-2)
    assert float(layer(first, second, np.zeros_like(mask))) == 0.0
