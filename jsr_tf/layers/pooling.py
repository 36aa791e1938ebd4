"""Masked reductions over sequence slots (Keras masks: True = valid / may attend).

- `masked_mean`: the mean of the valid slots (0 where none is valid). Shapes: `values (..., L,
  ..., D)`, `mask` = `values`' leading axes up to and including the pooled axis; the pooled axis
  is removed.
- `softmax_valid`: a softmax over the valid slots of the last axis (0 at invalid slots, and an
  all-zero row where none is valid, not a uniform one).
"""

from __future__ import annotations

from typing import Union, Sequence

import tensorflow as tf


def masked_mean(values: tf.Tensor, mask: tf.Tensor,
                axis: Union[int, Sequence[int]] = 1) -> tf.Tensor:
    """Mean of `values` over `axis` where `mask` is True; exactly 0 (and a 0 gradient) if none.

    Args:
        values: Float tensor `(..., D)`.
        mask: Bool tensor with the shape of `values` without its last axis.
        axis: Axis (or axes) of `mask` to pool over.

    Returns:
        `values` with the pooled axes removed.
    """
    weights = tf.cast(mask, values.dtype)[..., tf.newaxis]
    return tf.math.divide_no_nan(tf.reduce_sum(values * weights, axis=axis),
                                 tf.reduce_sum(weights, axis=axis))


def softmax_valid(scores: tf.Tensor, valid: tf.Tensor, fill: float = -1e9) -> tf.Tensor:
    """Softmax over the valid slots of the last axis; a row with no valid slot gives zeros.

    Args:
        scores: Float tensor `(..., L)`.
        valid: Bool tensor broadcastable to `scores`, True for slots that may be attended.
        fill: Finite value put at invalid slots before the softmax (finite, so an all-invalid
            row gives no NaN before it is zeroed).

    Returns:
        Float tensor like `scores`: 0 on invalid slots, each row summing to 1 (or 0 if empty).
    """
    valid = tf.cast(valid, tf.bool)
    weights = tf.nn.softmax(tf.where(valid, scores, tf.cast(fill, scores.dtype)), axis=-1)
    return weights * tf.cast(valid, weights.dtype)
