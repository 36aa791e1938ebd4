"""`layer_norm`: a built `LayerNormalization`'s computation with a hand-written gradient.

Keras computes an unfused layer norm (its fused kernel needs epsilon >= 1.001e-5; PyTorch's
1e-5 is below it) through `tf.nn.moments` and `tf.nn.batch_normalization`, whose automatic
gradient makes about twenty passes over `(B, T, d)`. The transformer blocks call their norms
through this function instead (issue 14): the same weights and the same formula,

    y = (x - mean) / sqrt(var + eps) * gamma + beta      (mean, var over the last axis)

with the gradient written out: `dx = inv (dn - mean(dn) - n mean(dn n))`, `dn = dy gamma`,
`n = (x - mean) inv`. Values and gradients agree with Keras's to float32 round-off.
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras as keras


def layer_norm(layer: keras.layers.LayerNormalization, inputs: tf.Tensor) -> tf.Tensor:
    """``layer(inputs)`` for a built, last-axis, centred and scaled ``LayerNormalization``.

    Other configurations (another axis, no centre or scale) fall back to ``layer(inputs)``.

    Args:
        layer: The layer whose ``gamma``, ``beta`` and ``epsilon`` are used.
        inputs: Float tensor ``(..., d)``.

    Returns:
        Float tensor shaped and typed like ``inputs``.
    """
    rank = inputs.shape.rank
    if (not layer.built or layer.axis != [rank - 1] or not layer.center or not layer.scale
            or getattr(layer, "_fused", False)):
        return layer(inputs)
    dtype = inputs.dtype
    # A mixed policy (float32 variables) normalises half-precision inputs in float32, as Keras.
    compute = tf.float32 if dtype in (tf.float16, tf.bfloat16) and layer.dtype == "float32" \
        else tf.as_dtype(layer.compute_dtype)
    outputs = _normalize(tf.cast(inputs, compute), tf.cast(layer.gamma, compute),
                         tf.cast(layer.beta, compute), layer.epsilon)
    return tf.cast(outputs, dtype)


def _normalize(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, epsilon: float) -> tf.Tensor:
    batch_axes = list(range(x.shape.rank - 1))

    @tf.custom_gradient
    def normalize(x, gamma, beta):
        centred = x - tf.reduce_mean(x, axis=-1, keepdims=True)
        inv = tf.math.rsqrt(tf.reduce_mean(tf.square(centred), axis=-1, keepdims=True)
                            + tf.cast(epsilon, x.dtype))
        normed = centred * inv

        def grad(dy):
            dn = dy * gamma
            dx = inv * (dn - tf.reduce_mean(dn, axis=-1, keepdims=True)
                        - normed * tf.reduce_mean(dn * normed, axis=-1, keepdims=True))
            return (dx, tf.reduce_sum(dy * normed, axis=batch_axes),
                    tf.reduce_sum(dy, axis=batch_axes))

        return normed * gamma + beta, grad

    return normalize(x, gamma, beta)
