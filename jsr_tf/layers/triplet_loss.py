"""`InterestTripletLoss`: SESRec's interest-contrast triplet loss over one history.

Shapes: `B` batch; `L` history slots (30); `D` model size.

For one encoded history `X (B, L, D)` with co-attention weights `a (B, L)` and the positive /
negative masks of `CoAttentionSplit` (spec/related_models.md §2):

```
anchor   = sum_l a_l X_l                       # (B, D)
positive = masked_mean(X, positive_mask)       # (B, D)
negative = masked_mean(X, negative_mask)       # (B, D)
T = mean_b max(d(anchor, positive) - d(anchor, negative) + margin, 0)
```
with `d(x, y) = ||x - y + eps||_2`, PyTorch's `pairwise_distance` (the reference uses
`TripletMarginWithDistanceLoss` with its default distance, eps 1e-6). The eps keeps the
gradient finite where two vectors coincide: length-1 histories, uniform weights (both sets fall
back to all valid slots, so positive = negative) and empty histories (everything is 0). Such
rows contribute exactly `margin` with zero gradient; they stay in the batch mean, as in the
reference.
"""

from __future__ import annotations

from typing import Any, Dict

import tensorflow as tf
import tf_keras as keras

from jsr_tf.layers import _checks
from jsr_tf.layers.pooling import masked_mean

DISTANCE_EPSILON = 1e-6  # PyTorch pairwise_distance


def pairwise_distance(x: tf.Tensor, y: tf.Tensor,
                      epsilon: float = DISTANCE_EPSILON) -> tf.Tensor:
    """`||x - y + epsilon||_2` over the last axis (PyTorch `pairwise_distance`).

    Shapes: `(..., D), (..., D) -> (...)`.
    """
    return tf.norm(x - y + epsilon, axis=-1)


def triplet_margin_loss(anchor: tf.Tensor, positive: tf.Tensor, negative: tf.Tensor,
                        margin: float, epsilon: float = DISTANCE_EPSILON) -> tf.Tensor:
    """Per-row `max(d(a, p) - d(a, n) + margin, 0)`: `(B, D)` x 3 -> `(B,)`."""
    return tf.nn.relu(pairwise_distance(anchor, positive, epsilon)
                      - pairwise_distance(anchor, negative, epsilon) + margin)


@keras.saving.register_keras_serializable(package="jsr_tf")
class InterestTripletLoss(keras.layers.Layer):
    """`T = mean_b max(d(a.X, mean_pos X) - d(a.X, mean_neg X) + margin, 0)`. Has no weights.

    Args:
        margin: Triplet margin (0.1 in the package's SESRec).
        epsilon: Added to the difference inside the distance (PyTorch's 1e-6).
        **kwargs: Base `Layer` arguments.

    Call arguments:
        sequence: Float tensor `(B, L, D)`, the encoded history `X`.
        weights: Float tensor `(B, L)`, co-attention weights (the anchor's mixture).
        positive_mask: Bool tensor `(B, L)`, slots averaged into the positive.
        negative_mask: Bool tensor `(B, L)`, slots averaged into the negative.

    Returns:
        Float scalar, the mean over the `B` rows.
    """

    def __init__(self, margin: float = 0.1, epsilon: float = DISTANCE_EPSILON,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.margin = _checks.positive_float("margin", margin)
        self.epsilon = _checks.positive_float("epsilon", epsilon)

    def per_row(self, sequence: tf.Tensor, weights: tf.Tensor, positive_mask: tf.Tensor,
                negative_mask: tf.Tensor) -> tf.Tensor:
        """The loss of each row, `(B,)`."""
        anchor = tf.einsum("bl,bld->bd", tf.cast(weights, sequence.dtype), sequence)
        return triplet_margin_loss(anchor, masked_mean(sequence, positive_mask),
                                   masked_mean(sequence, negative_mask), self.margin,
                                   self.epsilon)

    def call(self, sequence: tf.Tensor, weights: tf.Tensor, positive_mask: tf.Tensor,
             negative_mask: tf.Tensor) -> tf.Tensor:
        return tf.reduce_mean(self.per_row(sequence, weights, positive_mask, negative_mask))

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update({"margin": self.margin, "epsilon": self.epsilon})
        return config
