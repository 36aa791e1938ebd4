"""`CoAttentionSplit`: SESRec's co-attention and the positive/negative split of each history.

Shapes: `B` batch; `Lr` feed history slots (30); `Ls` search history slots (30); `D` model size.

SESRec (spec/related_models.md §2) lets the encoded feed history `R (B, Lr, D)` and search
history `S (B, Ls, D)` attend to each other once, then splits each history at the uniform weight
`1/n` into the behaviours that share the user's common interest (positive) and the rest
(negative):

```
A   = tanh(R W1 S^T)                                 # (B, Lr, Ls)
a_s = softmax_valid(sum_r (w_q . R_r) A[:, r, :])    # (B, Ls)
a_r = softmax_valid(sum_s (w_d . S_s) A[:, :, s])    # (B, Lr)
pos = valid & (a >= 1/n) ;  neg = valid & (a < 1/n)  # n = number of valid slots of the row
```

**Fallbacks.** An empty positive or negative set falls back to *all* valid slots (it happens at
length 1, where the single weight is 1, and when the weights are uniform, where every weight is
exactly `1/n`). A row with no valid slot gets all-zero weights and all-False masks.

**Padding.** Padding slots are zeroed before the co-attention, so the sums over `r` and `s` run
over valid slots only and padding contents never matter (the reference also sums over the
encoder outputs at padding slots; a named deviation). The softmax gives them weight 0.

**Gradients.** The masks are booleans computed from `stop_gradient(a)`: non-differentiable, and
computed the same way at inference. The weights `a_r`, `a_s` are differentiable (the triplet
anchor reads them); they are the only path by which `W1`, `w_q`, `w_d` learn.
"""

from __future__ import annotations

import enum
from typing import Any, Dict, Tuple

import tensorflow as tf
import tf_keras as keras

from jsr_tf.layers import _checks, pooling

# The reference's fill for invalid slots; finite, replaced (not added). Clamped to the lowest
# finite float16 by `pooling.safe_fill` (float32, bfloat16 and float64 use it as is).
MASK_FILL = -1e12


class CoAttentionKey(enum.StrEnum):
    """Keys of the dict `CoAttentionSplit` returns."""

    FEED_WEIGHTS = "feed_weights"  # float (B, Lr): a_r
    SEARCH_WEIGHTS = "search_weights"  # float (B, Ls): a_s
    FEED_POSITIVE = "feed_positive"  # bool (B, Lr)
    FEED_NEGATIVE = "feed_negative"  # bool (B, Lr)
    SEARCH_POSITIVE = "search_positive"  # bool (B, Ls)
    SEARCH_NEGATIVE = "search_negative"  # bool (B, Ls)


def softmax_valid(scores: tf.Tensor, valid: tf.Tensor) -> tf.Tensor:
    """`pooling.softmax_valid` with the reference's fill: 0 on invalid slots, zeros if none."""
    return pooling.softmax_valid(scores, valid, fill=MASK_FILL)


