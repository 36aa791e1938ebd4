"""`PositionalEmbedding`: adds a learned position table to a sequence.

Shapes: `B` batch; `L` sequence length (<= `sequence_length`); `D` model size.
UniSAR uses three tables (spec/unisar.md §3): `P_g` (60 rows) gathered at the global positions
`gpos`, and `P_r`, `P_s` (30 rows each) added by slot index. Pads get positions too.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import tensorflow as tf
import tf_keras as keras

from jsr_tf.layers import _checks


@keras.saving.register_keras_serializable(package="jsr_tf")
class PositionalEmbedding(keras.layers.Layer):
    """Returns `inputs + P[positions]` with a learned table `P (sequence_length, D)`.

    Args:
        sequence_length: Rows of the position table.
        initializer: Initializer of the table (glorot-normal, spec/unisar.md §10).
        **kwargs: Base `Layer` arguments.

    Call arguments:
        inputs: Float tensor `(B, L, D)`.
        positions: Optional integer tensor `(B, L)` or `(L,)` of positions in
            `[0, sequence_length)`; defaults to `0 .. L-1`.

    Returns:
        Float tensor `(B, L, D)`.
    """

    def __init__(self, sequence_length: int, initializer: Any = "glorot_normal",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sequence_length = _checks.positive_int("sequence_length", sequence_length)
        self.initializer = keras.initializers.get(initializer)

    def build(self, input_shape: tf.TensorShape) -> None:
        input_shape = tf.TensorShape(input_shape)
        dim = _checks.last_dim("inputs", input_shape)
        if input_shape.rank != 3:
            raise ValueError(f"`inputs` should have rank 3 (B, L, D). "
                             f"Received: `inputs.shape={input_shape}`")
        if input_shape[1] is not None and input_shape[1] > self.sequence_length:
            raise ValueError(
                f"The sequence length of `inputs` should be at most "
                f"`sequence_length={self.sequence_length}`. Received: `inputs.shape={input_shape}`")
        self.position_embeddings = self.add_weight(
            name="position_embeddings",
            shape=(self.sequence_length, dim),
            initializer=_checks.clone_initializer(self.initializer),
        )
        super().build(input_shape)

    def call(self, inputs: tf.Tensor, positions: Optional[tf.Tensor] = None) -> tf.Tensor:
        if positions is None:
            positions = tf.range(tf.shape(inputs)[1])
        return inputs + tf.gather(self.position_embeddings, positions)

    def compute_output_shape(self, input_shape: tf.TensorShape) -> tf.TensorShape:
        return tf.TensorShape(input_shape)

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update({
            "sequence_length": self.sequence_length,
            "initializer": keras.initializers.serialize(self.initializer),
        })
        return config
