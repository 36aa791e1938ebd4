"""Personalised search baseline (TEM): mask, scores, missing histories, XLA, loss, training."""

import numpy as np
import pytest

import jsr_tf  # noqa: F401
import tensorflow as tf

from jsr_tf import features as F
from jsr_tf.config import preset
from jsr_tf.data import reader
from jsr_tf.keys import Inputs, Outputs
from jsr_tf.models.sasrec import left_padded_sequence
from jsr_tf.models.search_baseline import SearchBaseline, query_history_mask
from jsr_tf.training.trainer import model_tasks
from tests.models._checks import (assert_candidates_scored_independently,
                                  assert_eager_graph_xla_agree, assert_scores_shaped_and_finite,
                                  assert_training_lowers_the_loss, finite_loss_and_gradients,
                                  preset_model, read_batch, reference_bce, strip, strip_all)

NAME = "search_baseline"


def _model(vocab, *overrides, seed=1, **kwargs):
    return preset_model(NAME, vocab, *overrides, seed=seed, model_class=SearchBaseline,
                        model_kwargs=kwargs)


def _batch(data_dir, split="valid", task=F.Task.SEARCH, size=4):
    return read_batch(data_dir, split, task, size)  # search rows by default


# ---------------------------------------------------------------------------------------------
def test_golden_query_history_mask():
    # Left-padded histories: two items; none; full. Token 0 is the query.
    ids = tf.constant([[0, 0, 11, 12], [0, 0, 0, 0], [5, 6, 7, 8]], tf.int64)
    mask = query_history_mask(ids).numpy().astype(int)
    assert mask.shape == (3, 5, 5)
    np.testing.assert_array_equal(mask[0], [[1, 0, 0, 1, 1]] * 5)  # pads never read
    np.testing.assert_array_equal(mask[1], [[1, 0, 0, 0, 0]] * 5)  # only the query
    np.testing.assert_array_equal(mask[2], np.ones([5, 5], int))


def test_preset_builds_a_search_only_model(vocab):
    model = _model(vocab)
    assert isinstance(model, SearchBaseline)
    assert model_tasks(model) == (F.Task.SEARCH,)
    assert (model.history_length, model.item_features) == (30, "unisar")
    assert len(model.blocks) == preset(NAME).model.num_layers
    # The query encoder is shared with the item encoder's captions (one word table).
    assert model.item_encoder.query_encoder is model.query_encoder


def test_history_is_the_merged_left_padded_sequence(data_dir, vocab):
    model = _model(vocab)
    batch = model.prepare(_batch(data_dir, "train", F.Task.SEARCH))
    expected = left_padded_sequence(batch[F.FEED_ITEMS], batch[F.FEED_TS],
                                    batch[F.SEARCH_CLICKS], batch[F.SEARCH_TS],
                                    batch[F.SEARCH_HAS_CLICK], length=30).numpy()
    history = model.history_ids(batch).numpy()
    np.testing.assert_array_equal(history, expected)
    assert (history != 0).any()  # the fixture's rows have history


