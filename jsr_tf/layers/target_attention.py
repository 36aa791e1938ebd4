"""`TargetAttention`: candidate-aware pooling of an encoded history (spec/unisar.md §7).

Shapes: `B` batch; `L` history slots (30); `C` candidates (5 in training, 100 in evaluation, any
number at serving); `D` model size (64).

The history side is computed once per row; candidates are scored against it with one einsum,
never by tiling the history per candidate (the reference builds `(B*C, L, D)` copies).
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional

import tensorflow as tf
import tf_keras as keras

from jsr_tf.layers import _checks, pooling

# Finite: an all-masked row must not produce NaN (spec/unisar.md §13.2). Used as is in float32,
# bfloat16 and float64, clamped to the lowest finite float16 by `pooling.safe_fill`.
MASK_FILL = -1e9


@keras.saving.register_keras_serializable(package="jsr_tf")
class TargetAttention(keras.layers.Layer):
    """`int[b,c] = sum_l softmax_l(F[b,l] W c[b,c]) F[b,l]`, invalid slots excluded.

    Scores `a = einsum("bld,de,bce->bcl", F, W_ta, E_c)`; invalid slots get `MASK_FILL` (-1e9;
    float16: its lowest finite value) before the softmax. A row with **no** valid slot (a user
    without history of this type) gets an exact zero interest vector instead of an average over
    padding, in every dtype.

    Args:
        kernel_initializer: Initializer of `W_ta (D, D)`. None (default) reproduces the
            reference: PyTorch `xavier_normal_` on its `(1, D, D)` tensor, i.e. an untruncated
            normal with std `sqrt(2 / (D*D + D))` (~0.022 for D = 64, spec/unisar.md §10).
        **kwargs: Base `Layer` arguments.

    Call arguments:
        history: Float tensor `(B, L, D)`, the encoded history `F`.
        candidates: Float tensor `(B, C, D)`, candidate item vectors `E_c`.
        mask: Bool tensor `(B, L)`, True for valid history slots.

    Returns:
        Float tensor `(B, C, D)`.
    """

    def __init__(self, kernel_initializer: Optional[Any] = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.kernel_initializer = (None if kernel_initializer is None
                                   else keras.initializers.get(kernel_initializer))

    def build(self, history_shape: tf.TensorShape) -> None:
        dim = _checks.last_dim("history", history_shape)
        initializer = self.kernel_initializer
        if initializer is None:
            initializer = keras.initializers.RandomNormal(stddev=math.sqrt(2.0 / (dim * dim + dim)))
        else:
            initializer = _checks.clone_initializer(initializer)
        self.kernel = self.add_weight(name="kernel", shape=(dim, dim), initializer=initializer)
        super().build(history_shape)

    def call(self, history: tf.Tensor, candidates: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
        candidates = _checks.to_compute_dtype(self, candidates)
        mask = tf.cast(mask, tf.bool)
        scores = tf.einsum("bld,de,bce->bcl", history, self.kernel, candidates)
        fill = pooling.safe_fill(MASK_FILL, scores.dtype)
        scores = tf.where(mask[:, tf.newaxis, :], scores, fill)
        weights = tf.nn.softmax(scores, axis=-1)
        interest = tf.einsum("bcl,bld->bcd", weights, history)
        has_slot = tf.reduce_any(mask, axis=-1)[:, tf.newaxis, tf.newaxis]
        return interest * tf.cast(has_slot, interest.dtype)

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update({
            "kernel_initializer": (None if self.kernel_initializer is None
                                   else keras.initializers.serialize(self.kernel_initializer)),
        })
        return config
