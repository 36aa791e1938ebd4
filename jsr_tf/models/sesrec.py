"""SESRec (Si et al., SIGIR 2023) with an added search head (spec/related_models.md §0, §2).

Shapes: B rows; Lr = Ls = 30 history slots; W = 50 words; K = 5 clicks per session; C
candidates; d = 64 (the item width); |u| = 32 (user id 16 + four user features x 4).

Per row the user side is encoded once:

- ``R = Enc_r(I(feed items) + P_r)``, ``S = Enc_s(Q(words) + mean_k I(clicks) + P_s)`` with
  UniSAR's item and query encoders (``item_features="id_only"``: a plain id table, the papers'
  setting) and two separate encoders (post-LN blocks, LeakyReLU FFN d → d, LayerNorm eps 1e-8),
  padding masks only (no causal mask). No-click sessions carry their fallback item.
- ``CoAttentionSplit``: co-attention weights ``a_r, a_s`` and the positive / negative slots of
  each history (with the fallbacks to all valid slots), also at inference.
- ``u = concat(user feature embeddings)`` (``ConcatEmbedding``, no projection).

Candidates ``e_t = I(c) [B, C, d]`` are then scored: per history a ``MultiMaskTargetAttention``
(its own ``W_t``) pools all / positive / negative slots, ``h_R, h_S [B, C, 3d]``, and

- feed head:   ``MLP([h_R; h_S; u; e_t])``        (7d + |u| → 200 → 80 → 1 logit);
- search head: ``MLP([h_R; h_S; u; e_q; e_t])``   (8d + |u|, ``e_q = Q(target query)``),
  a separate MLP of the same shape (MtlSAR's addition). The pools are shared by both heads.

Loss of one task's batch: ``BCE + q_i_cl_weight · L_qi + triplet_weight · L_tri``, with BCE the
mean over all B × C entries (``tfrs.tasks.Ranking``, reduction NONE, then the mean), ``L_qi``
UniSAR's query–item InfoNCE (unisar.md §5b) over the search history's (query, click) pairs with
stateless per-step negatives, and ``L_tri = T(R) + T(S)`` (``InterestTripletLoss``). Total:
``L_feed + search_loss_weight · L_src`` (weight 1 when only a search batch is given).

Config fields used: ``hidden_dim`` (d), ``embedding_dim`` (E of the item encoder), ``num_heads``,
``num_layers``, ``ffn_dim``, ``dropout``, ``head_units``, ``q_i_cl_temp``, ``q_i_cl_weight``,
``num_qi_negatives``, ``search_loss_weight``, ``use_query_item_alignment``. The spec's values with no
config field (triplet weight 0.001 and margin 0.1, user embedding widths, LeakyReLU slope, LN eps)
are module constants passed as constructor arguments.

Raw ids are mapped inside the model (``IdLookup``); ``prepare`` runs the hash lookups outside an
XLA-compiled step. With ``dynamic_shapes=True`` (the builder's choice unless ``jit_compile``)
items are encoded once per unique id and the InfoNCE runs over the valid pairs only, as in
UniSAR; the fixed-shape path gives the same values and compiles with XLA.

Deviations from the reference: sessions get no source embedding (the data contract carries no
session source); the co-attention sums skip padding slots (the reference sums over the encoder
outputs at pads too); the encoder block is the package's ``TransformerEncoderBlock``, so dropout
also acts on the attention probabilities and inside the FFN (the reference drops only after
attention and after the FFN); co-attention and target-attention weights start glorot-normal (the
reference leaves them at ``rand``/``randn``: uniform [0, 1) and standard normal).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import jsr_tf  # noqa: F401
import tensorflow as tf
import tf_keras as keras

from jsr_tf import features as F
from jsr_tf.config import ExperimentConfig, ModelConfig
from jsr_tf.data import reader
from jsr_tf.data.vocab import Vocab
from jsr_tf.layers.co_attention_split import CoAttentionKey, CoAttentionSplit
from jsr_tf.layers.concat_embedding import ConcatEmbedding
from jsr_tf.layers.history_layout import key_valid_mask
from jsr_tf.layers.mlp import MLP
from jsr_tf.layers.multi_mask_target_attention import MultiMaskTargetAttention
from jsr_tf.layers.positional_embedding import PositionalEmbedding
from jsr_tf.layers.query_item_infonce import QueryItemInfoNCE
from jsr_tf.layers.search_behaviour_encoder import SearchBehaviourEncoder
from jsr_tf.layers.transformer import TransformerEncoderBlock
from jsr_tf.layers.triplet_loss import InterestTripletLoss
from jsr_tf.models.base import JsrModel
from jsr_tf.models.factory import register_model
from jsr_tf.models.parts.builders import ITEM_FEATURES  # noqa: F401  (re-exported)
from jsr_tf.models.parts.builders import (bce_ranking_task, build_seeded, check_item_features,
                                          precision_kwargs, transformer_stack)
from jsr_tf.models.parts.encoded_side import EncodedSideMixin
from jsr_tf.models.parts.forward import encode_unique, item_vectors, user_rows
from jsr_tf.models.parts.losses import mean_bce

TRIPLET_WEIGHT = 0.001  # spec: L_feed = BCE + 0.1 L_align + 0.001 L_tri
TRIPLET_MARGIN = 0.1
USER_EMBEDDING_DIMS = (16, 4, 4, 4, 4)  # user id, then the four user features: |u| = 32
LEAKY_RELU_SLOPE = 0.01  # PyTorch nn.LeakyReLU default (the reference's FFN activation)
LAYER_NORM_EPSILON = 1e-8  # the reference's


def _leaky_relu() -> keras.layers.Layer:
    """The reference's FFN activation (PyTorch ``nn.LeakyReLU``), one instance per block."""
    return keras.layers.LeakyReLU(alpha=LEAKY_RELU_SLOPE)


