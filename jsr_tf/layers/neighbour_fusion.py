"""`NeighbourFusion`: gated, similarity-aware attention from an interest to neighbours (§4).

Shapes: `B` batch; `C` candidates (any number; absent for a candidate-independent user vector);
`K` neighbour slots (10); `D` model size (64); `H` heads (2); `dh` head size (32).

    logit[b,h,c,k] = <Wq[h;e_c], Wk n_k>_h / sqrt(dh) + beta * sim_k + tau_side[side_k]
    alpha          = masked_softmax_k(logit)     # slots with side == 0 (or dropped) excluded;
                                                 #   a row with no slot left gets alpha = 0 exactly
    m              = Wo concat_h(sum_k alpha Wv n_k)
    g              = sigmoid(Wg [h; m] + bg);    h' = h + g * m

`Wo` starts at zero, so a new fusion is an exact identity (`h' == h`), and so is any row whose
slots are all empty, whatever the weights. Candidates are never tiled: the query carries the
candidate axis and the einsums broadcast keys and values over it.

Masks follow the Keras contract: True (side 1 or 2) = may attend.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Tuple, Union

import tensorflow as tf
import tf_keras as keras
from tf_keras.src.utils import control_flow_util

from jsr_tf.layers import _checks
from jsr_tf.layers.pooling import softmax_valid

NUM_SIDES = 3     # features.NeighbourSide: 0 empty, 1 feed-similar, 2 search-similar.


@keras.saving.register_keras_serializable(package="jsr_tf")
class NeighbourFusion(keras.layers.Layer):
    """`h' = h + sigmoid(Wg [h; m] + bg) * m`, `m` = attention over the neighbour vectors.

    Args:
        num_heads: Attention heads `H` (2 in the spec).
        head_dim: Size `dh` of each head's query/key/value (32 in the spec).
        dropout: Dropout rate on the attention weights `alpha` (training only).
        slot_dropout: Probability of dropping each neighbour slot (training only), for
            robustness to missing neighbour tables.
        candidate_aware: True: the query is `[h; e_c]` per candidate (`candidates` required);
            False: the query is `h` averaged over the candidate axis (one attention per row,
            cheaper at serving; `candidates` ignored). A rank-2 `h` has no candidate axis, so
            False simply queries with `h`.
        similarity_bias_initializer: Initializer of the learnable `beta` (1.0 in the spec).
        kernel_initializer: Initializer of `Wq`, `Wk`, `Wv` and `Wg`.
        output_initializer: Initializer of `Wo` (zeros: a new fusion is an exact identity).
        seed: Optional seed of the slot dropout.
        **kwargs: Base `Layer` arguments.

    Call arguments:
        interest: Float tensor `(B, C, D)` (per-candidate interest) or `(B, D)` (user vector).
        neighbours: Float tensor `(B, K, D)`, the neighbour vectors `n_k`.
        similarity: Float tensor `(B, K)`, `nbr_sim`.
        side: Integer tensor `(B, K)`, `nbr_side` (0 = empty slot, masked).
        candidates: Float tensor shaped like `interest`, the candidate embeddings `e_c`
            (required when `candidate_aware`).
        training: Dropouts on/off.
        return_attention_scores: Also return `alpha`.

    Returns:
        Float tensor shaped like `interest`; with `return_attention_scores`, also `alpha`:
        `(B, H, C, K)` (`C` = 1 when not candidate-aware) or `(B, H, K)` for a rank-2 `interest`.
    """

    def __init__(self, num_heads: int = 2, head_dim: int = 32, dropout: float = 0.1,
                 slot_dropout: float = 0.1, candidate_aware: bool = True,
                 similarity_bias_initializer: Any = keras.initializers.Constant(1.0),
                 kernel_initializer: Any = "glorot_uniform", output_initializer: Any = "zeros",
                 seed: Optional[int] = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_heads = _checks.positive_int("num_heads", num_heads)
        self.head_dim = _checks.positive_int("head_dim", head_dim)
        self.dropout = _checks.rate("dropout", dropout)
        self.slot_dropout = _checks.rate("slot_dropout", slot_dropout)
        if not isinstance(candidate_aware, bool):
            raise ValueError("`candidate_aware` should be a bool. "
                             f"Received: `candidate_aware={candidate_aware!r}`")
        self.candidate_aware = candidate_aware
        self.similarity_bias_initializer = keras.initializers.get(similarity_bias_initializer)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.output_initializer = keras.initializers.get(output_initializer)
        self.seed = None if seed is None else _checks.non_negative_int("seed", seed)
        self.attention_dropout = keras.layers.Dropout(self.dropout, seed=self.seed,
                                                      name="attention_dropout",
                                                      dtype=self.dtype_policy)

    def build(self, interest_shape: tf.TensorShape) -> None:
        interest_shape = tf.TensorShape(interest_shape)
        if interest_shape.rank not in (2, 3):
            raise ValueError("`interest` should have shape (B, C, D) or (B, D). "
                             f"Received: `interest.shape={interest_shape}`")
        dim = _checks.last_dim("interest", interest_shape)
        heads, size = self.num_heads, self.head_dim

        def weight(name: str, shape: Tuple[int, ...], initializer: Any) -> tf.Variable:
            return self.add_weight(name=name, shape=shape,
                                   initializer=_checks.clone_initializer(initializer))

        query_dim = 2 * dim if self.candidate_aware else dim
        self.query_kernel = weight("query_kernel", (query_dim, heads, size),
                                   self.kernel_initializer)
        self.key_kernel = weight("key_kernel", (dim, heads, size), self.kernel_initializer)
        self.value_kernel = weight("value_kernel", (dim, heads, size), self.kernel_initializer)
        self.output_kernel = weight("output_kernel", (heads * size, dim), self.output_initializer)
        # A Dense sublayer, so its bias reads `.../gate/bias` (no coupled L2, as every bias).
        self.gate = _checks.build_sublayer(keras.layers.Dense(
            dim, activation="sigmoid",
            kernel_initializer=_checks.clone_initializer(self.kernel_initializer),
            name="gate", dtype=self.dtype_policy), [None, 2 * dim])
        self.similarity_bias = weight("similarity_bias", (), self.similarity_bias_initializer)
        self.side_bias = self.add_weight(name="side_bias", shape=(NUM_SIDES,),
                                         initializer="zeros")
        super().build(interest_shape)

    def _slot_mask(self, side: tf.Tensor, training: Any) -> tf.Tensor:
        """`(B, K)` bool: True = may attend (a feed- or search-side slot not dropped this step;
        any other side value, e.g. a client's -1, is an empty slot)."""
        valid = tf.logical_and(tf.greater(side, 0), tf.less(side, NUM_SIDES))
        if not self.slot_dropout or training is None or training is False:
            return valid

        def dropped() -> tf.Tensor:
            keep = tf.random.uniform(tf.shape(side), seed=self.seed) >= self.slot_dropout
            return tf.logical_and(valid, keep)

        return control_flow_util.smart_cond(training, dropped, lambda: valid)

    def call(self, interest: tf.Tensor, neighbours: tf.Tensor, similarity: tf.Tensor,
             side: tf.Tensor, candidates: Optional[tf.Tensor] = None, training: Any = None,
             return_attention_scores: bool = False
             ) -> Union[tf.Tensor, Tuple[tf.Tensor, tf.Tensor]]:
        if neighbours.shape[-1] != interest.shape[-1]:
            raise ValueError("`neighbours` should have the last dimension of `interest`. "
                             f"Received: `neighbours.shape={neighbours.shape}`, "
                             f"`interest.shape={interest.shape}`")
        neighbours = _checks.to_compute_dtype(self, neighbours)
        rank2 = interest.shape.rank == 2
        h = interest[:, tf.newaxis, :] if rank2 else interest  # (B, C, D)
        if self.candidate_aware:
            if candidates is None:
                raise ValueError("`candidates` is required with `candidate_aware=True`. "
                                 "Received: `candidates=None`")
            e = candidates[:, tf.newaxis, :] if rank2 else candidates
            query_input = tf.concat([h, tf.cast(e, h.dtype)], axis=-1)  # (B, C, 2D)
        else:
            query_input = tf.reduce_mean(h, axis=1, keepdims=True)  # (B, 1, D)
        query = tf.einsum("bcd,dhk->bhck", query_input, self.query_kernel)
        keys = tf.einsum("bnd,dhk->bhnk", neighbours, self.key_kernel)
        values = tf.einsum("bnd,dhk->bhnk", neighbours, self.value_kernel)
        side = tf.cast(side, tf.int32)
        bias = (self.similarity_bias * tf.cast(similarity, h.dtype)
                + tf.gather(self.side_bias, tf.clip_by_value(side, 0, NUM_SIDES - 1)))  # (B, K)
        logits = (tf.einsum("bhck,bhnk->bhcn", query, keys) / math.sqrt(self.head_dim)
                  + bias[:, tf.newaxis, tf.newaxis, :])
        mask = self._slot_mask(side, training)[:, tf.newaxis, tf.newaxis, :]  # (B, 1, 1, K)
        alpha = softmax_valid(logits, mask)
        dropped = self.attention_dropout(alpha, training=training)
        context = tf.einsum("bhcn,bhnk->bchk", dropped, values)  # (B, C', H, dh)
        shape = tf.shape(context)
        context = tf.reshape(context, [shape[0], shape[1], self.num_heads * self.head_dim])
        message = tf.einsum("bcf,fd->bcd", context, self.output_kernel)  # (B, C', D)
        message = tf.broadcast_to(message, tf.shape(h))
        gate = self.gate(tf.concat([h, message], axis=-1))
        out = h + gate * message
        if rank2:
            out, alpha = out[:, 0], alpha[:, :, 0]
        return (out, alpha) if return_attention_scores else out

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update({
            "num_heads": self.num_heads,
            "head_dim": self.head_dim,
            "dropout": self.dropout,
            "slot_dropout": self.slot_dropout,
            "candidate_aware": self.candidate_aware,
            "similarity_bias_initializer": keras.initializers.serialize(
                self.similarity_bias_initializer),
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "output_initializer": keras.initializers.serialize(self.output_initializer),
            "seed": self.seed,
        })
        return config
