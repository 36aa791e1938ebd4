"""ConcatEmbedding: golden concatenation, shapes, round trip, invalid arguments."""

import jsr_tf  # noqa: F401  (must precede tensorflow)

import numpy as np
import pytest
import tensorflow as tf

from jsr_tf.layers.concat_embedding import ConcatEmbedding

from ._harness import (DTYPES, assert_honours_dtype, assert_round_trip,
                       assert_single_input_round_trips)


def test_golden_concatenation_of_each_feature_row():
    layer = ConcatEmbedding((3, 2), (2, 1))
    layer.build(tf.TensorShape([None, 2]))
    layer.set_weights([np.array([[0, 1], [2, 3], [4, 5]], np.float32),
                       np.array([[7], [9]], np.float32)])
    out = layer(tf.constant([[2, 0], [0, 1]]))  # value 0 is a real category, not padding
    np.testing.assert_array_equal(out.numpy(), [[4, 5, 7], [0, 1, 9]])
    assert layer.output_dim == 3 and layer.compute_output_shape([None, 2]) == [None, 3]


def test_user_vector_width_of_the_package_preset():
    layer = ConcatEmbedding((10, 8, 3, 7, 4), (16, 4, 4, 4, 4))
    assert layer(tf.zeros([5, 5], tf.int64)).shape == (5, 32)
    assert [tuple(w.shape) for w in layer.trainable_weights] == [
        (10, 16), (8, 4), (3, 4), (7, 4), (4, 4)]


def test_config_round_trip():
    ids = tf.constant([[1, 2], [0, 0]])
    clone = assert_round_trip(ConcatEmbedding((3, 4), (2, 5)), lambda l: l(ids))
    assert (clone.vocabulary_sizes, clone.embedding_dims) == ((3, 4), (2, 5))


@pytest.mark.parametrize("kwargs, message", [
    ({"vocabulary_sizes": (3, 0), "embedding_dims": (2, 2)}, "`vocabulary_sizes` should be"),
    ({"vocabulary_sizes": (3, 4), "embedding_dims": (2,)}, "one entry per feature"),
])
def test_invalid_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ConcatEmbedding(**kwargs)


def test_wrong_number_of_columns():
    with pytest.raises(ValueError, match=r"`inputs` should have shape \(B, 2\)"):
        ConcatEmbedding((3, 4), (2, 2))(tf.zeros([2, 3], tf.int32))


def test_layer_test_and_keras_file_round_trip(tmp_path):
    ids = np.array([[0, 1], [2, 0], [1, 1]], np.int32)
    assert_single_input_round_trips(
        ConcatEmbedding, {"vocabulary_sizes": [3, 2], "embedding_dims": [2, 3]}, ids, tmp_path,
        expected_output_dtype="float32")


@pytest.mark.parametrize("dtype", DTYPES)
def test_output_in_the_compute_dtype(dtype):
    layer = ConcatEmbedding((3, 2), (2, 3), dtype=dtype)
    assert_honours_dtype(layer, lambda l: l(tf.constant([[0, 1], [2, 0]])), dtype)
