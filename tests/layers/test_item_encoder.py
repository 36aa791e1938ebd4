"""ItemEncoder: id + caption + categories -> tanh(Dense), padding -> exact zeros."""

import jsr_tf  # noqa: F401  (must precede tensorflow)

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from jsr_tf.layers.item_encoder import ItemEncoder
from jsr_tf.layers.query_encoder import QueryEncoder

from ._harness import (DTYPES, assert_honours_dtype, assert_round_trip,
                       assert_single_input_round_trips, assert_three_ways_agree, count_params)

CAPTIONS = np.array([[0, 0, 0], [0, 0, 0], [1, 2, 0], [3, 0, 0]], np.int32)  # Items 0..3.
CATEGORIES = np.array([[0, 0], [0, 0], [1, 2], [2, 1]], np.int32)


def _encoder(**kwargs):
    query = QueryEncoder(vocabulary_size=4, embedding_dim=2, output_dim=3)
    return ItemEncoder(num_items=4, embedding_dim=2, output_dim=5, query_encoder=query,
                       caption_length=3, category_sizes=(3, 4), caption_words=CAPTIONS,
                       item_categories=CATEGORIES, **kwargs)


def _numpy_reference(layer, ids):
    q = layer.query_encoder
    word_table = q.word_embeddings.numpy()
    qk, qb = q.projection.kernel.numpy(), q.projection.bias.numpy()
    out = []
    for i in ids:
        words = CAPTIONS[i][CAPTIONS[i] != 0]
        mean = word_table[words].mean(0) if words.size else np.zeros(2)
        caption = np.tanh(mean @ qk + qb)
        x = np.concatenate([layer.item_embeddings.numpy()[i], caption,
                            layer.category_embeddings[0].numpy()[CATEGORIES[i, 0]],
                            layer.category_embeddings[1].numpy()[CATEGORIES[i, 1]]])
        y = np.tanh(x @ layer.projection.kernel.numpy() + layer.projection.bias.numpy())
        out.append(y * (i != 0))
    return np.array(out)


def test_matches_numpy_reference():
    layer = _encoder(bias_initializer="ones")
    ids = np.array([0, 1, 2, 3, 2])
    got = layer(tf.constant(ids)).numpy()
    np.testing.assert_allclose(got, _numpy_reference(layer, ids), atol=1e-6)


def test_golden_ones_kernel():
    """Id-only encoder, ones kernel, zero bias: I(i) = tanh(sum(id_emb(i))), I(0) = 0."""
    layer = ItemEncoder(num_items=3, embedding_dim=2, output_dim=4, kernel_initializer="ones")
    layer.build(tf.TensorShape([None]))
    layer.item_embeddings.assign([[7.0, 7.0], [0.1, 0.2], [-0.3, 0.1]])
    out = layer(tf.constant([[0, 1, 2]])).numpy()
    np.testing.assert_allclose(out[0, 1], np.tanh(0.3), rtol=1e-6)
    np.testing.assert_allclose(out[0, 2], np.tanh(-0.2), rtol=1e-6)
    np.testing.assert_array_equal(out[0, 0], 0.0)


def test_padding_is_exact_zero_even_with_nonzero_bias():
    layer = _encoder(bias_initializer="ones")
    out = layer(tf.zeros([2, 3], tf.int64)).numpy()
    assert np.all(out == 0.0)


def test_padding_rows_of_side_tables_start_at_zero():
    layer = _encoder()
    layer.build(tf.TensorShape([None]))
    np.testing.assert_array_equal(layer.item_embeddings[0], 0.0)
    for table in layer.category_embeddings:
        np.testing.assert_array_equal(table[0], 0.0)
    assert np.abs(layer.item_embeddings[1:].numpy()).sum() > 0


def test_side_tables_are_non_trainable_weights():
    layer = _encoder()
    layer.build(tf.TensorShape([None]))
    np.testing.assert_array_equal(layer.caption_words, CAPTIONS)
    np.testing.assert_array_equal(layer.item_categories, CATEGORIES)
    assert {w.name for w in layer.non_trainable_weights} == {"caption_words:0",
                                                             "item_categories:0"}


def test_shares_the_injected_query_encoder():
    layer = _encoder()
    layer.build(tf.TensorShape([None]))
    words = layer.query_encoder.word_embeddings
    assert any(w is words for w in layer.trainable_weights)
    # KuaiSAR-shaped projection: E + D + E + E inputs (2 + 3 + 2 + 2 here).
    assert layer.projection.kernel.shape == (9, 5)


