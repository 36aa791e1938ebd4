"""NeighbourEncoder: recency-weighted pooling (golden), empty halves, shapes, serialization."""

import jsr_tf  # noqa: F401  (must precede tensorflow)

import math
import re

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from jsr_tf.layers.neighbour_encoder import NeighbourEncoder, recency_mean, recency_weights
from jsr_tf.layers.pooling import masked_mean

from ._harness import (DTYPES, assert_honours_dtype, assert_keras_file_round_trip,
                       assert_round_trip, assert_three_ways_agree)


def _inputs(seed=0, b=2, k=3, lf=4, lq=5, d=6):
    rng = np.random.default_rng(seed)
    items = rng.normal(size=(b, k, lf, d)).astype(np.float32)
    sessions = rng.normal(size=(b, k, lq, d)).astype(np.float32)
    item_mask = np.arange(lf) < rng.integers(0, lf + 1, size=(b, k, 1))
    session_mask = np.arange(lq) < rng.integers(0, lq + 1, size=(b, k, 1))
    return items, item_mask, sessions, session_mask


def test_output_shape_defaults_to_the_input_width():
    items, item_mask, sessions, session_mask = _inputs()
    assert NeighbourEncoder()(items, item_mask, sessions, session_mask).shape == (2, 3, 6)
    assert NeighbourEncoder(units=5)(items, item_mask, sessions, session_mask).shape == (2, 3, 5)


def test_golden_recency_weights_count_valid_entries_after_each_slot():
    # Oldest first; slot 2 is a hole, slot 4 padding: ages 2, 1, -, 0, -.
    mask = tf.constant([[True, True, False, True, False]])
    np.testing.assert_allclose(recency_weights(mask, 0.9).numpy(),
                               [[0.81, 0.9, 0.0, 1.0, 0.0]], rtol=1e-6)


def test_golden_recency_mean_on_a_toy_sequence():
    values = tf.constant([[[1.0], [2.0], [100.0], [3.0], [100.0]]])
    mask = tf.constant([[True, True, False, True, False]])
    expected = (0.81 * 1 + 0.9 * 2 + 1.0 * 3) / (0.81 + 0.9 + 1.0)  # = 5.61 / 2.71
    np.testing.assert_allclose(recency_mean(values, mask, 0.9).numpy(), [[expected]], rtol=1e-6)


def test_decay_one_is_the_plain_masked_mean():
    items, item_mask, _, _ = _inputs()
    np.testing.assert_allclose(recency_mean(items, item_mask, 1.0).numpy(),
                               masked_mean(items, item_mask, axis=-2).numpy(), atol=1e-6)


def test_shared_encoder_inputs_pool_with_plain_masked_means():
    """`encoder="shared"`: the inputs already went through sequence encoders, `decay` unused."""
    items, item_mask, sessions, session_mask = _inputs()
    shared = NeighbourEncoder(decay=0.5, encoder="shared", kernel_initializer="ones")
    plain = NeighbourEncoder(decay=1.0, kernel_initializer="ones")
    np.testing.assert_allclose(shared(items, item_mask, sessions, session_mask).numpy(),
                               plain(items, item_mask, sessions, session_mask).numpy(),
                               atol=1e-6)


def test_golden_ones_kernel_output():
    """With a ones kernel and zero bias: `n = tanh(sum(pool(items)) + sum(pool(sessions)))`."""
    layer = NeighbourEncoder(decay=0.5, kernel_initializer="ones")
    items = tf.constant([[[[1.0, 0.0], [0.0, 2.0]]]])      # (1, 1, 2, 2): weights 0.5, 1
    sessions = tf.constant([[[[3.0, 1.0], [9.0, 9.0]]]])   # second session is padding
    out = layer(items, tf.constant([[[True, True]]]), sessions,
                tf.constant([[[True, False]]])).numpy()
    pooled_items = (0.5 * np.array([1.0, 0.0]) + 1.0 * np.array([0.0, 2.0])) / 1.5
    pooled_sessions = np.array([3.0, 1.0])
    expected = math.tanh(pooled_items.sum() + pooled_sessions.sum())
    np.testing.assert_allclose(out, np.full([1, 1, 2], expected), rtol=1e-6)


