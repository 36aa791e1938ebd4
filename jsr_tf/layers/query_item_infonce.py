"""`QueryItemInfoNCE`: query <-> clicked item alignment over the search history (§5b).

Shapes: `B` batch; `Ls` search history slots (30); `K` clicks per session (5); `D` model size;
`N` item negatives, `M` query negatives (1024 each per step, shared by the step's two losses);
`P` real (session, click) pairs; `S` sessions with a pair; `U` distinct clicked items.

Each pair's cross-entropy over `[positive, negatives...]` is `logaddexp(pos, LSE(negatives))
- pos`, and the negatives' log-sum-exp depends only on the *anchor*: the session's query in the
query -> item direction, the clicked item in the item -> query direction. So it is computed once
per session (`S x N` logits instead of `P x N`) and once per distinct clicked item (`U x M`),
then gathered per pair; only the positives are per pair. The values are those of the per-pair
formula up to float32 round-off (issue 14: about half the logits on KuaiSAR-like batches).

Outside XLA the layer works on the real pairs only (`tf.where`, `tf.unique`); inside an
XLA-compiled function it keeps fixed shapes: every session slot, every pair slot with 0/1
weights.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import tensorflow as tf
import tf_keras as keras

from jsr_tf.layers import _checks


def _loss_dtype(dtype: tf.DType) -> tf.DType:
    """The dtype of the InfoNCE's element-wise work and result: float32 for half precision."""
    return tf.float32 if dtype in (tf.float16, tf.bfloat16) else dtype


