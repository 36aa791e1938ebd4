"""Mixed-sequence baseline, USER / Query-SeqRec style (spec/related_models.md §0, §4).

Shapes: B rows; Lr = Ls = 30 history slots; L = Lr + Ls = 60; K = 5 clicks; W = 50 words;
C candidates; d = ``hidden_dim`` (64).

One plain transformer over the interleaved, typed history: the controlled ablation "UniSAR
without transition masks, alignment losses and fusion". Same 60 slots, same tokens and same
global order as UniSAR (spec/unisar.md §2-3), plus one request token:

```
X_r = I(feed_items)                                   # (B, Lr, d), feed tokens
X_s = Q(search_words) + mean_k I(search_clicks)       # (B, Ls, d), session tokens (pooled)
r   = Q(query_words)  (search)  |  e_empty  (feed)    # (B, d), the request token
x   = concat[X_r, X_s, r] + type_emb[1 | 2 | 3] + P[gpos | L]     # (B, L + 1, d)
H   = Enc(Dropout(x), mask)                           # num_layers TransformerEncoderBlocks
h   = H[:, L]                                         # (B, d), output at the request token
s(c) = MLP([h; e_c; h ⊙ e_c])                         # head_units + (1,), one head, both tasks
```

- **Order** (``sequence_layout``): the slots stay ``concat[feed Lr; search Ls]`` and
  ``HistoryLayout``'s global positions ``gpos`` (a stable time sort: feed before search at equal
  times, pads last) say where each sits in the merged sequence; attention is
  permutation-equivariant, so this equals running on the explicitly sorted sequence. The
  request token always has its own position ``L`` (after every slot) and type 3
  (``REQUEST_TYPE``); pads keep their slot's type (1 feed, 2 search), as in the reference.
- **Mask**: Keras semantics, bool ``(B, L + 1, L + 1)``, True = may attend: every token reads
  the real slots and the request token, in both directions (the whole input precedes the
  target), never a pad. The request token is always readable, so no row is all-masked.
- **Tasks**: "feed = search with an empty query", as in USER: the request token carries the
  task (``Q(query)`` or the learned ``empty_query``), one head scores both. ``score_head="dot"``
  scores ``<h, e_c>`` instead (retrieval-capable).
- **Loss**: BCE over each row's candidates (1 positive + the stored negatives, mean over
  B × C) per task; ``total = L_feed + search_loss_weight · L_search`` (weight 1 for a search-only
  step, as UniSAR).

Raw ids are mapped inside the model (``IdLookup``); ``prepare`` runs the hash lookups outside
an XLA-compiled step. Every shape is static, so the whole model compiles with XLA.
"""

from __future__ import annotations

from typing import Dict, Tuple

import jsr_tf  # noqa: F401
import tensorflow as tf
import tf_keras as keras

from jsr_tf import features as F
from jsr_tf.config import ExperimentConfig, ModelConfig
from jsr_tf.data import reader
from jsr_tf.data.vocab import Vocab
from jsr_tf.keys import Outputs
from jsr_tf.layers.history_layout import HistoryLayout, LayoutKey, key_valid_mask
from jsr_tf.layers.mlp import MLP
from jsr_tf.layers.positional_embedding import PositionalEmbedding
from jsr_tf.layers.search_behaviour_encoder import SearchBehaviourEncoder
from jsr_tf.models.base import JsrModel
from jsr_tf.models.factory import register_model
from jsr_tf.models.parts.builders import (bce_ranking_task, build_item_encoder,
                                          build_query_encoder, coupled_l2, id_lookups,
                                          transformer_stack)
from jsr_tf.models.parts.forward import request_vector
from jsr_tf.models.parts.losses import check_joint_inputs, joint_loss, mean_bce

REQUEST_TYPE = len(F.BehaviorType)  # 3, after PAD 0, FEED 1, SEARCH 2
SCORE_HEADS = ("mlp", "dot")


