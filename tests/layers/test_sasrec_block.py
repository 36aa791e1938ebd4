"""SASRec block and causal mask: golden mask, numpy reference, causality, empty rows, config."""

import jsr_tf  # noqa: F401  (must precede tensorflow)

import numpy as np
import pytest
import tensorflow as tf

from jsr_tf.layers.sasrec_block import SASRecBlock, causal_mask

from ._harness import (DTYPES, HALF_DTYPES, assert_all_finite, assert_honours_dtype,
                       assert_keras_file_round_trip, assert_round_trip, assert_three_ways_agree)

EPS = 1e-8
B, L, D = 3, 5, 8


# ---------------------------------------------------------------------------------------------
def test_golden_causal_mask_on_left_padded_sequence():
    # Left-padded toy sequence [pad, pad, i1, i2, i3]: True = may attend.
    mask = np.asarray(causal_mask(tf.constant([[False, False, True, True, True]])))[0]
    np.testing.assert_array_equal(mask.astype(int), [
        [0, 0, 0, 0, 0],  # pad slots read nothing (all-masked rows)
        [0, 0, 0, 0, 0],
        [0, 0, 1, 0, 0],  # i1 reads itself only
        [0, 0, 1, 1, 0],  # i2 reads i1, i2
        [0, 0, 1, 1, 1],  # i3 (newest) reads everything real
    ])


def test_causal_mask_never_reads_later_slots_or_pads():
    rng = np.random.default_rng(0)
    valid = rng.random([4, 7]) < 0.6
    mask = np.asarray(causal_mask(tf.constant(valid)))
    assert mask.shape == (4, 7, 7) and mask.dtype == bool
    t, j = np.meshgrid(np.arange(7), np.arange(7), indexing="ij")
    np.testing.assert_array_equal(mask, (j <= t)[None] & valid[:, None, :])
    assert not mask[:, np.triu_indices(7, 1)[0], np.triu_indices(7, 1)[1]].any()


# ---------------------------------------------------------------------------------------------
def _layer_norm(x, norm):
    gamma, beta = norm.gamma.numpy(), norm.beta.numpy()
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + EPS) * gamma + beta


def _reference(layer, x, valid):
    """Independent numpy SASRec block (dropout off): pre-LN queries, raw keys/values."""
    att = layer._self_attention
    w = [v.numpy() for v in (att._query_dense.kernel, att._query_dense.bias,
                             att._key_dense.kernel, att._key_dense.bias,
                             att._value_dense.kernel, att._value_dense.bias,
                             att._output_dense.kernel, att._output_dense.bias)]
    qk, qb, kk, kb, vk, vb, ok, ob = w
    queries = _layer_norm(x, layer._attention_norm)
    q = np.einsum("btd,dhk->bthk", queries, qk) + qb
    k = np.einsum("bsd,dhk->bshk", x, kk) + kb
    v = np.einsum("bsd,dhk->bshk", x, vk) + vb
    scores = np.einsum("bthk,bshk->bhts", q, k) / np.sqrt(q.shape[-1])
    heads = np.zeros(q.shape)
    has_key = np.zeros(x.shape[:2] + (1,))
    for b in range(x.shape[0]):
        for t in range(x.shape[1]):
            allowed = valid[b] & (np.arange(x.shape[1]) <= t)
            if not allowed.any():
                continue  # zero attention update
            has_key[b, t] = 1
            for h in range(q.shape[2]):
                s = np.where(allowed, scores[b, h, t], -np.inf)
                p = np.exp(s - s.max())
                heads[b, t, h] = (p / p.sum()) @ v[b, :, h]
    attended = (np.einsum("bthk,hkd->btd", heads, ok) + ob) * has_key
    y = _layer_norm(queries + attended, layer._feedforward_norm)
    inner, outer = layer._intermediate_dense, layer._output_dense
    ffn = (np.maximum(y @ inner.kernel.numpy() + inner.bias.numpy(), 0) @ outer.kernel.numpy()
           + outer.bias.numpy())
    return (y + ffn) * valid[..., None]


def _inputs(rng):
    valid = np.array([[False, False, True, True, True],   # left-padded
                      [False, False, False, False, True],  # one item
                      [False] * L])                        # no history at all
    x = rng.normal(size=(B, L, D)).astype(np.float32) * valid[..., None]
    return x, valid


def _randomised_block(rng, num_heads=2):
    layer = SASRecBlock(num_heads=num_heads, intermediate_dim=D)
    layer.build(tf.TensorShape([None, L, D]))
    layer.set_weights([rng.normal(0, 0.3, w.shape).astype(np.float32) for w in layer.weights])
    return layer


