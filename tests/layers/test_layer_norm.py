"""layer_norm: Keras LayerNormalization's values and gradients with a hand-written gradient."""

import numpy as np
import pytest

import jsr_tf  # noqa: F401  (must precede tensorflow)
import tensorflow as tf
import tf_keras as keras

from jsr_tf.layers.layer_norm import layer_norm


def _built(epsilon=1e-5, dtype=None, **kwargs):
    layer = keras.layers.LayerNormalization(epsilon=epsilon, dtype=dtype, **kwargs)
    layer.build([None, 3, 6])
    rng = np.random.default_rng(1)
    if layer.scale:
        layer.gamma.assign(rng.normal(1.0, 0.3, 6))
    if layer.center:
        layer.beta.assign(rng.normal(0.0, 0.3, 6))
    return layer


def _value_and_grads(fn, layer, x, upstream):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fn(x)
        loss = tf.reduce_sum(tf.cast(y, tf.float32) * upstream)
    return [y, *tape.gradient(loss, [x, *layer.trainable_variables])]


def test_equals_keras_in_values_and_gradients_with_a_constant_row():
    """A constant row (variance 0, e.g. a zeroed pad slot) stays finite: inv = 1/sqrt(eps)."""
    layer = _built()
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4, 3, 6)).astype(np.float32)
    x[1, 2] = 0.7
    x = tf.constant(x)
    upstream = tf.constant(rng.normal(size=(4, 3, 6)), tf.float32)
    expected = _value_and_grads(layer, layer, x, upstream)
    actual = _value_and_grads(lambda t: layer_norm(layer, t), layer, x, upstream)
    assert np.isfinite(actual[1]).all()
    for got, want in zip(actual, expected):  # the constant row's dx is round-off x 1/sqrt(eps)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=5e-5)
    np.testing.assert_allclose(actual[0][1, 2], layer.beta.numpy(), atol=1e-6)  # golden


def test_golden_row_with_unit_weights():
    """[1, 2, 3]: mean 2, variance 2/3, so y = (x - 2) / sqrt(2/3 + eps)."""
    layer = keras.layers.LayerNormalization(epsilon=1e-5)
    layer.build([None, 3])
    y = layer_norm(layer, tf.constant([[1.0, 2.0, 3.0]]))
    np.testing.assert_allclose(y, [[-1, 0, 1] / np.sqrt(2 / 3 + 1e-5)], rtol=1e-6)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16", "float64"])
def test_other_dtypes_match_keras(policy):
    layer = _built(dtype=keras.mixed_precision.Policy(policy))
    x = tf.cast(tf.constant(np.random.default_rng(3).normal(size=(2, 3, 6))),
                layer.compute_dtype)
    expected, actual = layer(x), layer_norm(layer, x)
    assert actual.dtype == expected.dtype
    np.testing.assert_allclose(tf.cast(actual, tf.float32), tf.cast(expected, tf.float32),
                               rtol=1e-2, atol=1e-2)


def test_other_configurations_fall_back_to_the_layer():
    layer = _built(center=False)
    x = tf.constant(np.random.default_rng(4).normal(size=(2, 3, 6)), tf.float32)
    np.testing.assert_array_equal(layer_norm(layer, x), layer(x))
