"""UDITSR (Zhang et al., KDD 2024, arXiv 2407.00912) on the example contract, feed and search heads.

Shapes: B rows; Lr = Ls = 30 history slots; W = 50 words; K = 5 clicks per session; E = Lr + Ls·K
= 180 history edges; C candidates; d = ``hidden_dim`` (64).

**What the paper specifies** (read from the paper's summary in spec/related_models.md §5 and the
issue; the official code, zhangyuting725/UDITSR, could not be read offline here, so every detail
below marked *unverified* is from the spec notes, not checked against code):

- Every interaction is a triplet ⟨inherent intent u (the user), demand intent t, item i⟩ in one
  space, linked by a translation ``u + t ≈ i``. In search t is the query; in recommendation it is
  implicit and *generated*: an MLP over ``[e_u; e_i; q_u; q_i]`` (``q_u``: the user's top-3
  query words summed; ``q_i``: attention over the item's top-10 query words), supervised on search
  interactions by an MSE to the real query (``λ_sg`` 1.5) *(unverified details)*.
- Dual-intent translation propagation on the user–item graph of the train-visible interactions
  of both kinds, 2 layers, mean over edges, no weights: item ← mean(user + intent), user ←
  mean(item − intent); layer outputs combined with weights 1, 1/2, 1/3 *(unverified)*.
- Scores ``MLP_S([u*; i*; q])`` and ``MLP_R([u*; i*; t̂])`` (3d → 1.5d → 0.75d → 1, LeakyReLU
  after every layer, the last included); BPR with one uniform negative (t̂ regenerated for the
  negative on feed rows); the TransE-style contrastive term
  ``−log σ(‖u+t−i⁻‖² − ‖u+t−i⁺‖²)`` (mean over dimensions, ``λ_cl`` 0.2); AdamW lr 1e-4,
  weight decay 1e-5, batch 256, d 100, dropout 0 *(unverified)*.

**What it leaves open** (or what could not be checked offline): how ``q_u`` / ``q_i`` are cut
in time (a full-period word list would leak future queries into a sample); whether the
generation loss reaches the query encoder; which t the contrastive term uses on feed rows; how
the propagated tables are kept fresh when the graph changes.

**This implementation** (per row, the user side is encoded once; candidates are scored against
it):

- ``u_0 = UserEncoder(user id, four user features)`` (UniSAR's, ``tanh`` projection to d); items
  ``I(·)`` and queries ``Q(·)`` are UniSAR's encoders, as for every model of the package
  (``item_features="id_only"``: a plain id table).
- Search context ``c = masked_mean_s Q(search_words_s)``: the queries of the row's own search
  history (0 without one).
- ``DemandIntentGenerator``: ``t̂(i) = tanh(MLP([u_0; I(i); c]))`` (d → d, LeakyReLU), for the
  feed history items and the candidates.
- ``TranslationPropagation`` (user side, one hop) over the row's own history edges: the feed
  items with their generated intents and each clicked item of a search session with that
  session's query ``Q(words)`` (no-click sessions' fallback items are not interactions):
  ``u* = u_0 + ½ · mean_e (I(i_e) − t_e)``.
- Heads ``MLP_R([u*; I(c); t̂(c)])`` and ``MLP_S([u*; I(c); Q(query)])``, ``head_units``
  (preset 96 → 48 = 1.5d → 0.75d) then 1, LeakyReLU.
- Loss of a task batch: ``BCE + translation_weight · L_tr (+ generation_weight · L_sg on
  search)``; BCE over the row's candidates (1 positive + the stored negatives), mean over
  ``B × C``; ``L_tr`` = ``TranslationContrastiveLoss(u*, t, I(c), labels)`` with t = ``Q(query)``
  on search rows and the generated intent of the positive on feed rows, over every (positive,
  negative) pair; ``L_sg = mean (t̂(positive) − stop_gradient(Q(query)))²`` over search rows with
  a query. Total ``L_feed + search_loss_weight · L_src`` (``joint_loss``).

**Deviations from the paper** (named, each a choice of this package):

1. *Propagation*: no whole-graph convolution. The user side is one hop over the row's own
   history (at most 30 feed items and 30 × 5 clicks, all strictly before the target time: a
   sampled, leakage-free neighbourhood of the user–item graph taken from the example itself).
   The item side is not propagated: an item is ``I(item)`` (id + caption + categories). The
   paper's second hop (user → item → user) is dropped. Cost per row ``O((Lr + Ls·K) · d)``,
   independent of the numbers of users and items (BENCHMARKS.md §10); the reference's full graph
   costs ``O(|edges| · d)`` per step. A serving request needs only its own history.
2. *Generator inputs*: ``q_u`` is the mean of the history queries' encodings (not the top-3
   query words over the whole period); ``q_i`` is dropped: the item encoder already reads the
   item's caption words, and a per-item query-word table would need a time-cut Beam step to be
   leakage-free.
3. *Objective*: the package's BCE over 1 positive + the stored popularity negatives instead of
   BPR with one uniform negative (every model of ``jsr-compare`` trains on the same rows); the
   contrastive term uses all (positive, negative) pairs of the row; ``L_sg`` does not update the
   query encoder (its target is a stop-gradient; MSE between two trainable sides can shrink both).
4. *Heads*: no LeakyReLU after the logit layer (the reference's quirk would shrink negative
   logits to ``0.01·x``); the LeakyReLU slope is Keras's 0.2 (PyTorch's default is 0.01), in the
   heads and the generator.
5. *Sizes and training*: d 64 (not 100), the package's batch (1024 feed rows) and lr 1e-3 with
   AdamW weight decay 1e-5: the comparison budgets are a few hundred steps, where lr 1e-4 would
   leave the model near its initialisation.
6. *User*: ``u_0`` reads the four user features besides the id (as UniSAR's user encoder).

``config.use_query_item_alignment`` (off in the preset) adds UniSAR's query–item InfoNCE as in
SESRec. ``train.precision`` affects only that InfoNCE (UDITSR has no transformer blocks).
Raw ids are mapped inside the model (``IdLookup``); ``prepare`` runs the hash lookups outside an
XLA-compiled step; ``dynamic_shapes=False`` is the fixed-shape (XLA) path with the same values.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import jsr_tf  # noqa: F401
import tensorflow as tf

from jsr_tf import features as F
from jsr_tf.config import ExperimentConfig, ModelConfig
from jsr_tf.data import reader
from jsr_tf.data.vocab import Vocab
from jsr_tf.layers.demand_intent_generator import DemandIntentGenerator
from jsr_tf.layers.mlp import MLP
from jsr_tf.layers.pooling import masked_mean
from jsr_tf.layers.query_item_infonce import QueryItemInfoNCE
from jsr_tf.layers.translation_loss import TranslationContrastiveLoss
from jsr_tf.layers.translation_propagation import TranslationPropagation
from jsr_tf.layers.user_encoder import UserEncoder
from jsr_tf.models.base import JsrModel
from jsr_tf.models.factory import register_model
from jsr_tf.models.parts.builders import (bce_ranking_task, build_seeded, check_item_features,
                                          precision_kwargs)
from jsr_tf.models.parts.encoded_side import EncodedSideMixin
from jsr_tf.models.parts.forward import encode_unique, item_table, item_vectors, user_rows
from jsr_tf.models.parts.losses import mean_bce

TRANSLATION_WEIGHT = 0.2  # λ_cl of the paper
GENERATION_WEIGHT = 1.5  # λ_sg of the paper
HOP_WEIGHT = 0.5  # the paper's layer weight of hop 1
HEAD_ACTIVATION = "leaky_relu"


def _weight(name: str, value: float) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
        raise ValueError(f"`{name}` should be >= 0. Received: `{name}={value!r}`")
    return float(value)


def positive_mean(values: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """The label-weighted mean over candidates: ``(B, C, D), (B, C) -> (B, D)`` (0 without a
    positive); with one positive per row, that positive's vector."""
    return masked_mean(values, tf.greater(labels, 0.5), axis=1)


