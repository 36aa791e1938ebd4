"""`QueryItemInfoNCE`: query <-> clicked item alignment over the search history (§5b).

Shapes: `B` batch; `Ls` search history slots (30); `K` clicks per session (5); `D` model size;
`N` item negatives, `M` query negatives (1024 each per step, shared by the step's two losses);
`P = B * Ls * K` pair slots.

The loss runs over **every** pair slot with 0/1 weights (fixed shapes, XLA-compatible; no
`boolean_mask`), so its cost is `P x (N + 1)` logits per direction whatever the number of real
pairs.
"""

from __future__ import annotations

from typing import Any, Dict

import tensorflow as tf
import tf_keras as keras

from jsr_tf.layers import _checks


@keras.saving.register_keras_serializable(package="jsr_tf")
class QueryItemInfoNCE(keras.layers.Layer):
    """`L_qi = (l(q, i, I(neg items)) + l(i, q, Q(neg queries))) / 2`, one `W_qi` and `tau`.

    `l(a, b+, N) = CE([tanh(a W b+), tanh(a W n_1), ..., tanh(a W n_N)] / tau, target 0)`,
    averaged over the valid pairs. The same `W` multiplies the *left* argument in both
    directions. Positives are not removed from the negatives (reference behaviour).

    Args:
        temperature: Initial value of the learnable temperature (`q_i_cl_temp`, 0.5 on KuaiSAR).
        kernel_initializer: Initializer of the bilinear `W (D, D)`.
        **kwargs: Base `Layer` arguments.

    Call arguments:
        queries: Float tensor `(B, Ls, D)`, `Q(words)` of each history session.
        items: Float tensor `(B, Ls, K, D)`, `I(click)` of each clicked item.
        pair_mask: Bool tensor `(B, Ls, K)`, True for real (session, click) pairs.
        negative_items: Float tensor `(N, D)`, item vectors of the step's item negatives.
        negative_queries: Float tensor `(M, D)`, query vectors of the step's query negatives.

    Returns:
        Float scalar (0 if the batch has no pair).
    """

    def __init__(self, temperature: float = 0.5, kernel_initializer: Any = "glorot_normal",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.temperature = _checks.positive_float("temperature", temperature)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, queries_shape: tf.TensorShape) -> None:
        dim = _checks.last_dim("queries", queries_shape)
        self.kernel = self.add_weight(
            name="kernel", shape=(dim, dim),
            initializer=_checks.clone_initializer(self.kernel_initializer))
        self.tau = self.add_weight(
            name="temperature", shape=(),
            initializer=keras.initializers.Constant(self.temperature))
        super().build(queries_shape)

    def _direction(self, anchors: tf.Tensor, positives: tf.Tensor,
                   negatives: tf.Tensor) -> tf.Tensor:
        """Per-pair cross-entropy `(P,)` of `[positive, negatives...]`, target 0."""
        projected = tf.matmul(anchors, self.kernel)  # (P, D)
        positive = tf.reduce_sum(projected * positives, axis=-1, keepdims=True)  # (P, 1)
        negative = tf.matmul(projected, negatives, transpose_b=True)  # (P, N)
        logits = tf.tanh(tf.concat([positive, negative], axis=-1)) / self.tau
        return tf.reduce_logsumexp(logits, axis=-1) - logits[:, 0]

    def call(self, queries: tf.Tensor, items: tf.Tensor, pair_mask: tf.Tensor,
             negative_items: tf.Tensor, negative_queries: tf.Tensor) -> tf.Tensor:
        items, negative_items, negative_queries = (
            _checks.to_compute_dtype(self, x) for x in (items, negative_items, negative_queries))
        dim = _checks.last_dim("queries", queries.shape)
        query_per_pair = tf.reshape(
            tf.broadcast_to(queries[..., tf.newaxis, :], tf.shape(items)), [-1, dim])
        item_per_pair = tf.reshape(items, [-1, dim])
        weights = tf.reshape(tf.cast(pair_mask, items.dtype), [-1])
        query_to_item = self._direction(query_per_pair, item_per_pair, negative_items)
        item_to_query = self._direction(item_per_pair, query_per_pair, negative_queries)
        total = tf.reduce_sum(weights)
        return 0.5 * (tf.math.divide_no_nan(tf.reduce_sum(query_to_item * weights), total)
                      + tf.math.divide_no_nan(tf.reduce_sum(item_to_query * weights), total))

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update({
            "temperature": self.temperature,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
        })
        return config