@pytest.mark.parametrize("num_heads", [1, 2])
def test_matches_numpy_reference(num_heads):
    rng = np.random.default_rng(1)
    layer = _randomised_block(rng, num_heads)
    x, valid = _inputs(rng)
    got = layer(tf.constant(x), tf.constant(valid)).numpy()
    np.testing.assert_allclose(got, _reference(layer, x, valid), atol=2e-5, rtol=1e-4)


def test_pad_slots_are_exactly_zero_and_output_shape():
    rng = np.random.default_rng(2)
    layer = _randomised_block(rng)
    x, valid = _inputs(rng)
    out = layer(tf.constant(x), tf.constant(valid)).numpy()
    assert out.shape == (B, L, D)
    assert (out[~valid] == 0).all()
    assert (np.abs(out[valid]) > 0).any(axis=-1).all()


def test_earlier_slots_do_not_see_later_items():
    rng = np.random.default_rng(3)
    layer = _randomised_block(rng)
    x, valid = _inputs(rng)
    changed = x.copy()
    changed[0, 4] += 5.0  # only the newest item of row 0
    a = layer(tf.constant(x), tf.constant(valid)).numpy()
    b = layer(tf.constant(changed), tf.constant(valid)).numpy()
    np.testing.assert_allclose(a[:, :4], b[:, :4], atol=1e-6)
    assert np.abs(a[0, 4] - b[0, 4]).max() > 1e-3


def test_empty_rows_give_finite_outputs_and_gradients():
    rng = np.random.default_rng(4)
    layer = SASRecBlock(num_heads=1, intermediate_dim=D)
    x, valid = _inputs(rng)
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = layer(x, tf.constant(valid), training=True)
        loss = tf.reduce_sum(out[:, -1] ** 2)
    grads = tape.gradient(loss, [x] + layer.trainable_variables)
    assert_all_finite([out] + grads)
    assert (out.numpy()[2] == 0).all()  # the all-pad row


def test_eager_graph_xla_agree():
    rng = np.random.default_rng(5)
    layer = _randomised_block(rng)
    x, valid = _inputs(rng)
    assert_three_ways_agree(layer, tf.constant(x), tf.constant(valid))


def test_config_round_trip():
    layer = SASRecBlock(num_heads=2, intermediate_dim=16, dropout=0.3, layer_norm_epsilon=1e-6,
                        name="block")
    x, valid = _inputs(np.random.default_rng(6))
    clone = assert_round_trip(layer, lambda lay: lay(tf.constant(x), tf.constant(valid)))
    config = clone.get_config()
    assert (config["num_heads"], config["intermediate_dim"], config["dropout"],
            config["layer_norm_epsilon"]) == (2, 16, 0.3, 1e-6)
    assert SASRecBlock(1, 4).layer_norm_epsilon == 1e-8  # the reference default


@pytest.mark.parametrize("kwargs, message", [
    ({"num_heads": 0, "intermediate_dim": 8}, "`num_heads` should be a positive integer. "
                                              "Received: `num_heads=0`"),
    ({"num_heads": 1, "intermediate_dim": 8, "dropout": 1.0}, "`dropout` should be a float"),
])
def test_invalid_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SASRecBlock(**kwargs)


def test_model_size_must_divide_heads():
    with pytest.raises(ValueError, match="divisible by `num_heads=3`"):
        SASRecBlock(num_heads=3, intermediate_dim=8)(tf.zeros([1, L, D]), tf.ones([1, L], bool))


def test_keras_file_round_trip(tmp_path):
    assert_keras_file_round_trip(SASRecBlock(num_heads=2, intermediate_dim=D),
                                 _inputs(np.random.default_rng(0)), tmp_path)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dtype_reaches_attention_norms_and_feedforward(dtype):
    x, valid = _inputs(np.random.default_rng(0))
    assert_honours_dtype(SASRecBlock(num_heads=2, intermediate_dim=D, dtype=dtype),
                         lambda l: l(x, valid), dtype)


@pytest.mark.parametrize("dtype", HALF_DTYPES)
def test_empty_rows_finite_and_zero_in_half_precision(dtype):
    x, valid = _inputs(np.random.default_rng(0))
    out = SASRecBlock(num_heads=2, intermediate_dim=D, dtype=dtype)(x, valid)
    assert_all_finite(out)
    np.testing.assert_array_equal(out[2], 0.0)  # No history at all.
    np.testing.assert_array_equal(out[0, :2], 0.0)  # Left padding.
