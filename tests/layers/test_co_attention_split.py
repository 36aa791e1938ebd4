"""CoAttentionSplit: golden weights and pos/neg masks by hand, fallbacks, padding, gradients."""

import jsr_tf  # noqa: F401  (must precede tensorflow)

import math

import numpy as np
import pytest
import tensorflow as tf

from jsr_tf.layers.co_attention_split import (CoAttentionKey, CoAttentionSplit, softmax_valid,
                                              split_by_weight)

from ._harness import (DTYPES, HALF_DTYPES, assert_all_finite, assert_honours_dtype,
                       assert_keras_file_round_trip, assert_round_trip, assert_three_ways_agree)

K = CoAttentionKey
T = math.tanh(1.0)
PAD = [9.0, -7.0]  # padding slots hold arbitrary encoder outputs; they must not matter

# Toy batch, D = 2, Lr = 4, Ls = 4 (valid slots first). W1 = I, w_q = w_d = (1, 0).
#   row 0: R = r1 (1,0), r2 (0,1), r3 (-1,0), pad;   S = s1 (1,0), s2 (0,0), s3 (0,1), pad
#   row 1: R = one slot (1,0) (length 1);            S = three equal slots (0,1): uniform
#   row 2: no history at all
#   row 3: R = (1,0), (0,1), (0,-1);                 S empty
FEED = [[[1, 0], [0, 1], [-1, 0], PAD],
        [[1, 0], PAD, PAD, PAD],
        [PAD] * 4,
        [[1, 0], [0, 1], [0, -1], PAD]]
SEARCH = [[[1, 0], [0, 0], [0, 1], PAD],
          [[0, 1], [0, 1], [0, 1], PAD],
          [PAD] * 4,
          [PAD] * 4]
FEED_VALID = [[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 0]]
SEARCH_VALID = [[1, 1, 1, 0], [1, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]]


def _softmax(x):
    e = np.exp(np.asarray(x, np.float64) - max(x))
    return e / e.sum()


# Row 0 by hand: A[r, s] = tanh(r . s) = [[T, 0, 0], [0, 0, T], [-T, 0, 0]].
#   a_s: gates w_q.R = (1, 0, -1) -> scores (1*T + (-1)(-T), 0, 0) = (2T, 0, 0)
#   a_r: gates w_d.S = (1, 0, 0)  -> scores A[:, s1] = (T, 0, -T)
# Row 1: a_r = (1); S has gates w_d.S = 0 and A = tanh(r1 . (0,1)) = 0: uniform 1/3.
# Row 3: no search slot, so every feed score is 0: uniform 1/3.
EXPECTED_FEED_WEIGHTS = [list(_softmax([T, 0, -T])) + [0], [1, 0, 0, 0], [0] * 4,
                         [1 / 3, 1 / 3, 1 / 3, 0]]
EXPECTED_SEARCH_WEIGHTS = [list(_softmax([2 * T, 0, 0])) + [0], [1 / 3, 1 / 3, 1 / 3, 0],
                           [0] * 4, [0] * 4]
EXPECTED_MASKS = {
    # row 0: only the top slot reaches 1/3; rows 1 and 3: one set is empty -> all valid slots
    K.FEED_POSITIVE: [[1, 0, 0, 0], [1, 0, 0, 0], [0] * 4, [1, 1, 1, 0]],
    K.FEED_NEGATIVE: [[0, 1, 1, 0], [1, 0, 0, 0], [0] * 4, [1, 1, 1, 0]],
    K.SEARCH_POSITIVE: [[1, 0, 0, 0], [1, 1, 1, 0], [0] * 4, [0] * 4],
    K.SEARCH_NEGATIVE: [[0, 1, 1, 0], [1, 1, 1, 0], [0] * 4, [0] * 4],
}


def _toy_layer():
    layer = CoAttentionSplit()
    layer.build(tf.TensorShape([None, 4, 2]))
    layer.set_weights([np.eye(2, dtype=np.float32), np.array([1.0, 0.0], np.float32),
                       np.array([1.0, 0.0], np.float32)])
    return layer


