"""MLP: Dense/activation/dropout stack (prediction heads, experts, towers)."""

import jsr_tf  # noqa: F401  (must precede tensorflow)

import numpy as np
import pytest
import tensorflow as tf

from jsr_tf.layers.mlp import MLP

from ._harness import (DTYPES, assert_honours_dtype, assert_round_trip,
                       assert_single_input_round_trips, assert_three_ways_agree, count_params)


def test_golden_ones_head():
    """Ones kernels, zero biases, x = 1 (3 features): 3 -> 200*3 = 600 -> 80*600 = 48000."""
    layer = MLP((200, 80, 1), dropout=0.1, kernel_initializer="ones")
    np.testing.assert_allclose(layer(tf.ones([2, 5, 3])), np.full([2, 5, 1], 48_000.0))


def test_last_layer_is_linear_unless_activated():
    x = -tf.ones([1, 2])
    assert float(MLP((1,), kernel_initializer="ones")(x)[0, 0]) == -2.0  # Logit, no ReLU.
    assert float(MLP((1,), kernel_initializer="ones", activate_last=True)(x)[0, 0]) == 0.0


def test_reference_head_parameter_count():
    layer = MLP((200, 80, 1), dropout=0.1)
    assert layer(tf.zeros([2, 64])).shape == (2, 1)
    assert count_params(layer.trainable_weights) == 29_161  # spec/unisar.md §11


def test_dropout_only_in_training():
    layer = MLP((16, 4), dropout=0.5, activate_last=True)
    x = tf.random.normal([8, 6])
    np.testing.assert_allclose(layer(x), layer(x, training=False))
    assert not np.allclose(layer(x, training=False), layer(x, training=True))


def test_eager_graph_xla_agree():
    layer = MLP((16, 8, 1), dropout=0.1)
    assert_three_ways_agree(layer, tf.random.normal([3, 5, 6]))


def test_config_round_trip():
    layer = MLP((16, 8), activation="tanh", dropout=0.2, activate_last=True)
    x = tf.random.normal([3, 6])
    clone = assert_round_trip(layer, lambda l: l(x))
    assert clone.units == (16, 8) and clone.activate_last


@pytest.mark.parametrize("kwargs, message", [
    ({"units": ()}, "`units` should be a non-empty sequence of positive integers"),
    ({"units": (4, 0)}, "`units` should be a sequence of positive integers. "
                        "Received: `units=\\(4, 0\\)`"),
    ({"dropout": -0.1}, "`dropout` should be a float in \\[0, 1\\)"),
    ({"activate_last": 1}, "`activate_last` should be a bool"),
])
def test_invalid_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MLP(**{"units": (4,), **kwargs})


def test_layer_test_and_keras_file_round_trip(tmp_path):
    x = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)
    assert_single_input_round_trips(MLP, {"units": [5, 3], "dropout": 0.1}, x, tmp_path)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dtype_reaches_every_dense_and_dropout(dtype):
    layer = MLP((5, 3), dropout=0.1, activate_last=True, dtype=dtype)
    assert_honours_dtype(layer, lambda l: l(tf.random.normal([2, 3, 6])), dtype)
