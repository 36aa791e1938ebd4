"""NeighbourFusion: masks (golden), identity at init, similarity and side biases (golden),
dropouts only in training, candidate handling, serialization, invalid arguments."""

import jsr_tf  # noqa: F401  (must precede tensorflow)

import math
import re

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from jsr_tf.layers.neighbour_fusion import NeighbourFusion

from ._harness import (DTYPES, HALF_DTYPES, assert_all_finite, assert_honours_dtype,
                       assert_keras_file_round_trip, assert_round_trip, assert_three_ways_agree)

B, C, K, D = 2, 3, 4, 8


def _inputs(seed=0, side=None):
    rng = np.random.default_rng(seed)
    interest = rng.normal(size=(B, C, D)).astype(np.float32)
    candidates = rng.normal(size=(B, C, D)).astype(np.float32)
    neighbours = rng.normal(size=(B, K, D)).astype(np.float32)
    sim = rng.uniform(0.05, 0.9, size=(B, K)).astype(np.float32)
    if side is None:
        side = np.array([[1, 2, 0, 1], [2, 2, 1, 0]], np.int64)
    return interest, neighbours, sim, np.asarray(side, np.int64), candidates


def _fusion(**kwargs):
    kwargs.setdefault("num_heads", 2)
    kwargs.setdefault("head_dim", 4)
    kwargs.setdefault("dropout", 0.0)
    kwargs.setdefault("slot_dropout", 0.0)
    return NeighbourFusion(**kwargs)


def _call(layer, interest, neighbours, sim, side, candidates, **kwargs):
    return layer(interest, neighbours, sim, side, candidates=candidates, **kwargs)


# -- shapes ----------------------------------------------------------------------------------
def test_output_and_attention_shapes_with_candidates():
    out, alpha = _call(_fusion(), *_inputs(), return_attention_scores=True)
    assert out.shape == (B, C, D) and alpha.shape == (B, 2, C, K)


def test_rank_two_interest_for_a_user_vector():
    interest, neighbours, sim, side, candidates = _inputs()
    out, alpha = _fusion(candidate_aware=False, output_initializer="ones")(
        interest[:, 0], neighbours, sim, side, return_attention_scores=True)
    assert out.shape == (B, D) and alpha.shape == (B, 2, K)
    out = _fusion()(interest[:, 0], neighbours, sim, side, candidates=candidates[:, 0])
    assert out.shape == (B, D)


# -- masks -----------------------------------------------------------------------------------
def test_golden_mask_empty_slots_get_zero_and_an_empty_row_is_the_identity():
    side = np.array([[1, 0, 2, 0], [0, 0, 0, 0]])
    interest, neighbours, sim, side, candidates = _inputs(side=side)
    layer = _fusion(output_initializer="ones")  # Wo != 0, so real slots do change row 0
    out, alpha = _call(layer, interest, neighbours, sim, side, candidates,
                       return_attention_scores=True)
    alpha, out = alpha.numpy(), out.numpy()
    assert (alpha[0, :, :, [1, 3]] == 0.0).all() and (alpha[0, :, :, [0, 2]] > 0).all()
    np.testing.assert_allclose(alpha[0].sum(-1), 1.0, rtol=1e-6)
    assert (alpha[1] == 0.0).all()  # exactly zero, not uniform
    np.testing.assert_array_equal(out[1], interest[1])  # bit-exact identity
    assert np.abs(out[0] - interest[0]).max() > 1e-3


def test_all_masked_rows_have_finite_gradients():
    interest, neighbours, sim, _, candidates = _inputs()
    layer = _fusion(output_initializer="ones")
    with tf.GradientTape() as tape:
        out = _call(layer, interest, neighbours, sim, np.zeros([B, K], np.int64), candidates)
    assert_all_finite([out] + tape.gradient(out, layer.trainable_weights))


# -- identity at init, similarity and side biases ------------------------------------------------
def test_zero_output_kernel_makes_a_new_fusion_an_exact_identity():
    interest, *rest = _inputs()
    out = _call(_fusion(), interest, *rest)
    np.testing.assert_array_equal(out.numpy(), interest)


def test_golden_similarity_bias_with_zero_query_and_key():
    """`Wq = Wk = 0`: logits are `beta * sim`, so alpha = softmax(sim) (beta starts at 1) and
    reversing the sims reverses alpha."""
    layer = _fusion(kernel_initializer="zeros")
    interest, neighbours, _, _, candidates = _inputs()
    sim = np.array([[0.1, 0.5, 0.9, 0.3]] * B, np.float32)
    side = np.ones([B, K], np.int64)
    _, alpha = _call(layer, interest, neighbours, sim, side, candidates,
                     return_attention_scores=True)
    expected = np.exp(sim[0]) / np.exp(sim[0]).sum()
    np.testing.assert_allclose(alpha.numpy(), np.broadcast_to(expected, (B, 2, C, K)), rtol=1e-6)
    _, reversed_alpha = _call(layer, interest, neighbours, sim[:, ::-1], side, candidates,
                              return_attention_scores=True)
    np.testing.assert_allclose(reversed_alpha.numpy(), alpha.numpy()[..., ::-1], rtol=1e-6)
    layer.similarity_bias.assign(0.0)  # no similarity bias: uniform over the slots
    _, uniform = _call(layer, interest, neighbours, sim, side, candidates,
                       return_attention_scores=True)
    np.testing.assert_allclose(uniform.numpy(), 0.25, rtol=1e-6)


