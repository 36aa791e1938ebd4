"""UDITSR model: widths, scores, edge masks, missing histories, candidate independence, XLA,
losses, config round trip, the serving item cache, training."""

import json

import numpy as np
import pytest

import jsr_tf  # noqa: F401
import tensorflow as tf

from jsr_tf import features as F
from jsr_tf.config import ExperimentConfig, preset
from jsr_tf.data import reader
from jsr_tf.keys import Inputs, Outputs
from jsr_tf.layers.translation_loss import translation_distance
from jsr_tf.models.uditsr import UDITSR
from jsr_tf.training.trainer import model_tasks
from tests.models._checks import (assert_both_heads_score_candidates_independently,
                                  assert_joint_dynamic_shapes_match_fixed,
                                  assert_joint_eager_graph_xla_agree,
                                  assert_joint_rows_without_history_are_finite,
                                  assert_joint_scores_and_query_reading,
                                  assert_training_lowers_the_loss, preset_model, reference_bce,
                                  strip)
from tests.models._checks import read_batch as _batch

SHAPE = F.DataShape()  # the reference shape of the fixtures' data


def _model(vocab, *overrides, seed=1, **kwargs):
    if kwargs:  # the builder's seed and shape choice, with other constructor arguments
        train = preset("uditsr").override(list(overrides)).train
        kwargs = {"seed": train.seed, "dynamic_shapes": not train.jit_compile, **kwargs}
    return preset_model("uditsr", vocab, *overrides, seed=seed, model_class=UDITSR,
                        model_kwargs=kwargs)


def _softplus(x):
    return np.log1p(np.exp(x))


# ---------------------------------------------------------------------------------------------
def test_preset_builds_uditsr_with_the_paper_widths(data_dir, vocab):
    model = _model(vocab)
    assert isinstance(model, UDITSR)
    assert model_tasks(model) == (F.Task.FEED, F.Task.SEARCH)
    assert (model.translation_weight, model.generation_weight, model.propagation.hop_weight) == \
        (0.2, 1.5, 0.5)
    assert not model.config.use_query_item_alignment and model.config.dropout == 0.0
    model(_batch(data_dir))  # builds every layer
    d = model.config.hidden_dim
    for head in model.heads:  # 3d -> 1.5d -> 0.75d -> 1; the logit layer is linear
        assert [tuple(layer.kernel.shape) for layer in head._dense_layers] == [
            (3 * d, 96), (96, 48), (48, 1)]
        assert head._dense_layers[-1].activation is tf.keras.activations.linear or \
            head._dense_layers[-1].activation.__name__ == "linear"
    assert model.heads[0] is not model.heads[1]
    generator = model.intent_generator.mlp._dense_layers
    assert [tuple(layer.kernel.shape) for layer in generator] == [(3 * d, d), (d, d)]


def test_config_round_trip():
    config = preset("uditsr")
    again = ExperimentConfig.from_dict(json.loads(config.to_json()))
    assert again == config and again.model.name == "uditsr"
    assert again.train.optimizer == "adamw" and again.train.l2 == 1e-5
    assert again.model.head_units == (96, 48)


def test_scores_have_candidate_shape_and_the_search_head_reads_the_query(data_dir, vocab):
    model = _model(vocab)
    both = assert_joint_scores_and_query_reading(model, data_dir)
    batch = _batch(data_dir, task=F.Task.SEARCH)
    np.testing.assert_allclose(both[Outputs.FEED_LOGITS].numpy(),
                               model.score(batch, F.Task.FEED).numpy(), rtol=1e-5, atol=1e-6)


def test_edge_mask_is_the_feed_items_and_the_clicks_of_clicked_sessions(data_dir, vocab):
    """Golden edge mask (True = an interaction the user side aggregates) on the batch's own
    layout: valid feed slots, then each session's valid clicks; a session flagged as no-click
    (only a fallback item was shown) adds no edge."""
    model = _model(vocab)
    batch = model.prepare(_batch(data_dir, "valid", F.Task.SEARCH))
    flag = batch[F.SEARCH_HAS_CLICK].numpy().copy()
    sessions = batch[F.SEARCH_TS].numpy() != 0
    row, slot = np.argwhere(sessions)[0]
    flag[row, slot] = 0
    batch = dict(batch, **{F.SEARCH_HAS_CLICK: tf.constant(flag)})
    mask = model.encode_user(batch)["edge_mask"].numpy()
    feed = batch[F.FEED_ITEMS].numpy() != 0
    clicks = batch[F.SEARCH_CLICKS].numpy()
    clicked = (clicks != 0) & sessions[..., None] & (flag != 0)[..., None]
    rows = feed.shape[0]
    np.testing.assert_array_equal(mask, np.concatenate([feed, clicked.reshape(rows, -1)], 1))
    assert mask.shape == (rows, SHAPE.feed_history + SHAPE.search_history * SHAPE.session_clicks)
    assert not mask[row, SHAPE.feed_history + slot * SHAPE.session_clicks:][
        :SHAPE.session_clicks].any()
    assert mask.any(axis=1).all()


