"""Forward helpers: ``item_vectors`` (id-only tables give exact zeros for padding),
``encode_unique`` (one encoder pass per distinct id), ``item_table`` (every item encoded once, for
inference), ``user_rows`` and ``request_vector``.

Shapes: B rows; Lr = Ls history slots (the ``DataShape``); C candidates; d = ``hidden_dim``.
"""

from __future__ import annotations

from typing import Callable, List, Sequence

import jsr_tf  # noqa: F401
import numpy as np
import tensorflow as tf
import tf_keras as keras

from jsr_tf import features as F
from jsr_tf.layers.query_encoder import QueryEncoder
from jsr_tf.models.parts import Batch


def item_vectors(encoder: keras.layers.Layer, dense_ids: tf.Tensor,
                 item_features: str) -> tf.Tensor:
    """``encoder(dense_ids)``: float ``(..., d)``; with ``"id_only"`` exactly 0 for padding."""
    vectors = encoder(dense_ids)
    if item_features == "id_only":
        vectors *= tf.cast(tf.not_equal(dense_ids, F.PAD_ID), vectors.dtype)[..., tf.newaxis]
    return vectors


def encode_unique(encode: Callable[[tf.Tensor], tf.Tensor], dense_ids: Sequence[tf.Tensor],
                  width: int) -> List[tf.Tensor]:
    """``encode`` over several id tensors, each distinct id encoded once (dynamic shapes).

    Args:
        encode: Dense item indices ``(N,)`` → float ``(N, width)``.
        dense_ids: int64 tensors of dense item indices, any shapes.
        width: The vector width ``d``.

    Returns:
        Float tensors ``(*shape, d)``, one per input.
    """
    flat = tf.concat([tf.reshape(ids, [-1]) for ids in dense_ids], axis=0)
    unique, index = tf.unique(flat)
    vectors = tf.gather(encode(unique), index)
    out = []
    for ids, part in zip(dense_ids, tf.split(vectors, [tf.size(ids) for ids in dense_ids])):
        out.append(tf.reshape(part, tf.concat([tf.shape(ids), [width]], 0)))
    return out


def item_table(encode: Callable[[tf.Tensor], tf.Tensor], num_items: int,
               chunk: int = 8192) -> tf.Tensor:
    """``encode`` of every dense item index ``0 .. num_items - 1`` in chunks: ``[num_items, d]``
    (the inference-time item table of ``cache_item_vectors``)."""
    ids = np.arange(num_items, dtype=np.int64)
    return tf.concat([encode(tf.constant(ids[i:i + chunk])) for i in range(0, num_items, chunk)],
                     axis=0)


def user_rows(user_features: tf.Tensor, user_index: tf.Tensor) -> tf.Tensor:
    """int64 ``(B, 5)``: each row's dense user index, then its four features.

    Args:
        user_features: int64 ``[num_users, 4]`` (``user_feature_table``).
        user_index: int64 ``(B,)`` dense user indices.
    """
    return tf.concat([user_index[:, None], tf.gather(user_features, user_index)], axis=1)


def request_vector(query_encoder: QueryEncoder, empty_query: tf.Variable, batch: Batch,
                   task: int) -> tf.Tensor:
    """``Q(query_words)`` for the search task, the learned ``empty_query`` for feed: ``(B, d)``."""
    if F.Task(task) == F.Task.SEARCH:
        return query_encoder(batch[F.QUERY_WORDS])
    rows = tf.shape(batch[F.FEED_ITEMS])[0]
    return tf.tile(empty_query[tf.newaxis], [rows, 1])