class SESRec(EncodedSideMixin, JsrModel):
    """SESRec with a feed head and an added search head.

    Args:
        config: Model hyper-parameters (see the module docstring for the fields read).
        vocab: Vocabularies from the pipeline (lookup tables, item and user side features,
            train-visible queries for the InfoNCE negatives).
        l2: Coupled L2 coefficient (see ``JsrModel``).
        item_features: ``"unisar"`` (UniSAR's ``ItemEncoder``, the default) or ``"id_only"``.
        dynamic_shapes: Unique-item encoding and valid-pair InfoNCE (not XLA-compatible).
        seed: Seed of the per-step InfoNCE negative draws.
        triplet_weight: Weight of ``L_tri`` in each task's loss.
        triplet_margin: Margin of the triplet loss.
        user_embedding_dims: Embedding widths of the user id and the four user features.
        precision: ``train.precision`` (bfloat16 blocks and InfoNCE, as in UniSAR).
    """

    def __init__(self, config: ModelConfig, vocab: Vocab, l2: float = 0.0,
                 item_features: str = "unisar", dynamic_shapes: bool = True, seed: int = 0,
                 triplet_weight: float = TRIPLET_WEIGHT, triplet_margin: float = TRIPLET_MARGIN,
                 user_embedding_dims: Sequence[int] = USER_EMBEDDING_DIMS,
                 precision: str = "float32", **kwargs) -> None:
        super().__init__(l2=l2, data_shape=vocab.shape, **kwargs)
        check_item_features(item_features)
        mixed = precision_kwargs(precision)  # the blocks and the InfoNCE (train.precision)
        if triplet_weight < 0:
            raise ValueError("`triplet_weight` should be >= 0. "
                             f"Received: `triplet_weight={triplet_weight!r}`")
        self.config = config.validate()
        self.item_features = item_features
        self.dynamic_shapes = dynamic_shapes
        self.seed = int(seed)
        self.triplet_weight = float(triplet_weight)
        c = config
        # Lookups, user and query tables, query and item encoders (as UniSAR).
        user_sizes = self.build_input_side(vocab, item_features)
        self.user_embedding = ConcatEmbedding(user_sizes, user_embedding_dims,
                                              name="user_embedding")
        self.search_behaviour = SearchBehaviourEncoder(name="search_behaviour")
        self.feed_positions = PositionalEmbedding(vocab.shape.feed_history, name="feed_positions")
        self.search_positions = PositionalEmbedding(vocab.shape.search_history,
                                                    name="search_positions")

        def encoders(name: str) -> List[keras.layers.Layer]:
            return transformer_stack(c, name, activation=_leaky_relu,
                                     layer_norm_epsilon=LAYER_NORM_EPSILON, **mixed)

        self.feed_encoder = encoders("feed_encoder")
        self.search_encoder = encoders("search_encoder")
        self.co_attention = CoAttentionSplit(name="co_attention")
        self.triplet = InterestTripletLoss(triplet_margin, name="triplet")
        self.feed_target_attention = MultiMaskTargetAttention(name="feed_target_attention")
        self.search_target_attention = MultiMaskTargetAttention(name="search_target_attention")
        # One head class, instantiated per task: same shape, separate weights.
        self.heads = [MLP((*c.head_units, 1), dropout=c.dropout, name=f"{t.name.lower()}_head")
                      for t in F.Task]
        if c.use_query_item_alignment:
            self.query_item_alignment = QueryItemInfoNCE(c.q_i_cl_temp, name="query_item_infonce",
                                                         **mixed)
        self.tasks = [bce_ranking_task() for _ in F.Task]  # per-entry BCE, see ``mean_bce``

    # -----------------------------------------------------------------------------------------
    def _item_vectors(self, dense_ids: tf.Tensor) -> tf.Tensor:
        return item_vectors(self.item_encoder, dense_ids, self.item_features)

    def encode_items(self, dense_ids: Sequence[tf.Tensor]) -> List[tf.Tensor]:
        """Item vectors of several dense-id tensors (any shapes), exactly 0 for padding.

        With ``dynamic_shapes`` each distinct id of the batch is encoded once.

        Returns:
            Float tensors ``(*shape, d)``, one per input.
        """
        if not self.dynamic_shapes:
            return [self._item_vectors(ids) for ids in dense_ids]
        return encode_unique(self._item_vectors, dense_ids, self.config.hidden_dim)

    def _run(self, blocks: Sequence[TransformerEncoderBlock], x: tf.Tensor, valid: tf.Tensor,
             training: bool) -> tf.Tensor:
        mask = key_valid_mask(valid, valid.shape[1])  # (B, L, L): any slot reads the valid ones
        for block in blocks:
            x = block(x, attention_mask=mask, training=training)
        return tf.cast(x, tf.float32)  # a no-op unless the blocks compute in bfloat16

    def encode_user(self, batch: Dict[str, tf.Tensor], extra_items: Sequence[tf.Tensor] = (),
                    training: bool = False) -> Dict[str, tf.Tensor]:
        """The per-row (candidate-independent) side: encoded histories, co-attention, user.

        Args:
            batch: A prepared batch (``prepare``: dense indices).
            extra_items: More dense item-index tensors encoded in the same pass (candidates,
                InfoNCE negatives); their vectors come back under ``extra``.
            training: Dropout on/off.

        Returns:
            Dict with ``R [B,Lr,d]``, ``S [B,Ls,d]``, ``feed_valid [B,Lr]``, ``search_valid
            [B,Ls]``, the ``CoAttentionKey`` entries, ``user [B,|u|]``, ``queries [B,Ls,d]``
            (``Q`` of the history sessions), ``clicks [B,Ls,K,d]``, ``click_ids`` and ``extra``.
        """
        feed_ids = batch[F.FEED_ITEMS]
        click_ids = batch[F.SEARCH_CLICKS]
        vectors = self.encode_items([feed_ids, click_ids, *extra_items])
        feed_vectors, click_vectors, extra = vectors[0], vectors[1], vectors[2:]
        queries = self.query_encoder(batch[F.SEARCH_WORDS])  # [B, Ls, d]
        feed_valid = tf.not_equal(feed_ids, F.PAD_ID)
        search_valid = tf.not_equal(batch[F.SEARCH_TS], 0)
        sessions = self.search_behaviour(queries, click_vectors, click_ids,
                                         session_mask=search_valid)
        feed = self._run(self.feed_encoder, self.feed_positions(feed_vectors), feed_valid,
                         training)
        search = self._run(self.search_encoder, self.search_positions(sessions), search_valid,
                           training)
        split = self.co_attention(feed, search, feed_valid, search_valid)
        user = self.user_embedding(user_rows(self._user_features, batch[F.USER_ID]))
        side = {"R": feed, "S": search, "feed_valid": feed_valid, "search_valid": search_valid,
                "user": user, "queries": queries, "clicks": click_vectors,
                "click_ids": click_ids, "extra": extra}
        side.update({str(key): value for key, value in split.items()})
        return side

    def candidate_features(self, side: Dict[str, tf.Tensor], candidates: tf.Tensor,
                           training: bool = False) -> tf.Tensor:
        """The heads' shared input ``[h_R; h_S; u]`` (the pools of both histories per
        candidate, and the user): ``[B, C, 7d]``."""
        feed_pools = self.feed_target_attention(
            side["R"], candidates, [side["feed_valid"], side[CoAttentionKey.FEED_POSITIVE],
                                    side[CoAttentionKey.FEED_NEGATIVE]])
        search_pools = self.search_target_attention(
            side["S"], candidates, [side["search_valid"], side[CoAttentionKey.SEARCH_POSITIVE],
                                    side[CoAttentionKey.SEARCH_NEGATIVE]])
        num = tf.shape(candidates)[1]
        return tf.concat([feed_pools, search_pools,
                          tf.repeat(side["user"][:, None, :], num, axis=1)], axis=-1)

    def head(self, features: tf.Tensor, candidates: tf.Tensor,
             query_words: Optional[tf.Tensor], task: int,
             training: bool = False) -> tf.Tensor:
        """Logits ``[B, C]`` of one task's MLP on ``[features; (Q(query_words)); e_c]``.

        The search head also reads ``Q(query_words)`` (``[B, W]`` dense word indices).
        """
        task = F.Task(task)
        parts = [features]
        if task == F.Task.SEARCH:
            if query_words is None:
                raise ValueError(f"The search head reads `{F.QUERY_WORDS}`. Received: None")
            num = tf.shape(candidates)[1]
            parts.append(tf.repeat(self.query_encoder(query_words)[:, None, :], num, axis=1))
        parts.append(candidates)
        x = tf.concat(parts, axis=-1)
        return tf.squeeze(self.heads[int(task)](x, training=training), axis=-1)

    # -----------------------------------------------------------------------------------------
    def task_loss(self, batch: Dict[str, tf.Tensor], task: int,
                  negative_items: Optional[tf.Tensor] = None,
                  negative_queries: Optional[tf.Tensor] = None,
                  training: bool = False) -> Dict[str, tf.Tensor]:
        """``BCE + q_i_cl_weight · L_qi + triplet_weight · L_tri`` of one task's batch.

        Returns:
            Dict with the scalars ``bce``, ``triplet``, ``qi`` (if enabled), ``total`` and the
            ``logits [B, C]``.
        """
        c = self.config
        extra = [batch[reader.CANDIDATES]]
        if c.use_query_item_alignment:
            if negative_items is None or negative_queries is None:
                negative_items, negative_queries = self._negatives()
            extra.append(negative_items)
        side = self.encode_user(batch, extra, training)
        logits = self.score_encoded(side, side["extra"][0], batch.get(F.QUERY_WORDS), task,
                                    training)
        bce = mean_bce(self.tasks[int(task)], batch, logits, training)
        triplet = (self.triplet(side["R"], side[CoAttentionKey.FEED_WEIGHTS],
                                side[CoAttentionKey.FEED_POSITIVE],
                                side[CoAttentionKey.FEED_NEGATIVE])
                   + self.triplet(side["S"], side[CoAttentionKey.SEARCH_WEIGHTS],
                                  side[CoAttentionKey.SEARCH_POSITIVE],
                                  side[CoAttentionKey.SEARCH_NEGATIVE]))
        out = {"bce": bce, "triplet": triplet, "logits": logits}
        total = bce + self.triplet_weight * triplet
        return self.with_query_item_loss(out, total, side, negative_queries)


@register_model("sesrec")
def build_sesrec(config: ExperimentConfig, vocab: Vocab) -> SESRec:
    return build_seeded(SESRec, config, vocab)
