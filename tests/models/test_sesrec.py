"""SESRec model: widths, scores, missing histories, candidate independence, XLA, losses,
training."""

import numpy as np
import pytest

import jsr_tf  # noqa: F401

from jsr_tf import features as F
from jsr_tf.config import preset
from jsr_tf.data import reader
from jsr_tf.keys import Inputs
from jsr_tf.layers.co_attention_split import CoAttentionKey as K
from jsr_tf.models.sesrec import SESRec
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
    overrides = ("model.num_qi_negatives=8", *overrides)
    if kwargs:  # the builder's seed and shape choice, with other constructor arguments
        train = preset("sesrec").override(list(overrides)).train
        kwargs = {"seed": train.seed, "dynamic_shapes": not train.jit_compile, **kwargs}
    return preset_model("sesrec", vocab, *overrides, seed=seed, model_class=SESRec,
                        model_kwargs=kwargs)


# ---------------------------------------------------------------------------------------------
def test_preset_builds_sesrec_with_the_spec_widths(data_dir, vocab):
    model = _model(vocab)
    assert isinstance(model, SESRec)
    assert model_tasks(model) == (F.Task.FEED, F.Task.SEARCH)
    assert (model.item_features, model.triplet_weight, model.triplet.margin) == \
        ("unisar", 0.001, 0.1)
    model(_batch(data_dir))  # builds every layer
    d, u = model.config.hidden_dim, 32
    feed_head, search_head = (head._dense_layers for head in model.heads)
    assert [tuple(layer.kernel.shape) for layer in feed_head] == [(7 * d + u, 200), (200, 80),
                                                                  (80, 1)]
    assert tuple(search_head[0].kernel.shape) == (8 * d + u, 200)  # + e_q
    assert len(model.feed_encoder) == len(model.search_encoder) == model.config.num_layers
    assert model.feed_encoder[0] is not model.search_encoder[0]
    assert model.feed_encoder[0].layer_norm_epsilon == 1e-8


def test_scores_have_candidate_shape_and_the_search_head_reads_the_query(data_dir, vocab):
    assert_joint_scores_and_query_reading(_model(vocab), data_dir)


@pytest.mark.parametrize("missing", ["feed_", "search_", ("feed_", "search_")])
def test_rows_without_history_are_finite_in_outputs_losses_and_gradients(data_dir, vocab,
                                                                         missing):
    assert_joint_rows_without_history_are_finite(_model(vocab), data_dir, missing)


def test_co_attention_masks_at_inference(data_dir, vocab):
    """Masks come with every forward pass: non-empty subsets of the valid slots covering them,
    all-False on a missing history; the triplet term of such rows is the margin."""
    model = _model(vocab)
    batch = model.prepare(_batch(data_dir, "train", F.Task.FEED))
    for side in (model.encode_user(batch), model.encode_user(strip(batch, "search_"))):
        for scene, pos, neg in (("feed", K.FEED_POSITIVE, K.FEED_NEGATIVE),
                                ("search", K.SEARCH_POSITIVE, K.SEARCH_NEGATIVE)):
            valid = side[f"{scene}_valid"].numpy()
            p, n = side[pos].numpy(), side[neg].numpy()
            np.testing.assert_array_equal(p | n, valid)
            assert not (p & ~valid).any() and not (n & ~valid).any()
            np.testing.assert_array_equal(p.any(-1), valid.any(-1))
            np.testing.assert_array_equal(n.any(-1), valid.any(-1))
    assert side[K.SEARCH_POSITIVE].numpy().sum() == 0  # the stripped search history
    assert side[K.SEARCH_WEIGHTS].numpy().sum() == 0
    per_row = model.triplet.per_row(side["S"], side[K.SEARCH_WEIGHTS],
                                    side[K.SEARCH_POSITIVE], side[K.SEARCH_NEGATIVE])
    np.testing.assert_allclose(per_row.numpy(), 0.1, atol=1e-5)


def test_einsum_scores_equal_a_per_candidate_loop(data_dir, vocab):
    assert_both_heads_score_candidates_independently(_model(vocab), data_dir)


