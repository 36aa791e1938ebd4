"""A tiny real model for testing training and evaluation machinery (not a baseline)."""

from __future__ import annotations

import jsr_tf  # noqa: F401
import tensorflow as tf
import tf_keras as keras

from jsr_tf import features as F
from jsr_tf.data import reader
from jsr_tf.keys import Inputs
from jsr_tf.models.base import JsrModel


class TinyModel(JsrModel):
    """Hashes raw item ids into a small table; scores candidates by a dot product with the mean
    of the feed history (plus the mean query-word embedding on search rows)."""

    def __init__(self, bins: int = 1024, dim: int = 8, search_weight: float = 0.1,
                 l2: float = 0.0, **kwargs) -> None:
        super().__init__(l2=l2, **kwargs)
        self.hash = keras.layers.Hashing(num_bins=bins)
        self.items = keras.layers.Embedding(bins, dim)
        self.words = keras.layers.Embedding(bins, dim)
        self.search_weight = search_weight
        self.bce = keras.losses.BinaryCrossentropy(from_logits=True)

    def score_prepared(self, batch, task, training=False):
        hist = batch[F.FEED_ITEMS]
        valid = tf.cast(hist > 0, tf.float32)[..., None]
        user = tf.reduce_sum(self.items(self.hash(hist)) * valid, 1) / tf.maximum(
            tf.reduce_sum(valid, 1), 1.0)
        if task == F.Task.SEARCH:
            q = batch[F.QUERY_WORDS]
            qv = tf.cast(q > 0, tf.float32)[..., None]
            user += tf.reduce_sum(self.words(self.hash(q)) * qv, 1) / tf.maximum(
                tf.reduce_sum(qv, 1), 1.0)
        cands = self.items(self.hash(batch[reader.CANDIDATES]))
        return tf.einsum("bd,bcd->bc", user, cands)

    def call_prepared(self, batch, training=False):
        return self.score_prepared(batch, F.Task.FEED, training)

    def loss_prepared(self, inputs, training=False):
        loss = 0.0
        if Inputs.FEED in inputs:
            b = inputs[Inputs.FEED]
            loss += self.bce(b[reader.LABEL], self.score_prepared(b, F.Task.FEED, training))
        if Inputs.SEARCH in inputs:
            b = inputs[Inputs.SEARCH]
            loss += self.search_weight * self.bce(b[reader.LABEL],
                                                  self.score_prepared(b, F.Task.SEARCH, training))
        return loss
