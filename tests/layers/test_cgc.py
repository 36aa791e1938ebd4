"""CGC (one-level PLE): 4 shared + 4 per-task experts, per-task gates, towers."""

import jsr_tf  # noqa: F401  (must precede tensorflow)

import numpy as np
import pytest
import tensorflow as tf

from jsr_tf.layers.cgc import CGC

from ._harness import (DTYPES, assert_honours_dtype, assert_keras_file_round_trip,
                       assert_round_trip, assert_three_ways_agree, count_params)


def _relu(x):
    return np.maximum(x, 0)


def _numpy_reference(layer, x):
    """Independent computation from the layer's weights: gate over [task experts, shared]."""
    def dense(sub, h, act=True):
        y = h @ sub.kernel.numpy() + sub.bias.numpy()
        return _relu(y) if act else y

    shared = [dense(e._dense_layers[0], x) for e in layer._shared_experts]
    outputs = []
    for t in range(layer.num_tasks):
        experts = [dense(e._dense_layers[0], x) for e in layer._task_experts[t]] + shared
        logits = dense(layer._gates[t], x, act=False)
        gate = np.exp(logits - logits.max(-1, keepdims=True))
        gate /= gate.sum(-1, keepdims=True)
        mixed = sum(gate[..., k:k + 1] * e for k, e in enumerate(experts))
        h = mixed
        for sub in layer._towers[t]._dense_layers:
            h = dense(sub, h)
        outputs.append(h)
    return outputs


def test_golden_ones_kernels():
    """Every expert = relu(sum x) = 3.2, uniform gates keep 3.2, towers 64*3.2 then 128*204.8."""
    layer = CGC(kernel_initializer="ones")
    outputs = layer(tf.fill([2, 5, 320], 0.01))
    assert len(outputs) == 2
    for out in outputs:
        assert out.shape == (2, 5, 64)
        np.testing.assert_allclose(out, 128 * 64 * 3.2, rtol=1e-5)


def test_matches_numpy_reference_with_random_weights():
    rng = np.random.default_rng(0)
    layer = CGC(num_shared_experts=2, num_task_experts=3, expert_units=6, tower_units=(5, 4))
    x = rng.normal(size=(2, 3, 7)).astype(np.float32)
    layer(x)
    layer.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32) for w in layer.weights])
    got = layer(x, training=False)
    for g, w in zip(got, _numpy_reference(layer, x)):
        np.testing.assert_allclose(g, w, atol=1e-5)


def test_gate_order_task_experts_then_shared():
    """A gate bias that selects slot 0 must pick the task's own first expert, not a shared one."""
    layer = CGC(num_tasks=1, num_shared_experts=1, num_task_experts=1, expert_units=1,
                tower_units=(1,), dropout=0.0, kernel_initializer="zeros")
    layer(tf.ones([1, 2]))
    layer._task_experts[0][0]._dense_layers[0].bias.assign([1.0])
    layer._shared_experts[0]._dense_layers[0].bias.assign([5.0])
    layer._towers[0]._dense_layers[0].kernel.assign([[1.0]])
    layer._gates[0].bias.assign([100.0, 0.0])  # Slot 0 gets all the weight.
    np.testing.assert_allclose(layer(tf.ones([1, 2]))[0], [[1.0]], rtol=1e-5)


def test_reference_parameter_count_without_shared_gate():
    layer = CGC()
    layer(tf.zeros([1, 5, 320]))
    # 12 experts x (320*64 + 64) + 2 gates x (320*8 + 8) + 2 towers x (64*128 + 128 + 128*64 + 64)
    assert count_params(layer.trainable_weights) == 284_816  # 288,668 - 3,852 (shared gate).
    assert not any("shared_gate" in w.name for w in layer.weights)
    assert layer._gates[0].units == 8


def test_dropout_only_in_training():
    layer = CGC(dropout=0.5)
    x = tf.random.normal([4, 3, 16])
    a = layer(x, training=False)
    np.testing.assert_allclose(a[0], layer(x, training=False)[0])
    assert not np.allclose(a[0], layer(x, training=True)[0])


def test_eager_graph_xla_agree():
    layer = CGC(expert_units=8, tower_units=(8, 4))
    assert_three_ways_agree(layer, tf.random.normal([3, 5, 16]))


def test_config_round_trip():
    layer = CGC(num_tasks=3, num_shared_experts=2, num_task_experts=1, expert_units=8,
                tower_units=(6, 4), dropout=0.2)
    x = tf.random.normal([2, 3, 10])
    clone = assert_round_trip(layer, lambda l: l(x))
    assert clone.num_tasks == 3 and clone.tower_units == (6, 4)


@pytest.mark.parametrize("kwargs, message", [
    ({"num_tasks": 0}, "`num_tasks` should be a positive integer. Received: `num_tasks=0`"),
    ({"num_shared_experts": -1}, "`num_shared_experts` should be a non-negative integer"),
    ({"num_shared_experts": 0, "num_task_experts": 0}, "should be positive"),
    ({"expert_units": 0}, "`expert_units` should be a positive integer"),
    ({"tower_units": []}, "`tower_units` should be a non-empty sequence"),
    ({"dropout": 1.0}, "`dropout` should be a float in \\[0, 1\\)"),
])
def test_invalid_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CGC(**kwargs)


def test_requested_tasks_only_match_the_full_call():
    layer = CGC(num_tasks=2, num_shared_experts=2, num_task_experts=3, expert_units=4,
                tower_units=(5, 3))
    x = tf.random.stateless_normal([2, 3, 7], seed=[1, 2])
    full = layer(x)
    for t in (0, 1):
        (one,) = layer(x, tasks=(t,))
        np.testing.assert_allclose(one.numpy(), full[t].numpy(), rtol=1e-6)
    both = layer(x, tasks=(1, 0))
    np.testing.assert_allclose(both[0].numpy(), full[1].numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="`tasks` should hold indices"):
        layer(x, tasks=(2,))


def test_keras_file_round_trip_restores_every_expert(tmp_path):
    """Was: the task experts (nested lists) were neither saved nor restored by `.keras`."""
    layer = CGC(num_tasks=2, num_shared_experts=1, num_task_experts=2, expert_units=4,
                tower_units=(5, 3))
    x = np.random.default_rng(3).normal(size=(4, 7)).astype(np.float32)
    restored = assert_keras_file_round_trip(layer, [x], tmp_path)
    clone = restored.get_layer(layer.name)
    for t in range(2):
        for ours, theirs in zip(layer._task_experts[t], clone._task_experts[t]):
            np.testing.assert_array_equal(theirs._dense_layers[0].kernel.numpy(),
                                          ours._dense_layers[0].kernel.numpy())


@pytest.mark.parametrize("dtype", DTYPES)
def test_dtype_reaches_experts_gates_and_towers(dtype):
    layer = CGC(num_shared_experts=1, num_task_experts=2, expert_units=4, tower_units=(5, 3),
                dtype=dtype)
    outputs = assert_honours_dtype(layer, lambda l: l(tf.random.normal([2, 3, 7])), dtype)
    assert len(outputs) == 2
