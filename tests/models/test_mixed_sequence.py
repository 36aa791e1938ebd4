"""Mixed-sequence baseline: merged order, mask, scores, missing histories, XLA, loss, training."""

import numpy as np
import pytest

import jsr_tf  # noqa: F401
import tensorflow as tf

from jsr_tf import features as F
from jsr_tf.config import preset
from jsr_tf.data import reader
from jsr_tf.keys import Inputs, Outputs
from jsr_tf.layers.history_layout import HistoryLayout
from jsr_tf.models.mixed_sequence import REQUEST_TYPE, MixedSequence, sequence_layout
from jsr_tf.training.trainer import model_tasks
from tests.models._checks import (assert_candidates_scored_independently,
                                  assert_eager_graph_xla_agree, assert_training_lowers_the_loss,
                                  finite_loss_and_gradients, preset_model, reference_bce, strip,
                                  strip_all)
from tests.models._checks import read_batch as _batch

SHAPE = F.DataShape()  # the reference shape of the fixtures' data

NAME = "mixed_sequence"


def _model(vocab, *overrides, seed=1, **kwargs):
    return preset_model(NAME, vocab, *overrides, seed=seed, model_class=MixedSequence,
                        model_kwargs=kwargs)


def _toy_layout(feed_ts, search_ts):
    layout = HistoryLayout()(tf.constant(feed_ts, tf.int64), tf.constant(search_ts, tf.int64))
    return [np.asarray(x) for x in sequence_layout(layout)]


# ---------------------------------------------------------------------------------------------
# Toy batch: slots [r1, r2, r_pad | s1, s_pad] + request. Row 0: r1=10 < s1=20 < r2=30.
# Row 1: a tie r1 = s1 = 20 (feed first), r2 = 5. Row 2: no history at all.
TOY_FEED_TS = [[10, 30, 0], [20, 5, 0], [0, 0, 0]]
TOY_SEARCH_TS = [[20, 0], [20, 0], [0, 0]]


def test_golden_merged_order_and_positions():
    positions, types, _ = _toy_layout(TOY_FEED_TS, TOY_SEARCH_TS)
    np.testing.assert_array_equal(positions, [[0, 2, 3, 1, 4, 5],
                                              [1, 0, 3, 2, 4, 5],
                                              [0, 1, 2, 3, 4, 5]])
    # Merged order (slot index at each position): real events by time, feed before search at
    # equal times, then feed pads, search pads, and the request token last.
    np.testing.assert_array_equal(np.argsort(positions, axis=1),
                                  [[0, 3, 1, 2, 4, 5],   # r1 s1 r2 | r_pad s_pad | req
                                   [1, 0, 3, 2, 4, 5],   # r2 r1 s1 | r_pad s_pad | req
                                   [0, 1, 2, 3, 4, 5]])
    np.testing.assert_array_equal(types, [1, 1, 1, 2, 2, REQUEST_TYPE])


def test_golden_mask():
    _, _, mask = _toy_layout(TOY_FEED_TS, TOY_SEARCH_TS)
    mask = mask.astype(int)
    assert mask.shape == (3, 6, 6)
    # Bidirectional padding mask: every token (pads included) reads the real slots and the
    # request token, never a pad.
    np.testing.assert_array_equal(mask[0], [[1, 1, 0, 1, 0, 1]] * 6)
    np.testing.assert_array_equal(mask[1], [[1, 1, 0, 1, 0, 1]] * 6)
    np.testing.assert_array_equal(mask[2], [[0, 0, 0, 0, 0, 1]] * 6)  # only the request


