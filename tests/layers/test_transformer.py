"""Transformer blocks against an independent numpy version of PyTorch's post-LN layers."""

import jsr_tf  # noqa: F401  (must precede tensorflow)

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from jsr_tf.layers.transformer import (TransformerDecoderBlock, TransformerEncoderBlock, _attend,
                                       set_block_jit)

from ._harness import (DTYPES, HALF_DTYPES, assert_all_finite, assert_honours_dtype,
                       assert_keras_file_round_trip, assert_round_trip, assert_three_ways_agree,
                       count_params)

EPS = 1e-5


# ---------------------------------------------------------------------------------------------
# Independent numpy reference (PyTorch semantics, dropout off; mask True = may attend).
def _layer_norm(x, gamma, beta):
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + EPS) * gamma + beta


def _mha(weights, query, value, mask):
    """`weights` = Keras MHA weights: q_k (d,h,k) q_b (h,k) k_k k_b v_k v_b o_k (h,k,d) o_b (d)."""
    qk, qb, kk, kb, vk, vb, ok, ob = weights
    q = np.einsum("btd,dhk->bthk", query, qk) + qb
    k = np.einsum("bsd,dhk->bshk", value, kk) + kb
    v = np.einsum("bsd,dhk->bshk", value, vk) + vb
    scores = np.einsum("bthk,bshk->bhts", q, k) / np.sqrt(q.shape[-1])
    out = np.zeros(q.shape)
    for b in range(q.shape[0]):
        for t in range(q.shape[1]):
            allowed = mask[b, t]
            if not allowed.any():
                continue  # Documented behaviour: zero attention update.
            for h in range(q.shape[2]):
                s = np.where(allowed, scores[b, h, t], -np.inf)
                p = np.exp(s - s.max())
                p /= p.sum()
                out[b, t, h] = p @ v[b, :, h]
    result = np.einsum("bthk,hkd->btd", out, ok) + ob
    has_key = mask.any(-1, keepdims=True)
    return result * has_key


def _ffn(x, w1, b1, w2, b2):
    return np.maximum(x @ w1 + b1, 0) @ w2 + b2


def _encoder_reference(weights, x, mask):
    mha, (g1, be1), (w1, b1, w2, b2), (g2, be2) = (
        weights[0:8], weights[8:10], weights[10:14], weights[14:16])
    x = _layer_norm(x + _mha(mha, x, x, mask), g1, be1)
    return _layer_norm(x + _ffn(x, w1, b1, w2, b2), g2, be2)


def _decoder_reference(weights, x, memory, self_mask, cross_mask):
    x = _layer_norm(x + _mha(weights[0:8], x, x, self_mask), *weights[8:10])
    x = _layer_norm(x + _mha(weights[10:18], x, memory, cross_mask), *weights[18:20])
    return _layer_norm(x + _ffn(x, *weights[20:24]), *weights[24:26])


def _randomise(layer, rng):
    """Random weights everywhere (biases and LayerNorm parameters included)."""
    layer.set_weights([rng.normal(0, 0.3, w.shape).astype(np.float32) for w in layer.weights])


def _random_mask(rng, shape, p=0.6):
    mask = rng.random(shape) < p
    mask[0, 1] = False  # An all-masked query row.
    return mask


# ---------------------------------------------------------------------------------------------
def test_encoder_weight_order_is_the_reference_order():
    layer = TransformerEncoderBlock(num_heads=2, intermediate_dim=16)
    layer.build(tf.TensorShape([None, 5, 8]))
    names = [w.name for w in layer.weights]  # Built directly: no outer scope.
    assert names[:8] == [
        "self_attention/query/kernel:0", "self_attention/query/bias:0",
        "self_attention/key/kernel:0", "self_attention/key/bias:0",
        "self_attention/value/kernel:0", "self_attention/value/bias:0",
        "self_attention/attention_output/kernel:0", "self_attention/attention_output/bias:0"]
    assert names[8:] == [
        "self_attention_norm/gamma:0", "self_attention_norm/beta:0",
        "intermediate_dense/kernel:0", "intermediate_dense/bias:0",
        "output_dense/kernel:0", "output_dense/bias:0",
        "feedforward_norm/gamma:0", "feedforward_norm/beta:0"]


