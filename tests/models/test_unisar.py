"""UniSAR model: shapes, finite outputs on missing histories, no tiling, XLA, parameter count."""

import math

import numpy as np
import pytest

import jsr_tf  # noqa: F401
import tensorflow as tf
import tf_keras as keras

from jsr_tf import features as F
from jsr_tf.config import preset
from jsr_tf.data import reader
from jsr_tf.data.vocab import Vocab, load_vocab
from jsr_tf.keys import Inputs, Outputs
from jsr_tf.models.unisar import UniSAR
from tests.models._checks import (assert_candidates_scored_independently,
                                  assert_dynamic_shapes_match_fixed, assert_eager_graph_xla_agree,
                                  assert_scores_shaped_and_finite, finite_loss_and_gradients,
                                  preset_model, strip)
from tests.models._checks import read_batch as _batch

SHAPE = F.DataShape()  # the reference shape of the fixtures' data


def _model(data_dir, *overrides, seed=1):
    return preset_model("unisar", load_vocab(data_dir), "model.num_qi_negatives=8", *overrides,
                        seed=seed)


def test_scores_have_candidate_shape_and_are_finite(data_dir):
    model = _model(data_dir)
    for task in F.Task:
        assert_scores_shaped_and_finite(model, _batch(data_dir, task=task), task)
    both = model(_batch(data_dir))
    assert set(both) == {Outputs.FEED_LOGITS, Outputs.SEARCH_LOGITS}


@pytest.mark.parametrize("missing", ["feed_", "search_", ""])
def test_rows_without_a_history_type_are_finite_in_outputs_and_gradients(data_dir, missing):
    model = _model(data_dir)
    batch = _batch(data_dir, "train", F.Task.FEED)
    if missing:
        batch = strip(batch, missing)
    search = _batch(data_dir, "train", F.Task.SEARCH, size=1)
    finite_loss_and_gradients(model, {Inputs.FEED: batch, Inputs.SEARCH: search})
    assert np.isfinite(model.score(batch, F.Task.FEED).numpy()).all()


def test_candidates_are_scored_independently_like_the_tiled_reference(data_dir):
    """Scoring C candidates at once equals scoring each alone (the reference tiles per candidate)."""
    model = _model(data_dir)
    batch = _batch(data_dir, task=F.Task.SEARCH)
    together = model.score(batch, F.Task.SEARCH).numpy()
    assert_candidates_scored_independently(lambda b: model.score(b, F.Task.SEARCH), batch,
                                           together, atol=1e-6, perm=[3, 1, 0, 2])


def test_dynamic_shape_shortcuts_match_the_fixed_shape_path(data_dir):
    """Unique-item encoding and valid-pair InfoNCE give the fixed-shape (XLA) path's values."""
    model = _model(data_dir)
    batch = _batch(data_dir)
    inputs = {Inputs.FEED: _batch(data_dir, "train", F.Task.FEED),
              Inputs.SEARCH: _batch(data_dir, "train", F.Task.SEARCH, size=1)}
    assert_dynamic_shapes_match_fixed(model, lambda: {  # the loss first, then the scores
        "loss": model.compute_loss(inputs, training=False).numpy(),
        "logits": model.score(batch, F.Task.FEED).numpy()})


def test_eager_graph_and_xla_agree(data_dir):
    model = _model(data_dir, "train.jit_compile=true")
    assert not model.dynamic_shapes
    batch = model.prepare(_batch(data_dir, task=F.Task.SEARCH))
    assert_eager_graph_xla_agree(model, batch, atol=1e-6, xla_rtol=1e-4, xla_atol=1e-5)


def test_unknown_and_negative_ids_are_oov_not_errors(data_dir):
    model = _model(data_dir)
    batch = dict(_batch(data_dir))
    batch[reader.CANDIDATES] = tf.constant([[987654321, -5, 501, 502]] * 2, tf.int64)
    batch[F.USER_ID] = tf.constant([424242, -1], tf.int64)
    assert np.isfinite(model.score(batch, F.Task.FEED).numpy()).all()


def test_initial_bce_is_about_ln2(data_dir):
    model = _model(data_dir, "model.use_transition_alignment=false",
                   "model.use_query_item_alignment=false")
    batch = _batch(data_dir, "train", F.Task.FEED)
    loss = model.compute_loss({Inputs.FEED: batch}, training=False).numpy()
    assert abs(loss - math.log(2)) < 0.1