def split_by_weight(weights: tf.Tensor, valid: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """Positive (`a >= 1/n`) and negative (`a < 1/n`) valid slots, with the SESRec fallbacks.

    An empty positive or negative set becomes the set of all valid slots. Non-differentiable.

    Args:
        weights: Float tensor `(B, L)`, attention weights over the valid slots.
        valid: Bool tensor `(B, L)`, True for real slots.

    Returns:
        Bool tensors `(positive, negative)`, each `(B, L)`; both all-False on rows without a
        valid slot.
    """
    valid = tf.cast(valid, tf.bool)
    weights = tf.stop_gradient(weights)
    count = tf.reduce_sum(tf.cast(valid, weights.dtype), axis=-1, keepdims=True)
    threshold = tf.math.reciprocal_no_nan(count)  # 1/n, as the reference compares
    positive = tf.logical_and(valid, weights >= threshold)
    negative = tf.logical_and(valid, weights < threshold)
    positive = tf.where(tf.reduce_any(positive, axis=-1, keepdims=True), positive, valid)
    negative = tf.where(tf.reduce_any(negative, axis=-1, keepdims=True), negative, valid)
    return positive, negative


@keras.saving.register_keras_serializable(package="jsr_tf")
class CoAttentionSplit(keras.layers.Layer):
    """Co-attention between the feed and search histories, and their positive/negative split.

    Weights: the bilinear `W1 (D, D)` (`kernel`) and the two gate vectors `w_q (D,)`
    (`feed_gate`, read on `R`, weights the search slots) and `w_d (D,)` (`search_gate`, read on
    `S`, weights the feed slots). No other parameters.

    Args:
        kernel_initializer: Initializer of `W1`.
        gate_initializer: Initializer of `w_q` and `w_d`.
        **kwargs: Base `Layer` arguments.

    Call arguments:
        feed: Float tensor `(B, Lr, D)`, the encoded feed history `R`.
        search: Float tensor `(B, Ls, D)`, the encoded search history `S`.
        feed_valid: Bool tensor `(B, Lr)`, True for real feed slots.
        search_valid: Bool tensor `(B, Ls)`, True for real search slots.

    Returns:
        Dict keyed by `CoAttentionKey`: weights `a_r (B, Lr)`, `a_s (B, Ls)` (float) and the
        bool masks `(B, Lr)` / `(B, Ls)` of the positive and negative slots.
    """

    def __init__(self, kernel_initializer: Any = "glorot_normal",
                 gate_initializer: Any = "glorot_normal", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.gate_initializer = keras.initializers.get(gate_initializer)

    def build(self, feed_shape: tf.TensorShape) -> None:
        feed_shape = tf.TensorShape(feed_shape)
        if feed_shape.rank != 3:
            raise ValueError("`feed` should have rank 3 (B, Lr, D). "
                             f"Received: `feed.shape={feed_shape}`")
        dim = _checks.last_dim("feed", feed_shape)
        self.kernel = self.add_weight(
            name="kernel", shape=(dim, dim),
            initializer=_checks.clone_initializer(self.kernel_initializer))
        self.feed_gate = self.add_weight(
            name="feed_gate", shape=(dim,),
            initializer=_checks.clone_initializer(self.gate_initializer))
        self.search_gate = self.add_weight(
            name="search_gate", shape=(dim,),
            initializer=_checks.clone_initializer(self.gate_initializer))
        super().build(feed_shape)

    def call(self, feed: tf.Tensor, search: tf.Tensor, feed_valid: tf.Tensor,
             search_valid: tf.Tensor) -> Dict[str, tf.Tensor]:
        search = _checks.to_compute_dtype(self, search)
        if search.shape.rank != 3 or search.shape[-1] != feed.shape[-1]:
            raise ValueError("`search` should have shape (B, Ls, D) with the `D` of `feed`. "
                             f"Received: `search.shape={search.shape}`, "
                             f"`feed.shape={feed.shape}`")
        feed_valid = tf.cast(feed_valid, tf.bool)
        search_valid = tf.cast(search_valid, tf.bool)
        feed = feed * tf.cast(feed_valid, feed.dtype)[..., tf.newaxis]
        search = search * tf.cast(search_valid, search.dtype)[..., tf.newaxis]
        affinity = tf.tanh(tf.einsum("brd,de,bse->brs", feed, self.kernel, search))
        feed_gates = tf.einsum("brd,d->br", feed, self.feed_gate)  # w_q . R_r
        search_gates = tf.einsum("bsd,d->bs", search, self.search_gate)  # w_d . S_s
        search_weights = softmax_valid(tf.einsum("br,brs->bs", feed_gates, affinity),
                                       search_valid)
        feed_weights = softmax_valid(tf.einsum("bs,brs->br", search_gates, affinity),
                                     feed_valid)
        feed_positive, feed_negative = split_by_weight(feed_weights, feed_valid)
        search_positive, search_negative = split_by_weight(search_weights, search_valid)
        return {
            CoAttentionKey.FEED_WEIGHTS: feed_weights,
            CoAttentionKey.SEARCH_WEIGHTS: search_weights,
            CoAttentionKey.FEED_POSITIVE: feed_positive,
            CoAttentionKey.FEED_NEGATIVE: feed_negative,
            CoAttentionKey.SEARCH_POSITIVE: search_positive,
            CoAttentionKey.SEARCH_NEGATIVE: search_negative,
        }

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update({
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "gate_initializer": keras.initializers.serialize(self.gate_initializer),
        })
        return config
