"""`TranslationContrastiveLoss`: UDITSR's TransE-style objective `u + t ≈ i` on a row's candidates.

Shapes: `B` batch; `C` candidates per row (1 positive + the stored negatives in training); `D`
model size.

For a row with inherent intent `u`, demand intent `t` (the query for search, the generated
intent of the positive for feed) and candidate items `i_c` labelled `y_c`:

```
dist_c = mean_D (u + t - i_c)^2                                   # (B, C)
L      = sum_{b, p, n} y_bp (1 - y_bn) softplus(dist_bp - dist_bn)
         / sum_{b, p, n} y_bp (1 - y_bn)
```

`softplus(dist_p - dist_n) = -log sigmoid(dist_n - dist_p)`, the paper's term
(spec/related_models.md §5), over every (positive, negative) pair of a row instead of one
uniform negative. A batch without any pair gives exactly 0.
"""

from __future__ import annotations

from typing import Any, Dict

import tensorflow as tf
import tf_keras as keras

from jsr_tf.layers import _checks


def translation_distance(user: tf.Tensor, intent: tf.Tensor, items: tf.Tensor) -> tf.Tensor:
    """`mean_D (u + t - i_c)^2`: `(B, D), (B, D), (B, C, D) -> (B, C)`."""
    return tf.reduce_mean(tf.square((user + intent)[:, tf.newaxis, :] - items), axis=-1)


@keras.saving.register_keras_serializable(package="jsr_tf")
class TranslationContrastiveLoss(keras.layers.Layer):
    """Mean over (positive, negative) candidate pairs of `softplus(dist_p - dist_n)`. No weights.

    Args:
        **kwargs: Base `Layer` arguments.

    Call arguments:
        user: Float tensor `(B, D)`, the inherent intent.
        intent: Float tensor `(B, D)`, the row's demand intent.
        items: Float tensor `(B, C, D)`, the candidates.
        labels: Float tensor `(B, C)`, 1 = positive, 0 = negative.

    Returns:
        Float scalar.
    """

    def call(self, user: tf.Tensor, intent: tf.Tensor, items: tf.Tensor,
             labels: tf.Tensor) -> tf.Tensor:
        user = _checks.to_compute_dtype(self, user)
        dist = translation_distance(user, _checks.to_compute_dtype(self, intent),
                                    _checks.to_compute_dtype(self, items))
        labels = tf.cast(labels, dist.dtype)
        pairs = labels[:, :, tf.newaxis] * (1.0 - labels[:, tf.newaxis, :])  # (B, P, N)
        losses = tf.nn.softplus(dist[:, :, tf.newaxis] - dist[:, tf.newaxis, :])
        return tf.math.divide_no_nan(tf.reduce_sum(pairs * losses), tf.reduce_sum(pairs))

    def get_config(self) -> Dict[str, Any]:
        return super().get_config()
