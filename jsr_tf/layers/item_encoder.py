"""`ItemEncoder`: dense item index -> item vector, with the item side tables held by the layer.

Shapes:
    `...`: any leading dimensions (`(B, Lr)` feed history, `(B, Ls, K)` clicks, `(B, C)`
        candidates, `(N,)` negatives).
    `N`: item indices (vocabulary + padding + OOV); `W`: caption words; `F`: categorical side
        features (KuaiSAR: cat1, cat2); `E`: embedding size; `D`: output size.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Sequence

import numpy as np
import tensorflow as tf
import tf_keras as keras

from jsr_tf.features import PAD_ID
from jsr_tf.layers import _checks
from jsr_tf.layers.query_encoder import QueryEncoder


def _zero_first_row(initializer: Any) -> Callable[..., tf.Tensor]:
    """Wraps an initializer so that row 0 (padding) starts at exactly 0 (spec/unisar.md §10)."""

    def init(shape: Sequence[int], dtype: Any = None, **kwargs: Any) -> tf.Tensor:
        values = initializer(shape, dtype=dtype, **kwargs)
        keep = tf.concat([tf.zeros([1], values.dtype), tf.ones([shape[0] - 1], values.dtype)], 0)
        return values * keep[:, tf.newaxis]

    return init


def _constant_table(values: Optional[np.ndarray]) -> Callable[..., tf.Tensor]:
    def init(shape: Sequence[int], dtype: Any = None, **kwargs: Any) -> tf.Tensor:
        if values is None:
            return tf.zeros(shape, dtype)
        return tf.constant(values, dtype=dtype)

    return init


@keras.saving.register_keras_serializable(package="jsr_tf")
class ItemEncoder(keras.layers.Layer):
    """`I(i) = tanh(Dense(concat[id_emb(i), Q(caption_i), cat_1(i), ...] -> D)) * (i != 0)`.

    KuaiSAR: `E + D + E + E = 160 -> 64`; Amazon (id only): `32 -> 64` (spec/unisar.md §2).
    Padding (index 0) encodes to an exact zero vector, not `tanh(bias)`.

    **Side tables.** The caption words `(N, W)` and categories `(N, F)` of every item are
    constant, non-trainable int32 weights of this layer, indexed by the dense item index, so a
    request needs only item ids and the tables are saved with the model's weights. Their
    contents are constructor arguments (`caption_words`, `item_categories`) but **not** part of
    `get_config()` (hundreds of MB for KuaiSAR); a layer rebuilt by `from_config` starts with
    zero tables that `set_weights`, a checkpoint or a SavedModel restore fills.

    The caption encoder is *injected* (`query_encoder`): pass the model's `QueryEncoder` so that
    queries and captions share one word table and projection. `get_config()` serialises it, so a
    layer rebuilt from config alone owns a private copy.

    Args:
        num_items: Rows of the item id table `N` (dense indices: padding, OOV, vocabulary).
        embedding_dim: Id and category embedding size `E`.
        output_dim: Output size `D`.
        query_encoder: The shared `QueryEncoder` for captions, or None for no caption.
        caption_length: Caption words per item `W`; required with `query_encoder`, else 0.
        category_sizes: Number of values of each categorical side feature, e.g. `(38, 297)`.
        caption_words: Optional int array `(num_items, caption_length)` of dense word indices.
        item_categories: Optional int array `(num_items, len(category_sizes))` of category
            values; row 0 (padding) should be 0.
        embeddings_initializer: Initializer of the id and category tables (row 0 is zeroed).
        kernel_initializer: Initializer of the projection kernel.
        bias_initializer: Initializer of the projection bias.
        **kwargs: Base `Layer` arguments.

    Call arguments:
        inputs: Integer tensor `(...)` of dense item indices, 0 = padding.

    Returns:
        Float tensor `(..., D)`; exactly 0 where `inputs == 0`.
    """

    def __init__(
        self,
        num_items: int,
        embedding_dim: int,
        output_dim: int,
        query_encoder: Optional[QueryEncoder] = None,
        caption_length: int = 0,
        category_sizes: Sequence[int] = (),
        caption_words: Optional[np.ndarray] = None,
        item_categories: Optional[np.ndarray] = None,
        embeddings_initializer: Any = "glorot_normal",
        kernel_initializer: Any = "glorot_normal",
        bias_initializer: Any = "zeros",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_items = _checks.positive_int("num_items", num_items)
        self.embedding_dim = _checks.positive_int("embedding_dim", embedding_dim)
        self.output_dim = _checks.positive_int("output_dim", output_dim)
        self.caption_length = _checks.non_negative_int("caption_length", caption_length)
        self.category_sizes = _checks.positive_int_tuple(
            "category_sizes", category_sizes, allow_empty=True)
        if isinstance(query_encoder, dict):
            query_encoder = keras.layers.deserialize(query_encoder)
        if query_encoder is not None and not isinstance(query_encoder, QueryEncoder):
            raise ValueError(
                "`query_encoder` should be a `QueryEncoder` or None. "
                f"Received: `query_encoder={query_encoder!r}`")
        if (query_encoder is None) != (self.caption_length == 0):
            raise ValueError(
                "`caption_length` should be positive exactly when a `query_encoder` is given. "
                f"Received: `caption_length={caption_length}`, `query_encoder={query_encoder!r}`")
        self.query_encoder = query_encoder
        self._caption_words = self._check_table(
            "caption_words", caption_words, self.caption_length)
        self._item_categories = self._check_table(
            "item_categories", item_categories, len(self.category_sizes))
        if self._item_categories is not None:
            for k, size in enumerate(self.category_sizes):
                column = self._item_categories[:, k]
                if column.min(initial=0) < 0 or column.max(initial=0) >= size:
                    raise ValueError(
                        f"`item_categories[:, {k}]` should lie in [0, {size}). Received: values "
                        f"in [{column.min()}, {column.max()}]")
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def _check_table(self, name: str, values: Optional[np.ndarray],
                     columns: int) -> Optional[np.ndarray]:
        if values is None:
            return None
        values = np.asarray(values)
        if values.shape != (self.num_items, columns) or not np.issubdtype(values.dtype, np.integer):
            raise ValueError(
                f"`{name}` should be an integer array of shape ({self.num_items}, {columns}). "
                f"Received: `{name}` with shape {values.shape} and dtype {values.dtype}")
        return values.astype(np.int32)

    def _embedding_table(self, name: str, rows: int) -> tf.Variable:
        return self.add_weight(
            name=name,
            shape=(rows, self.embedding_dim),
            initializer=_zero_first_row(_checks.clone_initializer(self.embeddings_initializer)),
        )

    def build(self, input_shape: tf.TensorShape) -> None:
        self.item_embeddings = self._embedding_table("item_embeddings", self.num_items)
        self.category_embeddings = [
            self._embedding_table(f"category_{k}_embeddings", size)
            for k, size in enumerate(self.category_sizes)
        ]
        input_dim = self.embedding_dim * (1 + len(self.category_sizes))
        if self.query_encoder is not None:
            self.caption_words = self.add_weight(
                name="caption_words", shape=(self.num_items, self.caption_length),
                dtype=tf.int32, trainable=False, initializer=_constant_table(self._caption_words))
            if not self.query_encoder.built:
                _checks.build_sublayer(
                    self.query_encoder, tf.TensorShape([None, self.caption_length]))
            input_dim += self.query_encoder.output_dim
        if self.category_sizes:
            self.item_categories = self.add_weight(
                name="item_categories", shape=(self.num_items, len(self.category_sizes)),
                dtype=tf.int32, trainable=False,
                initializer=_constant_table(self._item_categories))
        self._caption_words = self._item_categories = None  # Free the host copies.
        self.projection = keras.layers.Dense(
            self.output_dim,
            activation="tanh",
            kernel_initializer=_checks.clone_initializer(self.kernel_initializer),
            bias_initializer=_checks.clone_initializer(self.bias_initializer),
            name="projection",
            dtype=self.dtype_policy,
        )
        _checks.build_sublayer(self.projection, tf.TensorShape([None, input_dim]))
        super().build(input_shape)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        parts = [tf.gather(self.item_embeddings, inputs)]
        if self.query_encoder is not None:
            # Captions hold millions of words per batch: dense_gradient (see QueryEncoder).
            captions = self.query_encoder(tf.gather(self.caption_words, inputs),
                                          dense_gradient=True)
            parts.append(_checks.to_compute_dtype(self, captions))  # The encoder is injected.
        if self.category_sizes:
            categories = tf.gather(self.item_categories, inputs)  # (..., F)
            for k, table in enumerate(self.category_embeddings):
                parts.append(tf.gather(table, categories[..., k]))
        outputs = self.projection(tf.concat(parts, axis=-1))
        return outputs * tf.cast(tf.not_equal(inputs, PAD_ID), outputs.dtype)[..., tf.newaxis]

    def compute_output_shape(self, input_shape: tf.TensorShape) -> tf.TensorShape:
        return tf.TensorShape(input_shape).concatenate([self.output_dim])

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update({
            "num_items": self.num_items,
            "embedding_dim": self.embedding_dim,
            "output_dim": self.output_dim,
            "query_encoder": (None if self.query_encoder is None
                              else keras.layers.serialize(self.query_encoder)),
            "caption_length": self.caption_length,
            "category_sizes": list(self.category_sizes),
            "embeddings_initializer": keras.initializers.serialize(self.embeddings_initializer),
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        })
        return config
