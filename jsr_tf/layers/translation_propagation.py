"""`TranslationPropagation`: UDITSR's user-side dual-intent translation propagation, one hop over
the interactions a row carries.

Shapes: `B` batch; `E` edges (the row's history interactions); `D` model size.

UDITSR (Zhang et al., KDD 2024) places every interaction ⟨user, demand intent, item⟩ in one
space with `u + t ≈ i` and propagates on the user–item graph: a user receives `i - t` from each
of its edges, an item `u + t`. This layer is the user side over the edges of one example (its own
history before the target time, so no future information):

```
u_1 = mean_{e: mask_e} (i_e - t_e)        # exactly 0 for a row without edges
u*  = u_0 + hop_weight * u_1              # layer weights 1, 1/2 as in the paper
```

Mask contract (Keras): `mask[b, e]` True = edge `e` exists and is aggregated; False = padding.
The cost is `O(B · E · D)`, independent of the numbers of users and items.
"""

from __future__ import annotations

from typing import Any, Dict

import tensorflow as tf
import tf_keras as keras

from jsr_tf.layers import _checks
from jsr_tf.layers.pooling import masked_mean


@keras.saving.register_keras_serializable(package="jsr_tf")
class TranslationPropagation(keras.layers.Layer):
    """`u* = u_0 + hop_weight · mean_valid(i_e - t_e)`. Has no weights.

    Args:
        hop_weight: Weight of the propagated term (the paper's layer weight 1/2 for hop 1);
            0 switches the propagation off.
        **kwargs: Base `Layer` arguments.

    Call arguments:
        user: Float tensor `(B, D)`, the inherent intent `u_0`.
        items: Float tensor `(B, E, D)`, the item of each edge.
        intents: Float tensor `(B, E, D)`, the demand intent of each edge.
        mask: Bool tensor `(B, E)`, True = the edge exists.

    Returns:
        Float tensor `(B, D)`, the propagated user `u*`.
    """

    def __init__(self, hop_weight: float = 0.5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(hop_weight, (int, float)) or isinstance(hop_weight, bool) \
                or hop_weight < 0:
            raise ValueError("`hop_weight` should be a non-negative float. "
                             f"Received: `hop_weight={hop_weight!r}`")
        self.hop_weight = float(hop_weight)

    def call(self, user: tf.Tensor, items: tf.Tensor, intents: tf.Tensor,
             mask: tf.Tensor) -> tf.Tensor:
        user = _checks.to_compute_dtype(self, user)
        messages = (_checks.to_compute_dtype(self, items)
                    - _checks.to_compute_dtype(self, intents))
        hop = masked_mean(messages, tf.cast(mask, tf.bool), axis=1)
        return user + tf.cast(self.hop_weight, user.dtype) * hop

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update({"hop_weight": self.hop_weight})
        return config
