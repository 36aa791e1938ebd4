"""`SearchBehaviourEncoder`: one vector per history search session.

Shapes: `B` batch; `Ls` search history slots (30); `K` clicked items per session (5); `D` model
size.

The layer combines vectors the model has already computed, `q = Q(words)` and `i = I(clicks)`,
because the query-item alignment loss (spec/unisar.md §5b) needs the same raw vectors: the
model encodes the words and clicks once and feeds both consumers.
"""

from __future__ import annotations

from typing import Any, Optional

import tensorflow as tf
import tf_keras as keras

from jsr_tf.features import PAD_ID
from jsr_tf.layers import _checks


@keras.saving.register_keras_serializable(package="jsr_tf")
class SearchBehaviourEncoder(keras.layers.Layer):
    """`S_s = Q(words_s) + sum_k m_k I(click_k) / max(sum_k m_k, 1)`, padding sessions -> 0.

    `m_k = click_k != 0` (spec/unisar.md §2): a plain sum of the query vector and the mean clicked
    item, without projection. A padding session gives an exact zero vector (its query vector,
    `tanh(bias)` of an empty query, is masked out). Has no weights.

    Args:
        **kwargs: Base `Layer` arguments.

    Call arguments:
        query_vectors: Float tensor `(B, Ls, D)`, `Q(words)` of each session.
        click_vectors: Float tensor `(B, Ls, K, D)`, `I(click)` of each clicked item (0 for
            padding clicks, as `ItemEncoder` gives).
        click_ids: Integer tensor `(B, Ls, K)` of dense item indices, 0 = padding.
        session_mask: Optional bool tensor `(B, Ls)`, True for real sessions. Defaults to
            "at least one non-padding click" (every real session has one: sessions without a
            click carry their fallback item, spec/kuaisar_format.md).

    Returns:
        Float tensor `(B, Ls, D)`.
    """

    def call(
        self,
        query_vectors: tf.Tensor,
        click_vectors: tf.Tensor,
        click_ids: tf.Tensor,
        session_mask: Optional[tf.Tensor] = None,
    ) -> tf.Tensor:
        click_vectors = _checks.to_compute_dtype(self, click_vectors)
        click_mask = tf.cast(tf.not_equal(click_ids, PAD_ID), click_vectors.dtype)  # (B, Ls, K)
        clicked = tf.reduce_sum(click_vectors * click_mask[..., tf.newaxis], axis=-2)
        count = tf.maximum(tf.reduce_sum(click_mask, axis=-1, keepdims=True), 1.0)
        if session_mask is None:
            session_mask = tf.reduce_any(tf.not_equal(click_ids, PAD_ID), axis=-1)
        keep = tf.cast(session_mask, query_vectors.dtype)[..., tf.newaxis]
        return (query_vectors + clicked / count) * keep

    def compute_output_shape(self, input_shape: Any) -> tf.TensorShape:
        return tf.TensorShape(input_shape)
