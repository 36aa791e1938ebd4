"""`NeighbourEncoder`: one vector per neighbour slot (spec/similar_users.md §4).

Shapes: `B` batch; `K` neighbour slots (10); `Lf` feed items per slot (15); `Lq` search sessions
per slot (10); `D` model size (64).

The model encodes the neighbours' items with its own item path (`I`) and their sessions with its
own session path (`S(words, clicks)`, e.g. `SearchBehaviourEncoder`); this layer only pools them:

    w_l     = gamma ** age_rank_l   (age_rank 0 = the most recent valid entry)
    pool(x) = sum_l w_l m_l x_l / sum_l w_l m_l      (0 for an empty half: divide_no_nan)
    n_k     = tanh(Dense(2D -> units)([pool(items); pool(sessions)]))

With `encoder="shared"` the model has already run its own sequence encoders over the neighbour
sequences (positions included), so the pools are plain masked means (`w_l = m_l`).

Entries are oldest first and right-padded, but `age_rank` counts the valid entries *after* each
slot, so any mask works.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import tensorflow as tf
import tf_keras as keras

from jsr_tf.layers import _checks

ENCODERS = ("pooled", "shared")


def recency_weights(mask: tf.Tensor, decay: float) -> tf.Tensor:
    """`decay ** age_rank` at valid entries, 0 elsewhere.

    Args:
        mask: Bool tensor `(..., L)`, True for valid entries, oldest first.
        decay: `gamma` in (0, 1].

    Returns:
        Float32 tensor `(..., L)`: the newest valid entry has weight 1, the one before `gamma`,
        and so on; invalid entries 0.
    """
    valid = tf.cast(mask, tf.float32)
    # Valid entries strictly after each position (a reverse exclusive cumsum).
    age_rank = tf.cumsum(valid, axis=-1, exclusive=True, reverse=True)
    return tf.pow(tf.constant(decay, tf.float32), age_rank) * valid


def recency_mean(values: tf.Tensor, mask: tf.Tensor, decay: float) -> tf.Tensor:
    """Recency-weighted mean of `values (..., L, D)` over `L`; exactly 0 where no entry is valid."""
    weights = tf.cast(recency_weights(mask, decay), values.dtype)
    total = tf.reduce_sum(weights, axis=-1, keepdims=True)
    return tf.math.divide_no_nan(tf.einsum("...l,...ld->...d", weights, values), total)


@keras.saving.register_keras_serializable(package="jsr_tf")
class NeighbourEncoder(keras.layers.Layer):
    """`n_k = tanh(W [mean_gamma(I(items_k)); mean_gamma(S(sessions_k))] + b)`.

    Args:
        units: Output size; None (default) = the input size `D` (spec: `Dense(2D -> D)`).
        decay: Recency decay `gamma` in (0, 1] (0.9 in the spec; 1 = plain masked means).
        encoder: `"pooled"` (recency-weighted means of the raw vectors) or `"shared"` (the
            inputs are the outputs of the model's own sequence encoders: plain masked means,
            `decay` unused).
        kernel_initializer: Initializer of the `(2D, units)` kernel.
        bias_initializer: Initializer of the bias.
        **kwargs: Base `Layer` arguments.

    Call arguments:
        item_vectors: Float tensor `(B, K, Lf, D)`, `I(item)` of each neighbour feed item.
        item_mask: Bool tensor `(B, K, Lf)`, True for real items.
        session_vectors: Float tensor `(B, K, Lq, D)`, `S(words, clicks)` of each session.
        session_mask: Bool tensor `(B, K, Lq)`, True for real sessions.

    Returns:
        Float tensor `(B, K, units)`. A slot with no items and no sessions gives `tanh(b)`
        (the fusion masks such slots by `nbr_side == 0` anyway).
    """

    def __init__(self, units: Optional[int] = None, decay: float = 0.9,
                 encoder: str = "pooled", kernel_initializer: Any = "glorot_normal",
                 bias_initializer: Any = "zeros", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.units = None if units is None else _checks.positive_int("units", units)
        if (not isinstance(decay, (int, float)) or isinstance(decay, bool)
                or not 0.0 < decay <= 1.0):
            raise ValueError(f"`decay` should be a float in (0, 1]. Received: `decay={decay!r}`")
        self.decay = float(decay)
        if encoder not in ENCODERS:
            raise ValueError(f"`encoder` should be one of {ENCODERS}. "
                             f"Received: `encoder={encoder!r}`")
        self.encoder = encoder
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, item_vectors_shape: tf.TensorShape) -> None:
        dim = _checks.last_dim("item_vectors", item_vectors_shape)
        self.projection = keras.layers.Dense(
            self.units or dim, activation="tanh",
            kernel_initializer=_checks.clone_initializer(self.kernel_initializer),
            bias_initializer=_checks.clone_initializer(self.bias_initializer), name="projection",
            dtype=self.dtype_policy)
        _checks.build_sublayer(self.projection, [None, 2 * dim])
        super().build(item_vectors_shape)

    def call(self, item_vectors: tf.Tensor, item_mask: tf.Tensor, session_vectors: tf.Tensor,
             session_mask: tf.Tensor) -> tf.Tensor:
        if item_vectors.shape[-1] != session_vectors.shape[-1]:
            raise ValueError("`item_vectors` and `session_vectors` should have the same last "
                             f"dimension. Received: `item_vectors.shape={item_vectors.shape}`, "
                             f"`session_vectors.shape={session_vectors.shape}`")
        session_vectors = _checks.to_compute_dtype(self, session_vectors)
        decay = self.decay if self.encoder == "pooled" else 1.0
        items = recency_mean(item_vectors, item_mask, decay)
        sessions = recency_mean(session_vectors, session_mask, decay)
        return self.projection(tf.concat([items, sessions], axis=-1))

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update({
            "units": self.units,
            "decay": self.decay,
            "encoder": self.encoder,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        })
        return config