def test_training_lowers_the_loss_with_fixed_seed(data_dir):
    model = _model(data_dir, seed=3)
    feed = reader.make_dataset(data_dir, "train", F.Task.FEED, 2, repeat=True, seed=3)
    search = reader.make_dataset(data_dir, "train", F.Task.SEARCH, 1, repeat=True, seed=3)
    ds = tf.data.Dataset.zip({Inputs.FEED.value: feed, Inputs.SEARCH.value: search})
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    history = model.fit(ds, steps_per_epoch=8, epochs=4, verbose=0).history["loss"]
    assert history[-1] < history[0]


def _reference_vocab() -> Vocab:
    """Vocabularies sized so that every table has the reference's rows (spec/unisar.md §11)."""
    items, words, users = 673_416 - 2, 394_912 - 2, 22_700 - 2
    categories = np.zeros([items, 4], np.int64)
    categories[0, :2] = (37, 296)  # cat1 38 and cat2 297 rows
    user_features = np.zeros([users, 4], np.int64)
    user_features[0] = (6, 3, 7, 2)  # levels 7 and 4, onehot 8 and 3
    return Vocab(
        item_ids=np.arange(1, items + 1, dtype=np.int64),
        item_feed_count=np.ones(items, np.int64), item_search_count=np.ones(items, np.int64),
        item_first_seen=np.zeros(items, np.int64), item_categories=categories,
        item_captions=np.zeros([items, SHAPE.caption_words], np.int64),
        word_ids=np.arange(1, words + 1, dtype=np.int64), word_counts=np.ones(words, np.int64),
        user_ids=np.arange(1, users + 1, dtype=np.int64), user_features=user_features,
        queries=np.ones([4, SHAPE.query_words], np.int64))


def test_parameter_count_at_reference_sizes():
    """35,599,505 (reference log) − 121,484 unused (3 encoder + 1 decoder templates and the CGC
    shared gate) = 35,478,021. Each of our tables has pad and OOV rows, so the vocabularies
    here hold 2 fewer ids than the reference's table sizes."""
    model = UniSAR(preset("unisar").model, _reference_vocab())
    batch = {name: tf.zeros([1, n], tf.int64) for name, n in (
        (F.FEED_ITEMS, 30), (F.FEED_TS, 30), (F.SEARCH_TS, 30), (F.QUERY_WORDS, 50),
        (reader.CANDIDATES, 2))}
    batch[F.SEARCH_WORDS] = tf.zeros([1, 30, 50], tf.int64)
    batch[F.SEARCH_CLICKS] = tf.zeros([1, 30, 5], tf.int64)
    batch[F.USER_ID] = tf.zeros([1], tf.int64)
    batch[reader.LABEL] = tf.zeros([1, 2])
    model.compute_loss({Inputs.FEED: batch, Inputs.SEARCH: batch})
    count = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    assert count == 35_478_021


def test_infonce_negatives_are_a_stateless_function_of_seed_and_step(data_dir):
    model = _model(data_dir)
    first = [t.numpy() for t in model._negatives()]
    again = [t.numpy() for t in model._negatives()]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)  # no optimizer yet: step 0
    items = first[0]
    assert len(set(items.tolist())) == len(items) == min(8, model.num_items - 2)  # no repeats
    assert items.min() >= 2  # never pad or OOV
    model.compile(optimizer=keras.optimizers.Adam())
    model.optimizer.iterations.assign(5)
    moved = model._negatives()[0].numpy()
    model.optimizer.iterations.assign(0)
    np.testing.assert_array_equal(model._negatives()[0].numpy(), items)
    assert not np.array_equal(np.sort(moved), np.sort(items)) or model.num_items - 2 <= 8


def test_cached_item_vectors_give_the_same_scores(data_dir):
    model = _model(data_dir)
    batch = _batch(data_dir, task=F.Task.SEARCH)
    before = model(batch)
    table = model.cache_item_vectors(chunk=5)  # several chunks on the fixture's few items
    assert table.shape == (model.num_items, model.config.hidden_dim)
    assert not table.trainable
    after = model(batch)
    for key in before:
        np.testing.assert_allclose(after[key].numpy(), before[key].numpy(), atol=1e-5)
