"""`MLP`: a stack of Dense layers with activation and dropout (prediction heads, experts, towers).

Shapes: `...` any leading dimensions (`(B, C)` in UniSAR: scored per candidate); `F` input size.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import tensorflow as tf
import tf_keras as keras

from jsr_tf.layers import _checks


@keras.saving.register_keras_serializable(package="jsr_tf")
class MLP(keras.layers.Layer):
    """`Dense(units[0]) act Dropout ... Dense(units[-1]) [act Dropout]`.

    Every layer but the last is followed by `activation` and `Dropout(dropout)`; the last one is
    linear unless `activate_last=True`. UniSAR uses it three ways (spec/unisar.md §8):

    - prediction head: `MLP((200, 80, 1), dropout=0.1)` -> logits `(..., 1)`;
    - CGC expert: `MLP((64,), dropout=0.1, activate_last=True)`;
    - CGC tower: `MLP((128, 64), dropout=0.1, activate_last=True)`.

    Args:
        units: Output size of each Dense layer.
        activation: Activation after each hidden layer (and the last if `activate_last`).
        dropout: Dropout rate after each activation.
        activate_last: Whether the last layer also gets the activation and dropout.
        kernel_initializer: Initializer of every kernel.
        bias_initializer: Initializer of every bias.
        **kwargs: Base `Layer` arguments.

    Call arguments:
        inputs: Float tensor `(..., F)`.
        training: Python bool, enables dropout.

    Returns:
        Float tensor `(..., units[-1])`.
    """

    def __init__(
        self,
        units: Sequence[int],
        activation: Any = "relu",
        dropout: float = 0.0,
        activate_last: bool = False,
        kernel_initializer: Any = "glorot_normal",
        bias_initializer: Any = "zeros",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.units = _checks.positive_int_tuple("units", units)
        self.activation = keras.activations.get(activation)
        self.dropout = _checks.rate("dropout", dropout)
        if not isinstance(activate_last, bool):
            raise ValueError("`activate_last` should be a bool. "
                             f"Received: `activate_last={activate_last!r}`")
        self.activate_last = activate_last
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape: tf.TensorShape) -> None:
        shape = tf.TensorShape(input_shape)
        _checks.last_dim("inputs", shape)
        self._dense_layers = []
        self._dropout_layers = []
        for k, size in enumerate(self.units):
            activated = k < len(self.units) - 1 or self.activate_last
            dense = keras.layers.Dense(
                size,
                activation=self.activation if activated else None,
                kernel_initializer=_checks.clone_initializer(self.kernel_initializer),
                bias_initializer=_checks.clone_initializer(self.bias_initializer),
                name=f"dense_{k}",
                dtype=self.dtype_policy,
            )
            _checks.build_sublayer(dense, shape)
            shape = shape[:-1].concatenate([size])
            self._dense_layers.append(dense)
            self._dropout_layers.append(keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)
                                        if activated else None)
        super().build(input_shape)

    @property
    def dense_layers(self) -> List[keras.layers.Dense]:
        """The `Dense` layers in order (empty before `build`), e.g. for a caller that fuses
        several one-layer MLPs' matmuls into one (`CGC`)."""
        return list(getattr(self, "_dense_layers", []))

    def call(self, inputs: tf.Tensor, training: Optional[bool] = None) -> tf.Tensor:
        x = inputs
        for dense, dropout in zip(self._dense_layers, self._dropout_layers):
            x = dense(x)
            if dropout is not None:
                x = dropout(x, training=training)
        return x

    def compute_output_shape(self, input_shape: tf.TensorShape) -> tf.TensorShape:
        return tf.TensorShape(input_shape)[:-1].concatenate([self.units[-1]])

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update({
            "units": list(self.units),
            "activation": keras.activations.serialize(self.activation),
            "dropout": self.dropout,
            "activate_last": self.activate_last,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        })
        return config
