"""`ConcatEmbedding`: categorical features -> the concatenation of their embeddings.

Shapes: `B` batch; `F` categorical features; `E_k` embedding size of feature `k`.

SESRec's user vector (spec/related_models.md §2) is `u = concat(user feature embeddings)` with no
projection (package: user id 16 + four features x 4 = 32), unlike UniSAR's `UserEncoder`, which
projects the same concatenation. Both derive from `FeatureEmbeddingLayer` (the tables, the input
check, the concatenation, the output shape and the config plumbing).
"""

from __future__ import annotations

from typing import Any, Dict, Sequence, Tuple

import tensorflow as tf
import tf_keras as keras

from jsr_tf.layers import _checks


class FeatureEmbeddingLayer(keras.layers.Layer):
    """Base of the layers that embed `F` categorical features, one table each, and concatenate.

    No padding row: every value, 0 included, is a real category with a trainable embedding.
    Subclasses set `vocabulary_sizes`, `embeddings_initializer` and `output_dim`, call
    `build_tables` from `build` and `concat_tables` from `call`, and list their constructor
    arguments in `config_fields` (in `get_config` order).
    """

    vocabulary_sizes: Tuple[int, ...]

    def build_tables(self, input_shape: tf.TensorShape,
                     embedding_dims: Sequence[int]) -> tf.TensorShape:
        """Checks `input_shape` is `(B, F)` and creates `self.embeddings`.

        The tables are weights `feature_{k}_embeddings` of shape
        `(vocabulary_sizes[k], embedding_dims[k])`, each with its own copy of
        `embeddings_initializer`.

        Returns:
            `input_shape` as a `TensorShape`.
        """
        input_shape = tf.TensorShape(input_shape)
        num_features = len(self.vocabulary_sizes)
        if input_shape.rank != 2 or input_shape[-1] not in (None, num_features):
            raise ValueError(f"`inputs` should have shape (B, {num_features}). "
                             f"Received: `inputs.shape={input_shape}`")
        self.embeddings = [
            self.add_weight(name=f"feature_{k}_embeddings", shape=(size, dim),
                            initializer=_checks.clone_initializer(self.embeddings_initializer))
            for k, (size, dim) in enumerate(zip(self.vocabulary_sizes, embedding_dims))
        ]
        return input_shape

    def concat_tables(self, inputs: tf.Tensor) -> tf.Tensor:
        """`concat[emb_1(f_1), ..., emb_F(f_F)]` of integer `inputs (B, F)`: `(B, sum E_k)`."""
        return tf.concat([tf.gather(table, inputs[:, k])
                          for k, table in enumerate(self.embeddings)], axis=-1)

    def compute_output_shape(self, input_shape: tf.TensorShape) -> tf.TensorShape:
        return tf.TensorShape(input_shape)[:1].concatenate([self.output_dim])

    def config_fields(self) -> Dict[str, Any]:
        """The constructor arguments of the subclass, serialised."""
        raise NotImplementedError

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update(self.config_fields())
        return config


@keras.saving.register_keras_serializable(package="jsr_tf")
class ConcatEmbedding(FeatureEmbeddingLayer):
    """`concat[emb_1(f_1), ..., emb_F(f_F)]`, one table per feature, no projection.

    No padding row: every value, 0 included, is a real category with a trainable embedding.

    Args:
        vocabulary_sizes: Number of values of each feature, e.g. `(22700, 8, 3, 7, 4)`.
        embedding_dims: Embedding size of each feature, e.g. `(16, 4, 4, 4, 4)`.
        embeddings_initializer: Initializer of every table.
        **kwargs: Base `Layer` arguments.

    Call arguments:
        inputs: Integer tensor `(B, F)`, column `k` in `[0, vocabulary_sizes[k])`.

    Returns:
        Float tensor `(B, sum(embedding_dims))`.
    """

    def __init__(self, vocabulary_sizes: Sequence[int], embedding_dims: Sequence[int],
                 embeddings_initializer: Any = "glorot_normal", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.vocabulary_sizes = _checks.positive_int_tuple("vocabulary_sizes", vocabulary_sizes)
        self.embedding_dims = _checks.positive_int_tuple("embedding_dims", embedding_dims)
        if len(self.embedding_dims) != len(self.vocabulary_sizes):
            raise ValueError(
                "`embedding_dims` should have one entry per feature "
                f"({len(self.vocabulary_sizes)}). Received: `embedding_dims={embedding_dims!r}`")
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)

    @property
    def output_dim(self) -> int:
        """Width of the output, `sum(embedding_dims)`."""
        return sum(self.embedding_dims)

    def build(self, input_shape: tf.TensorShape) -> None:
        super().build(self.build_tables(input_shape, self.embedding_dims))

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return self.concat_tables(inputs)

    def config_fields(self) -> Dict[str, Any]:
        return {
            "vocabulary_sizes": list(self.vocabulary_sizes),
            "embedding_dims": list(self.embedding_dims),
            "embeddings_initializer": keras.initializers.serialize(self.embeddings_initializer),
        }
