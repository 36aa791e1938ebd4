"""Neighbour models (``unisar_nbr``, ``sasrec_nbr``): the fusion is an exact identity without
neighbours, changes scores with them once ``Wo`` is non-zero, trains, and traces.

The golden fixture has no neighbour payload, so the payload is synthetic: raw ids drawn from the
fixture's vocabularies, random lengths, right-padded (as the reader gives them).
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np
import pytest

import jsr_tf  # noqa: F401
import tensorflow as tf
import tf_keras as keras

from jsr_tf import config as C
from jsr_tf import features as F
from jsr_tf.data.vocab import Vocab
from jsr_tf.keys import Inputs
from jsr_tf.models import factory
from jsr_tf.models.base import JsrModel
from tests.models._checks import assert_eager_graph_xla_agree, preset_model, read_batch

SHAPE = F.DataShape()  # the reference shape of the fixtures' data

# test id: (neighbour preset, base preset, overrides for the tiny vocabulary)
FAMILIES = {
    "unisar_nbr": ("unisar_nbr", "unisar", ("model.num_qi_negatives=8",)),
    "unisar_nbr_shared": ("unisar_nbr", "unisar",
                          ("model.num_qi_negatives=8", "model.neighbours=shared")),
    "sasrec_nbr": ("sasrec_nbr", "sasrec", ()),
}
PRESETS = {"unisar_nbr": "unisar", "sasrec_nbr": "sasrec"}
ATOL = 1e-6


def _payload(batch: Dict[str, tf.Tensor], vocab: Vocab, seed: int = 0,
             side: np.ndarray = None) -> Dict[str, tf.Tensor]:
    """``batch`` plus a random non-empty neighbour payload (raw ids, right-padded)."""
    rng = np.random.default_rng(seed)
    rows, k = int(batch[F.FEED_ITEMS].shape[0]), SHAPE.neighbour_slots
    lf, lq = SHAPE.nbr_feed_items, SHAPE.nbr_search_sessions
    wn, kn = SHAPE.nbr_query_words, SHAPE.nbr_session_clicks

    def ids(pool: np.ndarray, shape: Tuple[int, ...]) -> np.ndarray:
        values = rng.choice(pool, size=shape).astype(np.int64)
        lengths = rng.integers(1, shape[-1] + 1, size=shape[:-1])
        return np.where(np.arange(shape[-1]) < lengths[..., None], values, 0)

    if side is None:
        side = rng.integers(1, 3, size=(rows, k))
        side[:, -2:] = 0  # trailing empty slots, as the reader pads them
    out = dict(batch)
    out[F.NBR_SIDE] = tf.constant(side, tf.int64)
    out[F.NBR_SIM] = tf.constant(rng.uniform(0.02, 0.9, size=(rows, k)), tf.float32)
    out[F.NBR_REC_ITEMS] = tf.constant(ids(vocab.item_ids, (rows, k, lf)))
    sessions = rng.integers(0, lq + 1, size=(rows, k))
    keep = (np.arange(lq) < sessions[..., None])[..., None]
    out[F.NBR_SRC_WORDS] = tf.constant(ids(vocab.word_ids, (rows, k, lq, wn)) * keep)
    out[F.NBR_SRC_CLICKS] = tf.constant(ids(vocab.item_ids, (rows, k, lq, kn)) * keep)
    return out


def _masked(batch: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """The same payload with every slot marked empty (``nbr_side == 0``)."""
    out = dict(batch)
    out[F.NBR_SIDE] = tf.zeros_like(batch[F.NBR_SIDE])
    return out


def _without_neighbours(batch: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    return {k: v for k, v in batch.items() if k not in F.NEIGHBOUR_INPUTS}


def _fusions(model: JsrModel) -> List[keras.layers.Layer]:
    return [layer for layer in model.layers if "neighbour" in layer.name]


def _neighbour_weight_ids(model: JsrModel) -> set:
    return {id(w) for layer in _fusions(model) for w in layer.weights}


def _perturb_output_kernels(model: JsrModel, seed: int = 7) -> None:
    """Sets every fusion's ``Wo`` to non-zero values (a fresh fusion's ``Wo`` is zero)."""
    rng = np.random.default_rng(seed)
    for layer in _fusions(model):
        if hasattr(layer, "output_kernel"):
            layer.output_kernel.assign(rng.normal(0, 0.5, layer.output_kernel.shape))


def _pair(name: str, vocab: Vocab, batch) -> Tuple[JsrModel, JsrModel]:
    """The neighbour model and its base model holding the same base weights."""
    preset_name, base_name, overrides = FAMILIES[name]
    model = preset_model(preset_name, vocab, *overrides)
    base = preset_model(base_name, vocab,
                        *[o for o in overrides if not o.startswith("model.neighbour")])
    model(batch)  # builds both heads
    base(_without_neighbours(batch))
    nbr_ids = _neighbour_weight_ids(model)
    assert nbr_ids, "no neighbour layers were built"
    shared = [w for w in model.weights if id(w) not in nbr_ids]
    assert [w.shape for w in shared] == [w.shape for w in base.weights]
    assert ([w.name.split("/", 1)[-1] for w in shared]
            == [w.name.split("/", 1)[-1] for w in base.weights])
    base.set_weights([w.numpy() for w in shared])
    return model, base


def _scores(model: JsrModel, batch) -> Dict[int, np.ndarray]:
    return {task: model.score(batch, task).numpy() for task in F.Task}


def _assert_scores_close(a: Dict[int, np.ndarray], b: Dict[int, np.ndarray]) -> None:
    for task in F.Task:
        np.testing.assert_allclose(a[task], b[task], rtol=ATOL, atol=ATOL)


# -- config ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_neighbour_presets_are_their_base_with_pooled_neighbours(name):
    base_name = PRESETS[name]
    config = C.preset(name)
    assert config.model.neighbours == "pooled" and config.model.uses_neighbours
    assert config.model.name == C.preset(base_name).model.name
    assert not C.preset(base_name).model.uses_neighbours
    assert C.ExperimentConfig.from_dict(config.to_dict()) == config


def test_every_preset_round_trips_through_json():
    import json

    for name in C.preset_names():
        config = C.preset(name)
        assert C.ExperimentConfig.from_dict(json.loads(config.to_json())) == config


@pytest.mark.parametrize("override, message", [
    ("model.neighbours=dense", "`neighbours` should be one of"),
    ("model.neighbour_heads=0", "`neighbour_heads` should be a positive integer"),
    ("model.neighbour_head_dim=-1", "`neighbour_head_dim` should be a positive integer"),
    ("model.neighbour_dropout=1.0", "`neighbour_dropout` should be in [0, 1)"),
    ("model.neighbour_attention_dropout=-0.1", "`neighbour_attention_dropout`"),
    ("model.neighbour_decay=0", "`neighbour_decay` should be in (0, 1]"),
    ("model.neighbour_candidate_aware=1", "`model.neighbour_candidate_aware` expects a bool"),
])
def test_invalid_neighbour_settings_raise(override, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(")
                       .replace(")", r"\)").replace("]", r"\]")):
        C.preset("unisar").override([override])


def test_a_family_without_neighbour_support_refuses_them(vocab):
    config = C.preset("sesrec").override(["model.neighbours=pooled"])
    with pytest.raises(ValueError, match="does not read the neighbour payload"):
        factory.build_model(config, vocab)


def test_sasrec_refuses_the_shared_neighbour_encoder(vocab):
    config = C.preset("sasrec_nbr").override(["model.neighbours=shared"])
    with pytest.raises(ValueError, match="SASRec supports `neighbours='pooled'` only"):
        factory.build_model(config, vocab)


# -- models --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_base_presets_build_no_neighbour_layers(name, vocab):
    base = preset_model(PRESETS[name], vocab)
    assert not _fusions(base)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_masked_neighbours_score_like_the_base_model(name, data_dir, vocab):
    """(a) All slots empty = base; a fresh fusion (Wo = 0) = base even with neighbours; after
    Wo is perturbed, masked slots still = base while real neighbours change the scores."""
    batch = _payload(read_batch(data_dir), vocab)
    model, base = _pair(name, vocab, batch)
    expected = _scores(base, _without_neighbours(batch))
    _assert_scores_close(_scores(model, _masked(batch)), expected)
    _assert_scores_close(_scores(model, batch), expected)  # Wo = 0: an exact identity
    _perturb_output_kernels(model)
    _assert_scores_close(_scores(model, _masked(batch)), expected)
    changed = _scores(model, batch)[F.Task.FEED]
    assert np.abs(changed - expected[F.Task.FEED]).max() > 1e-3


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_a_batch_without_neighbour_keys_equals_all_masked(name, data_dir, vocab):
    """(b) The base signatures' batches (no ``nbr_*``) score as all-empty neighbours."""
    batch = _payload(read_batch(data_dir), vocab)
    model, _ = _pair(name, vocab, batch)
    _perturb_output_kernels(model)
    zeros = {k: tf.zeros_like(v) if k in F.NEIGHBOUR_INPUTS else v for k, v in batch.items()}
    without = _scores(model, _without_neighbours(batch))
    for task in F.Task:
        np.testing.assert_array_equal(without[task], model.score(zeros, task).numpy())
    _assert_scores_close(without, _scores(model, _masked(batch)))


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_one_training_step_reaches_the_fusion_weights(name, data_dir, vocab):
    """(c) With Wo = 0 only Wo gets a gradient; after one Adam step every fusion and encoder
    weight does."""
    preset_name, base_name, overrides = FAMILIES[name]
    model = preset_model(preset_name, vocab, *overrides)
    inputs = {Inputs.FEED: _payload(read_batch(data_dir, "train", F.Task.FEED), vocab, 1)}
    if base_name == "unisar":
        inputs[Inputs.SEARCH] = _payload(read_batch(data_dir, "train", F.Task.SEARCH, 2),
                                         vocab, 2)
    model.compute_loss(inputs, training=True)  # builds the variables
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    fusions = [layer for layer in _fusions(model) if hasattr(layer, "output_kernel")]
    assert all(not layer.output_kernel.numpy().any() for layer in fusions)
    logs = model.train_step({key: model.prepare(batch) for key, batch in inputs.items()})
    assert np.isfinite(logs["loss"].numpy())
    assert all(layer.output_kernel.numpy().any() for layer in fusions)
    with tf.GradientTape() as tape:
        loss = model.compute_loss(inputs, training=True)
    weights = [w for layer in _fusions(model) for w in layer.trainable_weights]
    grads = tape.gradient(loss, weights)
    for weight, grad in zip(weights, grads):
        assert grad is not None, weight.name
        grad = tf.convert_to_tensor(grad).numpy()
        assert np.isfinite(grad).all() and np.abs(grad).max() > 0, weight.name


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_eager_graph_and_xla_agree(name, data_dir, vocab):
    """(d) ``call`` eager, under ``tf.function`` and XLA-compiled (fixed-shape build, non-zero
    Wo, real neighbours)."""
    preset_name, _, overrides = FAMILIES[name]
    model = preset_model(preset_name, vocab, *overrides, "train.jit_compile=true")
    batch = model.prepare(_payload(read_batch(data_dir, task=F.Task.SEARCH), vocab))
    model(batch)
    _perturb_output_kernels(model)
    assert_eager_graph_xla_agree(model, batch, atol=1e-6, xla_rtol=1e-4, xla_atol=1e-5)


