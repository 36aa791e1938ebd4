"""Personalised search baseline, TEM style (spec/related_models.md §0, §3).

Shapes: B rows; n history items (30); W = 50 words; C candidates; d = ``hidden_dim`` (64).

TEM (Bi et al., "A Transformer-based Embedding Model for Personalized Product Search", SIGIR
2020; kepingbi/ProdSearch): the target query and the user's recent items are read by one
transformer encoder, and the output at the query token is the user-query vector:

```
tokens = [q; h_1 .. h_n]                           # (B, 1 + n, d); q = Q(query_words)
x      = tokens + P[0 .. n] + seg[0 | 1 .. 1]      # learned positions; segment 0 query, 1 item
M      = Enc(Dropout(x), mask)                     # num_layers TransformerEncoderBlocks
M_uq   = M[:, 0]                                   # (B, d)
s(i)   = <M_uq, I(i)>                              # einsum over all candidates, no bias
```

- **History** ``h``: the merged item sequence of SASRec's adapter (``left_padded_sequence``:
  feed positives + search-clicked items in canonical time order, no-click fallback items left
  out), the ``n`` most recent, **left-padded** (newest in slot n), so each position index
  always means the same recency rank.
- **Mask** (``query_history_mask``): Keras semantics, bool ``(B, 1 + n, 1 + n)``, True = may
  attend; every token may read the query token and the real items, never a pad. The query token
  is always readable, so no row is all-masked (a user with no history reads only its query).
- **Encoders**: UniSAR's ``QueryEncoder`` ``Q`` for the query and, by default, UniSAR's
  ``ItemEncoder`` ``I`` (sharing ``Q`` for captions) for items, so the comparison is about
  architecture; ``item_features="id_only"`` is the papers' plain id table ``[N, d]``.
- **Tasks**: trained on search only (``train_tasks``). The feed task is scored with a learned
  "empty query" vector in place of ``q`` (spec: "feed optional"); it is never trained, so it is
  a finite, history-only floor.
- **Loss**: BCE over each search row's candidates (1 positive + the stored negatives), mean over
  all B × C entries (``tfrs.tasks.Ranking`` with reduction NONE). The reference's review-word
  language-model loss is dropped (KuaiSAR has no reviews).

Raw ids are mapped inside the model (``IdLookup``); ``prepare`` runs the hash lookups outside
an XLA-compiled step. Every shape is static, so the whole model compiles with XLA.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import jsr_tf  # noqa: F401
import tensorflow as tf
import tf_keras as keras

from jsr_tf import features as F
from jsr_tf.config import ExperimentConfig, ModelConfig
from jsr_tf.data import reader
from jsr_tf.data.vocab import Vocab
from jsr_tf.keys import Inputs, Outputs
from jsr_tf.layers.history_layout import key_valid_mask
from jsr_tf.layers.positional_embedding import PositionalEmbedding
from jsr_tf.models.base import JsrModel
from jsr_tf.models.factory import register_model
from jsr_tf.models.sasrec import left_padded_sequence
from jsr_tf.models.parts.builders import ITEM_FEATURES  # noqa: F401  (re-exported)
from jsr_tf.models.parts.builders import (bce_ranking_task, build_item_encoder,
                                          build_query_encoder, check_item_features, coupled_l2,
                                          id_lookups, transformer_stack)
from jsr_tf.models.parts.forward import item_vectors, request_vector
from jsr_tf.models.parts.losses import mean_bce, single_task_batch

QUERY_SEGMENT, ITEM_SEGMENT = 0, 1


def query_history_mask(history_ids: tf.Tensor) -> tf.Tensor:
    """The padding mask of the token sequence ``[query; history]``.

    Args:
        history_ids: Integer tensor ``(B, n)`` of dense item indices, 0 = padding.

    Returns:
        bool tensor ``(B, 1 + n, 1 + n)``, True = may attend: ``mask[b, i, j]`` is True when
        key ``j`` is the query token (``j = 0``) or a real item, for every query slot ``i``.
    """
    valid = tf.not_equal(history_ids, F.PAD_ID)
    token_valid = tf.concat([tf.ones_like(valid[:, :1]), valid], axis=1)
    return key_valid_mask(token_valid, 1 + history_ids.shape[1])


class SearchBaseline(JsrModel):
    """TEM: a transformer over ``[query; history items]``, scoring the search task.

    Args:
        config: Model hyper-parameters (``hidden_dim`` d, ``embedding_dim`` of the item and word
            tables, ``num_heads``, ``num_layers``, ``ffn_dim``, ``dropout``).
        vocab: Vocabularies from the pipeline (lookup tables and item side features).
        l2: Coupled L2 coefficient (see ``JsrModel``).
        history_length: History items ``n`` (the most recent are kept); default the data's
            ``feed_history`` (``vocab.shape``, 30).
        item_features: ``"unisar"`` (UniSAR's ``ItemEncoder``, the default) or ``"id_only"``.
    """

    train_tasks = (F.Task.SEARCH,)

    def __init__(self, config: ModelConfig, vocab: Vocab, l2: float = 0.0,
                 history_length: Optional[int] = None, item_features: str = "unisar",
                 **kwargs) -> None:
        super().__init__(l2=l2, data_shape=vocab.shape, **kwargs)
        if history_length is None:  # n = feed_history (30; the reference: 20)
            history_length = vocab.shape.feed_history
        if not isinstance(history_length, int) or history_length <= 0:
            raise ValueError("`history_length` should be a positive integer. "
                             f"Received: `history_length={history_length!r}`")
        check_item_features(item_features)
        self.config = config.validate()
        self.history_length = history_length
        self.item_features = item_features
        c = config
        self.item_lookup, self.word_lookup = id_lookups(vocab, "item", "word")
        self.num_items = vocab.num_items
        self.query_encoder = build_query_encoder(c, vocab)
        self.item_encoder = build_item_encoder(c, vocab, item_features, self.query_encoder)
        self.positions = PositionalEmbedding(1 + history_length, name="positions")
        self.segments = keras.layers.Embedding(2, c.hidden_dim,
                                               embeddings_initializer="glorot_normal",
                                               name="segments")
        self._segment_ids = tf.constant([QUERY_SEGMENT] + [ITEM_SEGMENT] * history_length,
                                        tf.int32)
        self.embedding_dropout = keras.layers.Dropout(c.dropout)
        self.blocks = transformer_stack(c, "encoder")
        self.empty_query = self.add_weight(name="empty_query", shape=(c.hidden_dim,),
                                           initializer="glorot_normal")
        self.task = bce_ranking_task()  # per-entry BCE, see ``mean_bce``

    # -----------------------------------------------------------------------------------------
    def encode_items(self, dense_ids: tf.Tensor) -> tf.Tensor:
        """Item vectors: float ``(..., d)``, exactly 0 for padding (index 0)."""
        return item_vectors(self.item_encoder, dense_ids, self.item_features)

    def history_ids(self, batch: Dict[str, tf.Tensor]) -> tf.Tensor:
        """The left-padded dense history ``(B, n)`` of a prepared batch (newest in slot n)."""
        if F.SEARCH_HAS_CLICK not in batch:
            raise ValueError(f"The history reads `{F.SEARCH_HAS_CLICK}`. Received: a batch "
                             f"with keys {sorted(batch)}")
        return left_padded_sequence(batch[F.FEED_ITEMS], batch[F.FEED_TS],
                                    batch[F.SEARCH_CLICKS], batch[F.SEARCH_TS],
                                    batch[F.SEARCH_HAS_CLICK], length=self.history_length)

    def encode_query(self, batch: Dict[str, tf.Tensor], task: int) -> tf.Tensor:
        """``q``: ``Q(query_words)`` for the search task, the learned empty query for feed.

        Returns:
            Float tensor ``(B, d)``.
        """
        return request_vector(self.query_encoder, self.empty_query, batch, task)

    def _encode_history(self, batch: Dict[str, tf.Tensor]) -> Tuple[tf.Tensor, tf.Tensor]:
        """Dense history ids ``(B, n)`` and their item vectors ``(B, n, d)``."""
        ids = self.history_ids(batch)
        return ids, self.encode_items(ids)

    def _read(self, query: tf.Tensor, history_ids: tf.Tensor, history: tf.Tensor,
              training: bool) -> tf.Tensor:
        """``M_uq (B, d)``: the encoder output at the query token of ``[q; h]``."""
        tokens = tf.concat([query[:, tf.newaxis], history], axis=1)  # (B, 1 + n, d)
        x = self.positions(tokens) + self.segments(self._segment_ids)
        x = self.embedding_dropout(x, training=training)
        mask = query_history_mask(history_ids)
        for block in self.blocks:
            x = block(x, attention_mask=mask, training=training)
        return x[:, 0]

    def encode_user(self, batch: Dict[str, tf.Tensor], task: int = F.Task.SEARCH,
                    training: bool = False) -> tf.Tensor:
        """The user-query vector ``M_uq``: float ``(B, d)``."""
        ids, history = self._encode_history(batch)
        return self._read(self.encode_query(batch, task), ids, history, training)

    def score_encoded(self, user: tf.Tensor, candidates: tf.Tensor) -> tf.Tensor:
        """Logits ``(B, C)`` = ``user (B, d) · candidates (B, C, d)``."""
        return tf.einsum("bd,bcd->bc", user, candidates)

    def score_prepared(self, batch: Dict[str, tf.Tensor], task: int,
                       training: bool = False) -> tf.Tensor:
        """Logits ``(B, C)``; the feed task reads the learned empty query (untrained floor)."""
        F.Task(task)
        return self.score_encoded(self.encode_user(batch, task, training),
                                  self.encode_items(batch[reader.CANDIDATES]))

    def call_prepared(self, batch: Dict[str, tf.Tensor],
                      training: bool = False) -> Dict[str, tf.Tensor]:
        """Both tasks' logits ``(B, C)``; history and candidates are encoded once.

        The search logits read ``query_words`` (an all-padding query gives ``Q``'s empty-query
        vector ``tanh(bias)``); the feed logits read the learned empty query.
        """
        ids, history = self._encode_history(batch)
        candidates = self.encode_items(batch[reader.CANDIDATES])
        out = {}
        for task, key in ((F.Task.FEED, Outputs.FEED_LOGITS),
                          (F.Task.SEARCH, Outputs.SEARCH_LOGITS)):
            user = self._read(self.encode_query(batch, task), ids, history, training)
            out[key] = self.score_encoded(user, candidates)
        return out

    # -----------------------------------------------------------------------------------------
    def task_loss(self, batch: Dict[str, tf.Tensor], training: bool) -> Dict[str, tf.Tensor]:
        """BCE over the search row's candidates, mean over the ``B × C`` entries."""
        logits = self.score_prepared(batch, F.Task.SEARCH, training)
        bce = mean_bce(self.task, batch, logits, training)
        return {"bce": bce, "logits": logits, "total": bce}

    def loss_prepared(self, inputs, training: bool = False) -> tf.Tensor:
        """The search batch's loss; a feed batch, if present, is not trained on."""
        return self.task_loss(single_task_batch(inputs, Inputs.SEARCH, "SearchBaseline"),
                              training)["total"]


@register_model("search_baseline")
def build_search_baseline(config: ExperimentConfig, vocab: Vocab) -> SearchBaseline:
    return SearchBaseline(config.model, vocab, l2=coupled_l2(config))
