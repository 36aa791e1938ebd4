"""TranslationContrastiveLoss: golden values on hand-computable vectors, pair masks, rows without a
pair, gradients, round trip, eager = graph = XLA."""

import math

import jsr_tf  # noqa: F401  (must precede tensorflow)

import numpy as np
import tensorflow as tf

from jsr_tf.layers.translation_loss import TranslationContrastiveLoss, translation_distance

from ._harness import (assert_all_finite, assert_keras_file_round_trip, assert_round_trip,
                       assert_three_ways_agree)

USER = [[0.0, 0.0], [1.0, 1.0]]
INTENT = [[1.0, 0.0], [0.0, 0.0]]
# Row 0: u + t = (1, 0); row 1: u + t = (1, 1).
ITEMS = [[[1.0, 0.0], [1.0, 2.0], [3.0, 0.0]],
         [[1.0, 1.0], [1.0, 1.0], [3.0, 3.0]]]
# dist = mean_D (u + t - i)^2: row 0 (0, 2, 2); row 1 (0, 0, 4).
DISTANCES = [[0.0, 2.0, 2.0], [0.0, 0.0, 4.0]]
LABELS = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]


def _softplus(x):
    return math.log1p(math.exp(x))


def _inputs(labels=LABELS):
    return (tf.constant(USER), tf.constant(INTENT), tf.constant(ITEMS), tf.constant(labels))


def test_distances():
    np.testing.assert_allclose(translation_distance(*_inputs()[:3]).numpy(), DISTANCES)


def test_golden_mean_over_positive_negative_pairs():
    # Row 0: pairs (0,1), (0,2): softplus(0 - 2) twice. Row 1 (positive = column 1): pairs
    # (1,0): softplus(0 - 0), (1,2): softplus(0 - 4).
    expected = (2 * _softplus(-2.0) + _softplus(0.0) + _softplus(-4.0)) / 4
    np.testing.assert_allclose(TranslationContrastiveLoss()(*_inputs()).numpy(), expected,
                               rtol=1e-6)


def test_rows_without_a_pair_count_nothing_and_no_pair_at_all_is_zero():
    only_row_0 = [LABELS[0], [0.0, 0.0, 0.0]]  # row 1 has no positive
    np.testing.assert_allclose(TranslationContrastiveLoss()(*_inputs(only_row_0)).numpy(),
                               _softplus(-2.0), rtol=1e-6)
    none = [[0.0] * 3, [1.0] * 3]  # no negative in row 1, no positive in row 0
    user, intent, items, labels = _inputs(none)
    items = tf.Variable(items)
    with tf.GradientTape() as tape:
        loss = TranslationContrastiveLoss()(user, intent, items, labels)
    grad = tape.gradient(loss, items)
    assert loss.numpy() == 0.0
    assert_all_finite([loss, grad])
    np.testing.assert_array_equal(grad.numpy(), 0.0)


def test_gradient_pulls_the_positive_towards_the_translation():
    user, intent, items, labels = _inputs()
    items = tf.Variable(items)
    with tf.GradientTape() as tape:
        loss = TranslationContrastiveLoss()(user, intent, items, labels)
    grad = tape.gradient(loss, items).numpy()
    # Row 1's positive (1, 1) sits on u + t: its gradient comes only from the tie with column 0,
    # whose pull and push cancel in the distance's derivative (both at distance 0).
    np.testing.assert_allclose(grad[1, 1], 0.0, atol=1e-7)
    # Row 0's negatives are pushed away from u + t = (1, 0): descending moves them outwards.
    assert grad[0, 1, 1] < 0 and grad[0, 2, 0] < 0


def test_config_and_keras_file_round_trip(tmp_path):
    assert_round_trip(TranslationContrastiveLoss(name="translation"), lambda l: l(*_inputs()))
    assert_keras_file_round_trip(TranslationContrastiveLoss(name="tr"),
                                 [np.array(x, np.float32) for x in (USER, INTENT, ITEMS, LABELS)],
                                 tmp_path)


def test_eager_graph_and_xla_agree():
    assert_three_ways_agree(TranslationContrastiveLoss(), *_inputs())
