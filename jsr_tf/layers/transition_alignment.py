"""`TransitionAlignmentLoss`: NT-Xent between two views of the same history (spec/unisar.md §5a).

Shapes: `B` batch (the runtime size: feed and search batches differ); `L` history slots; `D`
model size.

UniSAR uses two instances: s2r <-> r2r (both end in feed slots) and r2s <-> s2s (both end in
search slots); `L_his` is their sum.
"""

from __future__ import annotations

from typing import Any, Dict

import tensorflow as tf
import tf_keras as keras

from jsr_tf.layers import _checks
from jsr_tf.layers.pooling import masked_mean, safe_fill

MASK_FILL = -1e9  # Excluded logits; clamped to the lowest finite float16 by `safe_fill`.


@keras.saving.register_keras_serializable(package="jsr_tf")
class TransitionAlignmentLoss(keras.layers.Layer):
    """NT-Xent with a bilinear similarity and a learnable temperature; returns a scalar loss.

    `z1 = masked_mean(first)`, `z2 = masked_mean(second)`, `Z = concat[z1; z2] (2B, D)`,
    `sim = tanh(Z W Z^T) / tau`. Row `i` has positive `i <-> B + i` and the other `2B - 2`
    entries as negatives (the diagonal is excluded); the loss is the mean softmax cross-entropy
    over the rows. The diagonal mask is built from the runtime batch size.

    Rows with no valid slot (`mask` all False: a user without history of this type) have no
    view to align: they are neither anchors nor negatives, and the mean runs over the other
    rows (0 if none). With every row valid this is exactly the reference loss.

    Args:
        temperature: Initial value of the learnable temperature `tau` (`his_cl_temp`, 0.1).
        kernel_initializer: Initializer of the bilinear `W (D, D)`.
        **kwargs: Base `Layer` arguments.

    Call arguments:
        first: Float tensor `(B, L, D)`, e.g. s2r.
        second: Float tensor `(B, L, D)`, e.g. r2r (same slots).
        mask: Bool tensor `(B, L)`, True for valid slots.

    Returns:
        Float scalar.
    """

    def __init__(self, temperature: float = 0.1, kernel_initializer: Any = "glorot_normal",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.temperature = _checks.positive_float("temperature", temperature)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, first_shape: tf.TensorShape) -> None:
        dim = _checks.last_dim("first", first_shape)
        self.kernel = self.add_weight(
            name="kernel", shape=(dim, dim),
            initializer=_checks.clone_initializer(self.kernel_initializer))
        self.tau = self.add_weight(
            name="temperature", shape=(),
            initializer=keras.initializers.Constant(self.temperature))
        super().build(first_shape)

    def call(self, first: tf.Tensor, second: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
        second = _checks.to_compute_dtype(self, second)
        mask = tf.cast(mask, tf.bool)
        views = tf.concat([masked_mean(first, mask), masked_mean(second, mask)], axis=0)
        row_valid = tf.reduce_any(mask, axis=1)
        valid = tf.concat([row_valid, row_valid], axis=0)  # (2B,)
        logits = tf.tanh(tf.matmul(tf.matmul(views, self.kernel), views, transpose_b=True))
        logits = logits / self.tau
        num_rows = tf.shape(views)[0]
        rows = tf.range(num_rows)
        labels = (rows + num_rows // 2) % num_rows
        allowed = tf.logical_and(tf.not_equal(rows[:, tf.newaxis], rows[tf.newaxis, :]),
                                 valid[tf.newaxis, :])
        logits = tf.where(allowed, logits, safe_fill(MASK_FILL, logits.dtype))
        losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        weights = tf.cast(valid, losses.dtype)
        return tf.math.divide_no_nan(tf.reduce_sum(losses * weights), tf.reduce_sum(weights))

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update({
            "temperature": self.temperature,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
        })
        return config