def test_encoder_matches_numpy_pytorch_reference():
    rng = np.random.default_rng(0)
    layer = TransformerEncoderBlock(num_heads=2, intermediate_dim=12)
    x = rng.normal(size=(3, 6, 8)).astype(np.float32)
    mask = _random_mask(rng, (3, 6, 6))
    layer(x, attention_mask=mask)
    _randomise(layer, rng)
    got = layer(x, attention_mask=mask, training=False).numpy()
    want = _encoder_reference([w.numpy() for w in layer.weights], x, mask)
    np.testing.assert_allclose(got, want, atol=2e-5)


def test_decoder_matches_numpy_pytorch_reference():
    rng = np.random.default_rng(1)
    layer = TransformerDecoderBlock(num_heads=2, intermediate_dim=12)
    x = rng.normal(size=(3, 6, 8)).astype(np.float32)
    memory = rng.normal(size=(3, 4, 8)).astype(np.float32)  # Memory length may differ.
    self_mask = _random_mask(rng, (3, 6, 6))
    cross_mask = _random_mask(rng, (3, 6, 4))
    layer(x, memory, self_attention_mask=self_mask, cross_attention_mask=cross_mask)
    _randomise(layer, rng)
    got = layer(x, memory, self_attention_mask=self_mask, cross_attention_mask=cross_mask).numpy()
    want = _decoder_reference([w.numpy() for w in layer.weights], x, memory, self_mask, cross_mask)
    np.testing.assert_allclose(got, want, atol=2e-5)


def test_all_masked_row_golden_with_ones_initialiser():
    """Ones kernels, zero biases except an uneven attention-output bias: an all-masked row gets
    no attention update (bias included), LN1 then centres it, so every FFN hidden unit is
    sum(LN1(x)) = 0 and the output is LN2(LN1(x)), by hand. (Ones kernels alone would not
    notice a uniform attention output: LN removes a constant shift.)"""
    layer = TransformerEncoderBlock(num_heads=2, intermediate_dim=3, kernel_initializer="ones")
    x = np.array([[[1.0, 2.0, 3.0, 4.0], [0.5, -1.0, 2.0, 0.0]]], np.float32)
    mask = np.array([[[False, False], [True, True]]])
    layer.build(tf.TensorShape([None, 2, 4]))
    layer._self_attention._output_dense.bias.assign([3.0, 0.0, 0.0, 0.0])
    out = layer(x, attention_mask=mask).numpy()
    y = (x[0, 0] - 2.5) / np.sqrt(1.25 + EPS)  # LN1 of row 0 (mean 2.5, variance 1.25).
    expected = y / np.sqrt(y.var() + EPS)  # LN2 (y has mean 0).
    np.testing.assert_allclose(out[0, 0], expected, atol=1e-5)


def test_all_masked_rows_finite_and_zero_gradient_leak():
    layer = TransformerEncoderBlock(num_heads=2, intermediate_dim=8)
    x = tf.random.normal([2, 4, 8])
    mask = tf.zeros([2, 4, 4], tf.bool)  # Every row masked (no history of the other type).
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = layer(x, attention_mask=mask, training=True)
        loss = tf.reduce_sum(out)
    grads = tape.gradient(loss, [x] + layer.trainable_weights)
    assert_all_finite([out] + grads)
    # The attention weights receive no gradient from rows that attended to nothing.
    for w, g in zip(layer.trainable_weights, grads[1:]):
        if "self_attention/" in w.name:
            np.testing.assert_array_equal(g, np.zeros_like(g))


def test_mask_is_keras_semantics_true_means_attend():
    """A query row that may attend to one key only must equal attention to that key alone."""
    rng = np.random.default_rng(2)
    layer = TransformerEncoderBlock(num_heads=2, intermediate_dim=8)
    x = rng.normal(size=(1, 3, 8)).astype(np.float32)
    only_key_2 = np.array([[[False, False, True]] * 3])
    out = layer(x, attention_mask=only_key_2).numpy()
    # Moving the other keys does not change the output of a row that cannot see them.
    x2 = x.copy()
    x2[0, 0] += 5.0
    out2 = layer(x2, attention_mask=only_key_2).numpy()
    np.testing.assert_allclose(out[0, 1:], out2[0, 1:], atol=1e-5)


def test_dropout_only_in_training():
    layer = TransformerEncoderBlock(num_heads=2, intermediate_dim=8, dropout=0.5)
    x = tf.random.normal([2, 5, 8])
    a = layer(x, training=False)
    np.testing.assert_allclose(a, layer(x, training=False))
    assert not np.allclose(a, layer(x, training=True))