def test_golden_side_bias():
    """`tau_side = [0, 0, ln 3]`, `beta = 0`, zero query/key: a search-side slot weighs 3x."""
    layer = _fusion(kernel_initializer="zeros")
    interest, neighbours, sim, _, candidates = _inputs()
    side = np.array([[1, 2, 0, 0]] * B, np.int64)
    _call(layer, interest, neighbours, sim, side, candidates)
    layer.similarity_bias.assign(0.0)
    layer.side_bias.assign([0.0, 0.0, math.log(3.0)])
    _, alpha = _call(layer, interest, neighbours, sim, side, candidates,
                     return_attention_scores=True)
    np.testing.assert_allclose(alpha.numpy()[..., :2], np.broadcast_to([0.25, 0.75], (B, 2, C, 2)),
                               rtol=1e-6)


def test_golden_output_with_hand_set_weights():
    """One head of size 1, `Wq = Wk = 0`, `beta = 0`, `Wv = Wo = 1`, gate kernel 0:
    `m = mean_k(sum_d n_k)` over real slots, `g = 1/2`, `h' = h + m / 2`."""
    layer = NeighbourFusion(num_heads=1, head_dim=1, dropout=0.0, slot_dropout=0.0,
                            kernel_initializer="zeros", output_initializer="ones")
    interest, neighbours, sim, side, candidates = _inputs()
    _call(layer, interest, neighbours, sim, side, candidates)
    layer.similarity_bias.assign(0.0)
    layer.value_kernel.assign(tf.ones_like(layer.value_kernel))
    out = _call(layer, interest, neighbours, sim, side, candidates).numpy()
    for b in range(B):
        real = side[b] != 0
        m = neighbours[b][real].sum(-1).mean()
        np.testing.assert_allclose(out[b], interest[b] + 0.5 * m, rtol=1e-5, atol=1e-6)


# -- candidates ------------------------------------------------------------------------------------
def test_candidates_are_attended_independently_like_tiling():
    layer = _fusion(output_initializer="ones")
    interest, neighbours, sim, side, candidates = _inputs()
    together = _call(layer, interest, neighbours, sim, side, candidates).numpy()
    for c in range(C):
        alone = _call(layer, interest[:, c:c + 1], neighbours, sim, side,
                      candidates[:, c:c + 1]).numpy()
        np.testing.assert_allclose(alone[:, 0], together[:, c], rtol=1e-5, atol=1e-6)


def test_not_candidate_aware_queries_with_the_mean_interest():
    layer = _fusion(candidate_aware=False, output_initializer="ones")
    interest, neighbours, sim, side, candidates = _inputs()
    out, alpha = _call(layer, interest, neighbours, sim, side, candidates,
                       return_attention_scores=True)
    assert alpha.shape == (B, 2, 1, K)
    _, pooled_alpha = layer(interest.mean(axis=1), neighbours, sim, side,
                            return_attention_scores=True)
    np.testing.assert_allclose(alpha.numpy()[:, :, 0], pooled_alpha.numpy(), rtol=1e-5)
    ignored = _call(layer, interest, neighbours, sim, side, np.zeros_like(candidates))
    np.testing.assert_array_equal(ignored.numpy(), out.numpy())


# -- dropouts -----------------------------------------------------------------------------------
def test_slot_dropout_only_in_training():
    rows = 400
    rng = np.random.default_rng(1)
    interest = rng.normal(size=(rows, 1, D)).astype(np.float32)
    neighbours = rng.normal(size=(rows, K, D)).astype(np.float32)
    sim = np.full([rows, K], 0.5, np.float32)
    side = np.ones([rows, K], np.int64)
    layer = _fusion(slot_dropout=0.3, seed=3)
    _, inference = _call(layer, interest, neighbours, sim, side, interest,
                         return_attention_scores=True)
    assert (inference.numpy() > 0).all()
    _, trained = _call(layer, interest, neighbours, sim, side, interest, training=True,
                       return_attention_scores=True)
    dropped = (trained.numpy()[:, 0, 0] == 0)  # (rows, K), same for both heads
    np.testing.assert_array_equal(dropped, trained.numpy()[:, 1, 0] == 0)
    assert 0.2 < dropped.mean() < 0.4
    kept = ~dropped.all(axis=-1)
    np.testing.assert_allclose(trained.numpy()[kept].sum(-1), 1.0, rtol=1e-5)