def test_an_empty_half_pools_to_zero():
    layer = NeighbourEncoder(kernel_initializer="ones")
    items = tf.constant([[[[1.0, 2.0]]]])
    sessions = tf.constant([[[[50.0, 50.0]]]])
    no_session = layer(items, tf.constant([[[True]]]), sessions, tf.constant([[[False]]]))
    np.testing.assert_allclose(no_session.numpy(), np.full([1, 1, 2], math.tanh(3.0)), rtol=1e-6)
    empty = layer(items, tf.constant([[[False]]]), sessions, tf.constant([[[False]]]))
    np.testing.assert_array_equal(empty.numpy(), np.zeros([1, 1, 2]))  # tanh(0 + bias 0)


def test_empty_slots_have_finite_gradients():
    items, _, sessions, _ = _inputs()
    layer = NeighbourEncoder()
    none_items = np.zeros(items.shape[:-1], bool)
    none_sessions = np.zeros(sessions.shape[:-1], bool)
    with tf.GradientTape() as tape:
        out = layer(items, none_items, sessions, none_sessions)
    for grad in tape.gradient(out, layer.trainable_weights):
        assert np.isfinite(grad.numpy()).all()


def test_eager_graph_xla_agree():
    layer = NeighbourEncoder()
    assert_three_ways_agree(layer, *_inputs())


def test_config_round_trip():
    inputs = _inputs()
    layer = NeighbourEncoder(units=4, decay=0.7, kernel_initializer="he_normal")
    clone = assert_round_trip(layer, lambda l: l(*inputs))
    assert (clone.units, clone.decay, clone.encoder) == (4, 0.7, "pooled")


def test_saved_model_reload_gives_the_same_output(tmp_path):
    inputs = _inputs()
    layer = NeighbourEncoder()
    expected = layer(*inputs).numpy()
    module = tf.Module()
    module.layer = layer
    module.run = tf.function(lambda *args: layer(*args), input_signature=[
        tf.TensorSpec([None, 3, 4, 6]), tf.TensorSpec([None, 3, 4], tf.bool),
        tf.TensorSpec([None, 3, 5, 6]), tf.TensorSpec([None, 3, 5], tf.bool)])
    tf.saved_model.save(module, str(tmp_path / "saved"))
    restored = tf.saved_model.load(str(tmp_path / "saved"))
    np.testing.assert_allclose(restored.run(*inputs).numpy(), expected, atol=1e-6)


@pytest.mark.parametrize("kwargs, message", [
    ({"units": 0}, "`units` should be a positive integer. Received: `units=0`"),
    ({"decay": 0.0}, "`decay` should be a float in (0, 1]. Received: `decay=0.0`"),
    ({"decay": 1.5}, "`decay` should be a float in (0, 1]"),
    ({"encoder": "mean"}, "`encoder` should be one of"),
])
def test_invalid_arguments(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        NeighbourEncoder(**kwargs)


def test_mismatched_widths_raise():
    items, item_mask, _, _ = _inputs()
    sessions = np.zeros([2, 3, 5, 7], np.float32)
    with pytest.raises(ValueError, match="should have the same last dimension"):
        NeighbourEncoder()(items, item_mask, sessions, np.ones([2, 3, 5], bool))


def test_registered_for_deserialization():
    assert keras.saving.get_registered_object("jsr_tf>NeighbourEncoder") is NeighbourEncoder


def test_keras_file_round_trip(tmp_path):
    assert_keras_file_round_trip(NeighbourEncoder(units=5), _inputs(), tmp_path)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dtype_reaches_the_projection(dtype):
    assert_honours_dtype(NeighbourEncoder(dtype=dtype), lambda l: l(*_inputs()), dtype)