def test_unisar_neighbour_items_use_the_item_cache(data_dir, vocab):
    """Serving's frozen item table gives the scores of the live item encoder."""
    batch = _payload(read_batch(data_dir), vocab)
    model = preset_model("unisar_nbr", vocab, *FAMILIES["unisar_nbr"][2])
    model(batch)
    _perturb_output_kernels(model)
    live = _scores(model, batch)
    model.cache_item_vectors()
    _assert_scores_close(_scores(model, batch), live)


@pytest.mark.parametrize("name", ["unisar_nbr", "unisar_nbr_shared"])
def test_unisar_dynamic_shapes_match_fixed_with_neighbours(name, data_dir, vocab):
    batch = _payload(read_batch(data_dir), vocab)
    model = preset_model("unisar_nbr", vocab, *FAMILIES[name][2])
    model(batch)
    _perturb_output_kernels(model)
    dynamic = _scores(model, batch)
    model.dynamic_shapes = False
    _assert_scores_close(_scores(model, batch), dynamic)


def test_sasrec_neighbour_items_encoded_once_per_id_match_fixed_shapes(data_dir, vocab):
    batch = _payload(read_batch(data_dir), vocab)
    model = preset_model("sasrec_nbr", vocab, *FAMILIES["sasrec_nbr"][2])
    assert model.dynamic_shapes
    model(batch)
    _perturb_output_kernels(model)
    dynamic = _scores(model, batch)
    model.dynamic_shapes = False
    _assert_scores_close(_scores(model, batch), dynamic)