@tf.custom_gradient
def tanh_logsumexp(anchors: tf.Tensor, negatives: tf.Tensor, scale: tf.Tensor):
    """`logsumexp(tanh(anchors @ negatives^T) * scale, axis=-1)` with a hand-written gradient.

    The `(A, N)` logits are the InfoNCE's largest tensors; TensorFlow's own gradient of this
    chain (the division by `tau`, `reduce_logsumexp`'s broadcasts) makes about twenty passes over
    them, this one about eight: `softmax = exp(x - lse)`, `dx = g softmax`,
    `d scale = sum(dx t)`, `dz = dx scale (1 - t^2)`, then two matmuls.

    Args:
        anchors: Float `(A, D)`, the projected anchors `a W`.
        negatives: Float `(N, D)`.
        scale: Float scalar, `1 / tau`, in the result's dtype.

    Returns:
        `(A,)`, float32 for half-precision inputs, else their dtype.
    """
    with tf.name_scope("tanh_logsumexp"):  # the gradient below runs outside the layer's scope
        # The matmuls run in the inputs' dtype (bfloat16 under train.precision=mixed_bfloat16),
        # the element-wise work and the result in float32 (a no-op for float32 inputs).
        t = tf.tanh(tf.cast(tf.matmul(anchors, negatives, transpose_b=True),
                            _loss_dtype(anchors.dtype)))  # (A, N)
        x = t * scale
        peak = tf.reduce_max(x, axis=-1, keepdims=True)
        lse = tf.math.log(tf.reduce_sum(tf.exp(x - peak), axis=-1, keepdims=True)) + peak

    def grad(upstream):
        with tf.name_scope("tanh_logsumexp_grad"):
            upstream = tf.convert_to_tensor(upstream)  # gathered per pair: may be IndexedSlices
            dx = tf.exp(x - lse) * upstream[:, tf.newaxis]  # (A, N)
            d_scale = tf.reduce_sum(dx * t)
            dz = tf.cast(dx * scale * (1.0 - tf.square(t)), anchors.dtype)
            return (tf.matmul(dz, negatives), tf.matmul(dz, anchors, transpose_a=True), d_scale)

    return tf.squeeze(lse, axis=-1), grad


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
        item_ids: Optional integer tensor `(B, Ls, K)`, the clicked items' ids. Given, the
            item -> query negatives are scored once per distinct id; the caller promises that
            equal ids carry equal vectors (one item encoder).

    Returns:
        Float scalar (0 if the batch has no pair): in the compute dtype, but float32 when that is
        float16 or bfloat16 (the matmuls run in half precision, the log-sum-exp does not).
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

    def _direction(self, anchors: tf.Tensor, anchor_index: tf.Tensor, positives: tf.Tensor,
                   negatives: tf.Tensor) -> tf.Tensor:
        """Per-pair `CE([tanh(a W b+), tanh(a W n_1), ...] / tau, 0)`, `(P,)`.

        Args:
            anchors: `(A, D)`, each distinct anchor once (sessions, or distinct clicked items).
            anchor_index: int `(P,)`, each pair's anchor row.
            positives: `(P, D)`, each pair's positive.
            negatives: `(N, D)`.
        """
        dtype = _loss_dtype(anchors.dtype)
        scale = 1.0 / tf.cast(self.tau, dtype)
        projected = tf.matmul(anchors, self.kernel)  # once per anchor, shared by both terms
        negative_lse = tf.gather(tanh_logsumexp(projected, negatives, scale), anchor_index)
        positive = tf.tanh(tf.cast(tf.reduce_sum(tf.gather(projected, anchor_index) * positives,
                                                 axis=-1), dtype)) * scale
        return tf.reduce_logsumexp(tf.stack([positive, negative_lse], axis=-1), axis=-1) - positive

    def call(self, queries: tf.Tensor, items: tf.Tensor, pair_mask: tf.Tensor,
             negative_items: tf.Tensor, negative_queries: tf.Tensor,
             item_ids: Optional[tf.Tensor] = None) -> tf.Tensor:
        items, negative_items, negative_queries = (
            _checks.to_compute_dtype(self, x) for x in (items, negative_items, negative_queries))
        dim = _checks.last_dim("queries", queries.shape)
        pair_mask = tf.cast(pair_mask, tf.bool)
        if _checks.in_xla_context():
            return self._fixed_shapes(queries, items, pair_mask, negative_items,
                                      negative_queries, dim)
        pairs = tf.where(pair_mask)  # (P, 3): row, session, click
        has_pair = tf.reduce_any(pair_mask, axis=-1)  # (B, Ls)
        sessions = tf.where(has_pair)  # (S, 2)
        # Index of each pair's session among `sessions` (row-major order, as tf.where).
        session_index = tf.gather_nd(
            tf.reshape(tf.cumsum(tf.reshape(tf.cast(has_pair, tf.int64), [-1])) - 1,
                       tf.shape(has_pair)), pairs[:, :2])
        session_queries = tf.gather_nd(queries, sessions)  # (S, D)
        pair_items = tf.gather_nd(items, pairs)  # (P, D)
        query_to_item = self._direction(session_queries, session_index, pair_items,
                                        negative_items)
        if item_ids is None:  # no ids: every pair's item is its own anchor
            anchor_items, item_index = pair_items, tf.range(tf.shape(pairs)[0])
        else:  # equal ids have equal vectors: one anchor per distinct clicked item
            distinct, item_index = tf.unique(tf.gather_nd(item_ids, pairs))
            first = tf.math.unsorted_segment_min(tf.range(tf.shape(pairs)[0]), item_index,
                                                 tf.shape(distinct)[0])
            anchor_items = tf.gather(pair_items, first)
        item_to_query = self._direction(anchor_items, item_index,
                                        tf.gather(session_queries, session_index),
                                        negative_queries)
        count = tf.cast(tf.shape(pairs)[0], query_to_item.dtype)
        return 0.5 * tf.math.divide_no_nan(
            tf.reduce_sum(query_to_item) + tf.reduce_sum(item_to_query), count)

    def _fixed_shapes(self, queries, items, pair_mask, negative_items, negative_queries,
                      dim):
        """The XLA path: every session slot and every pair slot, 0/1 weights."""
        clicks = tf.shape(items)[-2]
        session_queries = tf.reshape(queries, [-1, dim])  # (B*Ls, D)
        pair_items = tf.reshape(items, [-1, dim])  # (B*Ls*K, D)
        session_index = tf.repeat(tf.range(tf.shape(session_queries)[0]), clicks)
        query_to_item = self._direction(session_queries, session_index, pair_items,
                                        negative_items)
        item_to_query = self._direction(pair_items, tf.range(tf.shape(pair_items)[0]),
                                        tf.gather(session_queries, session_index),
                                        negative_queries)
        weights = tf.reshape(tf.cast(pair_mask, query_to_item.dtype), [-1])
        total = tf.reduce_sum(weights)
        return 0.5 * tf.math.divide_no_nan(
            tf.reduce_sum((query_to_item + item_to_query) * weights), total)

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update({
            "temperature": self.temperature,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
        })
        return config
