"""`QueryEncoder`: word ids -> query vector (serves queries *and* item captions).

Shapes:
    `...`: any leading dimensions, e.g. `(B,)` for target queries, `(B, Ls)` for history sessions,
        `(B, C)` for candidate captions.
    `W`: words per query or caption (50 in the reference).
    `E`: word embedding size (32); `D`: output size (64).
"""

from __future__ import annotations

from typing import Any, Dict

import tensorflow as tf
import tf_keras as keras

from jsr_tf.features import PAD_ID
from jsr_tf.layers import _checks


def segment_mean_dense_gradient(table: tf.Tensor, words: tf.Tensor, rows: tf.Tensor,
                                num_rows: tf.Tensor) -> tf.Tensor:
    """Mean of ``table``'s rows ``words`` per output row, with a dense table gradient.

    The forward is one fused ``SparseSegmentMean`` (each word row read once, nothing
    materialised per word); the gradient is the same sparse-dense product TensorFlow writes for a
    ``sparse_dense_matmul`` (``A^T g`` with ``A[r, w] = 1 / count_r``), one dense ``(V, E)``
    tensor. Before, the forward was that ``sparse_dense_matmul`` too, about 2.5× slower on the
    item captions of a batch (issue 14); the values agree to float32 round-off.

    Args:
        table: Float ``(V, E)``, the word table (a tensor read from the variable).
        words: int64 ``(nnz,)``, the real words, grouped by row.
        rows: int64 ``(nnz,)``, each word's output row, sorted ascending.
        num_rows: int64 scalar, the number of output rows ``R``.

    Returns:
        Float ``(R, E)``: each row's mean, 0 for a row without words.
    """

    @tf.custom_gradient
    def mean(table):
        means = tf.sparse.segment_mean(table, words, rows, num_segments=num_rows)

        def grad(upstream):
            counts = tf.math.bincount(tf.cast(rows, tf.int32),
                                      minlength=tf.cast(num_rows, tf.int32), dtype=tf.float32)
            weights = tf.cast(tf.gather(1.0 / tf.maximum(counts, 1.0), rows), upstream.dtype)
            matrix = tf.SparseTensor(tf.stack([rows, words], axis=1), weights,
                                     tf.stack([num_rows, tf.shape(table, out_type=tf.int64)[0]]))
            return tf.sparse.sparse_dense_matmul(matrix, upstream, adjoint_a=True)

        return means, grad

    return mean(table)


