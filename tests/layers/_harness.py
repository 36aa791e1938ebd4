"""Shared checks for the layer tests: compiled-vs-eager agreement, config and `.keras` round
trips, and compute dtypes."""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Union

import jsr_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

import numpy as np
import tensorflow as tf
import tf_keras as keras
from tf_keras.src.testing_infra import test_utils

# Layer dtypes whose propagation the tests check (`assert_honours_dtype`), and the 16-bit
# dtypes in which masked fills must stay finite.
DTYPES = ("float64", "float16", "mixed_float16")
HALF_DTYPES = ("float16", "bfloat16", "mixed_float16", "mixed_bfloat16")


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


def _flat_arrays(values: Any) -> list:
    return [np.asarray(x) for x in tf.nest.flatten(values)]


def _keras_input(value: Any, name: str) -> Any:
    value = np.asarray(value)
    return keras.Input(shape=value.shape[1:], dtype=tf.as_dtype(value.dtype), name=name)


def _weight_keys(weights: Sequence[tf.Variable]) -> list:
    """Last name part and shape of each weight: a layer rebuilt by `load_model` builds outside
    its name scope (`kernel:0`, not `layer/kernel:0`; Keras does so for every layer)."""
    return [(w.name.rsplit("/", 1)[-1], tuple(w.shape)) for w in weights]


def assert_keras_file_round_trip(
    layer: keras.layers.Layer,
    inputs: Union[Sequence[Any], Mapping[str, Any]],
    directory: Any,
    call: Optional[Callable[[keras.layers.Layer, Any], Any]] = None,
) -> keras.Model:
    """Saves a functional model around `layer` as `.keras`, reloads it, and asserts the reloaded
    model has the same config, exactly the same weights and exactly the same outputs.

    The multi-input counterpart of `layer_test`'s checks, through a real `.keras` file (no
    `custom_objects`: the layers must be registered).

    Args:
        layer: An unbuilt layer.
        inputs: Example arrays (batch first), each becoming a `keras.Input`: a sequence (passed
            positionally) or a dict by call argument name (passed by keyword).
        directory: Where to write the file (pytest's `tmp_path`).
        call: Optional `call(layer, tensors)` calling `layer` on the inputs (symbolic, in the
            structure of `inputs`), for calls the default does not cover.

    Returns:
        The reloaded model.
    """
    if isinstance(inputs, Mapping):
        symbolic = {name: _keras_input(value, name) for name, value in inputs.items()}
        call = call or (lambda l, tensors: l(**tensors))
        inputs = dict(inputs)
    else:
        symbolic = [_keras_input(value, f"input_{k}") for k, value in enumerate(inputs)]
        call = call or (lambda l, tensors: l(*tensors))
        inputs = list(inputs)
    model = keras.Model(symbolic, call(layer, symbolic))
    expected = _flat_arrays(model(inputs))
    path = os.path.join(str(directory), f"{layer.name}.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    (clone,) = [l for l in restored.layers if l.name == layer.name]
    assert type(clone) is type(layer) and clone.get_config() == layer.get_config()
    assert _weight_keys(restored.weights) == _weight_keys(model.weights)
    for saved, loaded in zip(model.weights, restored.weights):
        np.testing.assert_array_equal(loaded.numpy(), saved.numpy(), err_msg=saved.name)
    actual = _flat_arrays(restored(inputs))
    assert len(actual) == len(expected)
    for a, b in zip(actual, expected):
        np.testing.assert_array_equal(a, b)
    return restored


def assert_single_input_round_trips(
    layer_cls: type,
    kwargs: Dict[str, Any],
    input_data: np.ndarray,
    directory: Any,
    expected_output_dtype: Optional[str] = None,
    validate_training: bool = True,
) -> None:
    """`tf_keras.testing_infra`'s `layer_test` (config, weights, functional and Sequential use,
    output dtype and shape, a training step), then `assert_keras_file_round_trip`."""
    test_utils.layer_test(layer_cls, kwargs=dict(kwargs), input_data=input_data,
                          expected_output_dtype=expected_output_dtype,
                          validate_training=validate_training)
    assert_keras_file_round_trip(layer_cls(**kwargs), [input_data], directory)


def assert_honours_dtype(layer: keras.layers.Layer, call: Callable[[keras.layers.Layer], Any],
                         dtype: str) -> Any:
    """Asserts `layer` (built with `dtype=dtype`) hands its policy to every sublayer, keeps its
    weights in the policy's variable dtype and returns float outputs in its compute dtype,
    all finite. `call(layer)` gets float32 inputs: the layer must cast them. Returns the outputs.
    """
    policy = keras.mixed_precision.Policy(dtype)
    assert layer.dtype_policy.name == policy.name
    outputs = call(layer)
    for sublayer in layer._flatten_layers(include_self=False):
        assert sublayer.dtype_policy.name == policy.name, sublayer.name
    for weight in layer.weights:
        if weight.dtype.is_floating:
            assert weight.dtype == policy.variable_dtype, weight.name
    floats = [x for x in tf.nest.flatten(outputs) if x.dtype.is_floating]
    assert floats, "no float output"
    for value in floats:
        assert value.dtype == policy.compute_dtype, value.dtype
    assert_all_finite(floats)
    return outputs

