"""``tf.distribute`` strategies by name, and chief-aware file writing.

========================  ===================================================================
name                      strategy
========================  ===================================================================
``default``               the default (no-op) strategy: one device
``mirrored``              ``MirroredStrategy`` over the local GPUs; without GPUs, over every
                          logical CPU device if there are several (tests), else ``/cpu:0``
``multi_worker``          ``MultiWorkerMirroredStrategy``; the cluster comes from ``TF_CONFIG``
``tpu``                   ``TPUStrategy`` via ``TPUClusterResolver`` (``tpu`` = name or address;
                          empty = the TPU of this VM / the ``TPU_NAME`` environment)
========================  ===================================================================
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from typing import Dict, List, Optional

import jsr_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TF loads)
import tensorflow as tf
import tf_keras as keras

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")


def make_strategy(name: str, tpu: str = "") -> tf.distribute.Strategy:
    """Builds the named strategy (see the module table).

    Args:
        name: One of ``STRATEGIES``.
        tpu: TPU name or ``grpc://`` address for ``"tpu"``.

    Raises:
        ValueError: For an unknown name, or ``multi_worker`` without a usable ``TF_CONFIG``.
        RuntimeError: For ``tpu`` when no TPU is reachable.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices=_mirrored_devices())
    if name == "multi_worker":
        _check_tf_config()
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        return _tpu_strategy(tpu)
    raise ValueError(f"`strategy` should be one of {STRATEGIES}. Received: `strategy={name!r}`")


def _mirrored_devices() -> Optional[List[str]]:
    if tf.config.list_logical_devices("GPU"):
        return None  # MirroredStrategy's default: every GPU
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
    return cpus if len(cpus) > 1 else None


def _check_tf_config() -> None:
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise ValueError("`multi_worker` needs the TF_CONFIG environment variable, e.g. "
                         '{"cluster": {"worker": ["host1:port", "host2:port"]}, '
                         '"task": {"type": "worker", "index": 0}}. Received: TF_CONFIG unset')
    try:
        config = json.loads(raw)
        cluster, task = config["cluster"], config["task"]
        members = cluster[task["type"]]
        index = int(task["index"])
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError("TF_CONFIG should hold `cluster` and `task` {type, index}. "
                         f"Received: `TF_CONFIG={raw}`") from err
    if not 0 <= index < len(members):
        raise ValueError(f"TF_CONFIG task index {index} is outside its cluster list. "
                         f"Received: `TF_CONFIG={raw}`")


def _tpu_strategy(tpu: str) -> tf.distribute.Strategy:
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or None)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as err:
        raise RuntimeError(
            f"No TPU reachable (tpu={tpu!r}, TPU_NAME={os.environ.get('TPU_NAME')!r}): run on a "
            "TPU VM, or pass the TPU name/address; use --strategy default|mirrored elsewhere. "
            f"Cause: {err}") from err
    return tf.distribute.TPUStrategy(resolver)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this worker writes the run's files (config, metrics, best weights)."""
    return bool(strategy.extended.should_checkpoint)


_WORKER_DIRS: Dict[str, str] = {}  # checkpoint prefix -> this (non-chief) worker's private dir


def _remove_worker_dirs() -> None:
    for directory in _WORKER_DIRS.values():
        shutil.rmtree(directory, ignore_errors=True)


atexit.register(_remove_worker_dirs)


def worker_path(model: keras.Model, path: str) -> str:
    """Where this worker keeps its copy of the checkpoint ``path``: ``path`` on the chief, a
    private temporary directory (removed at exit) on the other workers."""
    if is_chief(model.distribute_strategy):
        return path
    if path not in _WORKER_DIRS:
        _WORKER_DIRS[path] = tempfile.mkdtemp(prefix="jsr_worker_weights_")
    return os.path.join(_WORKER_DIRS[path], os.path.basename(path))


def save_weights(model: keras.Model, path: str) -> None:
    """``model.save_weights`` on every worker; only the chief's copy lands at ``path``.

    Under ``MultiWorkerMirroredStrategy`` every worker must take part in saving (variables may
    need a collective read), so the others write to a private copy (``worker_path``), which
    ``load_weights`` reads back: a worker never waits for, or races with, the chief's file.
    """
    target = worker_path(model, path)
    tf.io.gfile.makedirs(os.path.dirname(target))
    model.save_weights(target)


def load_weights(model: keras.Model, path: str):
    """Restores what ``save_weights(model, path)`` wrote on this worker (the chief's ``path``
    if this process wrote none, e.g. after a restart). Returns the load status."""
    target = worker_path(model, path)
    if not tf.io.gfile.glob(target + "*"):
        target = path
    return model.load_weights(target)