@keras.saving.register_keras_serializable(package="jsr_tf")
class QueryEncoder(keras.layers.Layer):
    """Masked mean of word embeddings, then `tanh(Dense(E -> D))` (spec/unisar.md §2).

    The mean runs over non-zero word ids only and is 0 for an all-padding input (`divide_no_nan`),
    so an empty query encodes to `tanh(bias)`. The word table has no reserved rows of its own: word
    index 0 (padding) is excluded by the mask, index 1 is the OOV word.

    Args:
        vocabulary_size: Rows of the word table (dense word indices, padding and OOV included).
        embedding_dim: Word embedding size `E`.
        output_dim: Output size `D`.
        embeddings_initializer: Initializer of the word table.
        kernel_initializer: Initializer of the projection kernel.
        bias_initializer: Initializer of the projection bias.
        **kwargs: Base `Layer` arguments.

    Call arguments:
        inputs: Integer tensor `(..., W)` of dense word indices, 0 = padding.
        dense_gradient: Python bool: compute the mean as a fused segment mean whose gradient
            is dense (for large inputs such as a batch's item captions; see
            `mean_word_embedding`).

    Returns:
        Float tensor `(..., D)`.
    """

    def __init__(
        self,
        vocabulary_size: int,
        embedding_dim: int,
        output_dim: int,
        embeddings_initializer: Any = "glorot_normal",
        kernel_initializer: Any = "glorot_normal",
        bias_initializer: Any = "zeros",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.vocabulary_size = _checks.positive_int("vocabulary_size", vocabulary_size)
        self.embedding_dim = _checks.positive_int("embedding_dim", embedding_dim)
        self.output_dim = _checks.positive_int("output_dim", output_dim)
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape: tf.TensorShape) -> None:
        self.word_embeddings = self.add_weight(
            name="word_embeddings",
            shape=(self.vocabulary_size, self.embedding_dim),
            initializer=_checks.clone_initializer(self.embeddings_initializer),
        )
        self.projection = keras.layers.Dense(
            self.output_dim,
            activation="tanh",
            kernel_initializer=_checks.clone_initializer(self.kernel_initializer),
            bias_initializer=_checks.clone_initializer(self.bias_initializer),
            name="projection",
            dtype=self.dtype_policy,
        )
        _checks.build_sublayer(self.projection, tf.TensorShape([None, self.embedding_dim]))
        super().build(input_shape)

    def mean_word_embedding(self, inputs: tf.Tensor, dense_gradient: bool = False) -> tf.Tensor:
        """Masked mean of the word embeddings, `(..., W) -> (..., E)`; 0 for all-padding rows.

        Outside XLA only the real words are read (most slots of a caption or query are
        padding; issue 14), in one of two ways with the same values:

        - default: the real words' embeddings are gathered and summed per row (a segment sum);
          the table's gradient is a `(words, E)` slice, cheap for a few hundred thousand words;
        - `dense_gradient=True`: a fused segment mean (`segment_mean_dense_gradient`) whose
          gradient is the dense table shape, the sparse-dense product `A^T g` with `A` holding
          `1 / count` at each real word, written in one pass. Cheaper for the item captions
          (millions of words per batch), dearer for small inputs (the whole table is written).

        Inside an XLA-compiled function every slot is gathered and masked (fixed shapes). All
        agree up to float32 round-off.
        """
        valid = tf.not_equal(inputs, PAD_ID)  # (..., W)
        if _checks.in_xla_context():
            embeddings = tf.gather(self.word_embeddings, inputs)  # (..., W, E)
            mask = tf.cast(valid, embeddings.dtype)
            total = tf.reduce_sum(embeddings * mask[..., tf.newaxis], axis=-2)
            count = tf.reduce_sum(mask, axis=-1, keepdims=True)
            return tf.math.divide_no_nan(total, count)
        width = inputs.shape[-1] if inputs.shape[-1] is not None else tf.shape(inputs)[-1]
        rows = tf.reshape(tf.cast(inputs, tf.int64), [-1, width])
        flat_valid = tf.reshape(valid, [-1, width])
        positions = tf.where(flat_valid)  # (nnz, 2): (row, slot), row-major
        words = tf.gather_nd(rows, positions)
        num_rows = tf.shape(rows, out_type=tf.int64)[0]
        if dense_gradient:
            table = tf.convert_to_tensor(self.word_embeddings)  # compute dtype under a policy
            means = segment_mean_dense_gradient(table, words, positions[:, 0], num_rows)
        else:
            embeddings = tf.gather(self.word_embeddings, words)  # (nnz, E)
            total = tf.math.unsorted_segment_sum(embeddings, positions[:, 0], num_rows)
            count = tf.reduce_sum(tf.cast(flat_valid, total.dtype), axis=-1, keepdims=True)
            means = tf.math.divide_no_nan(total, count)
        return tf.reshape(means, tf.concat([tf.shape(inputs)[:-1], [self.embedding_dim]], 0))

    def call(self, inputs: tf.Tensor, dense_gradient: bool = False) -> tf.Tensor:
        return self.projection(self.mean_word_embedding(inputs, dense_gradient))

    def compute_output_shape(self, input_shape: tf.TensorShape) -> tf.TensorShape:
        return tf.TensorShape(input_shape)[:-1].concatenate([self.output_dim])

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update({
            "vocabulary_size": self.vocabulary_size,
            "embedding_dim": self.embedding_dim,
            "output_dim": self.output_dim,
            "embeddings_initializer": keras.initializers.serialize(self.embeddings_initializer),
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        })
        return config
