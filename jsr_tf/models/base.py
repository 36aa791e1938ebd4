"""``JsrModel``: the base of every jsr-tf model (a ``tfrs.models.Model``).

Contract:
- ``score(batch, task, training)`` returns logits ``[B, C]`` for the candidates of a batch of one
  task (``batch`` as ``jsr_tf.data.reader`` yields it). The user side is encoded once per row and
  candidates are scored against it; any C works.
- ``compute_loss(inputs, training)`` takes ``{Inputs.FEED: feed_batch, Inputs.SEARCH:
  search_batch}`` (either may be absent for single-task models) and returns the scalar loss.
- ``train_step`` adds **coupled** L2 (``grad += l2 * var``, PyTorch ``weight_decay`` as in the
  reference) to every trainable variable except biases and LayerNorm betas, before the optimiser.
  With ``l2_rows_in_batch`` (``train.l2_rows_in_batch``, a named deviation, off by default) a
  variable whose gradient arrives as rows (``tf.IndexedSlices``: the embedding tables read by
  gathers) gets the L2 term on those rows only, each row once; dense gradients keep the L2 on
  the whole variable. The gradient is then made dense as before, so Adam is unchanged.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import jsr_tf  # noqa: F401
import tensorflow as tf
import tensorflow_recommenders as tfrs

from jsr_tf import features as F
from jsr_tf.data import reader

_NOT_DECAYED = ("/bias:", "/beta:")
PREPARED = "_prepared"  # marker key: the batch's ids are already dense indices
ITEM_FIELDS = (F.FEED_ITEMS, F.SEARCH_CLICKS, reader.CANDIDATES, F.NBR_REC_ITEMS,
               F.NBR_SRC_CLICKS)
WORD_FIELDS = (F.SEARCH_WORDS, F.QUERY_WORDS, F.NBR_SRC_WORDS)


def lookup_ids(batch: Dict[str, tf.Tensor], items, words=None,
               users=None) -> Dict[str, tf.Tensor]:
    """Raw ids → dense indices with a model's ``IdLookup`` layers (the ``prepare`` of a model).

    Hash-table lookups cannot run inside XLA: training maps its dataset through this; ``score``
    and ``compute_loss`` call it on batches that were not prepared (marked by ``PREPARED``).

    Args:
        batch: Reader batch (raw ids) or an already prepared one (returned as is).
        items: ``IdLookup`` of item ids (history items, session clicks, candidates).
        words: Optional ``IdLookup`` of word ids (history and target queries).
        users: Optional ``IdLookup`` of user ids.
    """
    if PREPARED in batch:
        return batch
    out = dict(batch)
    for lookup, names in ((items, ITEM_FIELDS), (words, WORD_FIELDS), (users, (F.USER_ID,))):
        if lookup is None:
            continue
        for name in names:
            if name in batch:
                out[name] = lookup(batch[name])
    return mark_prepared(out)


def mark_prepared(batch: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """``batch`` (dense indices) with the ``PREPARED`` marker, so that ``prepare`` passes it."""
    return {**batch, PREPARED: tf.ones(tf.shape(batch[F.FEED_ITEMS])[:1], tf.bool)}


def decays(variable: tf.Variable) -> bool:
    """Whether coupled L2 applies: everything but Dense/EinsumDense biases and LayerNorm betas."""
    return not any(part in variable.name for part in _NOT_DECAYED)


def add_coupled_l2(gradient, variable: tf.Variable, l2: float,
                   rows_in_batch: bool = False) -> Optional[tf.Tensor]:
    """``gradient + l2 * variable`` as a dense tensor (``gradient`` itself if it is None or the
    variable does not decay).

    Args:
        gradient: The variable's gradient: a tensor, ``tf.IndexedSlices`` or None.
        variable: The variable, ``(rows, ...)``.
        l2: Coupled L2 coefficient.
        rows_in_batch: For ``tf.IndexedSlices`` gradients, add ``l2 * variable`` only on the
            distinct rows the gradient names (the named deviation); the rest of the variable gets
            no L2 this step. Dense gradients get the L2 everywhere either way.
    """
    if gradient is None or not decays(variable):
        return gradient
    if rows_in_batch and isinstance(gradient, tf.IndexedSlices):
        rows, _ = tf.unique(gradient.indices)
        gradient = tf.IndexedSlices(
            tf.concat([gradient.values, l2 * tf.gather(variable, rows)], axis=0),
            tf.concat([gradient.indices, rows], axis=0), gradient.dense_shape)
        return tf.convert_to_tensor(gradient)
    return tf.convert_to_tensor(gradient) + l2 * variable


class JsrModel(tfrs.models.Model):
    """Base model: the interface every ranker provides and everything else relies on.

    The trainer, the evaluator, the export, the factory and the dense-neighbour job use only the
    members below (never ``getattr``/``hasattr`` probes); ``tests/models/test_interface.py``
    checks every registered family against it.

    Required (the base raises ``NotImplementedError``):
        ``score(batch, task, training)``: logits ``[B, C]`` of a batch of one task.
        ``compute_loss(inputs, training)``: the scalar loss of ``{Inputs.FEED: ...,
            Inputs.SEARCH: ...}`` (the tasks of ``train_tasks``).

    Optional, with the defaults of this class:
        ``prepare(batch)``: work outside an XLA step (id lookups); identity.
        ``train_tasks``: the tasks trained on; both.
        ``supports_neighbours``: whether ``model.neighbours`` may be set; False.
        ``encodes_user_sides``: whether ``encode_user(batch, training=False)`` returns the
            per-side vectors (``F_r``, ``F_s``, ``feed_valid``, ``search_valid``, ``user``) that
            the dense neighbour option pools (UniSAR); False.
        ``caches_items``: whether ``cache_item_vectors()`` freezes the item encoder into
            ``item_cache`` for serving; False (``cache_item_vectors`` then returns None).
        ``dynamic_shapes`` and ``use_fixed_shapes()``: a model with a dynamic-shape fast path
            (unique-id encoding) switches to its fixed-shape path for XLA and TPUs; False.
        ``item_lookup``, ``word_lookup``, ``user_lookup``: the ``IdLookup`` layers; None.
        ``config``: the ``ModelConfig``; None.
        ``uses_neighbours``, ``zero_is_id``: derived properties.
        ``configure_training(train_config)``: the training-only options (``l2_rows_in_batch``).

    Args:
        l2: Coupled L2 coefficient added to the gradients in ``train_step`` (0 disables).
        data_shape: The ``DataShape`` of the data the model reads (``Vocab.shape``: the history
            lengths and neighbour slots it is built for); default the reference shape.

    Attributes:
        l2_rows_in_batch: The named deviation ``train.l2_rows_in_batch`` (see the module
            docstring), False by default; ``factory.build_model`` sets it through
            ``configure_training``.
        data_shape: The ``DataShape`` the model is built for.
    """

    train_tasks: Tuple[int, ...] = (F.Task.FEED, F.Task.SEARCH)
    supports_neighbours: bool = False
    encodes_user_sides: bool = False
    caches_items: bool = False
    dynamic_shapes: bool = False

    def __init__(self, l2: float = 0.0, data_shape: Optional[F.DataShape] = None,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        if l2 < 0:
            raise ValueError(f"`l2` should be >= 0. Received: `l2={l2}`")
        self.l2 = float(l2)
        self.l2_rows_in_batch = False
        self.data_shape = data_shape if data_shape is not None else F.DataShape()
        # Optional members (see the class docstring); the families set those they have. They are
        # instance attributes, not class ones, so that Keras tracks what replaces them.
        self.config = None
        self.item_lookup = self.word_lookup = self.user_lookup = None
        self.item_cache: Optional[tf.Variable] = None

    def score(self, batch: Dict[str, tf.Tensor], task: int, training: bool = False) -> tf.Tensor:
        """Logits ``[B, C]`` of ``batch``'s candidates for ``task`` (see the class docstring)."""
        raise NotImplementedError(f"{type(self).__name__} should implement `score`.")

    def compute_loss(self, inputs: Dict[str, Dict[str, tf.Tensor]],
                     training: bool = False) -> tf.Tensor:
        """The scalar training loss of one batch per task (see the class docstring)."""
        raise NotImplementedError(f"{type(self).__name__} should implement `compute_loss`.")

    @property
    def uses_neighbours(self) -> bool:
        """Whether the model was built to read the neighbour payload (``model.neighbours``)."""
        return self.supports_neighbours and self.config is not None and (
            self.config.uses_neighbours)

    @property
    def zero_is_id(self) -> bool:
        """Whether raw id 0 is an item or word id (an ``IdLookup`` holds it); True for a model
        without lookups. Requests padded with 0 keep their meaning where it is False."""
        lookups = [lookup for lookup in (self.item_lookup, self.word_lookup)
                   if lookup is not None]
        return any(lookup.holds_raw_zero for lookup in lookups) or not lookups

    def use_fixed_shapes(self) -> None:
        """Switches a model with a dynamic-shape path to its fixed-shape (XLA) path."""
        self.dynamic_shapes = False

    def cache_item_vectors(self, chunk: int = 8192) -> Optional[tf.Variable]:
        """Freezes the item encoder into ``item_cache`` (models with ``caches_items``); None."""
        del chunk
        return None

    def configure_training(self, train_config) -> None:
        """Takes the options of a ``TrainConfig`` that change the training step."""
        self.l2_rows_in_batch = bool(train_config.l2_rows_in_batch)

    def prepare(self, batch: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        """Work that must run outside an XLA-compiled step (e.g. hash-table id lookups).

        Training maps its datasets through this; ``score`` and ``compute_loss`` accept raw and
        prepared batches alike. The default does nothing.
        """
        return batch

    def train_step(self, inputs):
        # Under a tf.distribute strategy each replica's gradients are summed, so the per-replica
        # loss (a mean over that replica's rows) and the L2 term are divided by the replicas.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            loss = self.compute_loss(inputs, training=True)
            regularization_loss = tf.add_n(self.losses) if self.losses else 0.0
            total_loss = loss + regularization_loss
            scaled_loss = total_loss / replicas
        variables = self.trainable_variables
        gradients = tape.gradient(scaled_loss, variables)
        if self.l2:
            l2 = self.l2 / replicas
            with tf.name_scope("coupled_l2"):
                gradients = [add_coupled_l2(g, v, l2, self.l2_rows_in_batch)
                             for g, v in zip(gradients, variables)]
        self.optimizer.apply_gradients(
            [(g, v) for g, v in zip(gradients, variables) if g is not None])
        # Keras sums per-replica logs under non-TPU strategies: log per-replica shares.
        logs = {metric.name: metric.result() for metric in self.metrics}
        logs["loss"] = loss / replicas
        logs["regularization_loss"] = regularization_loss / replicas
        logs["total_loss"] = scaled_loss
        return logs
