"""Post-LN Transformer blocks equal to PyTorch's `TransformerEncoderLayer`/`DecoderLayer`.

Shapes: `B` batch; `T` query (target) length; `S` key (memory) length; `d` model size (64).

Both blocks follow PyTorch's default `norm_first=False` (post-LN) computation exactly:

```
encoder: x = LN1(x + Dropout(SelfAttn(x, mask)))
         x = LN2(x + Dropout(W2 Dropout(act(W1 x))))
decoder: x = LN1(x + Dropout(SelfAttn(x, self_mask)))
         x = LN2(x + Dropout(CrossAttn(x, memory, cross_mask)))
         x = LN3(x + Dropout(W2 Dropout(act(W1 x))))
```
plus dropout on the attention probabilities inside every attention (Keras
`MultiHeadAttention(dropout=...)` = PyTorch `MultiheadAttention(dropout=...)`). LayerNorm
epsilon defaults to PyTorch's 1e-5 (Keras's default is 1e-3). Where the norms compute in float16
(`dtype="float16"`; `"mixed_float16"` norms compute in float32), an epsilon below float16's
smallest normal number (6.1e-5) is raised to it: SASRec's 1e-8 would round to 0 and give 0/0 on
a constant row (a zeroed pad slot).

**Masks** are Keras masks: bool `(B, T, S)`, True = may attend (build them with
`history_layout.HistoryLayout`). They are passed explicitly; inputs must not carry implicit
Keras masks (no `Embedding(mask_zero=True)` upstream).

**Query rows with no allowed key** (all-False mask row: a user without search history reading
the search side, or the earliest event under causal transitions). PyTorch gives NaN there, and
Keras's additive -1e9 mask silently attends uniformly to every key, pads included. Here such a
row gets a **zero attention update**: its attention output (including the output projection
bias) is multiplied by 0, so the block reduces to `LN(x)` followed by the FFN sublayer for that
row. The softmax itself uses Keras's robust masking (masked logits *replaced* by -1e9), so every
intermediate value stays finite and gradients through the zeroed rows are exactly 0.

**Computation** (issue 14). The attention is Keras's `MultiHeadAttention` computation on that
layer's own weights, laid out for speed (`_attend`: one Q/K/V matmul, per-head batched matmuls),
and the norms are `LayerNormalization`'s formula with a written-out gradient
(`layers/layer_norm.py`); values agree with the plain Keras calls to float32 round-off and the
weights, names and checkpoints are the Keras layers'. `set_block_jit(model, True)` (the
trainer's `train.block_jit_compile`) compiles each block's call with XLA; it is a runtime
switch, never part of the config.

**Initialisation** (spec/unisar.md §10: PyTorch `xavier_normal_` on every weight matrix, zero
biases). `kernel_initializer=None` (the default) reproduces the reference's scales: Q/K/V
kernels as slices of the fused `in_proj_weight (3d, d)`, std `sqrt(2 / (d + 3d))` (0.088 for
d = 64); the attention output kernel as a `(d, d)` matrix, std `sqrt(2 / 2d)` (0.125); FFN kernels
glorot-normal. (Keras's glorot-normal would compute the attention fans from the 3-D einsum
kernels and start Q/K/V at std 0.030 and the output at 0.10.) Any other `kernel_initializer`
is used unchanged for every kernel.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional

import numpy as np
import tensorflow as tf
import tf_keras as keras

from jsr_tf.layers import _checks
from jsr_tf.layers.layer_norm import layer_norm


def _project(x: tf.Tensor, kernel: tf.Tensor, bias: Optional[tf.Tensor]) -> tf.Tensor:
    """``x (B, L, d_in) @ kernel (d_in, d_out) + bias`` as one 2-D matmul: ``(B, L, d_out)``."""
    shape = tf.shape(x)
    out = tf.matmul(tf.reshape(x, [-1, x.shape[-1]]), tf.cast(kernel, x.dtype))
    if bias is not None:
        out = tf.nn.bias_add(out, tf.cast(bias, x.dtype))
    return tf.reshape(out, tf.concat([shape[:-1], [kernel.shape[-1]]], axis=0))


def _attend(
    attention: keras.layers.MultiHeadAttention,
    query: tf.Tensor,
    value: tf.Tensor,
    attention_mask: Optional[tf.Tensor],
    training: Optional[bool],
) -> tf.Tensor:
    """``attention(query, value, attention_mask=...)``; query rows with no allowed key give 0.

    The same weights, masking (robust: masked logits replaced by Keras's large negative),
    probability dropout (the layer's own dropout layer) and values as Keras's
    `MultiHeadAttention` call, in another layout: Q, K and V of all heads come from one 2-D
    matmul each and are split into `(B, T, dh)` heads, so the score and combine steps are plain
    batched matmuls instead of einsums through `(B, T, H, dh)` transposes (issue 14). Results
    agree to float32 round-off.
    """
    self_attention = query is value
    query = _checks.to_compute_dtype(attention, query)
    value = query if self_attention else _checks.to_compute_dtype(attention, value)
    heads, key_dim = attention._num_heads, attention._key_dim
    scale = 1.0 / math.sqrt(float(key_dim))

    def per_head(layers: list, x: tf.Tensor) -> list:
        # One matmul for all heads of the projections that read `x` (each kernel (d, H, dh) as
        # (d, H*dh), concatenated), then H slices (B, T, dh) per projection.
        kernel = tf.concat([tf.reshape(layer.kernel, [x.shape[-1], -1]) for layer in layers], 1)
        bias = (None if layers[0].bias is None  # use_bias is one setting for all projections
                else tf.concat([tf.reshape(layer.bias, [-1]) for layer in layers], 0))
        parts = tf.split(_project(x, kernel, bias), heads * len(layers), axis=-1)
        return [parts[i * heads:(i + 1) * heads] for i in range(len(layers))]

    dense = attention._query_dense, attention._key_dense, attention._value_dense
    if self_attention:  # Q, K and V in one matmul
        queries, keys, values = per_head(list(dense), query)
    else:  # cross-attention: K and V read the memory
        (queries,) = per_head([dense[0]], query)
        keys, values = per_head(list(dense[1:]), value)
    if attention_mask is not None:
        attention_mask = tf.cast(attention_mask, tf.bool)
        fill = _large_negative(query.dtype)
    contexts = []
    for q, k, v in zip(queries, keys, values):
        scores = tf.matmul(q * tf.cast(scale, q.dtype), k, transpose_b=True)  # (B, T, S)
        if attention_mask is not None:
            scores = tf.where(attention_mask, scores, fill)
        probabilities = attention._dropout_layer(tf.nn.softmax(scores, axis=-1),
                                                 training=training)
        contexts.append(tf.matmul(probabilities, v))  # (B, T, dh)
    output = attention._output_dense
    kernel = tf.reshape(output.kernel, [heads * key_dim, -1])
    outputs = _project(tf.concat(contexts, axis=-1), kernel, output.bias)
    if attention_mask is None:
        return outputs
    has_key = tf.reduce_any(attention_mask, axis=-1, keepdims=True)  # (B, T, 1)
    return outputs * tf.cast(has_key, outputs.dtype)


def _large_negative(dtype: tf.DType) -> tf.Tensor:
    """Keras's robust-masking fill: -1e9, or half of float16's lowest finite value."""
    value = tf.float16.min / 2.0 if dtype == tf.float16 else -1e9
    return tf.constant(value, dtype)


class _TransformerBlock(keras.layers.Layer):
    """Arguments, validation, sublayer factories and config shared by the two blocks."""

    def __init__(
        self,
        num_heads: int,
        intermediate_dim: int,
        dropout: float = 0.1,
        activation: Any = "relu",
        layer_norm_epsilon: float = 1e-5,
        kernel_initializer: Optional[Any] = None,
        bias_initializer: Any = "zeros",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_heads = _checks.positive_int("num_heads", num_heads)
        self.intermediate_dim = _checks.positive_int("intermediate_dim", intermediate_dim)
        self.dropout = _checks.rate("dropout", dropout)
        self.activation = keras.activations.get(activation)
        self.layer_norm_epsilon = _checks.positive_float("layer_norm_epsilon", layer_norm_epsilon)
        self.kernel_initializer = (None if kernel_initializer is None
                                   else keras.initializers.get(kernel_initializer))
        self.bias_initializer = keras.initializers.get(bias_initializer)
        # Runtime switch, not config: compile each call of the block with XLA (fixed shapes,
        # fused element-wise work; set by the trainer for `train.block_jit_compile`). Serving
        # and saved layers never carry it.
        self.jit_call = False

    def _maybe_compiled(self, compute: Any, *args: Any) -> tf.Tensor:
        """``compute(*args)``, as one XLA-compiled function when ``jit_call`` is set (and the
        caller is not already compiled). The function is made per trace of the caller."""
        if not self.jit_call or _checks.in_xla_context():
            return compute(*args)
        return tf.function(compute, jit_compile=True, autograph=False)(*args)

    def _model_dim(self, shape: tf.TensorShape, name: str) -> int:
        shape = tf.TensorShape(shape)
        if shape.rank != 3:
            raise ValueError(f"`{name}` should have rank 3 (B, T, d). "
                             f"Received: `{name}.shape={shape}`")
        dim = _checks.last_dim(name, shape)
        if dim % self.num_heads:
            raise ValueError(
                f"The model size of `{name}` should be divisible by `num_heads={self.num_heads}`. "
                f"Received: `{name}.shape={shape}`")
        return dim

    def _kernel_initializer(self, reference_stddev: Optional[float] = None) -> Any:
        """A fresh kernel initializer: the configured one, or the reference scale if None."""
        if self.kernel_initializer is not None:
            return _checks.clone_initializer(self.kernel_initializer)
        if reference_stddev is None:
            return keras.initializers.GlorotNormal()
        return keras.initializers.RandomNormal(stddev=reference_stddev)

    def _initializers(self) -> Dict[str, Any]:
        return {
            "kernel_initializer": self._kernel_initializer(),
            "bias_initializer": _checks.clone_initializer(self.bias_initializer),
        }

    def _attention(self, name: str, dim: int, query_shape: tf.TensorShape,
                   value_shape: tf.TensorShape) -> keras.layers.MultiHeadAttention:
        layer = keras.layers.MultiHeadAttention(
            num_heads=self.num_heads,
            key_dim=dim // self.num_heads,
            dropout=self.dropout,
            softmax_robust_masking=True,
            name=name,
            dtype=self.dtype_policy,
            **self._initializers(),
        )
        # Create every weight now (Keras would on first call), under the usual name scopes.
        with tf.name_scope(name):
            layer._build_from_signature(query=query_shape, value=value_shape)
            if self.kernel_initializer is None:  # Reference scales (see the module docstring).
                for dense in (layer._query_dense, layer._key_dense, layer._value_dense):
                    dense.kernel_initializer = self._kernel_initializer(math.sqrt(0.5 / dim))
                layer._output_dense.kernel_initializer = self._kernel_initializer(
                    math.sqrt(1.0 / dim))
            _checks.build_sublayer(layer._query_dense, query_shape)
            _checks.build_sublayer(layer._key_dense, value_shape)
            _checks.build_sublayer(layer._value_dense, value_shape)
            _checks.build_sublayer(
                layer._output_dense,
                query_shape[:-1].concatenate([self.num_heads, dim // self.num_heads]))
        return layer

    def _layer_norm(self, name: str, shape: tf.TensorShape) -> keras.layers.LayerNormalization:
        epsilon = self.layer_norm_epsilon
        if self.dtype_policy.variable_dtype == "float16":  # See the module docstring.
            epsilon = max(epsilon, float(np.finfo(np.float16).tiny))
        layer = keras.layers.LayerNormalization(epsilon=epsilon, name=name,
                                                dtype=self.dtype_policy)
        return _checks.build_sublayer(layer, shape)

    def _build_feedforward(self, dim: int, shape: tf.TensorShape) -> None:
        self._intermediate_dense = keras.layers.Dense(
            self.intermediate_dim, activation=self.activation, name="intermediate_dense",
            dtype=self.dtype_policy, **self._initializers())
        _checks.build_sublayer(self._intermediate_dense, shape)
        self._output_dense = keras.layers.Dense(dim, name="output_dense", dtype=self.dtype_policy,
                                                **self._initializers())
        _checks.build_sublayer(
            self._output_dense, tf.TensorShape(shape)[:-1].concatenate([self.intermediate_dim]))
        self._intermediate_dropout = self._dropout_layer()
        self._output_dropout = self._dropout_layer()

    def _dropout_layer(self) -> keras.layers.Dropout:
        return keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)

    def _feedforward(self, x: tf.Tensor, training: Optional[bool]) -> tf.Tensor:
        hidden = self._intermediate_dropout(self._intermediate_dense(x), training=training)
        return self._output_dropout(self._output_dense(hidden), training=training)

    def compute_output_shape(self, input_shape: tf.TensorShape) -> tf.TensorShape:
        return tf.TensorShape(input_shape)

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update({
            "num_heads": self.num_heads,
            "intermediate_dim": self.intermediate_dim,
            "dropout": self.dropout,
            "activation": keras.activations.serialize(self.activation),
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "kernel_initializer": (None if self.kernel_initializer is None
                                   else keras.initializers.serialize(self.kernel_initializer)),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        })
        return config


@keras.saving.register_keras_serializable(package="jsr_tf")
class TransformerEncoderBlock(_TransformerBlock):
    """One post-LN Transformer encoder layer (PyTorch `TransformerEncoderLayer`).

    Args:
        num_heads: Number of attention heads; must divide the model size `d`.
        intermediate_dim: Hidden size of the feed-forward network.
        dropout: Dropout rate used in the four PyTorch places (attention probabilities, after
            attention, inside the FFN, after the FFN).
        activation: FFN activation.
        layer_norm_epsilon: LayerNorm epsilon (PyTorch default 1e-5).
        kernel_initializer: Initializer of every kernel; None = the reference's scales.
        bias_initializer: Initializer of every bias.
        **kwargs: Base `Layer` arguments.

    Call arguments:
        inputs: Float tensor `(B, T, d)`.
        attention_mask: Optional bool tensor `(B, T, T)`, True = may attend. Rows with no True
            get a zero attention update.
        training: Python bool, enables dropout.

    Returns:
        Float tensor `(B, T, d)`.
    """

    def build(self, input_shape: tf.TensorShape) -> None:
        input_shape = tf.TensorShape(input_shape)
        dim = self._model_dim(input_shape, "inputs")
        self._self_attention = self._attention("self_attention", dim, input_shape, input_shape)
        self._self_attention_dropout = self._dropout_layer()
        self._self_attention_norm = self._layer_norm("self_attention_norm", input_shape)
        self._build_feedforward(dim, input_shape)
        self._feedforward_norm = self._layer_norm("feedforward_norm", input_shape)
        super().build(input_shape)

    def call(self, inputs: tf.Tensor, attention_mask: Optional[tf.Tensor] = None,
             training: Optional[bool] = None) -> tf.Tensor:
        def compute(inputs, attention_mask):
            attended = _attend(self._self_attention, inputs, inputs, attention_mask, training)
            x = layer_norm(self._self_attention_norm,
                           inputs + self._self_attention_dropout(attended, training=training))
            return layer_norm(self._feedforward_norm, x + self._feedforward(x, training))

        return self._maybe_compiled(compute, inputs, attention_mask)


@keras.saving.register_keras_serializable(package="jsr_tf")
class TransformerDecoderBlock(_TransformerBlock):
    """One post-LN Transformer decoder layer (PyTorch `TransformerDecoderLayer`).

    Args:
        num_heads: Number of attention heads; must divide the model size `d`.
        intermediate_dim: Hidden size of the feed-forward network.
        dropout: Dropout rate (attention probabilities of both attentions, after each of the
            three sublayers, inside the FFN).
        activation: FFN activation.
        layer_norm_epsilon: LayerNorm epsilon (PyTorch default 1e-5).
        kernel_initializer: Initializer of every kernel; None = the reference's scales.
        bias_initializer: Initializer of every bias.
        **kwargs: Base `Layer` arguments.

    Call arguments:
        decoder_sequence: Float tensor `(B, T, d)` (PyTorch `tgt`).
        encoder_sequence: Float tensor `(B, S, d)` (PyTorch `memory`).
        self_attention_mask: Optional bool tensor `(B, T, T)`, True = may attend.
        cross_attention_mask: Optional bool tensor `(B, T, S)`, True = may attend.
        training: Python bool, enables dropout.

    Returns:
        Float tensor `(B, T, d)`.
    """

    def build(self, decoder_sequence_shape: tf.TensorShape) -> None:
        decoder_shape = tf.TensorShape(decoder_sequence_shape)
        dim = self._model_dim(decoder_shape, "decoder_sequence")
        # The memory must have the model size too (PyTorch: kdim = vdim = d_model); its length
        # may differ from the target's.
        encoder_shape = tf.TensorShape([None, None, dim])
        self._self_attention = self._attention(
            "self_attention", dim, decoder_shape, decoder_shape)
        self._self_attention_dropout = self._dropout_layer()
        self._self_attention_norm = self._layer_norm("self_attention_norm", decoder_shape)
        self._cross_attention = self._attention(
            "cross_attention", dim, decoder_shape, encoder_shape)
        self._cross_attention_dropout = self._dropout_layer()
        self._cross_attention_norm = self._layer_norm("cross_attention_norm", decoder_shape)
        self._build_feedforward(dim, decoder_shape)
        self._feedforward_norm = self._layer_norm("feedforward_norm", decoder_shape)
        super().build(decoder_shape)

    def call(
        self,
        decoder_sequence: tf.Tensor,
        encoder_sequence: tf.Tensor,
        self_attention_mask: Optional[tf.Tensor] = None,
        cross_attention_mask: Optional[tf.Tensor] = None,
        training: Optional[bool] = None,
    ) -> tf.Tensor:
        encoder_sequence = _checks.to_compute_dtype(self, encoder_sequence)
        encoder_shape = encoder_sequence.shape
        if encoder_shape.rank != 3 or encoder_shape[-1] != decoder_sequence.shape[-1]:
            raise ValueError(
                "`encoder_sequence` should have shape (B, S, d) with the model size `d` of "
                f"`decoder_sequence`. Received: `encoder_sequence.shape={encoder_shape}`, "
                f"`decoder_sequence.shape={decoder_sequence.shape}`")

        def compute(decoder_sequence, encoder_sequence, self_attention_mask,
                    cross_attention_mask):
            attended = _attend(self._self_attention, decoder_sequence, decoder_sequence,
                               self_attention_mask, training)
            x = layer_norm(
                self._self_attention_norm,
                decoder_sequence + self._self_attention_dropout(attended, training=training))
            attended = _attend(self._cross_attention, x, encoder_sequence, cross_attention_mask,
                               training)
            x = layer_norm(self._cross_attention_norm,
                           x + self._cross_attention_dropout(attended, training=training))
            return layer_norm(self._feedforward_norm, x + self._feedforward(x, training))

        return self._maybe_compiled(compute, decoder_sequence, encoder_sequence,
                                    self_attention_mask, cross_attention_mask)


def set_block_jit(model: keras.layers.Layer, enabled: bool) -> int:
    """Sets ``jit_call`` on every transformer block inside ``model``.

    Returns:
        The number of blocks switched.
    """
    blocks = [layer for layer in model._flatten_layers(include_self=True)
              if isinstance(layer, _TransformerBlock)]
    for block in blocks:
        block.jit_call = bool(enabled)
    return len(blocks)
