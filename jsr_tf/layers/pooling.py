"""Masked reductions over sequence slots (Keras masks: True = valid / may attend).

- `masked_mean`: the mean of the valid slots (0 where none is valid). Shapes: `values (..., L,
  ..., D)`, `mask` = `values`' leading axes up to and including the pooled axis; the pooled axis
  is removed.
- `softmax_valid`: a softmax over the valid slots of the last axis (0 at invalid slots, and an
  all-zero row where none is valid, not a uniform one).
- `safe_fill`: the value put at invalid slots before a softmax, finite in the scores' dtype.
"""

from __future__ import annotations

from typing import Any, Sequence, Union

import tensorflow as tf


def safe_fill(fill: float, dtype: Any) -> tf.Tensor:
    """`fill` as a scalar of `dtype`, or the dtype's lowest (highest) finite value if it overflows.

    A masked softmax replaces invalid scores by a large negative `fill` (-1e9, -1e12). In float16
    (largest finite 65504) such a fill becomes -inf, and a row whose every slot is invalid then
    gives NaN; there the fill is clamped to `float16.min` (-65504), as Keras's own softmax
    masking does. float32, float64 and bfloat16 (float32's range) represent -1e9 and -1e12, so
    they get `fill` itself, cast to `dtype` as before: their results are unchanged.

    Args:
        fill: The fill value.
        dtype: Float dtype of the scores.

    Returns:
        Scalar tensor of `dtype`, finite.
    """
    dtype = tf.as_dtype(dtype)
    if abs(fill) > float(dtype.max):
        fill = float(dtype.min if fill < 0 else dtype.max)
    return tf.cast(fill, dtype)  # As the layers always cast it (through float32).


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
        fill: Value put at invalid slots before the softmax, clamped by `safe_fill` to a finite
            value of the scores' dtype (so an all-invalid row gives no NaN before it is zeroed).

    Returns:
        Float tensor like `scores`: 0 on invalid slots, each row summing to 1 (or 0 if empty).
    """
    valid = tf.cast(valid, tf.bool)
    weights = tf.nn.softmax(tf.where(valid, scores, safe_fill(fill, scores.dtype)), axis=-1)
    return weights * tf.cast(valid, weights.dtype)