def test_attention_dropout_only_in_training():
    layer = _fusion(dropout=0.5, output_initializer="ones")
    inputs = _inputs()
    first = _call(layer, *inputs).numpy()
    np.testing.assert_array_equal(first, _call(layer, *inputs, training=False).numpy())
    assert np.abs(_call(layer, *inputs, training=True).numpy() - first).max() > 1e-4


def test_eager_graph_xla_agree():
    layer = _fusion(output_initializer="ones")
    inputs = _inputs()
    assert_three_ways_agree(lambda *a: _call(layer, *a), *inputs)


# -- serialization ------------------------------------------------------------------------------
def test_config_round_trip():
    inputs = _inputs()
    layer = NeighbourFusion(num_heads=3, head_dim=5, dropout=0.2, slot_dropout=0.05,
                            candidate_aware=True, output_initializer="glorot_uniform", seed=4)
    clone = assert_round_trip(layer, lambda l: _call(l, *inputs))
    assert (clone.num_heads, clone.head_dim, clone.dropout, clone.slot_dropout, clone.seed) == (
        3, 5, 0.2, 0.05, 4)


def test_saved_model_reload_gives_the_same_output(tmp_path):
    inputs = _inputs()
    layer = _fusion(output_initializer="ones")
    expected = _call(layer, *inputs).numpy()
    module = tf.Module()
    module.layer = layer
    module.run = tf.function(
        lambda h, n, s, side, e: layer(h, n, s, side, candidates=e),
        input_signature=[tf.TensorSpec([None, None, D]), tf.TensorSpec([None, K, D]),
                         tf.TensorSpec([None, K]), tf.TensorSpec([None, K], tf.int64),
                         tf.TensorSpec([None, None, D])])
    tf.saved_model.save(module, str(tmp_path / "saved"))
    restored = tf.saved_model.load(str(tmp_path / "saved"))
    np.testing.assert_allclose(restored.run(*inputs).numpy(), expected, atol=1e-6)


def test_registered_for_deserialization():
    assert keras.saving.get_registered_object("jsr_tf>NeighbourFusion") is NeighbourFusion


# -- invalid arguments ---------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, message", [
    ({"num_heads": 0}, "`num_heads` should be a positive integer. Received: `num_heads=0`"),
    ({"head_dim": -1}, "`head_dim` should be a positive integer. Received: `head_dim=-1`"),
    ({"dropout": 1.0}, "`dropout` should be a float in [0, 1). Received: `dropout=1.0`"),
    ({"slot_dropout": -0.1}, "`slot_dropout` should be a float in [0, 1)"),
    ({"candidate_aware": "yes"}, "`candidate_aware` should be a bool"),
    ({"seed": -1}, "`seed` should be a non-negative integer"),
])
def test_invalid_arguments(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        NeighbourFusion(**kwargs)


def test_candidate_aware_without_candidates_raises():
    interest, neighbours, sim, side, _ = _inputs()
    with pytest.raises(ValueError, match="`candidates` is required"):
        _fusion()(interest, neighbours, sim, side)


def test_bad_shapes_raise():
    interest, neighbours, sim, side, candidates = _inputs()
    with pytest.raises(ValueError, match="`interest` should have shape"):
        _fusion(candidate_aware=False)(interest[None], neighbours, sim, side)
    with pytest.raises(ValueError, match="`neighbours` should have the last dimension"):
        _call(_fusion(), interest, neighbours[..., :3], sim, side, candidates)


def test_keras_file_round_trip(tmp_path):
    names = ("interest", "neighbours", "similarity", "side", "candidates")
    assert_keras_file_round_trip(_fusion(output_initializer="glorot_uniform"),
                                 dict(zip(names, _inputs())), tmp_path)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dtype_reaches_the_gate_and_dropout(dtype):
    layer = _fusion(output_initializer="glorot_uniform", dtype=dtype)
    assert_honours_dtype(layer, lambda l: _call(l, *_inputs()), dtype)


@pytest.mark.parametrize("dtype", HALF_DTYPES)
def test_golden_empty_row_is_the_identity_in_half_precision(dtype):
    """Was NaN in float16: the -1e9 fill overflowed to -inf."""
    interest, neighbours, sim, side, candidates = _inputs(side=[[1, 2, 0, 1], [0, 0, 0, 0]])
    layer = _fusion(output_initializer="ones", dtype=dtype)
    out, alpha = _call(layer, interest, neighbours, sim, side, candidates,
                       return_attention_scores=True)
    assert_all_finite([out, alpha])
    np.testing.assert_array_equal(alpha[1], 0.0)
    np.testing.assert_array_equal(out[1], tf.cast(interest[1], out.dtype))
    assert not np.array_equal(out[0], tf.cast(interest[0], out.dtype))
