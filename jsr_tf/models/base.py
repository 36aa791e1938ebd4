"""``JsrModel``: the base of every jsr-tf model (a ``tfrs.models.Model``).

Contract (``JsrModel``'s docstring lists every member):
- ``prepare(batch)`` maps a raw batch (``jsr_tf.data.reader``'s, raw ids) to a *prepared* one
  (dense indices): the hash-table lookups, which cannot run inside XLA. It runs once per batch by
  construction: the raw-batch entry points ``score``, ``compute_loss`` and ``call`` prepare and
  hand the prepared batch to the ``*_prepared`` implementations, which never prepare; ``fit``
  prepares in its input pipeline and ``train_step`` calls ``loss_prepared``.
- ``score(batch, task, training)`` returns logits ``[B, C]`` for the candidates of a batch of one
  task. The user side is encoded once per row and candidates are scored against it; any C works.
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
from jsr_tf.keys import Outputs

_NOT_DECAYED = ("/bias:", "/beta:")
ITEM_FIELDS = (F.FEED_ITEMS, F.SEARCH_CLICKS, reader.CANDIDATES, F.NBR_REC_ITEMS,
               F.NBR_SRC_CLICKS)
WORD_FIELDS = (F.SEARCH_WORDS, F.QUERY_WORDS, F.NBR_SRC_WORDS)


def lookup_ids(batch: Dict[str, tf.Tensor], items, words=None,
               users=None) -> Dict[str, tf.Tensor]:
    """Raw ids → dense indices with a model's ``IdLookup`` layers (``JsrModel.prepare``).

    Args:
        batch: Reader batch (raw ids).
        items: Optional ``IdLookup`` of item ids (history items, session clicks, candidates).
        words: Optional ``IdLookup`` of word ids (history and target queries).
        users: Optional ``IdLookup`` of user ids.
    """
    out = dict(batch)
    for lookup, names in ((items, ITEM_FIELDS), (words, WORD_FIELDS), (users, (F.USER_ID,))):
        if lookup is None:
            continue
        for name in names:
            if name in batch:
                out[name] = lookup(batch[name])
    return out


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

    The trainer, the export, the factory and the dense-neighbour job use only the members below
    (never ``getattr``/``hasattr`` probes); ``tests/models/test_interface.py`` checks every
    registered family against it.

    Entry points on raw batches (final: each prepares its batches once, then calls the
    prepared implementation): ``score(batch, task, training)``, ``compute_loss(inputs,
    training)``, ``call(batch, training)`` (``model(batch)``) and ``fit`` (its dataset mapped
    through ``prepare_inputs``; ``train_step`` then gets prepared batches). ``prepare(batch)``,
    raw → prepared (the lookups of ``item_lookup``, ``word_lookup`` and ``user_lookup``; identity
    without them), is the base's own too.

    Required on prepared batches (the base raises ``NotImplementedError``):
        ``score_prepared(batch, task, training)``: logits ``[B, C]`` of a batch of one task.
        ``loss_prepared(inputs, training)``: the scalar loss of ``{Inputs.FEED: ...,
            Inputs.SEARCH: ...}`` (the tasks of ``train_tasks``).

    Optional, with the defaults of this class:
        ``call_prepared(batch, training)``: both heads' logits (``keys.Outputs``), from
            ``score_prepared``.
        ``prepares_ids``: whether ``prepare`` maps ids to dense indices (padding 0).
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

    # -- entry points on raw batches: prepare once, then the prepared implementation ----------
    def score(self, batch: Dict[str, tf.Tensor], task: int, training: bool = False) -> tf.Tensor:
        """Logits ``[B, C]`` of a raw batch's candidates for ``task``."""
        return self.score_prepared(self.prepare(batch), task, training)

    def compute_loss(self, inputs: Dict[str, Dict[str, tf.Tensor]],
                     training: bool = False) -> tf.Tensor:
        """The scalar training loss of one raw batch per task."""
        return self.loss_prepared(self.prepare_inputs(inputs), training)

    def call(self, batch: Dict[str, tf.Tensor], training: bool = False) -> Dict[str, tf.Tensor]:
        """Both heads' logits of a raw batch (``keys.Outputs``)."""
        return self.call_prepared(self.prepare(batch), training)

    # -- implementations on prepared batches ------------------------------------------------------
    def score_prepared(self, batch: Dict[str, tf.Tensor], task: int,
                       training: bool = False) -> tf.Tensor:
        """``score`` of a prepared batch (see the class docstring)."""
        raise NotImplementedError(f"{type(self).__name__} should implement `score_prepared`.")

    def loss_prepared(self, inputs: Dict[str, Dict[str, tf.Tensor]],
                      training: bool = False) -> tf.Tensor:
        """``compute_loss`` of prepared batches (see the class docstring)."""
        raise NotImplementedError(f"{type(self).__name__} should implement `loss_prepared`.")

    def call_prepared(self, batch: Dict[str, tf.Tensor],
                      training: bool = False) -> Dict[str, tf.Tensor]:
        """Both heads' logits of a prepared batch."""
        return {Outputs.FEED_LOGITS: self.score_prepared(batch, F.Task.FEED, training),
                Outputs.SEARCH_LOGITS: self.score_prepared(batch, F.Task.SEARCH, training)}

    @property
    def prepares_ids(self) -> bool:
        """Whether ``prepare`` maps raw ids to dense indices (padding ``PAD_ID``)."""
        return self.item_lookup is not None

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
        """A raw batch → a prepared one: the work that must run outside an XLA-compiled step
        (the hash-table id lookups of ``item_lookup``, ``word_lookup`` and ``user_lookup``).

        Training maps its input pipeline through this; ``score``, ``compute_loss`` and ``call``
        call it once on their raw batches.
        """
        return lookup_ids(batch, self.item_lookup, self.word_lookup, self.user_lookup)

    def prepare_inputs(self, inputs: Dict[str, Dict[str, tf.Tensor]]
                       ) -> Dict[str, Dict[str, tf.Tensor]]:
        """``prepare`` of each task's batch of a training step's inputs."""
        return {key: self.prepare(batch) for key, batch in inputs.items()}

    def fit(self, x=None, *args, **kwargs):
        """Keras ``fit`` on a ``tf.data.Dataset`` of raw training inputs (``{Inputs.FEED: ...,
        Inputs.SEARCH: ...}``): the dataset is mapped through ``prepare_inputs`` (the lookups
        run in the input pipeline, outside a ``jit_compile`` step), so ``train_step`` gets
        prepared batches.

        Raises:
            TypeError: If ``x`` is not a ``tf.data.Dataset``.
        """
        if not isinstance(x, tf.data.Dataset):
            raise TypeError("JsrModel.fit takes a tf.data.Dataset of raw training inputs "
                            f"({{'feed': batch, 'search': batch}}). Received: {type(x).__name__}")
        x = x.map(self.prepare_inputs, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return super().fit(x, *args, **kwargs)

    def train_step(self, inputs):
        # Under a tf.distribute strategy each replica's gradients are summed, so the per-replica
        # loss (a mean over that replica's rows) and the L2 term are divided by the replicas.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            loss = self.loss_prepared(inputs, training=True)  # prepared by ``fit``'s pipeline
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