@pytest.mark.parametrize("name", ["sasrec", "sasrec_nbr"])
def test_sasrec_serving_module_with_xla(name, data_dir, vocab):
    """A SASRec ranker (no item cache) exports with ``jit_compile``: the module switches it to
    its fixed-shape path, and the XLA feed scores equal the model's."""
    from jsr_tf.export import serving as S
    from jsr_tf.export import signatures as SG

    batch = _payload(read_batch(data_dir), vocab)
    model = preset_model(name, vocab, *FAMILIES.get(name, (None, None, ()))[2])
    model(batch)
    _perturb_output_kernels(model)
    inputs = {k: batch[k] for k in (*SG.HISTORY_SPECS, SG.CANDIDATES)}
    if name == "sasrec_nbr":
        inputs.update({k: batch[k] for k in SG.NEIGHBOUR_SPECS})
    # A request's sessions list real clicks only (search_has_click is derived from them).
    want = model.score(S.fit_request(inputs, SHAPE), F.Task.FEED).numpy()
    module = S.ServingModule(model, jit_compile=True)
    assert model.dynamic_shapes is False
    sig = SG.FEED_NBR_SIGNATURE if name == "sasrec_nbr" else SG.FEED_SIGNATURE
    got = module.signatures()[sig](**inputs)[SG.SCORES].numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


