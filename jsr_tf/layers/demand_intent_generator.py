"""`DemandIntentGenerator`: UDITSR's demand intent of a (user, item) pair, in the query space.

Shapes: `B` batch; `N` items per row (history edges or candidates); `Du`, `Di`, `Dc` the widths of
the user, item and context vectors; `D` = `units[-1]`, the query width.

A feed interaction has no query: UDITSR generates its demand intent from the user and the item
(and the user's search context), and supervises the generator on search interactions with the
real query (spec/related_models.md §5):

```
t_hat = output_activation(MLP([u; i_n; c]))     # per item n, (B, N, D)
```

The row vectors `u` and `c` are broadcast over the `N` items for the concatenation (the user side
itself is encoded once per row). The default output activation is `tanh`, the range of
`QueryEncoder`'s queries that supervise it.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import tensorflow as tf
import tf_keras as keras

from jsr_tf.layers import _checks
from jsr_tf.layers.mlp import MLP


@keras.saving.register_keras_serializable(package="jsr_tf")
class DemandIntentGenerator(keras.layers.Layer):
    """`t_hat = output_activation(MLP([u; i; c]))` for every item of a row.

    Args:
        units: Widths of the MLP's Dense layers; the last is the intent width `D`.
        activation: Activation after each hidden layer.
        output_activation: Activation of the output (`"tanh"`: the query encoder's range).
        dropout: Dropout after each hidden activation.
        kernel_initializer: Initializer of every kernel.
        bias_initializer: Initializer of every bias.
        **kwargs: Base `Layer` arguments.

    Call arguments:
        user: Float tensor `(B, Du)`, the inherent intent.
        items: Float tensor `(B, N, Di)`, the items.
        context: Float tensor `(B, Dc)`, the user's search context (e.g. the mean of its
            history queries; zeros for a user without searches).
        training: Python bool, enables dropout.

    Returns:
        Float tensor `(B, N, D)`.
    """

    def __init__(self, units: Sequence[int], activation: Any = "leaky_relu",
                 output_activation: Any = "tanh", dropout: float = 0.0,
                 kernel_initializer: Any = "glorot_normal", bias_initializer: Any = "zeros",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.units = _checks.positive_int_tuple("units", units)
        self.activation = keras.activations.get(activation)
        self.output_activation = keras.activations.get(output_activation)
        self.dropout = _checks.rate("dropout", dropout)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape: Any) -> None:
        self.mlp = MLP(self.units, activation=self.activation, dropout=self.dropout,
                       kernel_initializer=_checks.clone_initializer(self.kernel_initializer),
                       bias_initializer=_checks.clone_initializer(self.bias_initializer),
                       name="mlp", dtype=self.dtype_policy)
        super().build(input_shape)

    def call(self, user: tf.Tensor, items: tf.Tensor, context: tf.Tensor,
             training: Optional[bool] = None) -> tf.Tensor:
        user = _checks.to_compute_dtype(self, user)
        items = _checks.to_compute_dtype(self, items)
        context = _checks.to_compute_dtype(self, context)
        num = tf.shape(items)[1]

        def per_item(row: tf.Tensor) -> tf.Tensor:  # (B, W) -> (B, N, W)
            return tf.repeat(row[:, tf.newaxis, :], num, axis=1)

        x = tf.concat([per_item(user), items, per_item(context)], axis=-1)
        return self.output_activation(self.mlp(x, training=training))

    def compute_output_shape(self, input_shape: Any) -> tf.TensorShape:
        items = tf.TensorShape(input_shape[1])
        return items[:-1].concatenate([self.units[-1]])

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update({
            "units": list(self.units),
            "activation": keras.activations.serialize(self.activation),
            "output_activation": keras.activations.serialize(self.output_activation),
            "dropout": self.dropout,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        })
        return config