def _toy_inputs(feed=FEED, search=SEARCH):
    return (tf.constant(feed, tf.float32), tf.constant(search, tf.float32),
            tf.constant(np.array(FEED_VALID, bool)), tf.constant(np.array(SEARCH_VALID, bool)))


def test_golden_weights_and_masks_on_the_toy_batch():
    out = _toy_layer()(*_toy_inputs())
    np.testing.assert_allclose(out[K.FEED_WEIGHTS].numpy(), EXPECTED_FEED_WEIGHTS, atol=1e-6)
    np.testing.assert_allclose(out[K.SEARCH_WEIGHTS].numpy(), EXPECTED_SEARCH_WEIGHTS,
                               atol=1e-6)
    for key, expected in EXPECTED_MASKS.items():
        assert out[key].dtype == tf.bool
        np.testing.assert_array_equal(out[key].numpy(), np.array(expected, bool), err_msg=key)


def test_padding_contents_do_not_matter():
    feed = np.array(FEED, np.float32)
    search = np.array(SEARCH, np.float32)
    feed[~np.array(FEED_VALID, bool)] = [-50.0, 3.0]
    search[~np.array(SEARCH_VALID, bool)] = [0.5, 80.0]
    layer = _toy_layer()
    base, moved = layer(*_toy_inputs()), layer(*_toy_inputs(feed, search))
    for key in K:
        np.testing.assert_array_equal(base[key].numpy(), moved[key].numpy(), err_msg=key)


@pytest.mark.parametrize("weights, valid, positive, negative", [
    # above / below 1/n; ties at exactly 1/n count as positive
    ([0.5, 0.25, 0.25, 0.0], [1, 1, 1, 0], [1, 0, 0, 0], [0, 1, 1, 0]),
    ([0.25, 0.5, 0.125, 0.125], [1, 1, 1, 1], [1, 1, 0, 0], [0, 0, 1, 1]),
    ([1.0, 0.0, 0.0, 0.0], [1, 0, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0]),  # length 1
    ([0.25] * 4, [1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1]),  # uniform
    ([0.0] * 4, [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]),  # empty history
])
def test_golden_split_and_fallbacks(weights, valid, positive, negative):
    pos, neg = split_by_weight(tf.constant([weights]), tf.constant(np.array([valid], bool)))
    np.testing.assert_array_equal(pos.numpy()[0], np.array(positive, bool))
    np.testing.assert_array_equal(neg.numpy()[0], np.array(negative, bool))


@pytest.mark.parametrize("n", [1, 3, 7, 30])
def test_uniform_softmax_weights_fall_back_in_all_execution_modes(n):
    """Equal scores give weights of exactly 1/n, so no slot is negative (eager, graph, XLA)."""
    valid = tf.constant([[True] * n + [False] * (30 - n)])
    scores = tf.fill([1, 30], 0.37)

    def split(scores, valid):
        return split_by_weight(softmax_valid(scores, valid), valid)

    for fn in (split, tf.function(split), tf.function(split, jit_compile=True)):
        pos, neg = fn(scores, valid)
        np.testing.assert_array_equal(pos.numpy(), valid.numpy())
        np.testing.assert_array_equal(neg.numpy(), valid.numpy())


def test_masks_carry_no_gradient_and_weights_do():
    layer = _toy_layer()
    inputs = _toy_inputs()
    with tf.GradientTape(persistent=True) as tape:
        out = layer(*inputs)
        weights = tf.reduce_sum((out[K.FEED_WEIGHTS] + out[K.SEARCH_WEIGHTS]) * tf.range(4.0))
    grads = tape.gradient(weights, layer.trainable_weights)
    assert_all_finite(grads)
    for grad in grads:  # W1, w_q and w_d all learn through the weights
        assert np.abs(grad.numpy()).sum() > 0
    assert out[K.FEED_POSITIVE].dtype == tf.bool  # a bool tensor: no gradient path
    masked = tf.cast(out[K.FEED_POSITIVE], tf.float32)
    for grad in tape.gradient(masked, layer.trainable_weights,
                              unconnected_gradients=tf.UnconnectedGradients.ZERO):
        np.testing.assert_array_equal(grad.numpy(), 0.0)


