"""UniSAR (Shi et al., SIGIR 2024) as the reference implementation builds it (spec/unisar.md).

Shapes: B rows, Lr = Ls = 30 history slots, W = 50 words, K = 5 clicks, C candidates, D = 64.

Per row the user side is encoded once: item and search-behaviour embeddings → the three
transition encoders (global: s2r and r2s; feed: r2r; search: s2s) → two fusion decoders
(F_r, F_s). Candidates are then scored against it: candidate-aware target attention over F_r and
F_s (``[B, C, D]`` each, an einsum, no tiling), CGC and the task's MLP head on ``[B, C, 320]``.

Raw ids are mapped inside the model (``IdLookup`` tables from ``vocab/``), so inputs are the
reader's raw-id batches and the same code serves training and serving.

With ``dynamic_shapes=True`` (the default) two shape-changing shortcuts apply: item embeddings
are computed once per *unique* item id of a batch (history, session clicks, candidates and
InfoNCE negatives share items heavily, and padding collapses to one id), and the query–item
InfoNCE runs over the valid (session, click) pairs only instead of every slot with 0/1 weights.
Both give the same values as the fixed-shape path; XLA needs ``dynamic_shapes=False``.

With ``config.neighbours != "none"`` (spec/similar_users.md §4) the batch's neighbour payload
(``nbr_side, nbr_sim [B,K]``, ``nbr_rec_items [B,K,15]``, ``nbr_src_words [B,K,10,8]``,
``nbr_src_clicks [B,K,10,2]``; zeros where a key is absent) is encoded once per row: the
neighbour items and clicks go through ``encode_items`` with the user's own items (same unique
pass, same ``item_cache``), the sessions through ``query_encoder`` + ``SearchBehaviourEncoder``,
then ``NeighbourEncoder`` gives ``n [B,K,D]``. With ``neighbours="shared"`` the ``[B·K, Lf, D]``
item and ``[B·K, Lq, D]`` session sequences first run through the model's own ``feed_encoder`` /
``search_encoder`` (shared weights, positions ``P_r[:Lf]`` / ``P_s[:Lq]``, key-padding masks).
Two ``NeighbourFusion`` layers, sharing ``n``, replace ``rec_interest`` and ``src_interest``
before the CGC. Empty slots (``nbr_side == 0``) are ignored; a row without any scores exactly
like the base model.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import jsr_tf  # noqa: F401
import tensorflow as tf

from jsr_tf import features as F
from jsr_tf.config import ExperimentConfig, ModelConfig
from jsr_tf.data import reader
from jsr_tf.data.vocab import Vocab
from jsr_tf.layers.cgc import CGC
from jsr_tf.layers.history_layout import HistoryLayout, LayoutKey, key_valid_mask
from jsr_tf.layers.mlp import MLP
from jsr_tf.layers.positional_embedding import PositionalEmbedding
from jsr_tf.layers.query_item_infonce import QueryItemInfoNCE
from jsr_tf.layers.search_behaviour_encoder import SearchBehaviourEncoder
from jsr_tf.layers.target_attention import TargetAttention
from jsr_tf.layers.transformer import TransformerDecoderBlock
from jsr_tf.layers.transition_alignment import TransitionAlignmentLoss
from jsr_tf.layers.user_encoder import UserEncoder
from jsr_tf.models.base import JsrModel
from jsr_tf.models.factory import register_model
from jsr_tf.models.parts.builders import (bce_ranking_task, build_seeded, precision_kwargs,
                                          transformer_stack)
from jsr_tf.models.parts.encoded_side import EncodedSideMixin
from jsr_tf.models.parts.forward import encode_unique, item_table, user_rows
from jsr_tf.models.parts.losses import mean_bce
from jsr_tf.models.parts.neighbour_inputs import (build_neighbour_encoder, build_neighbour_fusion,
                                                  neighbour_inputs, neighbour_session_mask)


class UniSAR(EncodedSideMixin, JsrModel):
    """UniSAR with a feed head and a search head.

    Args:
        config: Model hyper-parameters.
        vocab: Vocabularies from the pipeline (lookup tables and item side features).
        l2: Coupled L2 coefficient (see ``JsrModel``).
        dynamic_shapes: Use the shape-changing shortcuts above (not XLA-compatible).
        seed: Seed of the per-step InfoNCE negative draws.
        precision: ``train.precision``: ``"mixed_bfloat16"`` runs the transformer blocks and the
            InfoNCE in bfloat16 (float32 variables; block outputs are cast back to float32).
    """

    supports_neighbours = True
    encodes_user_sides = True
    caches_items = True

    def __init__(self, config: ModelConfig, vocab: Vocab, l2: float = 0.0,
                 dynamic_shapes: bool = True, seed: int = 0, precision: str = "float32",
                 **kwargs) -> None:
        super().__init__(l2=l2, data_shape=vocab.shape, **kwargs)
        self.config = config.validate()
        self.dynamic_shapes = dynamic_shapes
        self.seed = int(seed)
        mixed = precision_kwargs(precision)  # the blocks and the InfoNCE (train.precision)
        self.item_cache: Optional[tf.Variable] = None  # see ``cache_item_vectors``
        c = config
        user_sizes = self.build_input_side(vocab)  # lookups, tables, query and item encoders
        self.user_encoder = UserEncoder(user_sizes, c.embedding_dim, c.hidden_dim,
                                        name="user_encoder")
        self.search_behaviour = SearchBehaviourEncoder(name="search_behaviour")
        self.layout = HistoryLayout(causal_transitions=c.causal_transitions, name="layout")
        shape = vocab.shape
        lengths = shape.feed_history + shape.search_history
        self.global_positions = PositionalEmbedding(lengths, name="global_positions")
        self.feed_positions = PositionalEmbedding(shape.feed_history, name="feed_positions")
        self.search_positions = PositionalEmbedding(shape.search_history, name="search_positions")
        self.global_encoder = transformer_stack(c, "global_encoder", **mixed)
        self.feed_encoder = transformer_stack(c, "feed_encoder", **mixed)
        self.search_encoder = transformer_stack(c, "search_encoder", **mixed)
        self.feed_decoder = (transformer_stack(c, "feed_decoder", TransformerDecoderBlock, **mixed)
                             if c.use_fusion else [])
        self.search_decoder = (transformer_stack(c, "search_decoder", TransformerDecoderBlock, **mixed)
                               if c.use_fusion else [])
        self.feed_target_attention = TargetAttention(name="feed_target_attention")
        self.search_target_attention = TargetAttention(name="search_target_attention")
        self.cgc = CGC(num_tasks=2, num_shared_experts=c.num_shared_experts,
                       num_task_experts=c.num_task_experts, expert_units=c.hidden_dim,
                       tower_units=c.tower_units, dropout=c.dropout, name="cgc")
        self.heads = [MLP((*c.head_units, 1), dropout=c.dropout, name=f"{t.name.lower()}_head")
                      for t in F.Task]
        self.rec_query = self.add_weight(name="rec_query", shape=(c.hidden_dim,),
                                         initializer="glorot_normal")
        if c.use_transition_alignment:
            self.feed_alignment = TransitionAlignmentLoss(c.his_cl_temp, name="feed_alignment")
            self.search_alignment = TransitionAlignmentLoss(c.his_cl_temp,
                                                            name="search_alignment")
        if c.use_query_item_alignment:
            self.query_item_alignment = QueryItemInfoNCE(c.q_i_cl_temp, name="query_item_infonce",
                                                         **mixed)
        self.tasks = [bce_ranking_task() for _ in F.Task]  # per-entry BCE, see ``mean_bce``
        if c.uses_neighbours:  # created last: a base model keeps its variables and their order
            self.neighbour_encoder = build_neighbour_encoder(c)
            self.feed_neighbour_fusion = build_neighbour_fusion(c, "feed_neighbour_fusion")
            self.search_neighbour_fusion = build_neighbour_fusion(c, "search_neighbour_fusion")

    # -----------------------------------------------------------------------------------------
    def encode_items(self, dense_ids: Sequence[tf.Tensor]) -> List[tf.Tensor]:
        """``ItemEncoder`` over several id tensors, each distinct id encoded once.

        Args:
            dense_ids: int64 tensors of dense item indices, any shapes.

        Returns:
            Float tensors ``(*shape, D)``, one per input.
        """
        if self.item_cache is not None:  # serving: a lookup instead of the encoder
            return [tf.gather(self.item_cache, ids) for ids in dense_ids]
        if not self.dynamic_shapes:
            return [self.item_encoder(ids) for ids in dense_ids]
        return encode_unique(self.item_encoder, dense_ids, self.config.hidden_dim)

    def cache_item_vectors(self, chunk: int = 8192) -> tf.Variable:
        """Freezes the item encoder into a ``[num_items, D]`` table for inference.

        ``ItemEncoder`` output depends only on the item (id, caption words, categories), so at
        inference every item vector can be computed once; ``encode_items`` then gathers rows
        instead of encoding captions per request. The export does this (the table travels in
        the SavedModel as a non-trainable variable). Training must not use it: call it on a
        trained model only.

        Returns:
            The table variable (also kept as ``self.item_cache``).
        """
        table = item_table(lambda ids: self.item_encoder(ids, training=False), self.num_items,
                           chunk)
        self.item_cache = tf.Variable(table, trainable=False, name="item_cache")
        return self.item_cache

    def _run(self, blocks, x, mask, training):
        for block in blocks:
            x = block(x, attention_mask=mask, training=training)
        return tf.cast(x, tf.float32)  # a no-op unless the blocks compute in bfloat16

    def _fuse(self, blocks, target, memory, mask, training):
        for block in blocks:
            target = block(target, memory, self_attention_mask=mask, cross_attention_mask=mask,
                           training=training)
        return tf.cast(target, tf.float32)

    def encode_user(self, batch: Dict[str, tf.Tensor], extra_items: Sequence[tf.Tensor] = (),
                    training: bool = False) -> Dict[str, tf.Tensor]:
        """The per-row (candidate-independent) side: histories, transitions, fusion, user.

        Args:
            batch: A prepared batch (``prepare``: dense indices).
            extra_items: More dense item-index tensors to encode in the same unique pass
                (candidates, InfoNCE negatives); their vectors come back under ``extra``.
            training: Dropout on/off.

        Returns:
            Dict with ``F_r, F_s [B,30,D]``, ``s2r, r2r, r2s, s2s``, ``feed_valid,
            search_valid [B,30]``, ``user [B,D]``, ``queries [B,30,D]``, ``clicks [B,30,K,D]``,
            ``click_ids``, and ``extra`` (list of vectors); with neighbours also
            ``neighbours [B,K,D]`` and the batch's ``nbr_sim``, ``nbr_side [B,K]``.
        """
        feed_ids = batch[F.FEED_ITEMS]
        click_ids = batch[F.SEARCH_CLICKS]
        words = batch[F.SEARCH_WORDS]
        nbr = neighbour_inputs(batch, self.data_shape) if self.config.uses_neighbours else None
        nbr_ids = [nbr[F.NBR_REC_ITEMS], nbr[F.NBR_SRC_CLICKS]] if nbr is not None else []
        vectors = self.encode_items([feed_ids, click_ids, *nbr_ids, *extra_items])
        feed_vectors, click_vectors = vectors[0], vectors[1]
        nbr_vectors, extra = vectors[2:2 + len(nbr_ids)], vectors[2 + len(nbr_ids):]
        queries = self.query_encoder(words)  # [B,30,D]
        search_valid = tf.not_equal(batch[F.SEARCH_TS], 0)
        feed_valid = tf.not_equal(feed_ids, 0)
        search_vectors = self.search_behaviour(queries, click_vectors, click_ids,
                                               session_mask=search_valid)
        layout = self.layout(batch[F.FEED_TS], batch[F.SEARCH_TS], feed_valid=feed_valid,
                             search_valid=search_valid)
        num_feed = self.data_shape.feed_history
        merged = self.global_positions(tf.concat([feed_vectors, search_vectors], axis=1),
                                       positions=layout[LayoutKey.GLOBAL_POSITIONS])
        transitions = self._run(self.global_encoder, merged, layout[LayoutKey.GLOBAL_MASK],
                                training)
        s2r, r2s = transitions[:, :num_feed], transitions[:, num_feed:]
        r2r = self._run(self.feed_encoder, self.feed_positions(feed_vectors),
                        layout[LayoutKey.FEED_MASK], training)
        s2s = self._run(self.search_encoder, self.search_positions(search_vectors),
                        layout[LayoutKey.SEARCH_MASK], training)
        if self.config.use_fusion:
            fused_feed = self._fuse(self.feed_decoder, r2r, s2r, layout[LayoutKey.FEED_MASK],
                                    training)
            fused_search = self._fuse(self.search_decoder, s2s, r2s,
                                      layout[LayoutKey.SEARCH_MASK], training)
        else:  # Ablation: no cross-attention; the two views of each scene are summed.
            fused_feed, fused_search = r2r + s2r, s2s + r2s
        user = self.user_encoder(user_rows(self._user_features, batch[F.USER_ID]))
        side = {"F_r": fused_feed, "F_s": fused_search, "s2r": s2r, "r2r": r2r, "r2s": r2s,
                "s2s": s2s, "feed_valid": feed_valid, "search_valid": search_valid,
                "user": user, "queries": queries, "clicks": click_vectors,
                "click_ids": click_ids, "extra": extra}
        if nbr is not None:
            side["neighbours"] = self.encode_neighbours(nbr, *nbr_vectors, training=training)
            side[F.NBR_SIM] = nbr[F.NBR_SIM]
            side[F.NBR_SIDE] = nbr[F.NBR_SIDE]
        return side

    def encode_neighbours(self, nbr: Dict[str, tf.Tensor], item_vectors: tf.Tensor,
                          click_vectors: tf.Tensor, training: bool = False) -> tf.Tensor:
        """``n [B,K,D]`` of the neighbour payload (``neighbour_inputs``, dense ids).

        Args:
            nbr: The five ``nbr_*`` tensors.
            item_vectors: ``I(nbr_rec_items)`` ``[B,K,Lf,D]``.
            click_vectors: ``I(nbr_src_clicks)`` ``[B,K,Lq,Kn,D]``.
            training: Dropout on/off (the shared encoders).
        """
        words, clicks = nbr[F.NBR_SRC_WORDS], nbr[F.NBR_SRC_CLICKS]
        item_mask = tf.not_equal(nbr[F.NBR_REC_ITEMS], F.PAD_ID)
        session_mask = neighbour_session_mask(words, clicks)
        sessions = self.search_behaviour(self.query_encoder(words), click_vectors, clicks,
                                         session_mask=session_mask)
        if self.config.neighbours == "shared":
            item_vectors = self._encode_neighbour_sequences(
                self.feed_encoder, self.feed_positions, item_vectors, item_mask, training)
            sessions = self._encode_neighbour_sequences(
                self.search_encoder, self.search_positions, sessions, session_mask, training)
        return self.neighbour_encoder(item_vectors, item_mask, sessions, session_mask)

    def _encode_neighbour_sequences(self, blocks, positions: PositionalEmbedding,
                                    vectors: tf.Tensor, valid: tf.Tensor,
                                    training: bool) -> tf.Tensor:
        """The model's own encoder over ``[B·K, L, D]`` neighbour sequences (``[B,K,L,D]`` in
        and out), positions ``P[:L]``, padding keys masked."""
        length, dim = vectors.shape[-2], self.config.hidden_dim
        flat = tf.reshape(vectors, [-1, length, dim])
        mask = key_valid_mask(tf.reshape(valid, [-1, length]), length)
        out = self._run(blocks, positions(flat), mask, training)
        return tf.reshape(out, tf.shape(vectors))

    def candidate_features(self, side: Dict[str, tf.Tensor], candidates: tf.Tensor,
                           training: bool = False) -> tf.Tensor:
        """The heads' shared input ``[rec_interest; src_interest; e_c; user]``: ``[B, C, 4D]``."""
        num = tf.shape(candidates)[1]
        rec_interest = self.feed_target_attention(side["F_r"], candidates, side["feed_valid"])
        src_interest = self.search_target_attention(side["F_s"], candidates,
                                                    side["search_valid"])
        if self.config.uses_neighbours:  # h' = h + g * m, an exact identity without neighbours
            nbr = (side["neighbours"], side[F.NBR_SIM], side[F.NBR_SIDE])
            rec_interest = self.feed_neighbour_fusion(rec_interest, *nbr, candidates=candidates,
                                                      training=training)
            src_interest = self.search_neighbour_fusion(src_interest, *nbr,
                                                        candidates=candidates, training=training)
        user = tf.repeat(side["user"][:, None, :], num, axis=1)
        return tf.concat([rec_interest, src_interest, candidates, user], axis=-1)

    def head(self, features: tf.Tensor, candidates: tf.Tensor,
             query_words: Optional[tf.Tensor], task: int,
             training: bool = False) -> tf.Tensor:
        """Logits ``[B, C]`` of one task: ``[features; query]`` → CGC → the task's MLP."""
        if task == F.Task.SEARCH:
            query = self.query_encoder(query_words)[:, None, :]
        else:
            query = tf.reshape(self.rec_query, [1, 1, -1])
        query = tf.broadcast_to(query, tf.shape(candidates))
        x = tf.concat([features, query], axis=-1)
        tower = self.cgc(x, training=training, tasks=(int(task),))[0]
        return tf.squeeze(self.heads[int(task)](tower, training=training), axis=-1)

    # -----------------------------------------------------------------------------------------
    def task_loss(self, batch: Dict[str, tf.Tensor], task: int, negative_items: tf.Tensor,
                  negative_queries: tf.Tensor, training: bool) -> Dict[str, tf.Tensor]:
        """BCE + weighted alignment losses of one task's batch (spec/unisar.md §9)."""
        c = self.config
        extra = [batch[reader.CANDIDATES]]
        if c.use_query_item_alignment:
            extra.append(negative_items)
        side = self.encode_user(batch, extra, training)
        logits = self.score_encoded(side, side["extra"][0], batch.get(F.QUERY_WORDS), task,
                                    training)
        bce = mean_bce(self.tasks[int(task)], batch, logits, training)
        out = {"bce": bce, "logits": logits}
        total = bce
        if c.use_transition_alignment:
            his = (self.feed_alignment(side["s2r"], side["r2r"], side["feed_valid"])
                   + self.search_alignment(side["r2s"], side["s2s"], side["search_valid"]))
            out["his"] = his
            total += c.his_cl_weight * his
        return self.with_query_item_loss(out, total, side, negative_queries)


@register_model("unisar")
def build_unisar(config: ExperimentConfig, vocab: Vocab) -> UniSAR:
    return build_seeded(UniSAR, config, vocab)
