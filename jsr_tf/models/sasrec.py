"""SASRec (Kang & McAuley, ICDM 2018) as a feed baseline (spec/related_models.md §0-1).

Shapes: B rows; Lr = Ls = 30 history slots; K = 5 clicks per session; L = 60 SASRec slots;
C candidates; d = 64.

Adapter from the UniSAR layout (the reader's right-padded, oldest-first tensors): the item
sequence is built inside the model, **left-padded** to L (newest item in the last slot):

- ``source="merged"`` (package default): the feed positives plus the items clicked in the
  search sessions, merged in canonical order (time; feed before search at equal times; then
  slot order, then click order within a session) by a stable sort, keeping the L most recent.
  A no-click session's fallback item (``search_has_click == 0``) was only shown, not clicked,
  and is left out.
- ``source="feed_only"``: the feed positives alone (the classic setting).

Then ``X = E[s]·√d + P[0..L-1]``, dropout, times the non-pad mask; ``num_layers`` causal
``SASRecBlock``s; a final LayerNorm; ``H_last = H[:, -1]``. A candidate scores
``H_last · E[c]`` with the same item table (an einsum over all candidates, no tiling, no bias).

Item representation ``E``: UniSAR's ``ItemEncoder`` (id + caption + two categories → d) by
default, so the comparison is about architecture; ``item_features="id_only"`` is the paper's
plain id table ``[N, d]``.

Loss (target-row mode): BCE over each row's candidates (1 positive + the stored negatives),
mean over all B × C entries. The model trains on the feed task only (``train_tasks``); a search
batch is scored with the query-blind feed score, as a floor.

Raw ids are mapped inside the model (``IdLookup``); ``prepare`` runs the hash lookups outside
an XLA-compiled step. Every shape is static, so the whole model compiles with XLA.

With ``config.neighbours != "none"`` (spec/similar_users.md §4) a ``NeighbourFusion`` (not
candidate-aware: ``H_last`` does not depend on the candidate) mixes the neighbour vectors into
``H_last`` before scoring. Neighbour vectors: ``NeighbourEncoder`` over the neighbours' feed items
``E[nbr_rec_items]`` and their sessions, each session being the mean of its clicked items
``E[nbr_src_clicks]`` (SASRec has no query side, so ``nbr_src_words`` is not read). Keys absent
from a batch are zeros: every slot empty, and ``H_last`` is unchanged.
"""

from __future__ import annotations

import math
from typing import Dict, Optional

import jsr_tf  # noqa: F401
import tensorflow as tf
import tf_keras as keras

from jsr_tf import features as F
from jsr_tf.config import ExperimentConfig, ModelConfig
from jsr_tf.data import reader
from jsr_tf.data.vocab import Vocab
from jsr_tf.keys import Inputs, Outputs
from jsr_tf.layers.pooling import masked_mean
from jsr_tf.layers.positional_embedding import PositionalEmbedding
from jsr_tf.layers.sasrec_block import SASRecBlock
from jsr_tf.models.base import JsrModel
from jsr_tf.models.factory import register_model
from jsr_tf.models.parts.builders import ITEM_FEATURES  # noqa: F401  (re-exported)
from jsr_tf.models.parts.builders import (bce_ranking_task, build_item_encoder,
                                          check_item_features, coupled_l2, id_lookups)
from jsr_tf.models.parts.forward import encode_unique, item_vectors
from jsr_tf.models.parts.losses import mean_bce, single_task_batch
from jsr_tf.models.parts.neighbour_inputs import (build_neighbour_encoder, build_neighbour_fusion,
                                                  neighbour_inputs)

SOURCES = ("merged", "feed_only")
LAYER_NORM_EPSILON = 1e-8  # the reference's


