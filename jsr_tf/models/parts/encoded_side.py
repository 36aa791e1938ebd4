"""``EncodedSideMixin``: ``score_prepared``, ``call_prepared``, ``loss_prepared`` and ``L_qi`` of the models that
encode the user side once (UniSAR, SESRec, UDITSR).
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional, Tuple

import jsr_tf  # noqa: F401
import tensorflow as tf

from jsr_tf import features as F
from jsr_tf.data import reader
from jsr_tf.data.vocab import Vocab
from jsr_tf.keys import Outputs
from jsr_tf.models.parts import Batch
from jsr_tf.models.parts.builders import build_item_encoder, build_query_encoder, id_lookups
from jsr_tf.models.parts.losses import check_joint_inputs, infonce_negatives, joint_loss, optimizer_step
from jsr_tf.models.parts.tables import query_table, user_feature_table


class EncodedSideMixin:
    """``score_prepared``, ``call_prepared``, ``loss_prepared`` and the query–item InfoNCE term of the models that
    encode the user side once per row and score candidates against it (UniSAR, SESRec). Mix in
    before ``JsrModel``.

    The model provides ``encode_user(batch, extra_items, training)`` (a dict
    with ``queries [B,Ls,d]``, ``clicks [B,Ls,K,d]``, ``click_ids [B,Ls,K]`` and, under
    ``extra``, the vectors of the dense item tensors ``extra_items`` in order),
    ``candidate_features(side, candidates, training)`` (the task-independent head input, computed
    once when ``call`` scores both heads), ``head(features, candidates, query_words, task,
    training)``, ``task_loss(batch, task, negative_items, negative_queries, training)``,
    ``query_encoder``, ``config``, ``dynamic_shapes``, ``seed``,
    ``num_items``, ``_queries`` (``query_table``) and, with ``use_query_item_alignment``,
    ``query_item_alignment``; ``build_input_side`` creates the input-side ones.
    """

    def score_prepared(self, batch: Batch, task: int, training: bool = False) -> tf.Tensor:
        """Logits ``[B, C]`` of one task's head (the search head reads ``query_words``)."""
        side = self.encode_user(batch, [batch[reader.CANDIDATES]], training)
        return self.score_encoded(side, side["extra"][0], batch.get(F.QUERY_WORDS), task,
                                  training)

    def call_prepared(self, batch: Batch, training: bool = False) -> Dict[str, tf.Tensor]:
        """Both heads' logits ``[B, C]``; the user side and the candidates are encoded once.

        The search head reads ``query_words`` (an all-padding query gives ``Q`` of no words).
        """
        side = self.encode_user(batch, [batch[reader.CANDIDATES]], training)
        candidates = side["extra"][0]
        features = self.candidate_features(side, candidates, training)  # once for both heads
        return {Outputs.FEED_LOGITS: self.head(features, candidates, None, F.Task.FEED,
                                               training),
                Outputs.SEARCH_LOGITS: self.head(features, candidates, batch[F.QUERY_WORDS],
                                                 F.Task.SEARCH, training)}

    def score_encoded(self, side: Dict[str, tf.Tensor], candidates: tf.Tensor,
                      query_words: Optional[tf.Tensor], task: int,
                      training: bool = False) -> tf.Tensor:
        """Logits ``[B, C]`` of candidate vectors ``[B, C, d]`` against an encoded user side."""
        return self.head(self.candidate_features(side, candidates, training), candidates,
                         query_words, task, training)

    def build_input_side(self, vocab: Vocab, item_features: str = "unisar") -> Tuple[int, ...]:
        """Creates what turns a raw batch into vectors, in this order (seeded initialisation
        depends on it): the item, word and user ``IdLookup`` layers, ``num_items``, the user
        feature and query tables, ``query_encoder`` and ``item_encoder`` (``build_item_encoder``
        sharing ``query_encoder``). Call from ``__init__`` after setting ``config``.

        Returns:
            The sizes of the user tables (``user_feature_table``).
        """
        self.item_lookup, self.word_lookup, self.user_lookup = id_lookups(vocab, "item", "word",
                                                                          "user")
        self.num_items = vocab.num_items
        user_features, user_sizes = user_feature_table(vocab)
        self._user_features = tf.constant(user_features)
        self._queries = tf.constant(query_table(vocab))
        self.query_encoder = build_query_encoder(self.config, vocab)
        self.item_encoder = build_item_encoder(self.config, vocab, item_features,
                                               self.query_encoder)
        return user_sizes

    def _negatives(self) -> Tuple[tf.Tensor, tf.Tensor]:
        """This step's InfoNCE negatives: ``infonce_negatives`` keyed by ``(seed, optimizer
        step)``, so a step draws the same ones also after a resume and under XLA."""
        return infonce_negatives(self.seed, optimizer_step(self), self.config.num_qi_negatives,
                                 self.num_items, self._queries)

    def loss_prepared(self, inputs: Mapping[str, Batch], training: bool = False) -> tf.Tensor:
        """``L_feed + search_loss_weight · L_src`` (``joint_loss`` of the model's ``task_loss``)
        with one InfoNCE negative draw shared by both batches (none without the query–item
        alignment).

        Args:
            inputs: ``{Inputs.FEED: batch, Inputs.SEARCH: batch}``, either may be absent.
            training: Training step.
        """
        check_joint_inputs(inputs)
        negative_items, negative_queries = (self._negatives()
                                            if self.config.use_query_item_alignment
                                            else (None, None))
        return joint_loss(inputs, self.task_loss, self.config.search_loss_weight,
                          negative_items=negative_items, negative_queries=negative_queries,
                          training=training)

    def with_query_item_loss(self, out: Dict[str, tf.Tensor], total: tf.Tensor,
                             side: Dict[str, tf.Tensor],
                             negative_queries: Optional[tf.Tensor]) -> Dict[str, tf.Tensor]:
        """Completes a ``task_loss`` dict: ``qi`` (if enabled) and ``total``.

        Args:
            out: The task's loss terms so far (updated in place and returned).
            total: The task's loss so far.
            side: ``encode_user`` output; with the alignment on, ``extra[1]`` holds the vectors
                of the negative items.
            negative_queries: int64 ``[k_q, W]`` dense word indices of the negative queries.

        Returns:
            ``out`` with ``qi`` (``L_qi`` of the history's (query, click) pairs; the layer
            scores each session's and each distinct clicked item's negatives once) and ``total = total + q_i_cl_weight · L_qi``, or just
            ``total`` when the alignment is off.
        """
        c = self.config
        if c.use_query_item_alignment:
            click_ids = side["click_ids"]
            qi = self.query_item_alignment(side["queries"], side["clicks"],
                                           tf.not_equal(click_ids, F.PAD_ID),
                                           side["extra"][1], self.query_encoder(negative_queries),
                                           item_ids=click_ids)
            out["qi"] = qi
            total += c.q_i_cl_weight * qi
        out["total"] = total
        return out