# -- plumbing ---------------------------------------------------------------------------------
def test_training_input_parses_the_payload_and_warns_without_it(data_dir, caplog):
    from jsr_tf.training import datasets

    config = C.preset("unisar_nbr").override(["train.batch_size=2", "train.steps_per_epoch=1"])
    with caplog.at_level("WARNING"):
        train = datasets.make_train_input(config, data_dir, shuffle=False)
    assert "every neighbour slot will be empty" in caplog.text
    batch = next(iter(train.dataset))[Inputs.FEED.value]
    assert batch[F.NBR_SRC_WORDS].shape[1:] == (SHAPE.neighbour_slots, SHAPE.nbr_search_sessions,
                                                SHAPE.nbr_query_words)
    for name in F.NEIGHBOUR_INPUTS:  # every slot is padding: side and sim 0, ids -1
        pad_value = 0 if name in (F.NBR_SIDE, F.NBR_SIM) else F.RAW_PAD_ID
        assert (batch[name].numpy() == pad_value).all(), name
    base = datasets.make_train_input(C.preset("unisar").override(["train.batch_size=2"]),
                                     data_dir, shuffle=False)
    assert F.NBR_SIDE not in next(iter(base.dataset))[Inputs.FEED.value]


def test_evaluator_reads_the_payload_for_a_neighbour_model(data_dir, vocab):
    from jsr_tf.evaluation import evaluator, scorers

    model = preset_model("sasrec_nbr", vocab)
    assert evaluator.uses_neighbours(model)
    assert evaluator.uses_neighbours(scorers.QueryBlindScorer(model))
    assert not evaluator.uses_neighbours(preset_model("sasrec", vocab))
    scored = evaluator.score_split(model, data_dir, "valid", F.Task.FEED, batch_size=4)
    assert np.isfinite(scored.scores).all() and len(scored.scores)