def test_rows_without_history_are_finite_with_gradients():
    layer = CoAttentionSplit()
    feed, search = tf.random.normal([3, 5, 8]), tf.random.normal([3, 4, 8])
    feed_valid = tf.constant([[False] * 5, [True] * 5, [False] * 5])
    search_valid = tf.constant([[True] * 4, [False] * 4, [False] * 4])
    with tf.GradientTape() as tape:
        out = layer(feed, search, feed_valid, search_valid)
        total = tf.reduce_sum(out[K.FEED_WEIGHTS] ** 2) + tf.reduce_sum(out[K.SEARCH_WEIGHTS] ** 2)
    assert_all_finite([out[K.FEED_WEIGHTS], out[K.SEARCH_WEIGHTS]]
                      + tape.gradient(total, layer.trainable_weights))
    np.testing.assert_allclose(out[K.FEED_WEIGHTS].numpy().sum(-1), [0, 1, 0], atol=1e-6)
    np.testing.assert_allclose(out[K.SEARCH_WEIGHTS].numpy().sum(-1), [1, 0, 0], atol=1e-6)


def test_eager_graph_xla_agree():
    rng = np.random.default_rng(0)
    args = (tf.constant(rng.normal(size=(4, 6, 8)), tf.float32),
            tf.constant(rng.normal(size=(4, 5, 8)), tf.float32),
            tf.constant(rng.random((4, 6)) < 0.6), tf.constant(rng.random((4, 5)) < 0.6))
    assert_three_ways_agree(CoAttentionSplit(), *args)


def test_config_round_trip():
    args = _toy_inputs()
    assert_round_trip(CoAttentionSplit(), lambda l: l(*args))
    clone = assert_round_trip(CoAttentionSplit(kernel_initializer="zeros",
                                               gate_initializer="ones"), lambda l: l(*args))
    assert clone.get_config()["gate_initializer"]["class_name"] == "Ones"


def test_invalid_shapes():
    with pytest.raises(ValueError, match="`feed` should have rank 3"):
        CoAttentionSplit()(tf.zeros([2, 8]), tf.zeros([2, 3, 8]), tf.ones([2], bool),
                           tf.ones([2, 3], bool))
    with pytest.raises(ValueError, match="`search` should have shape"):
        CoAttentionSplit()(tf.zeros([2, 4, 8]), tf.zeros([2, 3, 6]), tf.ones([2, 4], bool),
                           tf.ones([2, 3], bool))


def test_keras_file_round_trip(tmp_path):
    assert_keras_file_round_trip(CoAttentionSplit(), [x.numpy() for x in _toy_inputs()],
                                 tmp_path)


@pytest.mark.parametrize("dtype", DTYPES)
def test_output_in_the_compute_dtype(dtype):
    assert_honours_dtype(CoAttentionSplit(dtype=dtype), lambda l: l(*_toy_inputs()), dtype)


@pytest.mark.parametrize("dtype", HALF_DTYPES)
def test_golden_rows_without_history_in_half_precision(dtype):
    """Was NaN in float16: the -1e12 fill overflowed to -inf."""
    layer = CoAttentionSplit(dtype=dtype)
    layer.build(tf.TensorShape([None, 4, 2]))
    layer.set_weights(_toy_layer().get_weights())
    out = layer(*_toy_inputs())
    assert_all_finite([out[K.FEED_WEIGHTS], out[K.SEARCH_WEIGHTS]])
    for key, expected in ((K.FEED_WEIGHTS, EXPECTED_FEED_WEIGHTS),
                          (K.SEARCH_WEIGHTS, EXPECTED_SEARCH_WEIGHTS)):
        np.testing.assert_allclose(tf.cast(out[key], tf.float32), expected, atol=1e-2)
    np.testing.assert_array_equal(out[K.FEED_WEIGHTS][2], 0.0)  # No feed history.
    np.testing.assert_array_equal(out[K.SEARCH_WEIGHTS][2:], 0.0)  # No search history.
    for key in (K.FEED_POSITIVE, K.FEED_NEGATIVE):
        assert not out[key][2].numpy().any()
