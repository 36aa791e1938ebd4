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

from typing import Dict, Optional

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
    """Base model. Subclasses implement ``score`` and ``compute_loss``.

    Args:
        l2: Coupled L2 coefficient added to the gradients in ``train_step`` (0 disables).
        data_shape: The ``DataShape`` of the data the model reads (``Vocab.shape``: the history
            lengths and neighbour slots it is built for); default the reference shape.

    Attributes:
        l2_rows_in_batch: The named deviation ``train.l2_rows_in_batch`` (see the module
            docstring), False by default; ``factory.build_model`` sets it from the config.
    """

    def __init__(self, l2: float = 0.0, data_shape: Optional[F.DataShape] = None,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        if l2 < 0:
            raise ValueError(f"`l2` should be >= 0. Received: `l2={l2}`")
        self.l2 = float(l2)
        self.l2_rows_in_batch = False
        self.data_shape = data_shape if data_shape is not None else F.DataShape()

    def score(self, batch: Dict[str, tf.Tensor], task: int, training: bool = False) -> tf.Tensor:
        raise NotImplementedError

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
