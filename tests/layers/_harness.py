"""Shared checks for the layer tests: compiled-vs-eager agreement and config round trips."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jsr_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

import numpy as np
import tensorflow as tf
import tf_keras as keras


def assert_three_ways_agree(fn: Callable[..., Any], *args: Any, atol: float = 1e-5,
                            jit: bool = True) -> None:
    """Asserts eager, graph and XLA runs of `fn(*args)` agree (XLA skipped if `jit=False`)."""
    runners = [fn, tf.function(fn)] + ([tf.function(fn, jit_compile=True)] if jit else [])
    results = [[np.asarray(x) for x in tf.nest.flatten(r(*args))] for r in runners]
    for other in results[1:]:
        assert len(other) == len(results[0])
        for a, b in zip(results[0], other):
            if a.dtype == bool or np.issubdtype(a.dtype, np.integer):
                np.testing.assert_array_equal(a, b)
            else:
                np.testing.assert_allclose(a, b, atol=atol, rtol=1e-5)


def rebuild_from_config(layer: keras.layers.Layer) -> keras.layers.Layer:
    """`from_config(get_config())` through Keras's registry (checks the registration too)."""
    serialized = keras.layers.serialize(layer)
    assert serialized["registered_name"] == f"jsr_tf>{type(layer).__name__}", serialized
    assert keras.saving.get_registered_object(serialized["registered_name"]) is type(layer)
    return keras.layers.deserialize(serialized)


def assert_round_trip(layer: keras.layers.Layer, call: Callable[[keras.layers.Layer], Any],
                      atol: float = 1e-6) -> keras.layers.Layer:
    """Rebuilds `layer` from its config, copies the weights, and compares `call(layer)` outputs.

    `call(layer)` must already have built `layer`. Returns the rebuilt layer.
    """
    expected = [np.asarray(x) for x in tf.nest.flatten(call(layer))]
    clone = rebuild_from_config(layer)
    assert clone.get_config() == layer.get_config()
    call(clone)  # Builds the clone.
    clone.set_weights(layer.get_weights())
    actual = [np.asarray(x) for x in tf.nest.flatten(call(clone))]
    for a, b in zip(expected, actual):
        np.testing.assert_allclose(a, b, atol=atol)
    return clone


def assert_all_finite(values: Sequence[Any]) -> None:
    """Asserts every tensor is finite, via `tf.debugging.check_numerics` (eager)."""
    for value in tf.nest.flatten(values):
        tf.debugging.check_numerics(tf.cast(value, tf.float32), "non-finite value")


def count_params(weights: Sequence[tf.Variable]) -> int:
    """Number of scalars in `weights`, each variable counted once."""
    unique = {id(w): w for w in weights}
    return int(sum(np.prod(w.shape) for w in unique.values()))
