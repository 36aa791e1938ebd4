"""`SASRecBlock`: one causal self-attention block of SASRec, and its causal mask.

Shapes: `B` batch; `L` sequence length (SASRec: 60, **left-padded**, newest item in the last
slot); `d` model size (64).

One block (Kang & McAuley 2018, kang205/SASRec; spec/related_models.md §1):

```
q = LN_1(x)
x = q + CausalAttn(query=q, key=value=x, mask=causal_mask(valid))   # residual on LN'd queries
y = LN_2(x)
x = y + Dropout(W2 Dropout(ReLU(W1 y)))                             # residual on the FFN input
x = x * valid                                                       # pad mask re-applied
```
The queries are normalised and the keys/values are not (the reference's quirk, kept). Dropout
also acts on the attention probabilities. LayerNorm epsilon defaults to the reference's 1e-8.
Keras's `MultiHeadAttention` has an output projection that the TF1 reference lacks (the PyTorch
port, pmixer/SASRec.pytorch, has it through `nn.MultiheadAttention`).

**Mask** (the one place it is built: `causal_mask`): Keras semantics, bool `(B, L, L)`,
**True = may attend** (PyTorch masks mean *blocked*):
`mask[b, t, j] = (j <= t) and valid[b, j]`. A query slot reads itself and earlier real items;
pads are never read. On a left-padded sequence every pad slot (and every slot of an all-pad
row) has no allowed key: such rows get a zero attention update (`transformer._attend`), so all
values and gradients stay finite, and the pad mask zeroes them afterwards.

**Initialisation** (`kernel_initializer=None`): the PyTorch port's scales, identical to the
UniSAR blocks' (`transformer.py`): Q/K/V kernels as slices of a fused `(3d, d)` xavier-normal
matrix, the attention output kernel as a `(d, d)` one, FFN kernels glorot-normal; zero biases.
"""

from __future__ import annotations

from typing import Any, Optional

import tensorflow as tf
import tf_keras as keras

from jsr_tf.layers.transformer import _attend, _TransformerBlock


def causal_mask(valid: tf.Tensor) -> tf.Tensor:
    """`mask[b, t, j] = (j <= t) and valid[b, j]`: True = query slot `t` may attend to `j`.

    Args:
        valid: Bool tensor `(B, L)`, True on real items.

    Returns:
        Bool tensor `(B, L, L)`.
    """
    valid = tf.cast(valid, tf.bool)
    positions = tf.range(tf.shape(valid)[1])
    not_later = tf.less_equal(positions[tf.newaxis, :], positions[:, tf.newaxis])  # (L, L)
    return tf.logical_and(not_later[tf.newaxis], valid[:, tf.newaxis, :])


@keras.saving.register_keras_serializable(package="jsr_tf")
class SASRecBlock(_TransformerBlock):
    """One SASRec block: pre-LN causal self-attention and a position-wise FFN.

    Args:
        num_heads: Number of attention heads; must divide the model size `d`.
        intermediate_dim: Hidden size of the FFN (the reference uses `d`).
        dropout: Dropout rate (attention probabilities, inside and after the FFN).
        activation: FFN activation (reference: ReLU).
        layer_norm_epsilon: LayerNorm epsilon (reference: 1e-8).
        kernel_initializer: Initializer of every kernel; None = the reference scales above.
        bias_initializer: Initializer of every bias.
        **kwargs: Base `Layer` arguments.

    Call arguments:
        inputs: Float tensor `(B, L, d)`, zero on pad slots.
        valid: Bool tensor `(B, L)`, True on real items.
        training: Python bool, enables dropout.

    Returns:
        Float tensor `(B, L, d)`, exactly 0 on pad slots.
    """

    def __init__(
        self,
        num_heads: int,
        intermediate_dim: int,
        dropout: float = 0.2,
        activation: Any = "relu",
        layer_norm_epsilon: float = 1e-8,
        kernel_initializer: Optional[Any] = None,
        bias_initializer: Any = "zeros",
        **kwargs: Any,
    ) -> None:
        super().__init__(num_heads, intermediate_dim, dropout=dropout, activation=activation,
                         layer_norm_epsilon=layer_norm_epsilon,
                         kernel_initializer=kernel_initializer,
                         bias_initializer=bias_initializer, **kwargs)

    def build(self, input_shape: tf.TensorShape) -> None:
        input_shape = tf.TensorShape(input_shape)
        dim = self._model_dim(input_shape, "inputs")
        self._attention_norm = self._layer_norm("attention_norm", input_shape)
        self._self_attention = self._attention("self_attention", dim, input_shape, input_shape)
        self._feedforward_norm = self._layer_norm("feedforward_norm", input_shape)
        self._build_feedforward(dim, input_shape)
        super().build(input_shape)

    def call(self, inputs: tf.Tensor, valid: tf.Tensor,
             training: Optional[bool] = None) -> tf.Tensor:
        valid = tf.cast(valid, tf.bool)
        if valid.shape.rank != 2:
            raise ValueError("`valid` should have shape (B, L). "
                             f"Received: `valid.shape={valid.shape}`")
        queries = self._attention_norm(inputs)
        x = queries + _attend(self._self_attention, queries, inputs, causal_mask(valid),
                              training)
        x = self._feedforward_norm(x)
        x = x + self._feedforward(x, training)
        return x * tf.cast(valid, x.dtype)[..., tf.newaxis]
