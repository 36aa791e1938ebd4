"""The neighbour side of the models (spec/similar_users.md §4): ``neighbour_inputs`` (the
``nbr_*`` tensors of a batch, zeros where absent), ``neighbour_session_mask``,
``build_neighbour_encoder`` and ``build_neighbour_fusion``.
"""

from __future__ import annotations

from typing import Optional

import jsr_tf  # noqa: F401
import tensorflow as tf

from jsr_tf import features as F
from jsr_tf.config import ModelConfig
from jsr_tf.layers.neighbour_encoder import NeighbourEncoder
from jsr_tf.layers.neighbour_fusion import NeighbourFusion
from jsr_tf.models.parts import Batch


def neighbour_inputs(batch: Batch, shape: F.DataShape) -> Batch:
    """The five neighbour inputs (``features.NEIGHBOUR_INPUTS``) of a batch.

    A key the batch lacks is all zeros (``[B, K, ...]`` as ``shape.batch_fields`` lays it out, K
    = ``shape.neighbour_slots`` unless ``nbr_side`` says otherwise): every slot empty, so the
    fusion is an exact identity and the model scores like its base. Present keys are returned as
    they are (dense ids if prepared).
    """
    out = {}
    rows = tf.shape(batch[F.FEED_ITEMS])[0]
    slots = batch[F.NBR_SIDE].shape[1] if F.NBR_SIDE in batch else shape.neighbour_slots
    if slots is None:
        slots = tf.shape(batch[F.NBR_SIDE])[1]
    fields = shape.batch_fields(labels=False, neighbours=True)
    for name in F.NEIGHBOUR_INPUTS:
        inner, dtype, _ = fields[name]
        out[name] = batch[name] if name in batch else tf.zeros([rows, slots, *inner[1:]], dtype)
    return out


def neighbour_session_mask(words: tf.Tensor, clicks: tf.Tensor) -> tf.Tensor:
    """``(B, K, Lq)`` bool: a neighbour session is real if it has a word or a click.

    Args:
        words: int ``(B, K, Lq, Wn)`` word ids, 0 = padding.
        clicks: int ``(B, K, Lq, Kn)`` item ids, 0 = padding.
    """
    return tf.logical_or(tf.reduce_any(tf.not_equal(words, F.PAD_ID), axis=-1),
                         tf.reduce_any(tf.not_equal(clicks, F.PAD_ID), axis=-1))


def build_neighbour_encoder(config: ModelConfig) -> NeighbourEncoder:
    """The pooled ``NeighbourEncoder`` (``Dense(2d → d)``, γ = ``neighbour_decay``)."""
    return NeighbourEncoder(config.hidden_dim, decay=config.neighbour_decay,
                            encoder=config.neighbours, name="neighbour_encoder")


def build_neighbour_fusion(config: ModelConfig, name: str,
                           candidate_aware: Optional[bool] = None) -> NeighbourFusion:
    """A ``NeighbourFusion`` with the config's heads and dropouts.

    Args:
        config: Model hyper-parameters (``neighbour_*``).
        name: Layer name.
        candidate_aware: Overrides ``neighbour_candidate_aware`` (a candidate-independent user
            vector queries alone).
    """
    aware = config.neighbour_candidate_aware if candidate_aware is None else candidate_aware
    return NeighbourFusion(config.neighbour_heads, config.neighbour_head_dim,
                           dropout=config.neighbour_attention_dropout,
                           slot_dropout=config.neighbour_dropout, candidate_aware=aware,
                           name=name)