def test_shapes_and_reference_parameter_counts():
    enc = TransformerEncoderBlock(num_heads=2, intermediate_dim=64)
    dec = TransformerDecoderBlock(num_heads=2, intermediate_dim=64)
    x = tf.zeros([2, 30, 64])
    assert enc(x).shape == (2, 30, 64)
    assert dec(x, tf.zeros([2, 60, 64])).shape == (2, 30, 64)
    assert count_params(enc.trainable_weights) == 25_216  # spec/unisar.md §11
    assert count_params(dec.trainable_weights) == 41_984


def test_layer_norm_epsilon_is_pytorch_default():
    layer = TransformerEncoderBlock(num_heads=2, intermediate_dim=8)
    layer.build(tf.TensorShape([None, 3, 4]))
    assert layer._self_attention_norm.epsilon == 1e-5
    assert layer._feedforward_norm.epsilon == 1e-5


def test_eager_graph_xla_agree():
    enc = TransformerEncoderBlock(num_heads=2, intermediate_dim=16)
    dec = TransformerDecoderBlock(num_heads=2, intermediate_dim=16)
    rng = np.random.default_rng(3)
    x = tf.constant(rng.normal(size=(4, 6, 8)), tf.float32)
    mask = tf.constant(_random_mask(rng, (4, 6, 6)))

    def fn(x, mask):
        g = enc(x, attention_mask=mask)
        return dec(g, x, self_attention_mask=mask, cross_attention_mask=mask)

    assert_three_ways_agree(fn, x, mask, atol=1e-5)