@pytest.mark.parametrize("missing", ["feed_", "search_", ("feed_", "search_")])
def test_rows_without_history_are_finite_in_outputs_losses_and_gradients(data_dir, vocab,
                                                                         missing):
    model = _model(vocab)
    inputs = assert_joint_rows_without_history_are_finite(model, data_dir, missing)
    if missing == ("feed_", "search_"):  # no edge at all: u* is exactly u_0
        side = model.encode_user(model.prepare(inputs[Inputs.FEED]))
        assert not side["edge_mask"].numpy().any()
        np.testing.assert_array_equal(side["user"].numpy(), side["user0"].numpy())
        np.testing.assert_array_equal(side["context"].numpy(), 0.0)


def test_propagation_reads_only_the_rows_own_history(data_dir, vocab):
    """``u*`` of a row moves with its own history, never with another row's."""
    model = _model(vocab)
    batch = model.prepare(_batch(data_dir, "valid", F.Task.SEARCH))
    base = model.encode_user(batch)
    stripped = model.encode_user(strip(batch, "feed_", row=0))
    # (1e-6: the batch's distinct items, encoded once each, change with the stripped row)
    np.testing.assert_allclose(stripped["user"].numpy()[1:], base["user"].numpy()[1:], atol=1e-6)
    assert not np.allclose(stripped["user"].numpy()[0], base["user"].numpy()[0], atol=1e-3)
    np.testing.assert_array_equal(stripped["user0"].numpy(), base["user0"].numpy())


def test_einsum_scores_equal_a_per_candidate_loop(data_dir, vocab):
    assert_both_heads_score_candidates_independently(_model(vocab), data_dir)


def test_eager_graph_and_xla_agree_on_prepared_batches(data_dir, vocab):
    assert_joint_eager_graph_xla_agree(_model(vocab, "train.jit_compile=true"), data_dir)


def test_dynamic_shape_shortcuts_match_the_fixed_shape_path(data_dir, vocab):
    assert_joint_dynamic_shapes_match_fixed(_model(vocab), data_dir)


def test_loss_is_bce_plus_weighted_translation_and_generation(data_dir, vocab):
    model = _model(vocab)
    feed = model.prepare(_batch(data_dir, "train", F.Task.FEED))
    search = model.prepare(_batch(data_dir, "valid", F.Task.SEARCH))
    parts = {task: model.task_loss(batch, task)
             for task, batch in ((F.Task.FEED, feed), (F.Task.SEARCH, search))}
    for task, batch in ((F.Task.FEED, feed), (F.Task.SEARCH, search)):
        p = {k: v.numpy() for k, v in parts[task].items()}
        labels = batch[reader.LABEL].numpy()
        np.testing.assert_allclose(p["bce"], reference_bce(p["logits"], labels), rtol=1e-5)
        np.testing.assert_allclose(p["total"], p["bce"] + 0.2 * p["translation"]
                                   + 1.5 * p["generation"], rtol=1e-6)
        assert "qi" not in p and p["translation"] > 0
        # The translation term from its definition: the row's intent (the query on search,
        # the positive's generated intent on feed), every (positive, negative) pair.
        side = model.encode_user(batch, [batch[reader.CANDIDATES]])
        candidates = side["extra"][0]
        features = model.candidate_features(side, candidates)
        intents = model.intents(features, candidates, batch.get(F.QUERY_WORDS), task).numpy()
        positive = labels.argmax(1)
        assert (labels.sum(1) == 1).all()
        row_intent = intents[np.arange(len(labels)), positive]
        dist = translation_distance(side["user"], tf.constant(row_intent), candidates).numpy()
        pairs = [_softplus(dist[b, positive[b]] - dist[b, n]) for b in range(len(labels))
                 for n in range(labels.shape[1]) if labels[b, n] == 0]
        np.testing.assert_allclose(p["translation"], np.mean(pairs), rtol=1e-5)
        if task == F.Task.SEARCH:  # generated intent of the positive vs the real query
            generated = model.intent_generator(side["user0"], candidates,
                                               side["context"]).numpy()
            want = np.mean((generated[np.arange(len(labels)), positive] - row_intent) ** 2)
            np.testing.assert_allclose(p["generation"], want, rtol=1e-5)
            assert p["generation"] > 0
        else:
            assert p["generation"] == 0.0
    total = model.loss_prepared({Inputs.FEED: feed, Inputs.SEARCH: search}).numpy()
    np.testing.assert_allclose(total, parts[F.Task.FEED]["total"].numpy()
                               + 0.1 * parts[F.Task.SEARCH]["total"].numpy(), rtol=1e-5)
    aligned = _model(vocab, "model.use_query_item_alignment=true", "model.num_qi_negatives=8")
    p = {k: v.numpy() for k, v in aligned.task_loss(search, F.Task.SEARCH).items()}
    np.testing.assert_allclose(p["total"], p["bce"] + 0.2 * p["translation"]
                               + 1.5 * p["generation"] + 0.001 * p["qi"], rtol=1e-6)