def left_padded_sequence(feed_items: tf.Tensor, feed_ts: tf.Tensor,
                         search_clicks: Optional[tf.Tensor] = None,
                         search_ts: Optional[tf.Tensor] = None,
                         search_has_click: Optional[tf.Tensor] = None, *,
                         length: int) -> tf.Tensor:
    """The SASRec item sequence, left-padded, from the reader's right-padded history.

    Items are merged by a stable sort on time over ``concat[feed slots, search slots × clicks]``,
    so at equal times feed comes before search, then earlier slots and earlier clicks first
    (the canonical order). The ``length`` most recent items are kept; pads (id 0) fill the left.

    Args:
        feed_items: Integer tensor ``(B, Lr)`` of item ids, 0 = padding.
        feed_ts: Integer tensor ``(B, Lr)`` of feed event times.
        search_clicks: Optional integer tensor ``(B, Ls, K)`` of clicked item ids, 0 = padding;
            None = feed only.
        search_ts: Integer tensor ``(B, Ls)`` of session times, 0 = pad session (required with
            ``search_clicks``).
        search_has_click: Integer or bool tensor ``(B, Ls)``; sessions where it is 0 carry only
            a fallback (shown, not clicked) item and contribute nothing (required with
            ``search_clicks``).
        length: Output length ``L``.

    Returns:
        int64 tensor ``(B, L)``: item ids oldest → newest, the newest in the last slot.
    """
    ids = tf.cast(feed_items, tf.int64)
    ts = tf.cast(feed_ts, tf.int64)
    valid = tf.not_equal(ids, F.PAD_ID)
    if search_clicks is not None:
        if search_ts is None or search_has_click is None:
            raise ValueError("`search_ts` and `search_has_click` are required with "
                             "`search_clicks`. Received: None")
        clicks = tf.cast(search_clicks, tf.int64)
        num_clicks = clicks.shape[-1]
        session_ok = tf.logical_and(tf.not_equal(search_ts, 0),
                                    tf.not_equal(tf.cast(search_has_click, tf.int64), 0))
        click_valid = tf.logical_and(tf.not_equal(clicks, F.PAD_ID), session_ok[..., tf.newaxis])
        click_ts = tf.repeat(tf.cast(search_ts, tf.int64)[..., tf.newaxis], num_clicks, axis=-1)
        flat = [-1, clicks.shape[1] * num_clicks]
        ids = tf.concat([ids, tf.reshape(clicks, flat)], axis=1)
        ts = tf.concat([ts, tf.reshape(click_ts, flat)], axis=1)
        valid = tf.concat([valid, tf.reshape(click_valid, flat)], axis=1)
    slots = ids.shape[1]
    if slots < length:  # too few slots: pad on the left first
        pad = [[0, 0], [length - slots, 0]]
        ids, ts, valid = tf.pad(ids, pad), tf.pad(ts, pad), tf.pad(valid, pad)
    # Pads sort first (key -1 < every real time), real items ascending and stable.
    keys = tf.where(valid, ts, tf.constant(-1, tf.int64))
    order = tf.argsort(keys, axis=1, stable=True)[:, -length:]
    return tf.gather(tf.where(valid, ids, tf.zeros_like(ids)), order, batch_dims=1)