class UDITSR(EncodedSideMixin, JsrModel):
    """UDITSR with a feed head and a search head (see the module docstring).

    Args:
        config: Model hyper-parameters (``hidden_dim``, ``embedding_dim``, ``dropout``,
            ``head_units``, ``search_loss_weight``, ``use_query_item_alignment`` with
            ``q_i_cl_temp``, ``q_i_cl_weight`` and ``num_qi_negatives``).
        vocab: Vocabularies from the pipeline (lookup tables, item and user side features).
        l2: Coupled L2 coefficient (see ``JsrModel``).
        item_features: ``"unisar"`` (UniSAR's ``ItemEncoder``, the default) or ``"id_only"``.
        dynamic_shapes: Encode each distinct item of a batch once (not XLA-compatible).
        seed: Seed of the per-step InfoNCE negative draws (with the alignment on).
        translation_weight: ``λ_cl``, weight of the translation contrastive term.
        generation_weight: ``λ_sg``, weight of the demand-intent supervision on search rows.
        hop_weight: Weight of the propagated hop in ``u*``.
        precision: ``train.precision`` (the optional InfoNCE only).
    """

    caches_items = True

    def __init__(self, config: ModelConfig, vocab: Vocab, l2: float = 0.0,
                 item_features: str = "unisar", dynamic_shapes: bool = True, seed: int = 0,
                 translation_weight: float = TRANSLATION_WEIGHT,
                 generation_weight: float = GENERATION_WEIGHT, hop_weight: float = HOP_WEIGHT,
                 precision: str = "float32", **kwargs) -> None:
        super().__init__(l2=l2, data_shape=vocab.shape, **kwargs)
        check_item_features(item_features)
        self.translation_weight = _weight("translation_weight", translation_weight)
        self.generation_weight = _weight("generation_weight", generation_weight)
        self.config = config.validate()
        self.item_features = item_features
        self.dynamic_shapes = dynamic_shapes
        self.seed = int(seed)
        self.item_cache: Optional[tf.Variable] = None
        c = config
        user_sizes = self.build_input_side(vocab, item_features)
        self.user_encoder = UserEncoder(user_sizes, c.embedding_dim, c.hidden_dim,
                                        name="user_encoder")
        self.intent_generator = DemandIntentGenerator((c.hidden_dim, c.hidden_dim),
                                                      dropout=c.dropout, name="intent_generator")
        self.propagation = TranslationPropagation(hop_weight, name="propagation")
        self.translation = TranslationContrastiveLoss(name="translation")
        # One head class, instantiated per task: same shape, separate weights.
        self.heads = [MLP((*c.head_units, 1), activation=HEAD_ACTIVATION, dropout=c.dropout,
                          name=f"{t.name.lower()}_head") for t in F.Task]
        if c.use_query_item_alignment:
            self.query_item_alignment = QueryItemInfoNCE(c.q_i_cl_temp, name="query_item_infonce",
                                                         **precision_kwargs(precision))
        self.tasks = [bce_ranking_task() for _ in F.Task]  # per-entry BCE, see ``mean_bce``

    # -----------------------------------------------------------------------------------------
    def _item_vectors(self, dense_ids: tf.Tensor) -> tf.Tensor:
        return item_vectors(self.item_encoder, dense_ids, self.item_features)

    def encode_items(self, dense_ids: Sequence[tf.Tensor]) -> List[tf.Tensor]:
        """``I(·)`` of several dense-id tensors (any shapes), exactly 0 for padding with
        ``id_only``; one encoder pass per distinct id with ``dynamic_shapes``, a gather from
        ``item_cache`` once it exists (serving).

        Returns:
            Float tensors ``(*shape, d)``, one per input.
        """
        if self.item_cache is not None:
            return [tf.gather(self.item_cache, ids) for ids in dense_ids]
        if not self.dynamic_shapes:
            return [self._item_vectors(ids) for ids in dense_ids]
        return encode_unique(self._item_vectors, dense_ids, self.config.hidden_dim)

    def cache_item_vectors(self, chunk: int = 8192) -> tf.Variable:
        """Freezes ``I(·)`` into a ``[num_items, d]`` table for inference (the export calls it;
        training must not)."""
        self.item_cache = tf.Variable(item_table(self._item_vectors, self.num_items, chunk),
                                      trainable=False, name="item_cache")
        return self.item_cache

    def encode_user(self, batch: Dict[str, tf.Tensor], extra_items: Sequence[tf.Tensor] = (),
                    training: bool = False) -> Dict[str, tf.Tensor]:
        """The per-row (candidate-independent) side of a prepared batch; ``extra_items``
        (dense item indices: candidates, InfoNCE negatives) are encoded in the same pass and come
        back under ``extra``.

        Returns:
            Dict with ``user0 [B,d]`` (``u_0``), ``user [B,d]`` (``u*``), ``context [B,d]``,
            ``edge_mask [B,E]``, ``queries [B,Ls,d]``, ``clicks [B,Ls,K,d]``, ``click_ids`` and
            ``extra``.
        """
        feed_ids, click_ids = batch[F.FEED_ITEMS], batch[F.SEARCH_CLICKS]
        vectors = self.encode_items([feed_ids, click_ids, *extra_items])
        feed_vectors, click_vectors, extra = vectors[0], vectors[1], vectors[2:]
        queries = self.query_encoder(batch[F.SEARCH_WORDS])  # [B, Ls, d]
        sessions = tf.not_equal(batch[F.SEARCH_TS], 0)
        context = masked_mean(queries, sessions)
        user0 = self.user_encoder(user_rows(self._user_features, batch[F.USER_ID]))
        feed_intents = self.intent_generator(user0, feed_vectors, context, training=training)
        clicked = tf.not_equal(click_ids, F.PAD_ID) & sessions[..., tf.newaxis]
        if F.SEARCH_HAS_CLICK in batch:  # a no-click session's fallback item was only shown
            clicked &= tf.not_equal(batch[F.SEARCH_HAS_CLICK], 0)[..., tf.newaxis]
        num_clicks = click_ids.shape[-1]
        d = self.config.hidden_dim
        flat = [-1, click_ids.shape[1] * num_clicks]
        items = tf.concat([feed_vectors, tf.reshape(click_vectors, [*flat, d])], axis=1)
        intents = tf.concat([feed_intents, tf.reshape(
            tf.repeat(queries[:, :, tf.newaxis, :], num_clicks, axis=2), [*flat, d])], axis=1)
        edge_mask = tf.concat([tf.not_equal(feed_ids, F.PAD_ID), tf.reshape(clicked, flat)],
                              axis=1)
        user = self.propagation(user0, items, intents, edge_mask)
        return {"user0": user0, "user": user, "context": context, "edge_mask": edge_mask,
                "queries": queries, "clicks": click_vectors, "click_ids": click_ids,
                "extra": extra}

    def candidate_features(self, side: Dict[str, tf.Tensor], candidates: tf.Tensor,
                           training: bool = False) -> Dict[str, tf.Tensor]:
        """What both heads read: ``pair = [u*; I(c)] [B,C,2d]`` and the generator's row inputs."""
        num = tf.shape(candidates)[1]
        pair = tf.concat([tf.repeat(side["user"][:, tf.newaxis, :], num, axis=1), candidates],
                         axis=-1)
        return {"pair": pair, "user0": side["user0"], "context": side["context"]}

    def intents(self, features: Dict[str, tf.Tensor], candidates: tf.Tensor,
                query_words: Optional[tf.Tensor], task: int,
                training: bool = False) -> tf.Tensor:
        """The demand intent of each candidate ``[B,C,d]``: ``Q(query_words)`` for search, the
        generated ``t̂(c)`` for feed."""
        if F.Task(task) == F.Task.SEARCH:
            if query_words is None:
                raise ValueError(f"The search head reads `{F.QUERY_WORDS}`. Received: None")
            query = self.query_encoder(query_words)
            return tf.repeat(query[:, tf.newaxis, :], tf.shape(candidates)[1], axis=1)
        return self.intent_generator(features["user0"], candidates, features["context"],
                                     training=training)

    def logits(self, features: Dict[str, tf.Tensor], intents: tf.Tensor, task: int,
               training: bool = False) -> tf.Tensor:
        """``MLP_task([u*; I(c); t(c)])``: logits ``[B, C]``."""
        x = tf.concat([features["pair"], intents], axis=-1)
        return tf.squeeze(self.heads[int(F.Task(task))](x, training=training), axis=-1)

    def head(self, features: Dict[str, tf.Tensor], candidates: tf.Tensor,
             query_words: Optional[tf.Tensor], task: int,
             training: bool = False) -> tf.Tensor:
        """Logits ``[B, C]`` of one task's head (the search head reads ``query_words``)."""
        intents = self.intents(features, candidates, query_words, task, training)
        return self.logits(features, intents, task, training)

    # -----------------------------------------------------------------------------------------
    def task_loss(self, batch: Dict[str, tf.Tensor], task: int,
                  negative_items: Optional[tf.Tensor] = None,
                  negative_queries: Optional[tf.Tensor] = None,
                  training: bool = False) -> Dict[str, tf.Tensor]:
        """``BCE + translation_weight · L_tr (+ generation_weight · L_sg on search)`` of one
        task's batch (``+ q_i_cl_weight · L_qi`` with the alignment on).

        Returns:
            Dict with the scalars ``bce``, ``translation``, ``generation`` (0 on feed), ``qi``
            (if enabled), ``total`` and the ``logits [B, C]``.
        """
        task = F.Task(task)
        extra = [batch[reader.CANDIDATES]]
        if self.config.use_query_item_alignment:
            if negative_items is None or negative_queries is None:
                negative_items, negative_queries = self._negatives()
            extra.append(negative_items)
        side = self.encode_user(batch, extra, training)
        candidates, labels = side["extra"][0], batch[reader.LABEL]
        features = self.candidate_features(side, candidates, training)
        query_words = batch.get(F.QUERY_WORDS)
        intents = self.intents(features, candidates, query_words, task, training)
        logits = self.logits(features, intents, task, training)
        bce = mean_bce(self.tasks[int(task)], batch, logits, training)
        translation = self.translation(side["user"], positive_mean(intents, labels), candidates,
                                       labels)
        generation = tf.constant(0.0)
        if task == F.Task.SEARCH:
            generated = self.intent_generator(side["user0"], candidates, side["context"],
                                              training=training)
            errors = tf.reduce_mean(tf.square(positive_mean(generated, labels)
                                              - tf.stop_gradient(intents[:, 0])), axis=-1)
            has_query = tf.reduce_any(tf.not_equal(query_words, F.PAD_ID), axis=-1)
            generation = masked_mean(errors[:, tf.newaxis], has_query, axis=0)[0]
        out = {"bce": bce, "translation": translation, "generation": generation,
               "logits": logits}
        total = (bce + self.translation_weight * translation
                 + self.generation_weight * generation)
        return self.with_query_item_loss(out, total, side, negative_queries)


@register_model("uditsr")
def build_uditsr(config: ExperimentConfig, vocab: Vocab) -> UDITSR:
    return build_seeded(UDITSR, config, vocab)
