"""`MultiMaskTargetAttention`: one bilinear target attention, pooled under several slot masks.

Shapes: `B` batch; `L` history slots (30); `C` candidates (any number); `D` model size; `M`
masks (SESRec: 3 = all valid, positive, negative).

SESRec (spec/related_models.md §2) pools each encoded history three times with one `W_t`: over
all valid slots, over the positive and over the negative slots of the co-attention split, and
concatenates the three interests (`h_R, h_S in R^{3D}`). The scores are computed once per row
and candidate with an einsum (no tiling per candidate); only the softmax is repeated per mask.
"""

from __future__ import annotations

from typing import Any, Dict, Sequence

import tensorflow as tf
import tf_keras as keras

from jsr_tf.layers import _checks, pooling
from jsr_tf.layers.target_attention import MASK_FILL


@keras.saving.register_keras_serializable(package="jsr_tf")
class MultiMaskTargetAttention(keras.layers.Layer):
    """`h[b,c] = concat_m sum_l softmax_l(F[b,l] W c[b,c] | mask_m) F[b,l]`.

    Scores `a = einsum("bld,de,bce->bcl", F, W, E_c)`; for each mask the masked-out slots get
    `MASK_FILL` (-1e9; float16: its lowest finite value) before the softmax. A row whose mask is
    empty gets an exact zero vector for that pool, in every dtype (each pool equals
    `TargetAttention` with the same kernel and that mask).

    Args:
        kernel_initializer: Initializer of `W (D, D)`.
        **kwargs: Base `Layer` arguments.

    Call arguments:
        history: Float tensor `(B, L, D)`, the encoded history.
        candidates: Float tensor `(B, C, D)`, candidate item vectors.
        masks: Non-empty sequence of `M` bool tensors `(B, L)`, True = pooled slot.

    Returns:
        Float tensor `(B, C, M * D)`: the pools in the order of `masks`.
    """

    def __init__(self, kernel_initializer: Any = "glorot_normal", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, history_shape: tf.TensorShape) -> None:
        dim = _checks.last_dim("history", history_shape)
        self.kernel = self.add_weight(
            name="kernel", shape=(dim, dim),
            initializer=_checks.clone_initializer(self.kernel_initializer))
        super().build(history_shape)

    def call(self, history: tf.Tensor, candidates: tf.Tensor,
             masks: Sequence[tf.Tensor]) -> tf.Tensor:
        if not masks:
            raise ValueError(f"`masks` should be a non-empty sequence. Received: `masks={masks}`")
        candidates = _checks.to_compute_dtype(self, candidates)
        scores = tf.einsum("bld,de,bce->bcl", history, self.kernel, candidates)
        fill = pooling.safe_fill(MASK_FILL, scores.dtype)
        pools = []
        for mask in masks:
            mask = tf.cast(mask, tf.bool)
            masked = tf.where(mask[:, tf.newaxis, :], scores, fill)
            interest = tf.einsum("bcl,bld->bcd", tf.nn.softmax(masked, axis=-1), history)
            has_slot = tf.reduce_any(mask, axis=-1)[:, tf.newaxis, tf.newaxis]
            pools.append(interest * tf.cast(has_slot, interest.dtype))
        return tf.concat(pools, axis=-1)

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update({
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
        })
        return config