def test_id_only_variant_parameter_count():
    layer = ItemEncoder(num_items=100, embedding_dim=32, output_dim=64)
    assert layer(tf.constant([[1, 0]])).shape == (1, 2, 64)
    assert count_params(layer.trainable_weights) == 100 * 32 + 32 * 64 + 64


def test_shapes():
    layer = _encoder()
    assert layer(tf.ones([2, 3, 5], tf.int64)).shape == (2, 3, 5, 5)


def test_eager_graph_xla_agree():
    layer = _encoder()
    ids = tf.constant(np.random.default_rng(0).integers(0, 4, size=(6, 5)))
    assert_three_ways_agree(layer, ids)


def test_config_round_trip_restores_tables_through_weights():
    layer = _encoder(name="items")
    ids = tf.constant([[0, 1, 2, 3]])
    config = layer.get_config()
    assert "caption_words" not in config and "item_categories" not in config
    clone = assert_round_trip(layer, lambda l: l(ids))
    np.testing.assert_array_equal(clone.caption_words, CAPTIONS)
    assert isinstance(clone.query_encoder, QueryEncoder)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="`num_items` should be a positive integer. "
                                         "Received: `num_items=0`"):
        ItemEncoder(num_items=0, embedding_dim=2, output_dim=2)
    with pytest.raises(ValueError, match="`caption_length` should be positive exactly when"):
        ItemEncoder(num_items=3, embedding_dim=2, output_dim=2, caption_length=5)
    with pytest.raises(ValueError, match="`query_encoder` should be a `QueryEncoder`"):
        ItemEncoder(num_items=3, embedding_dim=2, output_dim=2, caption_length=5,
                    query_encoder=keras.layers.Dense(3))
    with pytest.raises(ValueError, match=r"`caption_words` should be an integer array of shape "
                                         r"\(4, 3\)"):
        _encoder_with(caption_words=np.zeros([4, 2], np.int32))
    with pytest.raises(ValueError, match=r"`item_categories\[:, 1\]` should lie in \[0, 4\)"):
        _encoder_with(item_categories=np.array([[0, 0], [0, 4], [0, 0], [0, 0]]))
    with pytest.raises(ValueError, match="`category_sizes` should be a sequence of positive"):
        ItemEncoder(num_items=3, embedding_dim=2, output_dim=2, category_sizes=(3, 0))


def _encoder_with(**overrides):
    args = dict(num_items=4, embedding_dim=2, output_dim=5, caption_length=3,
                query_encoder=QueryEncoder(4, 2, 3), category_sizes=(3, 4),
                caption_words=CAPTIONS, item_categories=CATEGORIES)
    args.update(overrides)
    return ItemEncoder(**args)


def test_layer_test_and_keras_file_round_trip(tmp_path):
    """The side tables are weights: they travel in the `.keras` file, not in the config."""
    query = QueryEncoder(vocabulary_size=4, embedding_dim=2, output_dim=3)
    kwargs = {"num_items": 4, "embedding_dim": 2, "output_dim": 5,
              "query_encoder": keras.layers.serialize(query), "caption_length": 3,
              "category_sizes": [3, 4], "caption_words": CAPTIONS,
              "item_categories": CATEGORIES}
    assert_single_input_round_trips(ItemEncoder, kwargs, np.array([[0, 2, 3], [1, 3, 0]]),
                                    tmp_path, expected_output_dtype="float32")


@pytest.mark.parametrize("dtype", DTYPES)
def test_dtype_reaches_the_projection_and_tables(dtype):
    query = QueryEncoder(vocabulary_size=4, embedding_dim=2, output_dim=3, dtype=dtype)
    layer = ItemEncoder(num_items=4, embedding_dim=2, output_dim=5, query_encoder=query,
                        caption_length=3, category_sizes=(3, 4), caption_words=CAPTIONS,
                        item_categories=CATEGORIES, dtype=dtype)
    out = assert_honours_dtype(layer, lambda l: l(tf.constant([[0, 2, 3]])), dtype)
    np.testing.assert_array_equal(out[0, 0], 0.0)  # Padding stays an exact zero.


def test_an_injected_caption_encoder_of_another_dtype_is_cast():
    layer = _encoder(dtype="float64")  # Its QueryEncoder computes in float32.
    assert layer(tf.constant([[0, 2, 3]])).dtype == tf.float64
