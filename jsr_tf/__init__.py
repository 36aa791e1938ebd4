"""jsr-tf: joint search and recommendation in TensorFlow.

Importing this package makes TensorFlow resolve ``tf.keras`` to Keras 2 (``tf_keras``), which
TensorFlow Recommenders needs. The switch is the environment variable ``TF_USE_LEGACY_KERAS=1``.
It only works if it is set before ``tf.keras`` is first resolved, so this module sets it at import
time and raises a clear ``ImportError`` if the running process already bound ``tf.keras`` to
Keras 3.
"""

from __future__ import annotations

import os
import sys

__version__ = "0.1.0"

_ENV = "TF_USE_LEGACY_KERAS"


def _keras3_already_bound() -> bool:
    """Returns True if this process has already resolved ``tf.keras`` to Keras 3.

    Importing ``tensorflow`` leaves ``tf.keras`` as a lazy loader; the Keras it resolves to is
    decided from ``TF_USE_LEGACY_KERAS`` the first time it is touched, after which the loader is
    replaced by the real module. So setting the variable after ``import tensorflow`` still works,
    unless ``tf.keras`` was already resolved to something other than ``tf_keras``.
    """
    tf = sys.modules.get("tensorflow")
    if tf is None:
        return False
    bound = vars(tf).get("keras")
    if bound is None or type(bound).__name__ == "KerasLazyLoader":
        return False
    return not getattr(bound, "__name__", "").startswith("tf_keras")


def _ensure_legacy_keras() -> None:
    if _keras3_already_bound():
        raise ImportError(
            "jsr_tf needs Keras 2 (tf_keras) because TensorFlow Recommenders does, but this "
            "process already imported TensorFlow with Keras 3 (TF_USE_LEGACY_KERAS was not set). "
            "Import jsr_tf before tensorflow/keras, or start Python with TF_USE_LEGACY_KERAS=1 "
            "in the environment.")
    os.environ[_ENV] = "1"


_ensure_legacy_keras()
