"""`masked_mean`: the mean of the valid slots of a sequence (0 where none is valid).

Shapes: `values (..., L, ..., D)`, `mask` = `values`' leading axes up to and including the pooled
axis; the pooled axis is removed.
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