def test_eager_graph_and_xla_agree_on_prepared_batches(data_dir, vocab):
    assert_joint_eager_graph_xla_agree(_model(vocab, "train.jit_compile=true"), data_dir)


def test_dynamic_shape_shortcuts_match_the_fixed_shape_path(data_dir, vocab):
    assert_joint_dynamic_shapes_match_fixed(_model(vocab), data_dir)


def test_loss_is_bce_plus_weighted_alignment_and_triplet(data_dir, vocab):
    model = _model(vocab, "model.q_i_cl_weight=0.1")
    feed = _batch(data_dir, "train", F.Task.FEED)
    search = _batch(data_dir, "valid", F.Task.SEARCH)  # rows with search histories
    parts = {task: model.task_loss(model.prepare(batch), task)
             for task, batch in ((F.Task.FEED, feed), (F.Task.SEARCH, search))}
    for task, batch in ((F.Task.FEED, feed), (F.Task.SEARCH, search)):
        p = {k: v.numpy() for k, v in parts[task].items()}
        np.testing.assert_allclose(p["bce"],
                                   reference_bce(p["logits"], batch[reader.LABEL].numpy()),
                                   rtol=1e-5)
        np.testing.assert_allclose(p["total"], p["bce"] + 0.1 * p["qi"] + 0.001 * p["triplet"],
                                   rtol=1e-6)
        assert 0 < p["triplet"] and p["qi"] > 0
    total = model.compute_loss({Inputs.FEED: feed, Inputs.SEARCH: search}).numpy()
    np.testing.assert_allclose(total, parts[F.Task.FEED]["total"].numpy()
                               + 0.1 * parts[F.Task.SEARCH]["total"].numpy(), rtol=1e-5)
    np.testing.assert_allclose(model.compute_loss({Inputs.SEARCH: search}).numpy(),
                               parts[F.Task.SEARCH]["total"].numpy(), rtol=1e-5)
    ablated = _model(vocab, "model.use_query_item_alignment=false")
    p = {k: v.numpy() for k, v in ablated.task_loss(ablated.prepare(feed), F.Task.FEED).items()}
    assert "qi" not in p
    np.testing.assert_allclose(p["total"], p["bce"] + 0.001 * p["triplet"], rtol=1e-6)


def test_infonce_negatives_are_a_stateless_function_of_seed_and_step(vocab):
    model = _model(vocab)
    items, queries = (t.numpy() for t in model._negatives())
    np.testing.assert_array_equal(model._negatives()[0].numpy(), items)
    assert len(set(items.tolist())) == len(items) == min(8, model.num_items - 2)
    assert items.min() >= 2 and queries.shape[1] == SHAPE.query_words


def test_id_only_variant_scores_finitely_and_differs(data_dir, vocab):
    batch = _batch(data_dir, "train", F.Task.FEED)
    default = _model(vocab).score(batch, F.Task.FEED).numpy()
    variant = _model(vocab, item_features="id_only").score(batch, F.Task.FEED).numpy()
    assert variant.shape == default.shape and np.isfinite(variant).all()
    assert not np.allclose(variant, default)


@pytest.mark.parametrize("kwargs, message", [
    ({"item_features": "text"}, "`item_features` should be one of"),
    ({"triplet_weight": -1.0}, "`triplet_weight` should be >= 0"),
    ({"triplet_margin": 0.0}, "`margin` should be a positive float"),
])
def test_invalid_arguments(vocab, kwargs, message):
    with pytest.raises(ValueError, match=message):
        SESRec(preset("sesrec").model, vocab, **kwargs)


def test_preset_model_trains_and_lowers_the_loss(data_dir, vocab):
    """``build_model(preset("sesrec"))`` trained like ``jsr-train`` (prepared input, feed and
    search batches zipped; the preset does not compile with XLA, see the XLA test above for
    the fixed-shape path); the loss on every train row (dropout off) falls."""
    assert_training_lowers_the_loss(_model(vocab, seed=3), data_dir,
                                    {F.Task.FEED: 2, F.Task.SEARCH: 1}, learning_rate=1e-3,
                                    steps_per_epoch=5, factor=0.8, jit_compile=None)
