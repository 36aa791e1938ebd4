"""`UserEncoder`: user categorical features -> user vector.

Shapes: `B` batch; `F` categorical features (5 on KuaiSAR: user id, onehot_feat1, onehot_feat2,
search_active_level, rec_active_level); `E` embedding size; `D` output size.
"""

from __future__ import annotations

from typing import Any, Dict, Sequence

import tensorflow as tf
import tf_keras as keras

from jsr_tf.layers import _checks


@keras.saving.register_keras_serializable(package="jsr_tf")
class UserEncoder(keras.layers.Layer):
    """`U = tanh(Dense(concat[emb_1(f_1), ..., emb_F(f_F)] -> D))` (spec/unisar.md §2).

    No padding row: every value, 0 included, is a real category and gets a trainable embedding.

    Args:
        vocabulary_sizes: Number of values of each feature, e.g. `(22700, 8, 3, 7, 4)`.
        embedding_dim: Embedding size `E` of every feature.
        output_dim: Output size `D`.
        embeddings_initializer: Initializer of the embedding tables.
        kernel_initializer: Initializer of the projection kernel.
        bias_initializer: Initializer of the projection bias.
        **kwargs: Base `Layer` arguments.

    Call arguments:
        inputs: Integer tensor `(B, F)`, column `k` holding feature `k` in
            `[0, vocabulary_sizes[k])`.

    Returns:
        Float tensor `(B, D)`.
    """

    def __init__(
        self,
        vocabulary_sizes: Sequence[int],
        embedding_dim: int,
        output_dim: int,
        embeddings_initializer: Any = "glorot_normal",
        kernel_initializer: Any = "glorot_normal",
        bias_initializer: Any = "zeros",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.vocabulary_sizes = _checks.positive_int_tuple("vocabulary_sizes", vocabulary_sizes)
        self.embedding_dim = _checks.positive_int("embedding_dim", embedding_dim)
        self.output_dim = _checks.positive_int("output_dim", output_dim)
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape: tf.TensorShape) -> None:
        input_shape = tf.TensorShape(input_shape)
        num_features = len(self.vocabulary_sizes)
        if input_shape.rank != 2 or input_shape[-1] not in (None, num_features):
            raise ValueError(
                f"`inputs` should have shape (B, {num_features}). "
                f"Received: `inputs.shape={input_shape}`")
        self.embeddings = [
            self.add_weight(
                name=f"feature_{k}_embeddings",
                shape=(size, self.embedding_dim),
                initializer=_checks.clone_initializer(self.embeddings_initializer),
            )
            for k, size in enumerate(self.vocabulary_sizes)
        ]
        self.projection = keras.layers.Dense(
            self.output_dim,
            activation="tanh",
            kernel_initializer=_checks.clone_initializer(self.kernel_initializer),
            bias_initializer=_checks.clone_initializer(self.bias_initializer),
            name="projection",
        )
        _checks.build_sublayer(
            self.projection, tf.TensorShape([None, num_features * self.embedding_dim]))
        super().build(input_shape)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        parts = [tf.gather(table, inputs[:, k]) for k, table in enumerate(self.embeddings)]
        return self.projection(tf.concat(parts, axis=-1))

    def compute_output_shape(self, input_shape: tf.TensorShape) -> tf.TensorShape:
        return tf.TensorShape(input_shape)[:1].concatenate([self.output_dim])

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update({
            "vocabulary_sizes": list(self.vocabulary_sizes),
            "embedding_dim": self.embedding_dim,
            "output_dim": self.output_dim,
            "embeddings_initializer": keras.initializers.serialize(self.embeddings_initializer),
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        })
        return config