@pytest.mark.parametrize("task", list(F.Task))
def test_scores_have_candidate_shape_and_are_finite(data_dir, vocab, task):
    model = _model(vocab)
    batch = _batch(data_dir, task=task)
    for scored in F.Task:
        assert_scores_shaped_and_finite(model, batch, scored)
    both = model(batch)
    assert set(both) == {Outputs.FEED_LOGITS, Outputs.SEARCH_LOGITS}
    np.testing.assert_allclose(both[Outputs.SEARCH_LOGITS], model.score(batch, F.Task.SEARCH),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(both[Outputs.FEED_LOGITS], model.score(batch, F.Task.FEED),
                               rtol=1e-5, atol=1e-6)
    if task == F.Task.SEARCH:  # the query matters: the empty query scores differently
        assert not np.allclose(both[Outputs.FEED_LOGITS], both[Outputs.SEARCH_LOGITS])


def test_einsum_scores_equal_a_per_candidate_loop(data_dir, vocab):
    model = _model(vocab)
    batch = model.prepare(_batch(data_dir))
    scores = model.score_prepared(batch, F.Task.SEARCH).numpy()
    user = model.encode_user(batch, F.Task.SEARCH).numpy()
    candidates = batch[reader.CANDIDATES]
    for c in range(candidates.shape[1]):
        item = model.encode_items(candidates[:, c]).numpy()  # [B, d]
        np.testing.assert_allclose(scores[:, c], (user * item).sum(-1), rtol=1e-5, atol=1e-5)
    assert_candidates_scored_independently(lambda b: model.score_prepared(b, F.Task.SEARCH),
                                           batch, scores)


def test_user_vector_reads_query_and_history_but_not_padding(data_dir, vocab):
    model = _model(vocab)
    batch = model.prepare(_batch(data_dir, "train", F.Task.SEARCH))
    full = model.encode_user(batch).numpy()
    empty_batch = strip(strip(batch, "feed_"), "search_")
    empty = model.encode_user(empty_batch).numpy()
    assert not np.allclose(full, empty)  # the history matters
    other_query = dict(batch)
    other_query[F.QUERY_WORDS] = tf.zeros_like(batch[F.QUERY_WORDS])
    assert not np.allclose(model.encode_user(other_query).numpy(), full)  # the query matters
    # With no history the pads are masked out: the output equals the blocks run on the query
    # token alone (position 0, query segment).
    x = (model.encode_query(empty_batch, F.Task.SEARCH)[:, None]
         + model.positions.position_embeddings[:1] + model.segments.embeddings[:1])
    for block in model.blocks:
        x = block(x)
    np.testing.assert_allclose(empty, x[:, 0].numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("missing", ["feed_", "search_", ("feed_", "search_")])
def test_rows_without_history_are_finite_in_outputs_and_gradients(data_dir, vocab, missing):
    model = _model(vocab)
    batch = strip_all(_batch(data_dir, "train", F.Task.SEARCH), missing)
    grads = finite_loss_and_gradients(model, {Inputs.SEARCH: batch})
    assert sum(g is not None for g in grads) > 5
    for task in F.Task:
        assert np.isfinite(model.score(batch, task).numpy()).all()


def test_eager_graph_and_xla_agree_on_prepared_batches(data_dir, vocab):
    model = _model(vocab, "train.jit_compile=true")
    batch = model.prepare(_batch(data_dir, task=F.Task.SEARCH))
    assert_eager_graph_xla_agree(model, batch)


def test_loss_is_the_mean_bce_over_all_search_candidates(data_dir, vocab):
    model = _model(vocab)
    batch = _batch(data_dir, "train", F.Task.SEARCH)
    feed = _batch(data_dir, "train", F.Task.FEED)
    loss = model.compute_loss({Inputs.SEARCH: batch}).numpy()
    expected = reference_bce(model.score(batch, F.Task.SEARCH).numpy(),
                             batch[reader.LABEL].numpy())
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    # A feed batch next to it is not trained on.
    np.testing.assert_allclose(model.compute_loss({Inputs.SEARCH: batch, Inputs.FEED: feed}),
                               loss, rtol=1e-6)
    with pytest.raises(ValueError, match="search task only"):
        model.compute_loss({Inputs.FEED: feed})


def test_id_only_items_score_finitely_and_differ_from_the_default(data_dir, vocab):
    batch = _batch(data_dir)
    default = _model(vocab).score(batch, F.Task.SEARCH).numpy()
    variant = _model(vocab, item_features="id_only").score(batch, F.Task.SEARCH).numpy()
    assert variant.shape == default.shape and np.isfinite(variant).all()
    assert not np.allclose(variant, default)


@pytest.mark.parametrize("kwargs, message", [
    ({"item_features": "text"}, "`item_features` should be one of"),
    ({"history_length": 0}, "`history_length` should be a positive integer"),
])
def test_invalid_arguments(vocab, kwargs, message):
    with pytest.raises(ValueError, match=message):
        SearchBaseline(preset(NAME).model, vocab, **kwargs)


def test_preset_model_trains_under_xla_and_lowers_the_loss(data_dir, vocab):
    """Trained like ``jsr-train`` (prepared input, ``jit_compile``); the loss on every search
    train row (dropout off) falls."""
    assert_training_lowers_the_loss(_model(vocab, seed=3), data_dir, {F.Task.SEARCH: 2},
                                    learning_rate=1e-3, steps_per_epoch=5, factor=0.8)
