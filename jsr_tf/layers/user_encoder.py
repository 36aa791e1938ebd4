"""`UserEncoder`: user categorical features -> user vector.

Shapes: `B` batch; `F` categorical features (5 on KuaiSAR: user id, onehot_feat1, onehot_feat2,
search_active_level, rec_active_level); `E` embedding size; `D` output size.
"""

from __future__ import annotations

from typing import Any, Dict, Sequence

import tensorflow as tf
import tf_keras as keras

from jsr_tf.layers import _checks
from jsr_tf.layers.concat_embedding import FeatureEmbeddingLayer


@keras.saving.register_keras_serializable(package="jsr_tf")
class UserEncoder(FeatureEmbeddingLayer):
    """`U = tanh(Dense(concat[emb_1(f_1), ..., emb_F(f_F)] -> D))` (spec/unisar.md §2).

    The concatenation is `ConcatEmbedding`'s (`FeatureEmbeddingLayer`), with every table `E`
    wide.

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
        num_features = len(self.vocabulary_sizes)
        input_shape = self.build_tables(input_shape, (self.embedding_dim,) * num_features)
        self.projection = keras.layers.Dense(
            self.output_dim,
            activation="tanh",
            kernel_initializer=_checks.clone_initializer(self.kernel_initializer),
            bias_initializer=_checks.clone_initializer(self.bias_initializer),
            name="projection",
            dtype=self.dtype_policy,
        )
        _checks.build_sublayer(
            self.projection, tf.TensorShape([None, num_features * self.embedding_dim]))
        super().build(input_shape)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return self.projection(self.concat_tables(inputs))

    def config_fields(self) -> Dict[str, Any]:
        return {
            "vocabulary_sizes": list(self.vocabulary_sizes),
            "embedding_dim": self.embedding_dim,
            "output_dim": self.output_dim,
            "embeddings_initializer": keras.initializers.serialize(self.embeddings_initializer),
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        }