def _explicitly_sorted_read(model, batch, task):
    """The request output computed on the explicitly time-sorted sequence (no ``gpos``)."""
    history = model.encode_history(batch)
    tokens = tf.concat([history["tokens"], model.encode_query(batch, task)[:, None]],
                       axis=1).numpy()
    feed_ts, search_ts = batch[F.FEED_TS].numpy(), batch[F.SEARCH_TS].numpy()
    feed_valid = batch[F.FEED_ITEMS].numpy() != 0
    types = np.array([1] * feed_ts.shape[1] + [2] * search_ts.shape[1] + [REQUEST_TYPE])
    rows = []
    for b in range(tokens.shape[0]):
        valid = np.concatenate([feed_valid[b], search_ts[b] != 0, [True]])
        keys = [float(t) if v else np.inf
                for t, v in zip(np.concatenate([feed_ts[b], search_ts[b]]), valid[:-1])]
        order = sorted(range(len(keys)), key=lambda slot: keys[slot])  # stable: feed first
        order.append(len(keys))  # the request token last
        x = (tokens[b, order] + model.positions.position_embeddings.numpy()
             + model.types.embeddings.numpy()[types[order]])
        mask = np.broadcast_to(valid[order][None, :], (len(order), len(order)))
        x = tf.constant(x[None])
        for block in model.blocks:
            x = block(x, attention_mask=tf.constant(mask[None]))
        rows.append(x[0, -1].numpy())
    return np.stack(rows)