def test_generation_loss_does_not_move_the_target_query(data_dir, vocab):
    """``L_sg``'s target is a stop-gradient: it trains the generator, not the query encoding of
    the target query (the generator's context still reads the history queries)."""
    model = _model(vocab, item_features="id_only")  # captions would bring Q into the items
    batch = model.prepare(_batch(data_dir, "valid", F.Task.SEARCH))
    batch = strip(batch, "search_")  # no history queries: Q only encodes the target query
    with tf.GradientTape() as tape:
        generation = model.task_loss(batch, F.Task.SEARCH)["generation"]
    grads = tape.gradient(generation, model.query_encoder.trainable_variables
                          + model.intent_generator.trainable_variables)
    q = len(model.query_encoder.trainable_variables)
    assert all(g is None or not np.any(tf.convert_to_tensor(g).numpy()) for g in grads[:q])
    assert all(g is not None and np.any(tf.convert_to_tensor(g).numpy()) for g in grads[q:])


def test_cached_item_vectors_give_the_same_scores(data_dir, vocab):
    model = _model(vocab)
    batch = _batch(data_dir, task=F.Task.SEARCH)
    before = model(batch)
    table = model.cache_item_vectors(chunk=5)
    assert tuple(table.shape) == (vocab.num_items, model.config.hidden_dim)
    after = model(batch)
    for key in before:
        np.testing.assert_allclose(after[key].numpy(), before[key].numpy(), atol=1e-6)


def test_id_only_variant_scores_finitely_and_differs(data_dir, vocab):
    batch = _batch(data_dir, "train", F.Task.FEED)
    default = _model(vocab).score(batch, F.Task.FEED).numpy()
    variant = _model(vocab, item_features="id_only").score(batch, F.Task.FEED).numpy()
    assert variant.shape == default.shape and np.isfinite(variant).all()
    assert not np.allclose(variant, default)


@pytest.mark.parametrize("kwargs, message", [
    ({"item_features": "text"}, "`item_features` should be one of"),
    ({"translation_weight": -1.0}, "`translation_weight` should be >= 0"),
    ({"generation_weight": "high"}, "`generation_weight` should be >= 0"),
    ({"hop_weight": -0.5}, "`hop_weight` should be a non-negative float"),
])
def test_invalid_arguments(vocab, kwargs, message):
    with pytest.raises(ValueError, match=message):
        UDITSR(preset("uditsr").model, vocab, **kwargs)


def test_preset_model_trains_and_lowers_the_loss(data_dir, vocab):
    """``build_model(preset("uditsr"))`` trained like ``jsr-train`` (prepared input, feed and
    search batches zipped; the preset does not compile with XLA, see the XLA test above for the
    fixed-shape path); the loss on every train row falls."""
    assert_training_lowers_the_loss(_model(vocab, seed=3), data_dir,
                                    {F.Task.FEED: 2, F.Task.SEARCH: 1}, learning_rate=3e-3,
                                    steps_per_epoch=5, factor=0.8, jit_compile=None)
