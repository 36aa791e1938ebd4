"""TranslationPropagation: golden values and masks on a toy row, empty rows, hop weight, round
trip, dtypes, eager = graph = XLA."""

import jsr_tf  # noqa: F401  (must precede tensorflow)

import numpy as np
import pytest
import tensorflow as tf

from jsr_tf.layers.translation_propagation import TranslationPropagation

from ._harness import (DTYPES, assert_all_finite, assert_honours_dtype,
                       assert_keras_file_round_trip, assert_round_trip, assert_three_ways_agree)

USER = [[1.0, 1.0], [2.0, 0.0], [0.0, 3.0]]
# Three edges per row: item, intent, mask (True = the edge exists).
ITEMS = [[[3.0, 1.0], [5.0, 5.0], [9.0, 9.0]],
         [[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]],
         [[7.0, 7.0], [7.0, 7.0], [7.0, 7.0]]]
INTENTS = [[[1.0, 1.0], [1.0, -1.0], [0.0, 0.0]],
           [[0.0, 2.0], [0.0, 0.0], [0.0, 0.0]],
           [[1.0, 1.0], [1.0, 1.0], [1.0, 1.0]]]
MASK = [[True, True, False],   # messages (2, 0), (4, 6); the third (9, 9) is padding
        [True, False, False],  # one message (1, -2)
        [False, False, False]]  # no edge: u* = u_0
# u* = u_0 + 0.5 * mean(i - t):
EXPECTED = [[1 + 0.5 * 3.0, 1 + 0.5 * 3.0], [2 + 0.5 * 1.0, 0 + 0.5 * -2.0], [0.0, 3.0]]


def _inputs():
    return (tf.constant(USER), tf.constant(ITEMS), tf.constant(INTENTS), tf.constant(MASK))


def test_golden_values_and_mask():
    out = TranslationPropagation()(*_inputs()).numpy()
    np.testing.assert_allclose(out, EXPECTED, atol=1e-6)


def test_masked_edges_do_not_matter_and_an_empty_row_is_exactly_the_user():
    user, items, intents, mask = _inputs()
    moved = tf.where(mask[..., None], items, 1e6 * tf.ones_like(items))
    layer = TranslationPropagation()
    np.testing.assert_array_equal(layer(user, moved, intents, mask).numpy(),
                                  layer(user, items, intents, mask).numpy())
    with tf.GradientTape() as tape:
        tape.watch(items)
        out = layer(user, items, intents, mask)
    grad = tape.gradient(out, items).numpy()
    assert_all_finite([out, grad])
    np.testing.assert_array_equal(grad[~np.array(MASK)], 0.0)  # padding edges get no gradient
    np.testing.assert_array_equal(out.numpy()[2], USER[2])


def test_hop_weight_scales_the_propagated_term_and_zero_switches_it_off():
    user = np.array(USER)
    hop = (np.array(EXPECTED) - user) / 0.5
    np.testing.assert_allclose(TranslationPropagation(2.0)(*_inputs()).numpy(), user + 2 * hop,
                               atol=1e-6)
    np.testing.assert_array_equal(TranslationPropagation(0.0)(*_inputs()).numpy(), user)


@pytest.mark.parametrize("value", [-0.1, "half", True])
def test_invalid_hop_weight(value):
    with pytest.raises(ValueError, match="`hop_weight` should be a non-negative float"):
        TranslationPropagation(value)


def test_config_and_keras_file_round_trip(tmp_path):
    layer = TranslationPropagation(0.25, name="propagation")
    assert_round_trip(layer, lambda l: l(*_inputs()))
    assert_keras_file_round_trip(TranslationPropagation(0.25, name="prop"),
                                 [np.array(USER, np.float32), np.array(ITEMS, np.float32),
                                  np.array(INTENTS, np.float32), np.array(MASK)], tmp_path)


@pytest.mark.parametrize("dtype", DTYPES)
def test_honours_dtype(dtype):
    assert_honours_dtype(TranslationPropagation(dtype=dtype), lambda l: l(*_inputs()), dtype)


def test_eager_graph_and_xla_agree():
    assert_three_ways_agree(TranslationPropagation(), *_inputs())
