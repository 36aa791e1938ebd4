"""IdLookup: raw int64 ids -> dense indices (0 pad = negative raw ids, 1 OOV, position + 2)."""

import jsr_tf  # noqa: F401  (must precede tensorflow)

import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from jsr_tf.layers.id_lookup import IdLookup, read_vocabulary_file

from ._harness import assert_single_input_round_trips, assert_three_ways_agree, rebuild_from_config

BIG = 2**40 + 3  # Raw KuaiSAR ids can exceed 2^31.
VOCAB = [100, 7, BIG]


def test_golden_mapping():
    layer = IdLookup(VOCAB)
    raw = tf.constant([[100, 7, BIG, 0], [5, -3, -100, 2**62]], tf.int64)
    np.testing.assert_array_equal(layer(raw), [[2, 3, 4, 0], [1, 0, 0, 1]])
    assert layer(raw).dtype == tf.int64
    assert layer.vocabulary_size == 3 and layer.num_indices == 5


def test_golden_mapping_with_raw_id_zero():
    """Raw 0 is a real id when the vocabulary holds it; -1 (and any negative) is padding."""
    layer = IdLookup([5, 0])
    np.testing.assert_array_equal(layer(tf.constant([-1, 0, 5, 9, -7], tf.int64)),
                                  [0, 3, 2, 1, 0])
    assert layer.num_indices == 4


def test_raw_zero_outside_the_vocabulary_stays_padding():
    """Legacy 0-padded data and requests keep their meaning for vocabularies without 0."""
    np.testing.assert_array_equal(IdLookup([5])(tf.constant([-1, 0, 5, 9])), [0, 0, 2, 1])


def test_int32_inputs():
    np.testing.assert_array_equal(IdLookup(VOCAB)(tf.constant([7, 0, 9], tf.int32)), [3, 0, 1])


def test_eager_and_graph_agree():
    layer = IdLookup(VOCAB)
    raw = tf.constant([[100, 7, BIG, 0, 11, -1]], tf.int64)
    assert_three_ways_agree(layer, raw, jit=False)  # Hash tables cannot run under XLA.


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return str(path)


def test_vocabulary_file_with_header_and_tsv_columns(tmp_path):
    path = _write(tmp_path / "items.tsv", f"item_id\tcount\n100\t5\n7\t1\n\n{BIG}\t9\n")
    np.testing.assert_array_equal(read_vocabulary_file(path), VOCAB)
    np.testing.assert_array_equal(IdLookup(path)(tf.constant([BIG, 100])), [4, 2])


def test_vocabulary_file_bad_line(tmp_path):
    path = _write(tmp_path / "bad.tsv", "100\nabc\n")
    with pytest.raises(ValueError, match="should start with an integer id. Received: line 2"):
        IdLookup(path)


def test_config_round_trip_with_list():
    layer = IdLookup(np.array(VOCAB), name="items")
    config = layer.get_config()
    assert config["vocabulary"] == VOCAB
    clone = rebuild_from_config(layer)
    raw = tf.constant([7, 100, BIG, 0, 4])
    np.testing.assert_array_equal(clone(raw), layer(raw))
    assert clone.name == "items" and not clone.trainable


def test_config_round_trip_with_file_stores_only_the_path(tmp_path):
    path = _write(tmp_path / "vocab.txt", "100\n7\n")
    layer = IdLookup(path)
    assert layer.get_config()["vocabulary"] == path
    np.testing.assert_array_equal(rebuild_from_config(layer)(tf.constant([7, 100])), [3, 2])


def test_table_travels_inside_saved_model(tmp_path):
    path = _write(tmp_path / "vocab.txt", f"100\n7\n{BIG}\n")
    raw = keras.Input([None], dtype=tf.int64)
    model = keras.Model(raw, IdLookup(path)(raw))
    export = str(tmp_path / "saved")
    tf.saved_model.save(model, export)
    os.remove(path)  # The SavedModel must not need the vocabulary file.
    restored = tf.saved_model.load(export)
    out = restored(tf.constant([[BIG, 7, 0, 55, -2]], tf.int64))
    np.testing.assert_array_equal(out, [[4, 3, 0, 1, 0]])


@pytest.mark.parametrize("vocabulary, message", [
    ([1, 2, 1], "`vocabulary` should not repeat ids. Received: `vocabulary` repeating \\[1\\]"),
    ([3, -4], "should hold non-negative ids only"),
    ([-1], "should hold non-negative ids only"),
    ([], "should hold at least one id"),
    ([[1, 2]], "should be a file path or a 1-D sequence"),
    ([1.5, 2.0], "should be a file path or a 1-D sequence"),
])
def test_invalid_vocabularies(vocabulary, message):
    with pytest.raises(ValueError, match=message):
        IdLookup(vocabulary)


def test_layer_test_and_keras_file_round_trip(tmp_path):
    ids = np.array([[100, 0, 5], [BIG, 7, -3]], np.int64)
    assert_single_input_round_trips(IdLookup, {"vocabulary": VOCAB}, ids, tmp_path,
                                    validate_training=False)