def test_block_jit_compiles_each_call_with_the_same_values_and_gradients():
    """``set_block_jit`` (``train.block_jit_compile``): every block's call runs as its own XLA
    function inside an uncompiled step; values and gradients are the uncompiled ones, the
    switch is not part of the layer config."""
    enc = TransformerEncoderBlock(num_heads=2, intermediate_dim=16)
    dec = TransformerDecoderBlock(num_heads=2, intermediate_dim=16)
    rng = np.random.default_rng(4)
    x = tf.constant(rng.normal(size=(4, 6, 8)), tf.float32)
    mask = tf.constant(_random_mask(rng, (4, 6, 6)))

    class Holder(keras.Model):
        def __init__(self):
            super().__init__()
            self.enc, self.dec = enc, dec

    def step():
        with tf.GradientTape() as tape:
            g = enc(x, attention_mask=mask)
            y = tf.reduce_sum(dec(g, x, self_attention_mask=mask, cross_attention_mask=mask) ** 2)
        variables = enc.trainable_variables + dec.trainable_variables
        return y, tape.gradient(y, variables)

    def compiled_functions(fn):
        library = fn.get_concrete_function().graph.as_graph_def().library.function
        return sum("_XlaMustCompile" in f.attr for f in library)

    plain = tf.function(step)
    expected = plain()
    assert compiled_functions(plain) == 0
    assert set_block_jit(Holder(), True) == 2 and enc.jit_call and dec.jit_call
    jit = tf.function(step)
    actual = jit()
    assert compiled_functions(jit) >= 2  # one per block (and their gradients)
    np.testing.assert_allclose(actual[0], expected[0], rtol=1e-5)
    for a, b in zip(actual[1], expected[1]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert "jit_call" not in enc.get_config()


def test_encoder_config_round_trip():
    layer = TransformerEncoderBlock(num_heads=2, intermediate_dim=16, dropout=0.2,
                                    layer_norm_epsilon=1e-6, activation="gelu")
    x = tf.random.normal([2, 5, 8])
    mask = tf.constant(np.tril(np.ones([5, 5], bool))[None].repeat(2, 0))
    clone = assert_round_trip(layer, lambda l: l(x, attention_mask=mask))
    assert clone.dropout == 0.2 and clone.layer_norm_epsilon == 1e-6


def test_decoder_config_round_trip():
    layer = TransformerDecoderBlock(num_heads=4, intermediate_dim=16)
    x, m = tf.random.normal([2, 5, 8]), tf.random.normal([2, 3, 8])
    assert_round_trip(layer, lambda l: l(x, m, cross_attention_mask=tf.ones([2, 5, 3], bool)))


@pytest.mark.parametrize("kwargs, message", [
    ({"num_heads": 0}, "`num_heads` should be a positive integer. Received: `num_heads=0`"),
    ({"intermediate_dim": -1}, "`intermediate_dim` should be a positive integer"),
    ({"dropout": 1.5}, "`dropout` should be a float in \\[0, 1\\). Received: `dropout=1.5`"),
    ({"layer_norm_epsilon": 0}, "`layer_norm_epsilon` should be a positive float"),
])
@pytest.mark.parametrize("cls", [TransformerEncoderBlock, TransformerDecoderBlock])
def test_invalid_arguments(cls, kwargs, message):
    args = {"num_heads": 2, "intermediate_dim": 8, **kwargs}
    with pytest.raises(ValueError, match=message):
        cls(**args)


def test_model_size_not_divisible_by_heads():
    with pytest.raises(ValueError, match="divisible by `num_heads=3`"):
        TransformerEncoderBlock(num_heads=3, intermediate_dim=8)(tf.zeros([1, 2, 8]))


def test_decoder_rejects_memory_of_other_size():
    with pytest.raises(ValueError, match="`encoder_sequence` should have shape"):
        TransformerDecoderBlock(num_heads=2, intermediate_dim=8)(tf.zeros([1, 2, 8]),
                                                                 tf.zeros([1, 2, 6]))


def test_usable_in_functional_model():
    x = keras.Input([5, 8])
    mask = keras.Input([5, 5], dtype=tf.bool)
    y = TransformerEncoderBlock(num_heads=2, intermediate_dim=8)(x, attention_mask=mask)
    model = keras.Model([x, mask], y)
    assert model([tf.zeros([1, 5, 8]), tf.ones([1, 5, 5], bool)]).shape == (1, 5, 8)


def test_default_initialisation_matches_reference_scales():
    """PyTorch xavier_normal_: fused in_proj (192, 64) -> 0.088; out_proj and FFN (64, 64) ->
    0.125; biases 0."""
    layer = TransformerEncoderBlock(num_heads=2, intermediate_dim=64)
    layer.build(tf.TensorShape([None, 30, 64]))
    stds = {w.name: float(np.std(w.numpy())) for w in layer.weights if "kernel" in w.name}
    expected = {"query": 0.0884, "key": 0.0884, "value": 0.0884, "attention_output": 0.125,
                "intermediate_dense": 0.125, "output_dense": 0.125}
    for name, std in stds.items():
        want = next(v for k, v in expected.items() if f"/{k}/" in f"/{name}")
        assert abs(std - want) < 0.08 * want, (name, std, want)
    for w in layer.weights:
        if "bias" in w.name or "beta" in w.name:
            np.testing.assert_array_equal(w, 0.0)


def _sequences(seed=0, b=2, t=3, s=4, d=8):
    rng = np.random.default_rng(seed)
    self_mask = _random_mask(rng, (b, t, t))
    self_mask[0, 1] = False  # A query row with no allowed key.
    cross_mask = _random_mask(rng, (b, t, s))
    cross_mask[1] = False  # A row without memory at all.
    return (rng.normal(size=(b, t, d)).astype(np.float32),
            rng.normal(size=(b, s, d)).astype(np.float32), self_mask, cross_mask)


def _blocks(dtype=None):
    kwargs = {"num_heads": 2, "intermediate_dim": 16, "dtype": dtype}
    return TransformerEncoderBlock(**kwargs), TransformerDecoderBlock(**kwargs)


def test_keras_file_round_trip(tmp_path):
    x, memory, self_mask, cross_mask = _sequences()
    encoder, decoder = _blocks()
    assert_keras_file_round_trip(encoder, {"inputs": x, "attention_mask": self_mask}, tmp_path)
    assert_keras_file_round_trip(decoder, [x, memory, self_mask, cross_mask], tmp_path)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dtype_reaches_attention_norms_and_feedforward(dtype):
    x, memory, self_mask, cross_mask = _sequences()
    encoder, decoder = _blocks(dtype)
    assert_honours_dtype(encoder, lambda l: l(x, attention_mask=self_mask), dtype)
    assert_honours_dtype(decoder, lambda l: l(x, memory, self_mask, cross_mask), dtype)


@pytest.mark.parametrize("dtype", HALF_DTYPES)
def test_rows_without_keys_get_a_zero_update_in_half_precision(dtype):
    x, memory, self_mask, cross_mask = _sequences()
    encoder, decoder = _blocks(dtype)
    assert_all_finite([encoder(x, attention_mask=self_mask),
                       decoder(x, memory, self_mask, cross_mask)])
    queries = tf.cast(x, encoder.compute_dtype)
    attended = _attend(encoder._self_attention, queries, queries, self_mask, False)
    assert_all_finite(attended)
    np.testing.assert_array_equal(attended[0, 1], 0.0)
