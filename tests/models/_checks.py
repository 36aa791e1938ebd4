"""Shared helpers of the model tests: builders, reader batches and the checks every family runs.

The data come from ``conftest.data_dir`` (the golden fixture preprocessed: 2 train, 3 eval
negatives); ``conftest.vocab`` is its vocabulary.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Type

import jsr_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

import numpy as np
import tensorflow as tf
import tf_keras as keras

from jsr_tf import features as F
from jsr_tf.config import preset
from jsr_tf.data import reader
from jsr_tf.data.vocab import Vocab
from jsr_tf.keys import Inputs, Outputs
from jsr_tf.models.base import JsrModel
from jsr_tf.models.factory import build_model

Batch = Dict[str, tf.Tensor]
INPUT_KEYS = {F.Task.FEED: Inputs.FEED, F.Task.SEARCH: Inputs.SEARCH}


def preset_model(name: str, vocab: Vocab, *overrides: str, seed: int = 1,
                 model_class: Optional[Type[JsrModel]] = None,
                 model_kwargs: Optional[Dict[str, Any]] = None) -> JsrModel:
    """A model of preset ``name`` with ``overrides``, after ``set_random_seed(seed)``.

    Built by ``build_model`` (as ``jsr-train`` does), or as ``model_class(config.model, vocab,
    **model_kwargs)`` when constructor arguments are given.
    """
    keras.utils.set_random_seed(seed)
    config = preset(name).override(list(overrides))
    if model_kwargs:
        return model_class(config.model, vocab, **model_kwargs)
    return build_model(config, vocab)


def read_batch(data_dir: str, split: str = "valid", task: int = F.Task.FEED,
               size: int = 4) -> Batch:
    """The first batch of ``(split, task)``, unshuffled (raw ids)."""
    ds = reader.make_dataset(data_dir, split, task, batch_size=size, shuffle_buffer=0)
    return next(iter(ds))


def strip(batch: Batch, prefix: str, row: Optional[int] = None) -> Batch:
    """Zeroes the history fields named ``prefix*`` of every row, or of one ``row``."""
    out = dict(batch)
    for name in batch:
        if name.startswith(prefix):
            value = batch[name]
            if row is None:
                out[name] = tf.zeros_like(value)
            else:
                keep = tf.reshape(tf.range(tf.shape(value)[0]) != row,
                                  [-1] + [1] * (value.shape.rank - 1))
                out[name] = tf.where(keep, value, tf.zeros_like(value))
    return out


def strip_all(batch: Batch, prefixes: Iterable[str]) -> Batch:
    """``strip`` for each prefix in turn (a single string is one prefix)."""
    for prefix in (prefixes,) if isinstance(prefixes, str) else prefixes:
        batch = strip(batch, prefix)
    return batch


def reference_bce(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean binary cross-entropy on logits in float64 (the loss's numpy reference)."""
    logits = logits.astype(np.float64)
    return np.mean(np.maximum(logits, 0) - logits * labels + np.log1p(np.exp(-abs(logits))))


# ---------------------------------------------------------------------------------------------
def assert_scores_shaped_and_finite(model: JsrModel, batch: Batch, task: int) -> np.ndarray:
    """``model.score(batch, task)`` has the candidates' shape and is finite; returns it."""
    logits = model.score(batch, task).numpy()
    assert logits.shape == tuple(batch[reader.CANDIDATES].shape)
    assert np.isfinite(logits).all()
    return logits


def assert_candidates_scored_independently(score: Callable[[Batch], tf.Tensor], batch: Batch,
                                           together: np.ndarray, rtol: float = 1e-5,
                                           atol: float = 1e-5,
                                           perm: Optional[Sequence[int]] = None) -> None:
    """Scoring each candidate alone gives its column of ``together`` (the tiled reference).

    Args:
        score: Batch → logits ``(B, C)``.
        batch: The batch ``together`` was scored on.
        together: Logits ``(B, C)`` of all candidates at once.
        rtol, atol: Tolerances.
        perm: Optional candidate permutation: the permuted batch's logits must be the permuted
            columns.
    """
    candidates = batch[reader.CANDIDATES]
    for c in range(candidates.shape[1]):
        alone = dict(batch)
        alone[reader.CANDIDATES] = candidates[:, c:c + 1]
        np.testing.assert_allclose(np.asarray(score(alone))[:, 0], together[:, c], rtol=rtol,
                                   atol=atol)
    if perm is not None:
        permuted = dict(batch)
        permuted[reader.CANDIDATES] = tf.gather(candidates, list(perm), axis=1)
        np.testing.assert_allclose(np.asarray(score(permuted)), together[:, list(perm)],
                                   rtol=rtol, atol=atol)


