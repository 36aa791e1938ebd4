"""FusedAdam: the same updates as Keras's Adam (dense and sparse), and interchangeable state."""

import numpy as np
import pytest

import jsr_tf  # noqa: F401
import tensorflow as tf
import tf_keras as keras

from jsr_tf.training.optimizers import FusedAdam


def _run(optimizer, steps=4):
    rng = np.random.default_rng(0)
    dense = tf.Variable(rng.normal(size=(7, 3)).astype(np.float32))
    table = tf.Variable(rng.normal(size=(9, 2)).astype(np.float32))
    for step in range(steps):
        grad = tf.constant(rng.normal(size=(7, 3)).astype(np.float32) * 10 ** -step)
        sparse = tf.IndexedSlices(tf.constant(rng.normal(size=(3, 2)).astype(np.float32)),
                                  tf.constant([1, 4, 1]), tf.constant([9, 2]))
        optimizer.apply_gradients([(grad, dense), (sparse, table)])
    return dense.numpy(), table.numpy()


@pytest.mark.parametrize("adaptive", [True, False])
def test_updates_equal_keras_adam(adaptive):
    args = dict(learning_rate=0.01, epsilon=1e-3, adaptive_epsilon=adaptive)
    expected = _run(keras.optimizers.Adam(**args))
    actual = _run(FusedAdam(**args))
    start = _run(FusedAdam(learning_rate=0.0), steps=1)
    assert np.abs(expected[0] - start[0]).max() > 1e-3  # the steps moved the variables
    for got, want in zip(actual, expected):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)  # values are O(1)


def test_state_restores_into_keras_adam(tmp_path):
    variable = tf.Variable([1.0, -2.0])
    fused = FusedAdam(learning_rate=0.1)
    fused.apply_gradients([(tf.constant([0.5, 0.25]), variable)])
    tf.train.Checkpoint(optimizer=fused, v=variable).write(str(tmp_path / "ckpt"))
    plain_variable = tf.Variable([0.0, 0.0])
    plain = keras.optimizers.Adam(learning_rate=0.1)
    plain.build([plain_variable])
    tf.train.Checkpoint(optimizer=plain, v=plain_variable).read(
        str(tmp_path / "ckpt")).assert_existing_objects_matched()
    assert int(plain.iterations) == 1
    np.testing.assert_array_equal(plain_variable.numpy(), variable.numpy())
    np.testing.assert_array_equal(plain.variables[1].numpy(), fused.variables[1].numpy())


def test_config_round_trip():
    optimizer = FusedAdam(learning_rate=0.02, epsilon=1e-6, adaptive_epsilon=True)
    clone = FusedAdam.from_config(optimizer.get_config())
    assert clone.adaptive_epsilon and clone.epsilon == 1e-6
