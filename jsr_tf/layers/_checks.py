"""Argument checks (house error form) and small helpers shared by the layers.

Every message reads "`name` should be <requirement>. Received: `name=<value>`", as in Keras's
``MultiHeadAttention``.
"""

from __future__ import annotations

import numbers
from typing import Any, Sequence, Tuple


def _fail(name: str, requirement: str, value: Any) -> ValueError:
    return ValueError(f"`{name}` should be {requirement}. Received: `{name}={value!r}`")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def positive_int(name: str, value: Any) -> int:
    """Returns ``value`` as an ``int`` if it is an integer > 0, else raises ``ValueError``."""
    if not _is_int(value) or value <= 0:
        raise _fail(name, "a positive integer", value)
    return int(value)


def non_negative_int(name: str, value: Any) -> int:
    """Returns ``value`` as an ``int`` if it is an integer >= 0, else raises ``ValueError``."""
    if not _is_int(value) or value < 0:
        raise _fail(name, "a non-negative integer", value)
    return int(value)


def positive_int_tuple(name: str, value: Any, allow_empty: bool = False) -> Tuple[int, ...]:
    """Returns ``value`` as a tuple of positive ints, else raises ``ValueError``."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise _fail(name, "a sequence of positive integers", value)
    if not value and not allow_empty:
        raise _fail(name, "a non-empty sequence of positive integers", value)
    if not all(_is_int(v) and v > 0 for v in value):
        raise _fail(name, "a sequence of positive integers", value)
    return tuple(int(v) for v in value)


def rate(name: str, value: Any) -> float:
    """Returns ``value`` as a float in [0, 1), else raises ``ValueError`` (dropout rates)."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not 0 <= value < 1:
        raise _fail(name, "a float in [0, 1)", value)
    return float(value)


def positive_float(name: str, value: Any) -> float:
    """Returns ``value`` as a float > 0, else raises ``ValueError``."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not value > 0:
        raise _fail(name, "a positive float", value)
    return float(value)


def last_dim(name: str, shape: Any) -> int:
    """Returns the static last dimension of ``shape`` or raises ``ValueError`` if unknown."""
    import tensorflow as tf  # Deferred: keeps this module importable without TF.

    shape = tf.TensorShape(shape)
    if shape.rank is None or shape[-1] is None:
        raise ValueError(
            f"The last dimension of `{name}` should be defined. Received: `{name}.shape={shape}`")
    return int(shape[-1])


def clone_initializer(initializer: Any) -> Any:
    """Returns a fresh copy of a Keras initializer.

    An unseeded tf_keras initializer *instance* returns identical values on every call, so each
    weight needs its own instance (the same fix as Keras's ``MultiHeadAttention``).
    """
    return initializer.__class__.from_config(initializer.get_config())


def build_sublayer(layer: Any, input_shape: Any) -> Any:
    """Builds `layer` under its own name scope (so its weights read `parent/layer/kernel`, as
    when Keras builds it on first call) and returns it."""
    import tensorflow as tf  # Deferred: keeps this module importable without TF.

    with tf.name_scope(layer.name):
        layer.build(input_shape)
    return layer


def to_compute_dtype(layer: Any, value: Any) -> Any:
    """`value` as a tensor, cast to `layer.compute_dtype` if it is floating.

    Keras casts only a layer's first call argument to its compute dtype (`dtype="float64"`,
    `"mixed_float16"`); the layers cast their other float arguments with this. A no-op (the
    same tensor) when the dtype already matches.
    """
    import tensorflow as tf  # Deferred: keeps this module importable without TF.

    value = tf.convert_to_tensor(value)
    if value.dtype.is_floating:
        value = tf.cast(value, layer.compute_dtype)
    return value


def in_xla_context() -> bool:
    """True while tracing inside an XLA-compiled function (``jit_compile=True``, TPU).

    Layers use it to choose between a shape-changing shortcut (``tf.where``, ``tf.unique``:
    less work, not compilable) and its fixed-shape equivalent. Relies on TensorFlow's
    ``control_flow_util`` (the check tf_keras itself uses); False if that is unavailable.
    """
    try:
        from tensorflow.python.framework import ops
        from tensorflow.python.ops import control_flow_util
    except ImportError:  # pragma: no cover - a TF without the private module
        return False
    return bool(control_flow_util.GraphOrParentsInXlaContext(ops.get_default_graph()))