@pytest.mark.parametrize("split, task", [("train", F.Task.FEED), ("valid", F.Task.SEARCH)])
def test_model_equals_the_explicitly_merged_sequence(data_dir, vocab, split, task):
    model = _model(vocab)
    batch = model.prepare(_batch(data_dir, split, task))
    assert (batch[F.FEED_ITEMS].numpy() != 0).any() and (batch[F.SEARCH_TS].numpy() != 0).any()
    np.testing.assert_allclose(model.encode_user(batch, task).numpy(),
                               _explicitly_sorted_read(model, batch, task), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------
def test_preset_builds_a_two_task_model(vocab):
    model = _model(vocab)
    assert isinstance(model, MixedSequence)
    assert model_tasks(model) == (F.Task.FEED, F.Task.SEARCH)
    assert model.score_head == "mlp"
    assert len(model.blocks) == preset(NAME).model.num_layers
    assert model.item_encoder.query_encoder is model.query_encoder


@pytest.mark.parametrize("task", list(F.Task))
def test_scores_have_candidate_shape_and_are_finite(data_dir, vocab, task):
    model = _model(vocab)
    batch = _batch(data_dir, task=task)
    both = model(batch)
    assert set(both) == {Outputs.FEED_LOGITS, Outputs.SEARCH_LOGITS}
    for scored, key in ((F.Task.FEED, Outputs.FEED_LOGITS),
                        (F.Task.SEARCH, Outputs.SEARCH_LOGITS)):
        logits = model.score(batch, scored).numpy()
        assert logits.shape == tuple(batch[reader.CANDIDATES].shape)
        assert np.isfinite(logits).all()
        np.testing.assert_allclose(both[key], logits, rtol=1e-5, atol=1e-6)
    if task == F.Task.SEARCH:  # the request token carries the task
        assert not np.allclose(both[Outputs.FEED_LOGITS], both[Outputs.SEARCH_LOGITS])


@pytest.mark.parametrize("score_head", ["mlp", "dot"])
def test_scores_equal_a_per_candidate_loop(data_dir, vocab, score_head):
    model = _model(vocab, score_head=score_head)
    batch = model.prepare(_batch(data_dir, task=F.Task.SEARCH))
    scores = model.score_prepared(batch, F.Task.SEARCH).numpy()
    user = model.encode_user(batch, F.Task.SEARCH).numpy()
    candidates = batch[reader.CANDIDATES]
    assert_candidates_scored_independently(lambda b: model.score_prepared(b, F.Task.SEARCH),
                                           batch, scores)
    if score_head == "dot":
        for c in range(candidates.shape[1]):
            item = model.item_encoder(candidates[:, c]).numpy()
            np.testing.assert_allclose(scores[:, c], (user * item).sum(-1), rtol=1e-5,
                                       atol=1e-5)


@pytest.mark.parametrize("missing", ["feed_", "search_", ("feed_", "search_")])
def test_rows_without_history_are_finite_in_outputs_and_gradients(data_dir, vocab, missing):
    model = _model(vocab)
    inputs = {Inputs.FEED: _batch(data_dir, "train", F.Task.FEED),
              Inputs.SEARCH: _batch(data_dir, "train", F.Task.SEARCH)}
    inputs = {key: strip_all(batch, missing) for key, batch in inputs.items()}
    grads = finite_loss_and_gradients(model, inputs)
    assert sum(g is not None for g in grads) > 5
    for batch in inputs.values():
        for logits in model(batch).values():
            assert np.isfinite(logits.numpy()).all()


def test_user_vector_depends_on_history_and_no_history_reads_only_the_request(data_dir, vocab):
    model = _model(vocab)
    batch = model.prepare(_batch(data_dir, "valid", F.Task.SEARCH))  # rows with both histories
    full = model.encode_user(batch, F.Task.SEARCH).numpy()
    for prefix in ("feed_", "search_"):  # each half of the history matters
        assert not np.allclose(model.encode_user(strip(batch, prefix), F.Task.SEARCH), full)
    empty_batch = strip(strip(batch, "feed_"), "search_")
    empty = model.encode_user(empty_batch, F.Task.SEARCH).numpy()
    # Pads are masked out: the blocks run on the request token alone (own position, own type).
    length = SHAPE.feed_history + SHAPE.search_history
    x = (model.encode_query(empty_batch, F.Task.SEARCH)[:, None]
         + model.positions.position_embeddings[length:]
         + model.types.embeddings[REQUEST_TYPE:])
    for block in model.blocks:
        x = block(x)
    np.testing.assert_allclose(empty, x[:, 0].numpy(), rtol=1e-5, atol=1e-5)


def test_eager_graph_and_xla_agree_on_prepared_batches(data_dir, vocab):
    model = _model(vocab, "train.jit_compile=true")
    batch = model.prepare(_batch(data_dir, task=F.Task.SEARCH))
    assert_eager_graph_xla_agree(model, batch)


def test_loss_is_feed_bce_plus_weighted_search_bce(data_dir, vocab):
    weight = 0.25
    model = _model(vocab, f"model.search_loss_weight={weight}")
    feed = _batch(data_dir, "train", F.Task.FEED)
    search = _batch(data_dir, "train", F.Task.SEARCH)
    feed_bce = reference_bce(model.score(feed, F.Task.FEED).numpy(), feed[reader.LABEL].numpy())
    search_bce = reference_bce(model.score(search, F.Task.SEARCH).numpy(),
                               search[reader.LABEL].numpy())
    np.testing.assert_allclose(model.compute_loss({Inputs.FEED: feed, Inputs.SEARCH: search}),
                               feed_bce + weight * search_bce, rtol=1e-5)
    np.testing.assert_allclose(model.compute_loss({Inputs.FEED: feed}), feed_bce, rtol=1e-5)
    np.testing.assert_allclose(model.compute_loss({Inputs.SEARCH: search}), search_bce,
                               rtol=1e-5)  # search-only step: weight 1
    with pytest.raises(ValueError, match="should have the key"):
        model.compute_loss({})


def test_invalid_arguments(vocab):
    with pytest.raises(ValueError, match="`score_head` should be one of"):
        MixedSequence(preset(NAME).model, vocab, score_head="cosine")


def test_preset_model_trains_under_xla_and_lowers_the_loss(data_dir, vocab):
    """Trained like ``jsr-train`` (prepared feed + search input, ``jit_compile``); the loss on
    every train row of both tasks (dropout off) falls."""
    assert_training_lowers_the_loss(_model(vocab, seed=3), data_dir,
                                    {F.Task.FEED: 2, F.Task.SEARCH: 2}, learning_rate=3e-3,
                                    steps_per_epoch=10, factor=0.7)