def finite_loss_and_gradients(model: JsrModel, inputs: Dict[Inputs, Batch]) -> List[Any]:
    """Asserts the training loss of ``inputs`` and every gradient are finite; returns the
    gradients (None for variables the loss does not reach)."""
    with tf.GradientTape() as tape:
        loss = model.compute_loss(inputs, training=True)
    grads = tape.gradient(loss, model.trainable_variables)
    assert np.isfinite(loss.numpy())
    for g in grads:
        if g is not None:
            assert np.isfinite(tf.convert_to_tensor(g).numpy()).all()
    return grads


def assert_dynamic_shapes_match_fixed(model: JsrModel,
                                      compute: Callable[[], Dict[str, np.ndarray]]) -> None:
    """The shape-changing shortcuts (``dynamic_shapes=True``) give the fixed-shape path's values.

    Args:
        model: A model with a ``dynamic_shapes`` switch (UniSAR, SESRec).
        compute: Runs the model and returns ``{"logits": ..., "loss": ...}`` (numpy); called with
            the shortcuts on, then off.
    """
    results = []
    for dynamic in (True, False):
        model.dynamic_shapes = dynamic
        results.append(compute())
    shortcut, fixed = results
    np.testing.assert_allclose(shortcut["logits"], fixed["logits"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(shortcut["loss"], fixed["loss"], rtol=1e-5)


def assert_eager_graph_xla_agree(model: JsrModel, batch: Batch, atol: float = 1e-5,
                                 rtol: float = 1e-5, xla_atol: Optional[float] = None,
                                 xla_rtol: Optional[float] = None) -> None:
    """``model.call_prepared`` eager, under ``tf.function`` and XLA-compiled give the same
    outputs.

    Args:
        model: A fixed-shape model (``jit_compile`` builder settings).
        batch: A prepared batch (hash lookups cannot run inside XLA).
        atol, rtol: Graph-vs-eager tolerances (and XLA's unless given).
        xla_atol, xla_rtol: XLA-vs-eager tolerances.
    """
    eager = model.call_prepared(batch)
    graph = tf.function(model.call_prepared)(batch)
    xla = tf.function(model.call_prepared, jit_compile=True)(batch)
    xla_atol = atol if xla_atol is None else xla_atol
    xla_rtol = rtol if xla_rtol is None else xla_rtol
    for key in eager:
        np.testing.assert_allclose(graph[key].numpy(), eager[key].numpy(), rtol=rtol, atol=atol)
        np.testing.assert_allclose(xla[key].numpy(), eager[key].numpy(), rtol=xla_rtol,
                                   atol=xla_atol)


def assert_training_lowers_the_loss(model: JsrModel, data_dir: str, batch_sizes: Dict[int, int],
                                    learning_rate: float, steps_per_epoch: int, factor: float,
                                    jit_compile: Optional[bool] = True) -> None:
    """Trains like ``jsr-train`` and checks the loss on every train row (dropout off) falls.

    Prepared input (one stream per task, seed 3, ``drop_remainder``), Adam, 2 epochs; the loss
    over all train rows of the tasks must end below ``factor`` times its start.

    Args:
        model: A freshly built model.
        data_dir: Pipeline output.
        batch_sizes: Training batch size of each task trained on.
        learning_rate: Adam's learning rate.
        steps_per_epoch: Steps of each of the 2 epochs.
        factor: Required ratio of the final to the initial loss.
        jit_compile: ``compile``'s ``jit_compile``.
    """
    every_row = {INPUT_KEYS[task]: read_batch(data_dir, "train", task, 64)
                 for task in batch_sizes}
    before = model.compute_loss(every_row).numpy()  # also creates the variables
    ds = tf.data.Dataset.zip({
        INPUT_KEYS[task].value: reader.make_dataset(
            data_dir, "train", task, size, repeat=True, seed=3, drop_remainder=True)
        for task, size in batch_sizes.items()})
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), jit_compile=jit_compile)
    history = model.fit(ds, steps_per_epoch=steps_per_epoch, epochs=2, verbose=0).history["loss"]
    after = model.compute_loss(every_row).numpy()
    assert np.isfinite(history).all() and np.isfinite(after)
    assert after < factor * before


