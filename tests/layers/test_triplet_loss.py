"""InterestTripletLoss: golden values on 3-4-5 vectors, margin, degenerate rows, round trip."""

import jsr_tf  # noqa: F401  (must precede tensorflow)

import numpy as np
import pytest
import tensorflow as tf

from jsr_tf.layers.pooling import masked_mean
from jsr_tf.layers.triplet_loss import InterestTripletLoss, pairwise_distance, triplet_margin_loss

from ._harness import (DTYPES, assert_all_finite, assert_honours_dtype,
                       assert_keras_file_round_trip, assert_round_trip, assert_three_ways_agree)

X = [[3.0, 4.0], [0.0, 0.0], [6.0, 8.0]]
# row: (weights, positive mask, negative mask) -> anchor, positive, negative, loss (margin 0.1)
ROWS = [
    # anchor (0,0); p = (3,4): d 5; n = (6,8): d 10 -> max(5 - 10 + .1, 0) = 0
    (X, [0, 1, 0], [1, 0, 0], [0, 0, 1], 0.0),
    # p = mean((3,4), (6,8)) = (4.5,6): d 7.5; n = (3,4): d 5 -> 2.6
    (X, [0, 1, 0], [1, 0, 1], [1, 0, 0], 2.6),
    # empty history: everything 0 -> exactly the margin
    ([[0.0, 0.0]] * 3, [0, 0, 0], [0, 0, 0], [0, 0, 0], 0.1),
    # anchor = .5 (3,4) + .5 (6,8) = (4.5,6); p = (0,0): d 7.5; n = (3,4): d 2.5 -> 5.1
    (X, [0.5, 0, 0.5], [0, 1, 0], [1, 0, 0], 5.1),
]


def _inputs(rows=ROWS):
    seq = tf.constant([r[0] for r in rows], tf.float32)  # (B, 3, 2)
    weights = tf.constant([r[1] for r in rows], tf.float32)
    pos = tf.constant(np.array([r[2] for r in rows], bool))
    neg = tf.constant(np.array([r[3] for r in rows], bool))
    return seq, weights, pos, neg


def test_golden_per_row_and_mean():
    layer = InterestTripletLoss(margin=0.1)
    expected = [row[-1] for row in ROWS]
    np.testing.assert_allclose(layer.per_row(*_inputs()).numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(layer(*_inputs()).numpy(), np.mean(expected), atol=1e-5)


def test_margin_shifts_every_active_row():
    # margin 6: row 0 becomes 5 - 10 + 6 = 1, row 1 7.5 - 5 + 6 = 8.5, row 2 6, row 3 11.
    np.testing.assert_allclose(InterestTripletLoss(margin=6.0).per_row(*_inputs()).numpy(),
                               [1.0, 8.5, 6.0, 11.0], atol=1e-5)


def test_helpers():
    seq = tf.constant([X], tf.float32)
    np.testing.assert_allclose(masked_mean(seq, tf.constant([[True, False, True]])).numpy(),
                               [[4.5, 6.0]])
    np.testing.assert_array_equal(masked_mean(seq, tf.zeros([1, 3], tf.bool)).numpy(), [[0, 0]])
    # PyTorch pairwise_distance adds eps to the difference: ||(3 + 1e-6, 4 + 1e-6)||.
    np.testing.assert_allclose(pairwise_distance(tf.constant([3.0, 4.0]), tf.zeros([2])).numpy(),
                               np.hypot(3 + 1e-6, 4 + 1e-6), rtol=1e-7)
    np.testing.assert_allclose(
        triplet_margin_loss(tf.zeros([1, 2]), tf.constant([[6.0, 8.0]]),
                            tf.constant([[3.0, 4.0]]), margin=0.5).numpy(), [5.5], atol=1e-5)


def test_degenerate_rows_have_finite_zero_gradients():
    """Length 1 (anchor = positive = negative) and empty rows: the margin, gradient 0."""
    seq = tf.Variable([[[1.0, 2.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
    weights = tf.constant([[1.0, 0.0], [0.0, 0.0]])
    one = tf.constant([[True, False], [False, False]])
    with tf.GradientTape() as tape:
        loss = InterestTripletLoss(margin=0.1)(seq, weights, one, one)
    grad = tape.gradient(loss, seq)
    assert_all_finite([loss, grad])
    np.testing.assert_allclose(loss.numpy(), 0.1, atol=1e-6)
    np.testing.assert_allclose(grad.numpy(), 0.0, atol=1e-6)


def test_gradient_flows_to_the_anchor_weights_on_active_rows():
    seq, weights, pos, neg = _inputs()
    weights = tf.Variable(weights)
    with tf.GradientTape() as tape:
        loss = InterestTripletLoss()(seq, weights, pos, neg)
    grad = tape.gradient(loss, weights).numpy()
    assert np.isfinite(grad).all()
    assert np.abs(grad[1]).sum() > 0 and np.abs(grad[3]).sum() > 0  # active rows
    np.testing.assert_array_equal(grad[0], 0.0)  # inactive (hinge at 0)


def test_eager_graph_xla_agree():
    rng = np.random.default_rng(0)
    args = (tf.constant(rng.normal(size=(4, 6, 8)), tf.float32),
            tf.nn.softmax(tf.constant(rng.normal(size=(4, 6)), tf.float32)),
            tf.constant(rng.random((4, 6)) < 0.5), tf.constant(rng.random((4, 6)) < 0.5))
    assert_three_ways_agree(InterestTripletLoss(), *args)


def test_config_round_trip():
    args = _inputs()
    clone = assert_round_trip(InterestTripletLoss(margin=0.3, epsilon=1e-5), lambda l: l(*args))
    assert (clone.margin, clone.epsilon) == (0.3, 1e-5)


@pytest.mark.parametrize("kwargs, message", [
    ({"margin": 0.0}, "`margin` should be a positive float"),
    ({"epsilon": -1.0}, "`epsilon` should be a positive float"),
])
def test_invalid_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        InterestTripletLoss(**kwargs)


def test_keras_file_round_trip(tmp_path):
    assert_keras_file_round_trip(InterestTripletLoss(margin=0.3), [x.numpy() for x in _inputs()],
                                 tmp_path)


@pytest.mark.parametrize("dtype", DTYPES)
def test_output_in_the_compute_dtype(dtype):
    assert_honours_dtype(InterestTripletLoss(dtype=dtype), lambda l: l(*_inputs()), dtype)
