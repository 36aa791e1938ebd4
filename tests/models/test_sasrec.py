"""SASRec model: left-padding adapter, scores, missing histories, XLA, loss, training."""

import numpy as np
import pytest

import jsr_tf  # noqa: F401
import tensorflow as tf

from jsr_tf import features as F
from jsr_tf.config import preset
from jsr_tf.data import reader
from jsr_tf.keys import Inputs, Outputs
from jsr_tf.models.sasrec import SASRec, left_padded_sequence
from jsr_tf.training.trainer import model_tasks
from tests.models._checks import (assert_candidates_scored_independently,
                                  assert_eager_graph_xla_agree, assert_training_lowers_the_loss,
                                  finite_loss_and_gradients, preset_model, reference_bce, strip,
                                  strip_all)
from tests.models._checks import read_batch as _batch


def _model(vocab, *overrides, seed=1, **kwargs):
    return preset_model("sasrec", vocab, *overrides, seed=seed, model_class=SASRec,
                        model_kwargs=kwargs)


# ---------------------------------------------------------------------------------------------
# Left-padding adapter (toy batch, exact ids).
TOY_FEED_ITEMS = [[11, 12, 13, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
TOY_FEED_TS = [[10, 30, 50, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
TOY_SEARCH_TS = [[20, 30, 40, 0], [5, 0, 0, 0], [0, 0, 0, 0]]
TOY_HAS_CLICK = [[1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
TOY_CLICKS = [[[21, 22], [23, 0], [24, 0], [0, 0]],  # session at 40 is a no-click fallback
              [[31, 32], [0, 0], [0, 0], [0, 0]],
              [[0, 0], [0, 0], [0, 0], [0, 0]]]


def _toy(length, feed_only=False):
    args = [tf.constant(TOY_FEED_ITEMS, tf.int64), tf.constant(TOY_FEED_TS, tf.int64)]
    if not feed_only:
        args += [tf.constant(TOY_CLICKS, tf.int64), tf.constant(TOY_SEARCH_TS, tf.int64),
                 tf.constant(TOY_HAS_CLICK, tf.int64)]
    return left_padded_sequence(*args, length=length).numpy()


def test_golden_merged_left_padded_sequence():
    # Row 0 in time order: 11@10, 21 22@20, 12@30 (feed before the search at 30), 23@30, 13@50;
    # the fallback item 24 (session without a click) is left out.
    np.testing.assert_array_equal(_toy(8), [[0, 0, 11, 21, 22, 12, 23, 13],
                                            [0, 0, 0, 0, 0, 0, 31, 32],  # search only
                                            [0] * 8])  # no history at all


def test_golden_sequence_keeps_the_most_recent_items():
    np.testing.assert_array_equal(_toy(4), [[22, 12, 23, 13], [0, 0, 31, 32], [0] * 4])


def test_golden_feed_only_sequence():
    np.testing.assert_array_equal(_toy(6, feed_only=True),
                                  [[0, 0, 0, 11, 12, 13], [0] * 6, [0] * 6])


def test_adapter_under_xla_and_on_reader_batches(data_dir):
    args = [tf.constant(TOY_FEED_ITEMS, tf.int64), tf.constant(TOY_FEED_TS, tf.int64),
            tf.constant(TOY_CLICKS, tf.int64), tf.constant(TOY_SEARCH_TS, tf.int64),
            tf.constant(TOY_HAS_CLICK, tf.int64)]
    xla = tf.function(lambda *a: left_padded_sequence(*a, length=8), jit_compile=True)(*args)
    np.testing.assert_array_equal(xla.numpy(), _toy(8))
    # On reader batches: length 60, left-padded, every real feed item kept.
    batch = _batch(data_dir, "train", F.Task.FEED)
    seq = left_padded_sequence(batch[F.FEED_ITEMS], batch[F.FEED_TS], batch[F.SEARCH_CLICKS],
                               batch[F.SEARCH_TS], batch[F.SEARCH_HAS_CLICK], length=60).numpy()
    assert seq.shape == (batch[F.FEED_ITEMS].shape[0], 60)
    for row, items in zip(seq, batch[F.FEED_ITEMS].numpy()):
        real = row[row != 0]
        assert (row[:60 - len(real)] == 0).all()  # left-padded
        for item in items[items != 0]:
            assert item in real


# ---------------------------------------------------------------------------------------------
def test_preset_model_is_feed_only_sasrec(vocab):
    config = preset("sasrec")
    m = config.model
    assert (m.name, m.hidden_dim, m.num_layers, m.num_heads, m.dropout) == \
        ("sasrec", 64, 2, 1, 0.2)
    assert config.train.learning_rate == 1e-3
    model = _model(vocab)
    assert isinstance(model, SASRec)
    assert (model.source, model.item_features, model.max_length) == ("merged", "unisar", 60)
    assert model_tasks(model) == (F.Task.FEED,)
    assert len(model.blocks) == 2


def test_scores_have_candidate_shape_and_search_is_the_feed_floor(data_dir, vocab):
    model = _model(vocab)
    for task in F.Task:
        batch = _batch(data_dir, task=task)
        feed, search = model.score(batch, F.Task.FEED), model.score(batch, task)
        assert feed.shape == batch[reader.CANDIDATES].shape
        assert np.isfinite(feed.numpy()).all()
        np.testing.assert_array_equal(search.numpy(), feed.numpy())  # query-blind
    both = model(_batch(data_dir, task=F.Task.SEARCH))
    assert set(both) == {Outputs.FEED_LOGITS, Outputs.SEARCH_LOGITS}
    np.testing.assert_array_equal(both[Outputs.FEED_LOGITS], both[Outputs.SEARCH_LOGITS])


def test_einsum_scores_equal_a_per_candidate_loop(data_dir, vocab):
    model = _model(vocab)
    batch = model.prepare(_batch(data_dir))
    scores = model.score_prepared(batch, F.Task.FEED).numpy()
    user = model.encode_user(batch).numpy()
    candidates = batch[reader.CANDIDATES]
    for c in range(candidates.shape[1]):
        item = model.encode_items(candidates[:, c]).numpy()  # [B, d]
        np.testing.assert_allclose(scores[:, c], (user * item).sum(-1), rtol=1e-5, atol=1e-5)
    assert_candidates_scored_independently(lambda b: model.score_prepared(b, F.Task.FEED), batch,
                                           scores)


@pytest.mark.parametrize("missing", ["feed_", "search_", ("feed_", "search_")])
def test_rows_without_history_are_finite_in_outputs_and_gradients(data_dir, vocab, missing):
    model = _model(vocab)
    batch = strip_all(_batch(data_dir, "train", F.Task.FEED), missing)
    grads = finite_loss_and_gradients(model, {Inputs.FEED: batch})
    assert any(g is not None for g in grads)
    assert np.isfinite(model.score(batch, F.Task.FEED).numpy()).all()


def test_user_vector_depends_on_history_and_not_on_padding_slots(data_dir, vocab):
    model = _model(vocab)
    batch = model.prepare(_batch(data_dir, "train", F.Task.FEED))
    full = model.encode_user(batch).numpy()
    empty = model.encode_user(strip(strip(batch, "feed_"), "search_")).numpy()
    assert not np.allclose(full, empty)
    # All-empty rows share one vector (nothing but pads to read).
    np.testing.assert_allclose(empty, np.broadcast_to(empty[:1], empty.shape), atol=1e-6)


def test_eager_graph_and_xla_agree_on_prepared_batches(data_dir, vocab):
    model = _model(vocab, "train.jit_compile=true")
    batch = model.prepare(_batch(data_dir, task=F.Task.SEARCH))
    assert_eager_graph_xla_agree(model, batch)


def test_loss_is_the_mean_bce_over_all_candidates(data_dir, vocab):
    model = _model(vocab)
    batch = _batch(data_dir, "train", F.Task.FEED)
    loss = model.compute_loss({Inputs.FEED: batch}).numpy()
    expected = reference_bce(model.score(batch, F.Task.FEED).numpy(), batch[reader.LABEL].numpy())
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    with pytest.raises(ValueError, match="feed task only"):
        model.compute_loss({Inputs.SEARCH: batch})


@pytest.mark.parametrize("kwargs", [{"source": "feed_only"}, {"item_features": "id_only"}])
def test_variants_score_finitely_and_differ_from_the_default(data_dir, vocab, kwargs):
    batch = _batch(data_dir, "train", F.Task.FEED)
    default = _model(vocab).score(batch, F.Task.FEED).numpy()
    variant = _model(vocab, **kwargs).score(batch, F.Task.FEED).numpy()
    assert variant.shape == default.shape and np.isfinite(variant).all()
    assert not np.allclose(variant, default)


def test_unknown_and_negative_ids_are_oov_not_errors(data_dir, vocab):
    model = _model(vocab)
    batch = dict(_batch(data_dir))
    batch[reader.CANDIDATES] = tf.constant([[987654321, -5, 501, 502]] * 2, tf.int64)
    assert np.isfinite(model.score(batch, F.Task.FEED).numpy()).all()


@pytest.mark.parametrize("kwargs, message", [
    ({"source": "search_only"}, "`source` should be one of"),
    ({"item_features": "text"}, "`item_features` should be one of"),
    ({"max_length": 0}, "`max_length` should be a positive integer"),
])
def test_invalid_arguments(vocab, kwargs, message):
    with pytest.raises(ValueError, match=message):
        SASRec(preset("sasrec").model, vocab, **kwargs)


def test_preset_model_trains_under_xla_and_lowers_the_loss(data_dir, vocab):
    """Trained like ``jsr-train`` (prepared input, ``jit_compile``); the loss on the whole train
    set (4 feed rows, dropout off) falls."""
    assert_training_lowers_the_loss(_model(vocab, seed=3), data_dir, {F.Task.FEED: 2},
                                    learning_rate=1e-3, steps_per_epoch=5, factor=0.8)
