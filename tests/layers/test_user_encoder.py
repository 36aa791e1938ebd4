"""UserEncoder: categorical embeddings concat -> tanh(Dense)."""

import jsr_tf  # noqa: F401  (must precede tensorflow)

import numpy as np
import pytest
import tensorflow as tf

from jsr_tf.layers.user_encoder import UserEncoder

from ._harness import (DTYPES, assert_honours_dtype, assert_round_trip,
                       assert_single_input_round_trips, assert_three_ways_agree, count_params)


def test_golden_constant_embeddings():
    """Feature k's table is constant c_k; ones kernel: U = tanh(E * sum_k c_k) in every unit."""
    layer = UserEncoder(vocabulary_sizes=(3, 2), embedding_dim=2, output_dim=4,
                        kernel_initializer="ones")
    layer.build(tf.TensorShape([None, 2]))
    layer.embeddings[0].assign(np.full([3, 2], 0.1))
    layer.embeddings[1].assign([[0.0, 0.0], [-0.25, -0.25]])
    out = layer(tf.constant([[0, 0], [2, 1]])).numpy()
    np.testing.assert_allclose(out[0], np.tanh(0.2), rtol=1e-6)  # Value 0 is a real category.
    np.testing.assert_allclose(out[1], np.tanh(0.2 - 0.5), rtol=1e-6)


def test_no_padding_row():
    layer = UserEncoder(vocabulary_sizes=(5,), embedding_dim=3, output_dim=4)
    layer.build(tf.TensorShape([None, 1]))
    assert np.abs(layer.embeddings[0][0].numpy()).sum() > 0


def test_shape_and_reference_parameter_count():
    layer = UserEncoder(vocabulary_sizes=(22_700, 8, 3, 7, 4), embedding_dim=32, output_dim=64)
    assert layer(tf.zeros([3, 5], tf.int64)).shape == (3, 64)
    assert count_params(layer.trainable_weights) == (22_700 + 8 + 3 + 7 + 4) * 32 + 160 * 64 + 64


def test_eager_graph_xla_agree():
    layer = UserEncoder(vocabulary_sizes=(10, 3), embedding_dim=4, output_dim=8)
    x = tf.constant([[1, 2], [9, 0], [0, 1]])
    assert_three_ways_agree(layer, x)


def test_config_round_trip():
    layer = UserEncoder(vocabulary_sizes=(10, 3), embedding_dim=4, output_dim=8)
    x = tf.constant([[1, 2], [9, 0]])
    clone = assert_round_trip(layer, lambda l: l(x))
    assert clone.vocabulary_sizes == (10, 3)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="`vocabulary_sizes` should be a non-empty sequence"):
        UserEncoder(vocabulary_sizes=(), embedding_dim=4, output_dim=8)
    with pytest.raises(ValueError, match="`embedding_dim` should be a positive integer. "
                                         "Received: `embedding_dim=0`"):
        UserEncoder(vocabulary_sizes=(3,), embedding_dim=0, output_dim=8)
    with pytest.raises(ValueError, match=r"`inputs` should have shape \(B, 2\)"):
        UserEncoder(vocabulary_sizes=(3, 3), embedding_dim=2, output_dim=2)(tf.zeros([1, 3],
                                                                                      tf.int32))


def test_layer_test_and_keras_file_round_trip(tmp_path):
    features = np.array([[0, 2], [3, 1], [1, 0]], np.int32)
    assert_single_input_round_trips(
        UserEncoder, {"vocabulary_sizes": [4, 3], "embedding_dim": 2, "output_dim": 5},
        features, tmp_path, expected_output_dtype="float32")


@pytest.mark.parametrize("dtype", DTYPES)
def test_dtype_reaches_the_projection(dtype):
    layer = UserEncoder((4, 3), embedding_dim=2, output_dim=5, dtype=dtype)
    assert_honours_dtype(layer, lambda l: l(tf.constant([[0, 2], [3, 1]])), dtype)