def sequence_layout(layout: Dict[str, tf.Tensor]) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Positions, types and mask of ``[feed Lr; search Ls; request]``.

    Args:
        layout: ``HistoryLayout`` output (``global_positions`` int32 ``(B, L)``,
            ``feed_valid`` bool ``(B, Lr)``, ``search_valid`` bool ``(B, Ls)``).

    Returns:
        ``positions`` int32 ``(B, L + 1)``: the slots' global positions, then ``L`` for the
        request token; ``types`` int32 ``(L + 1,)``: ``BehaviorType.FEED`` for the feed slots,
        ``BehaviorType.SEARCH`` for the search slots (pads included), ``REQUEST_TYPE`` last;
        ``mask`` bool ``(B, L + 1, L + 1)``, True = may attend: key ``j`` is a real slot or the
        request token.
    """
    positions = tf.cast(layout[LayoutKey.GLOBAL_POSITIONS], tf.int32)
    feed_valid = layout[LayoutKey.FEED_VALID]
    search_valid = layout[LayoutKey.SEARCH_VALID]
    num_feed, num_search = feed_valid.shape[1], search_valid.shape[1]
    length = num_feed + num_search
    request = tf.fill(tf.shape(positions[:, :1]), tf.constant(length, tf.int32))
    positions = tf.concat([positions, request], axis=1)
    types = tf.constant([int(F.BehaviorType.FEED)] * num_feed
                        + [int(F.BehaviorType.SEARCH)] * num_search + [REQUEST_TYPE], tf.int32)
    token_valid = tf.concat([feed_valid, search_valid, tf.ones_like(feed_valid[:, :1])], axis=1)
    return positions, types, key_valid_mask(token_valid, length + 1)


class MixedSequence(JsrModel):
    """One transformer over the merged, typed feed + search history, with a request token.

    Args:
        config: Model hyper-parameters (``hidden_dim`` d, ``embedding_dim`` of the item and word
            tables, ``num_heads``, ``num_layers``, ``ffn_dim``, ``dropout``, ``head_units``,
            ``search_loss_weight``).
        vocab: Vocabularies from the pipeline (lookup tables and item side features).
        l2: Coupled L2 coefficient (see ``JsrModel``).
        score_head: ``"mlp"`` (``MLP([h; e_c; h ⊙ e_c])``, the default) or ``"dot"``
            (``<h, e_c>``, retrieval-capable).
    """

    train_tasks = (F.Task.FEED, F.Task.SEARCH)

    def __init__(self, config: ModelConfig, vocab: Vocab, l2: float = 0.0,
                 score_head: str = "mlp", **kwargs) -> None:
        super().__init__(l2=l2, data_shape=vocab.shape, **kwargs)
        if score_head not in SCORE_HEADS:
            raise ValueError(f"`score_head` should be one of {SCORE_HEADS}. "
                             f"Received: `score_head={score_head!r}`")
        self.config = config.validate()
        self.score_head = score_head
        c = config
        self.item_lookup, self.word_lookup = id_lookups(vocab, "item", "word")
        self.num_items = vocab.num_items
        self.query_encoder = build_query_encoder(c, vocab)
        self.item_encoder = build_item_encoder(c, vocab, query_encoder=self.query_encoder)
        self.search_behaviour = SearchBehaviourEncoder(name="search_behaviour")
        self.layout = HistoryLayout(name="layout")
        self.positions = PositionalEmbedding(
            vocab.shape.feed_history + vocab.shape.search_history + 1, name="positions")
        self.types = keras.layers.Embedding(REQUEST_TYPE + 1, c.hidden_dim,
                                            embeddings_initializer="glorot_normal",
                                            name="types")
        self.embedding_dropout = keras.layers.Dropout(c.dropout)
        self.blocks = transformer_stack(c, "encoder")
        self.empty_query = self.add_weight(name="empty_query", shape=(c.hidden_dim,),
                                           initializer="glorot_normal")
        self.head = (MLP((*c.head_units, 1), dropout=c.dropout, name="head")
                     if score_head == "mlp" else None)
        self.tasks = [bce_ranking_task() for _ in F.Task]  # per-entry BCE, see ``mean_bce``

    # -----------------------------------------------------------------------------------------
    def encode_history(self, batch: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        """The request-independent side of a prepared batch.

        Returns:
            Dict with ``tokens`` float ``(B, L, d)`` (feed slots ``I(item)``, then search slots
            ``S_s``; exactly 0 for pads), and ``positions``, ``types``, ``mask`` of
            ``sequence_layout``.
        """
        feed_ids = batch[F.FEED_ITEMS]
        click_ids = batch[F.SEARCH_CLICKS]
        feed_valid = tf.not_equal(feed_ids, F.PAD_ID)
        search_valid = tf.not_equal(batch[F.SEARCH_TS], 0)
        sessions = self.search_behaviour(self.query_encoder(batch[F.SEARCH_WORDS]),
                                         self.item_encoder(click_ids), click_ids,
                                         session_mask=search_valid)
        layout = self.layout(batch[F.FEED_TS], batch[F.SEARCH_TS], feed_valid=feed_valid,
                             search_valid=search_valid)
        positions, types, mask = sequence_layout(layout)
        return {"tokens": tf.concat([self.item_encoder(feed_ids), sessions], axis=1),
                "positions": positions, "types": types, "mask": mask}

    def encode_query(self, batch: Dict[str, tf.Tensor], task: int) -> tf.Tensor:
        """The request vector ``(B, d)``: ``Q(query_words)`` (search) or the empty query (feed)."""
        return request_vector(self.query_encoder, self.empty_query, batch, task)

    def read(self, history: Dict[str, tf.Tensor], query: tf.Tensor,
             training: bool = False) -> tf.Tensor:
        """``h (B, d)``: the encoder output at the request token.

        Args:
            history: ``encode_history`` output.
            query: Float tensor ``(B, d)``, the request vector.
            training: Dropout on/off.
        """
        tokens = tf.concat([history["tokens"], query[:, tf.newaxis]], axis=1)  # (B, L + 1, d)
        x = self.positions(tokens, positions=history["positions"]) + self.types(history["types"])
        x = self.embedding_dropout(x, training=training)
        for block in self.blocks:
            x = block(x, attention_mask=history["mask"], training=training)
        return x[:, -1]

    def encode_user(self, batch: Dict[str, tf.Tensor], task: int,
                    training: bool = False) -> tf.Tensor:
        """``h``: float ``(B, d)``, the user vector for ``task``."""
        return self.read(self.encode_history(batch), self.encode_query(batch, task), training)

    def score_encoded(self, user: tf.Tensor, candidates: tf.Tensor,
                      training: bool = False) -> tf.Tensor:
        """Logits ``(B, C)`` of candidate vectors ``(B, C, d)`` against ``user (B, d)``."""
        if self.head is None:
            return tf.einsum("bd,bcd->bc", user, candidates)
        user = tf.broadcast_to(user[:, tf.newaxis], tf.shape(candidates))
        x = tf.concat([user, candidates, user * candidates], axis=-1)  # (B, C, 3d)
        return tf.squeeze(self.head(x, training=training), axis=-1)

    def score_prepared(self, batch: Dict[str, tf.Tensor], task: int,
                       training: bool = False) -> tf.Tensor:
        """Logits ``(B, C)`` of one task's batch."""
        return self.score_encoded(self.encode_user(batch, task, training),
                                  self.item_encoder(batch[reader.CANDIDATES]), training)

    def call_prepared(self, batch: Dict[str, tf.Tensor],
                      training: bool = False) -> Dict[str, tf.Tensor]:
        """Both tasks' logits ``(B, C)``; history and candidates are encoded once.

        The search logits read ``query_words`` (an all-padding query gives ``Q``'s empty-query
        vector ``tanh(bias)``); the feed logits read the learned empty query.
        """
        history = self.encode_history(batch)
        candidates = self.item_encoder(batch[reader.CANDIDATES])
        out = {}
        for task, key in ((F.Task.FEED, Outputs.FEED_LOGITS),
                          (F.Task.SEARCH, Outputs.SEARCH_LOGITS)):
            user = self.read(history, self.encode_query(batch, task), training)
            out[key] = self.score_encoded(user, candidates, training)
        return out

    # -----------------------------------------------------------------------------------------
    def task_loss(self, batch: Dict[str, tf.Tensor], task: int,
                  training: bool) -> Dict[str, tf.Tensor]:
        """BCE over one task's candidates, mean over the ``B × C`` entries."""
        logits = self.score_prepared(batch, task, training)
        bce = mean_bce(self.tasks[int(task)], batch, logits, training)
        return {"bce": bce, "logits": logits, "total": bce}

    def loss_prepared(self, inputs, training: bool = False) -> tf.Tensor:
        """``L_feed + search_loss_weight · L_search`` (weight 1 when only search is present)."""
        check_joint_inputs(inputs)
        return joint_loss(inputs, self.task_loss, self.config.search_loss_weight,
                          training=training)


@register_model("mixed_sequence")
def build_mixed_sequence(config: ExperimentConfig, vocab: Vocab) -> MixedSequence:
    return MixedSequence(config.model, vocab, l2=coupled_l2(config))