class SASRec(JsrModel):
    """SASRec with target-row BCE training, scoring the feed task.

    Args:
        config: Model hyper-parameters (``hidden_dim`` d, ``embedding_dim`` of the item
            encoder's id/category tables, ``num_heads``, ``num_layers``, ``ffn_dim``,
            ``dropout``).
        vocab: Vocabularies from the pipeline (lookup tables and item side features).
        l2: Coupled L2 coefficient (see ``JsrModel``).
        source: ``"merged"`` (feed positives + search clicks, the package default) or
            ``"feed_only"``.
        item_features: ``"unisar"`` (UniSAR's ``ItemEncoder``, the default) or ``"id_only"``.
        max_length: Sequence length ``L``; default the data's whole history (``feed_history +
            search_history`` of ``vocab.shape``, 60).
        dynamic_shapes: Encode the neighbour payload's items once per distinct id (each row
            brings up to 10 × 35 neighbour items, which repeat a lot); XLA needs ``False``.
            The user's own sequence and the candidates are encoded as before either way.
    """

    train_tasks = (F.Task.FEED,)
    supports_neighbours = True

    def __init__(self, config: ModelConfig, vocab: Vocab, l2: float = 0.0,
                 source: str = "merged", item_features: str = "unisar",
                 max_length: Optional[int] = None, dynamic_shapes: bool = True,
                 **kwargs) -> None:
        super().__init__(l2=l2, data_shape=vocab.shape, **kwargs)
        if max_length is None:  # the whole history: L = feed_history + search_history
            max_length = vocab.shape.feed_history + vocab.shape.search_history
        if source not in SOURCES:
            raise ValueError(f"`source` should be one of {SOURCES}. Received: `source={source!r}`")
        check_item_features(item_features)
        if not isinstance(max_length, int) or max_length <= 0:
            raise ValueError("`max_length` should be a positive integer. "
                             f"Received: `max_length={max_length!r}`")
        self.config = config.validate()
        self.source = source
        self.item_features = item_features
        self.max_length = max_length
        self.dynamic_shapes = dynamic_shapes
        c = config
        self.item_lookup = id_lookups(vocab, "item")[0]
        self.num_items = vocab.num_items
        # The item encoder's captions are read by a private ``QueryEncoder`` (SASRec has no
        # query side of its own).
        self.item_encoder = build_item_encoder(c, vocab, item_features)
        self.positions = PositionalEmbedding(max_length, name="positions")
        self.embedding_dropout = keras.layers.Dropout(c.dropout)
        self.blocks = [SASRecBlock(c.num_heads, c.ffn_dim, dropout=c.dropout,
                                   layer_norm_epsilon=LAYER_NORM_EPSILON, name=f"block_{i}")
                       for i in range(c.num_layers)]
        self.final_norm = keras.layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON,
                                                          name="final_norm")
        self.task = bce_ranking_task()  # per-entry BCE, see ``mean_bce``
        if c.neighbours == "shared":
            raise ValueError("SASRec supports `neighbours='pooled'` only (it has no separate "
                             "feed and search encoders to share). Received: "
                             f"`neighbours={c.neighbours!r}`")
        if c.uses_neighbours:  # created last: a base model keeps its variables and their order
            self.neighbour_encoder = build_neighbour_encoder(c)
            self.neighbour_fusion = build_neighbour_fusion(c, "neighbour_fusion",
                                                           candidate_aware=False)

    # -----------------------------------------------------------------------------------------
    def encode_items(self, dense_ids: tf.Tensor) -> tf.Tensor:
        """The shared item table ``E``: float ``(..., d)``, exactly 0 for padding (index 0)."""
        return item_vectors(self.item_encoder, dense_ids, self.item_features)

    def sequence(self, batch: Dict[str, tf.Tensor]) -> tf.Tensor:
        """The left-padded dense item sequence ``(B, L)`` of a prepared batch."""
        if self.source == "feed_only":
            return left_padded_sequence(batch[F.FEED_ITEMS], batch[F.FEED_TS],
                                        length=self.max_length)
        if F.SEARCH_HAS_CLICK not in batch:
            raise ValueError(f"`source='merged'` reads `{F.SEARCH_HAS_CLICK}`. Received: a batch "
                             f"with keys {sorted(batch)}")
        return left_padded_sequence(batch[F.FEED_ITEMS], batch[F.FEED_TS],
                                    batch[F.SEARCH_CLICKS], batch[F.SEARCH_TS],
                                    batch[F.SEARCH_HAS_CLICK], length=self.max_length)

    def encode_user(self, batch: Dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        """``H_last``: float ``(B, d)``, the final-LN output at the newest slot (with neighbours:
        after the ``NeighbourFusion``)."""
        ids = self.sequence(batch)
        valid = tf.not_equal(ids, F.PAD_ID)
        mask = tf.cast(valid, tf.float32)[..., tf.newaxis]
        x = self.encode_items(ids) * math.sqrt(self.config.hidden_dim)
        x = self.embedding_dropout(self.positions(x), training=training) * mask
        for block in self.blocks:
            x = block(x, valid, training=training)
        user = self.final_norm(x)[:, -1]
        if self.config.uses_neighbours:
            nbr = neighbour_inputs(batch, self.data_shape)
            user = self.neighbour_fusion(user, self.encode_neighbours(nbr), nbr[F.NBR_SIM],
                                         nbr[F.NBR_SIDE], training=training)
        return user

    def encode_neighbours(self, nbr: Dict[str, tf.Tensor]) -> tf.Tensor:
        """``n (B, K, d)`` of the neighbour payload (``neighbour_inputs``, dense ids).

        Feed items ``E[nbr_rec_items]``; a session is the mean of its items as they enter
        histories (the clicked items, or the fallback item of a no-click session, as UniSAR
        reads them; the payload has no click flag) with no query side, and is real if it has
        an item.
        """
        items, clicks = nbr[F.NBR_REC_ITEMS], nbr[F.NBR_SRC_CLICKS]
        if self.dynamic_shapes:
            item_vecs, click_vecs = encode_unique(self.encode_items, [items, clicks],
                                                  self.config.hidden_dim)
        else:
            item_vecs, click_vecs = self.encode_items(items), self.encode_items(clicks)
        click_mask = tf.not_equal(clicks, F.PAD_ID)  # (B, K, Lq, Kn)
        sessions = masked_mean(click_vecs, click_mask, axis=-2)
        return self.neighbour_encoder(item_vecs, tf.not_equal(items, F.PAD_ID),
                                      sessions, tf.reduce_any(click_mask, axis=-1))

    def score_encoded(self, user: tf.Tensor, candidates: tf.Tensor) -> tf.Tensor:
        """Logits ``(B, C)`` = ``user (B, d) · candidates (B, C, d)``."""
        return tf.einsum("bd,bcd->bc", user, candidates)

    def score_prepared(self, batch: Dict[str, tf.Tensor], task: int,
                       training: bool = False) -> tf.Tensor:
        """Logits ``(B, C)``; the search task gets the query-blind feed score (a floor)."""
        F.Task(task)
        return self.score_encoded(self.encode_user(batch, training),
                                  self.encode_items(batch[reader.CANDIDATES]))

    def call_prepared(self, batch: Dict[str, tf.Tensor],
                      training: bool = False) -> Dict[str, tf.Tensor]:
        """Both tasks' logits ``(B, C)``: the same query-blind score."""
        logits = self.score_prepared(batch, F.Task.FEED, training)
        return {Outputs.FEED_LOGITS: logits, Outputs.SEARCH_LOGITS: logits}

    # -----------------------------------------------------------------------------------------
    def task_loss(self, batch: Dict[str, tf.Tensor], training: bool) -> Dict[str, tf.Tensor]:
        """Target-row BCE over the row's candidates, mean over the ``B × C`` entries."""
        logits = self.score_prepared(batch, F.Task.FEED, training)
        bce = mean_bce(self.task, batch, logits, training)
        return {"bce": bce, "logits": logits, "total": bce}

    def loss_prepared(self, inputs, training: bool = False) -> tf.Tensor:
        """The feed batch's loss; a search batch, if present, is not trained on."""
        return self.task_loss(single_task_batch(inputs, Inputs.FEED, "SASRec"),
                              training)["total"]


@register_model("sasrec")
def build_sasrec(config: ExperimentConfig, vocab: Vocab) -> SASRec:
    return SASRec(config.model, vocab, l2=coupled_l2(config),
                  dynamic_shapes=not config.train.jit_compile)
