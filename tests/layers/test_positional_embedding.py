"""PositionalEmbedding: inputs + P[positions]."""

import jsr_tf  # noqa: F401  (must precede tensorflow)

import numpy as np
import pytest
import tensorflow as tf

from jsr_tf.layers.positional_embedding import PositionalEmbedding

from ._harness import (DTYPES, assert_honours_dtype, assert_round_trip,
                       assert_single_input_round_trips, assert_three_ways_agree)


def _layer():
    layer = PositionalEmbedding(sequence_length=5)
    layer.build(tf.TensorShape([None, 3, 2]))
    layer.set_weights([np.arange(10, dtype=np.float32).reshape(5, 2)])  # Row k = [2k, 2k+1].
    return layer


def test_golden_default_positions():
    out = _layer()(tf.ones([1, 3, 2])).numpy()
    np.testing.assert_array_equal(out[0], [[1, 2], [3, 4], [5, 6]])


def test_golden_gathered_positions():
    out = _layer()(tf.zeros([1, 3, 2]), positions=tf.constant([[4, 0, 2]])).numpy()
    np.testing.assert_array_equal(out[0], [[8, 9], [0, 1], [4, 5]])


def test_eager_graph_xla_agree():
    layer = PositionalEmbedding(sequence_length=60)
    x = tf.random.normal([2, 60, 8])
    positions = tf.constant(np.stack([np.random.default_rng(s).permutation(60) for s in (0, 1)]))
    assert_three_ways_agree(lambda x, p: layer(x, positions=p), x, positions)


def test_config_round_trip():
    layer = PositionalEmbedding(sequence_length=30, initializer="random_uniform")
    x = tf.random.normal([2, 30, 8])
    assert_round_trip(layer, lambda l: l(x))


def test_reference_parameter_count():
    total = 0
    for rows in (60, 30, 30):
        layer = PositionalEmbedding(sequence_length=rows)
        layer(tf.zeros([1, rows, 64]))
        total += int(np.prod(layer.position_embeddings.shape))
    assert total == 7_680  # spec/unisar.md §11


def test_invalid_arguments():
    with pytest.raises(ValueError, match="`sequence_length` should be a positive integer. "
                                         "Received: `sequence_length=0`"):
        PositionalEmbedding(sequence_length=0)
    with pytest.raises(ValueError, match="should be at most `sequence_length=4`"):
        PositionalEmbedding(sequence_length=4)(tf.zeros([1, 5, 2]))


def test_layer_test_and_keras_file_round_trip(tmp_path):
    x = np.random.default_rng(0).normal(size=(2, 4, 3)).astype(np.float32)
    assert_single_input_round_trips(PositionalEmbedding, {"sequence_length": 5}, x, tmp_path)


@pytest.mark.parametrize("dtype", DTYPES)
def test_output_in_the_compute_dtype(dtype):
    positions = tf.constant([[0, 2, 1, 4]] * 2)
    assert_honours_dtype(PositionalEmbedding(5, dtype=dtype),
                         lambda l: l(tf.random.normal([2, 4, 3]), positions=positions), dtype)
