"""QueryItemInfoNCE: one W and tau shared by both directions, 0/1 pair weights."""

import jsr_tf  # noqa: F401  (must precede tensorflow)

import math

import numpy as np
import pytest
import tensorflow as tf

from jsr_tf.layers.query_item_infonce import QueryItemInfoNCE, tanh_logsumexp

from ._harness import (DTYPES, assert_all_finite,
                       assert_keras_file_round_trip, assert_round_trip, assert_three_ways_agree)

B, L, K, D, N, M = 2, 3, 2, 4, 5, 7


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    queries = rng.normal(size=(B, L, D)).astype(np.float32)
    items = rng.normal(size=(B, L, K, D)).astype(np.float32)
    mask = rng.random((B, L, K)) < 0.6
    mask[0, 0, 0] = True
    neg_items = rng.normal(size=(N, D)).astype(np.float32)
    neg_queries = rng.normal(size=(M, D)).astype(np.float32)
    return queries, items, mask, neg_items, neg_queries


def _numpy_reference(queries, items, mask, neg_items, neg_queries, kernel, tau):
    def ce(a, b, negatives):
        logits = np.tanh(np.concatenate([[a @ kernel @ b], a @ kernel @ negatives.T])) / tau
        return np.log(np.exp(logits).sum()) - logits[0]

    q2i, i2q = [], []
    for b, s, k in zip(*np.nonzero(mask)):
        q2i.append(ce(queries[b, s], items[b, s, k], neg_items))
        i2q.append(ce(items[b, s, k], queries[b, s], neg_queries))
    return 0.5 * (np.mean(q2i) + np.mean(i2q))


def test_zero_kernel_gives_log_of_candidates():
    """tanh(0) everywhere: ln(N + 1) for query->item and ln(M + 1) for item->query."""
    layer = QueryItemInfoNCE(kernel_initializer="zeros")
    loss = layer(*_inputs())
    np.testing.assert_allclose(loss, 0.5 * (math.log(N + 1) + math.log(M + 1)), rtol=1e-6)


def test_matches_numpy_reference():
    args = _inputs(1)
    layer = QueryItemInfoNCE(temperature=0.5)
    layer(*args)
    kernel = np.random.default_rng(2).normal(0, 0.5, size=(D, D)).astype(np.float32)
    layer.set_weights([kernel, np.float32(0.5)])
    np.testing.assert_allclose(layer(*args), _numpy_reference(*args, kernel, 0.5), rtol=1e-5)


def test_distinct_item_anchors_match_the_per_pair_formula_eager_and_xla():
    """With ``item_ids`` the item -> query negatives are scored once per distinct id (the
    shortcut); items sharing an id share a vector, and the loss is the per-pair reference's.
    Under XLA (fixed shapes, every slot) the value is the same."""
    queries, items, mask, neg_items, neg_queries = _inputs(5)
    ids = np.random.default_rng(6).integers(1, 4, size=mask.shape)  # 3 ids: many repeats
    table = np.random.default_rng(7).normal(size=(4, D)).astype(np.float32)
    items = table[ids]
    layer = QueryItemInfoNCE(temperature=0.7)
    layer(queries, items, mask, neg_items, neg_queries)
    kernel = np.random.default_rng(8).normal(0, 0.3, size=(D, D)).astype(np.float32)
    layer.set_weights([kernel, np.float32(0.7)])
    expected = _numpy_reference(queries, items, mask, neg_items, neg_queries, kernel, 0.7)
    args = (queries, items, mask, neg_items, neg_queries)
    np.testing.assert_allclose(layer(*args, item_ids=ids), expected, rtol=1e-5)
    xla = tf.function(lambda *a: layer(*a, item_ids=ids), jit_compile=True)
    np.testing.assert_allclose(xla(*args), expected, rtol=1e-5)


@pytest.mark.parametrize("scale", [0.5, 2.0, 80.0])
def test_tanh_logsumexp_value_and_gradient_equal_autodiff(scale):
    """The hand-written gradient equals TensorFlow's of the plain formula; stable for a large
    scale (a small temperature: exp(80) alone would overflow a naive sum in float32)."""
    rng = np.random.default_rng(9)
    anchors = tf.constant(rng.normal(size=(7, 5)), tf.float32)
    negatives = tf.constant(rng.normal(size=(11, 5)), tf.float32)
    scale = tf.constant(scale)
    upstream = tf.constant(rng.normal(size=(7,)), tf.float32)

    def plain(a, n, c):
        return tf.reduce_logsumexp(tf.tanh(tf.matmul(a, n, transpose_b=True)) * c, axis=-1)

    results = []
    for fn in (plain, tanh_logsumexp):
        with tf.GradientTape() as tape:
            tape.watch([anchors, negatives, scale])
            value = fn(anchors, negatives, scale)
            loss = tf.reduce_sum(value * upstream)
        results.append([value, *tape.gradient(loss, [anchors, negatives, scale])])
    assert np.isfinite(results[1][0]).all()
    tolerance = 1e-5 * max(1.0, float(scale) / 10)  # round-off grows with the scale
    for got, want in zip(results[1], results[0]):
        np.testing.assert_allclose(got, want, rtol=tolerance, atol=tolerance)


def test_masked_pairs_do_not_matter():
    queries, items, mask, neg_items, neg_queries = _inputs(3)
    layer = QueryItemInfoNCE()
    a = layer(queries, items, mask, neg_items, neg_queries)
    items[~mask] = 40.0
    np.testing.assert_allclose(layer(queries, items, mask, neg_items, neg_queries), a, rtol=1e-6)


def test_no_pairs_is_zero_and_finite():
    queries, items, mask, neg_items, neg_queries = _inputs()
    layer = QueryItemInfoNCE()
    with tf.GradientTape() as tape:
        loss = layer(queries, items, np.zeros_like(mask), neg_items, neg_queries)
    assert float(loss) == 0.0
    assert_all_finite([loss] + tape.gradient(loss, layer.trainable_weights))


def test_one_kernel_and_temperature_shared_by_both_directions():
    layer = QueryItemInfoNCE(temperature=0.1)
    layer(*_inputs())
    assert [w.name.split("/")[-1] for w in layer.trainable_weights] == ["kernel:0",
                                                                       "temperature:0"]
    np.testing.assert_allclose(layer.tau, 0.1, rtol=1e-6)


def test_eager_graph_xla_agree():
    assert_three_ways_agree(QueryItemInfoNCE(), *map(tf.constant, _inputs(4)))


def test_config_round_trip():
    args = _inputs(5)
    clone = assert_round_trip(QueryItemInfoNCE(temperature=0.25), lambda l: l(*args))
    assert clone.temperature == 0.25


def test_invalid_arguments():
    with pytest.raises(ValueError, match="`temperature` should be a positive float. "
                                         "Received: `temperature=-1.0`"):
        QueryItemInfoNCE(temperature=-1.0)


def test_keras_file_round_trip(tmp_path):
    assert_keras_file_round_trip(QueryItemInfoNCE(temperature=0.3), _inputs(), tmp_path)


@pytest.mark.parametrize("dtype", DTYPES)
def test_output_in_the_compute_dtype(dtype):
    """Half-precision policies run the matmuls in half precision and return a float32 loss."""
    layer = QueryItemInfoNCE(dtype=dtype)
    loss = layer(*_inputs())
    half = layer.compute_dtype in ("float16", "bfloat16")
    assert loss.dtype == (tf.float32 if half else layer.compute_dtype)
    assert np.isfinite(loss.numpy())
    assert all(w.dtype == layer.dtype_policy.variable_dtype for w in layer.weights)