# ---------------------------------------------------------------------------------------------
# Checks of the joint models with a feed and a search head (SESRec, UDITSR).
def assert_both_heads_score_candidates_independently(model: JsrModel, data_dir: str) -> None:
    """Each head's logits of a search batch equal a per-candidate loop (and permute with the
    candidates, feed head)."""
    batch = model.prepare(read_batch(data_dir, task=F.Task.SEARCH))
    together = model.call_prepared(batch)
    for key, perm in ((Outputs.FEED_LOGITS, [3, 1, 0, 2]), (Outputs.SEARCH_LOGITS, None)):
        assert_candidates_scored_independently(lambda b, key=key: model.call_prepared(b)[key],
                                               batch,
                                               together[key].numpy(), atol=1e-6, perm=perm)


def assert_joint_eager_graph_xla_agree(model: JsrModel, data_dir: str) -> None:
    """``assert_eager_graph_xla_agree`` on a prepared search batch whose row 0 has no feed
    history and row 1 no search history (``model``: built with ``train.jit_compile=true``)."""
    assert not model.dynamic_shapes
    batch = read_batch(data_dir, task=F.Task.SEARCH)  # both rows have both histories
    batch = model.prepare(strip(strip(batch, "feed_", row=0), "search_", row=1))
    assert_eager_graph_xla_agree(model, batch)


def assert_joint_dynamic_shapes_match_fixed(model: JsrModel, data_dir: str) -> None:
    """``assert_dynamic_shapes_match_fixed`` on the search logits and the joint training loss."""
    inputs = {Inputs.FEED: read_batch(data_dir, "train", F.Task.FEED),
              Inputs.SEARCH: read_batch(data_dir, "train", F.Task.SEARCH, size=2)}
    assert_dynamic_shapes_match_fixed(model, lambda: {
        "logits": model(inputs[Inputs.SEARCH])[Outputs.SEARCH_LOGITS].numpy(),
        "loss": model.compute_loss(inputs).numpy()})


def assert_joint_scores_and_query_reading(model: JsrModel, data_dir: str) -> Dict[str, Any]:
    """Both tasks' scores have the candidates' shape and are finite; ``call`` gives both heads
    (the search one equal to ``score``); zeroing ``query_words`` moves only the search head.

    Returns:
        ``call``'s outputs on the search batch.
    """
    for task in F.Task:
        assert_scores_shaped_and_finite(model, read_batch(data_dir, task=task), task)
    batch = read_batch(data_dir, task=F.Task.SEARCH)
    both = model(batch)
    assert set(both) == {Outputs.FEED_LOGITS, Outputs.SEARCH_LOGITS}
    np.testing.assert_allclose(both[Outputs.SEARCH_LOGITS].numpy(),
                               model.score(batch, F.Task.SEARCH).numpy(), rtol=1e-5, atol=1e-6)
    other = dict(batch)
    other[F.QUERY_WORDS] = tf.zeros_like(batch[F.QUERY_WORDS])
    moved = model(other)
    np.testing.assert_array_equal(moved[Outputs.FEED_LOGITS], both[Outputs.FEED_LOGITS])
    assert not np.allclose(moved[Outputs.SEARCH_LOGITS], both[Outputs.SEARCH_LOGITS])
    return both


def assert_joint_rows_without_history_are_finite(model: JsrModel, data_dir: str,
                                                 missing: Any) -> Dict[Inputs, Batch]:
    """With the ``missing`` history prefixes stripped, the joint loss, every gradient and both
    heads' logits are finite, on the shortcut and the fixed-shape (XLA) path.

    Returns:
        The stripped ``{Inputs.FEED: batch, Inputs.SEARCH: batch}``.
    """
    feed = strip_all(read_batch(data_dir, "train", F.Task.FEED), missing)
    search = strip_all(read_batch(data_dir, "valid", F.Task.SEARCH), missing)
    for dynamic in (True, False):
        model.dynamic_shapes = dynamic
        grads = finite_loss_and_gradients(model, {Inputs.FEED: feed, Inputs.SEARCH: search})
        assert sum(g is not None for g in grads) > len(grads) // 2
        for batch in (feed, search):
            for logits in model(batch).values():
                assert logits.shape == batch[reader.CANDIDATES].shape
                assert np.isfinite(logits.numpy()).all()
    return {Inputs.FEED: feed, Inputs.SEARCH: search}
