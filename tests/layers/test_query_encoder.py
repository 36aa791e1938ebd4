"""QueryEncoder: masked mean of word embeddings, then tanh(Dense)."""

import jsr_tf  # noqa: F401  (must precede tensorflow)

import numpy as np
import pytest
import tensorflow as tf

from jsr_tf.layers.query_encoder import QueryEncoder

from ._harness import (DTYPES, assert_honours_dtype, assert_round_trip,
                       assert_single_input_round_trips, assert_three_ways_agree)


def _golden_layer():
    """Word k embeds to [k, -k]; ones kernel, bias 0.3: Q(words) = tanh(mean_k - mean_k + 0.3)."""
    layer = QueryEncoder(vocabulary_size=6, embedding_dim=2, output_dim=3,
                         kernel_initializer="ones")
    layer.build(tf.TensorShape([None, 4]))
    table = np.stack([np.arange(6), -2 * np.arange(6)], axis=1).astype(np.float32)
    layer.set_weights([table, np.ones([2, 3], np.float32), np.full([3], 0.3, np.float32)])
    return layer


def test_golden_masked_mean():
    layer = _golden_layer()
    words = tf.constant([[2, 4, 0, 0], [5, 0, 0, 0], [1, 1, 3, 0]])
    # Means over non-zero ids: 3, 5, 5/3; the ones kernel sums [m, -2m] -> -m.
    expected = np.tanh(-np.array([3.0, 5.0, 5.0 / 3.0]) + 0.3)[:, None].repeat(3, 1)
    np.testing.assert_allclose(layer(words), expected, rtol=1e-6)


def test_all_padding_gives_tanh_bias_not_nan():
    layer = _golden_layer()
    out = layer(tf.zeros([2, 4], tf.int64)).numpy()
    np.testing.assert_allclose(out, np.tanh(0.3), rtol=1e-6)


def test_mean_word_embedding_of_all_padding_is_zero():
    layer = _golden_layer()
    np.testing.assert_array_equal(layer.mean_word_embedding(tf.zeros([1, 4], tf.int32)), 0.0)


def test_arbitrary_leading_dimensions():
    layer = QueryEncoder(vocabulary_size=10, embedding_dim=4, output_dim=8)
    assert layer(tf.ones([3, 5, 7], tf.int32)).shape == (3, 5, 8)
    assert layer(tf.ones([2, 7], tf.int32)).shape == (2, 8)


def test_padding_position_does_not_matter():
    layer = QueryEncoder(vocabulary_size=10, embedding_dim=4, output_dim=8)
    a = layer(tf.constant([[3, 7, 0, 0]]))
    b = layer(tf.constant([[0, 7, 0, 3]]))
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_eager_graph_xla_agree():
    layer = QueryEncoder(vocabulary_size=50, embedding_dim=4, output_dim=8)
    words = tf.constant(np.random.default_rng(0).integers(0, 50, size=(6, 3, 10)))
    assert_three_ways_agree(layer, words)


def test_three_word_paths_agree_in_values_and_gradients():
    """Segment sum (default), sparse-dense matmul (``dense_gradient``, the captions) and the
    fixed-shape XLA path: same means, same word-table gradient (a slice or a dense tensor),
    with repeated words, empty rows and padding anywhere."""
    layer = QueryEncoder(vocabulary_size=9, embedding_dim=3, output_dim=2)
    ids = tf.constant([[[1, 0, 2, 2, 0], [0, 0, 0, 0, 0]], [[8, 7, 0, 0, 1], [3, 0, 0, 0, 0]]])
    layer(ids)

    def run(fn):
        with tf.GradientTape() as tape:
            out = fn(ids)
            loss = tf.reduce_sum(out ** 2)
        return out, tf.convert_to_tensor(tape.gradient(loss, layer.word_embeddings))

    default = run(lambda x: layer(x))
    for other in (run(lambda x: layer(x, dense_gradient=True)),
                  run(tf.function(lambda x: layer(x), jit_compile=True))):
        np.testing.assert_allclose(other[0], default[0], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(other[1], default[1], rtol=1e-6, atol=1e-7)
    table = layer.word_embeddings.numpy()
    expected_mean = (table[1] + 2 * table[2]) / 3  # slot 0 of row 0: words 1, 2, 2
    np.testing.assert_allclose(layer.mean_word_embedding(ids, dense_gradient=True)[0, 0],
                               expected_mean, rtol=1e-6)
    assert not np.any(default[1].numpy()[[0, 4, 5, 6]])  # padding, absent words: no gradient


def test_config_round_trip():
    layer = QueryEncoder(vocabulary_size=50, embedding_dim=4, output_dim=8,
                         bias_initializer="ones", name="words")
    words = tf.constant([[1, 2, 0], [0, 0, 0]])
    clone = assert_round_trip(layer, lambda l: l(words))
    assert (clone.vocabulary_size, clone.embedding_dim, clone.output_dim) == (50, 4, 8)


@pytest.mark.parametrize("name, value", [
    ("vocabulary_size", 0), ("embedding_dim", -3), ("output_dim", 2.5)])
def test_invalid_arguments(name, value):
    args = {"vocabulary_size": 10, "embedding_dim": 4, "output_dim": 8, name: value}
    with pytest.raises(ValueError, match=f"`{name}` should be a positive integer. "
                                         f"Received: `{name}={value}`"):
        QueryEncoder(**args)


def test_layer_test_and_keras_file_round_trip(tmp_path):
    words = np.array([[2, 3, 0], [0, 0, 0], [5, 1, 4]], np.int32)
    assert_single_input_round_trips(
        QueryEncoder, {"vocabulary_size": 6, "embedding_dim": 2, "output_dim": 3}, words,
        tmp_path, expected_output_dtype="float32")


@pytest.mark.parametrize("dtype", DTYPES)
def test_dtype_reaches_the_projection(dtype):
    layer = QueryEncoder(6, 2, 3, dtype=dtype)
    assert_honours_dtype(layer, lambda l: l(tf.constant([[2, 3, 0], [0, 0, 0]])), dtype)
