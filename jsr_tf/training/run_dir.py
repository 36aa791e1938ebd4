"""What a run directory holds, and the guard that keeps ``jsr-train`` off a finished run.

A run directory (DESIGN.md §5b) is *finished* once its ``metrics.json`` holds evaluated splits
(training writes them last; ``jsr-compare`` uses the same rule); before that, a directory with
``config.json`` holds an *unfinished* run that the same config resumes (from ``backup/``).
``check_target`` decides, before anything is written, what training may do there:

=====================================  ==========================  ===========================
directory                              without ``overwrite``       with ``overwrite``
=====================================  ==========================  ===========================
absent, empty, or no run files         ``NEW``                     ``NEW``
unfinished run, same config            ``RESUME``                  ``REPLACE``
unfinished run, other config           refused (``RunDirError``)   ``REPLACE``
finished run (any config)              refused (``RunDirError``)   ``REPLACE``
=====================================  ==========================  ===========================

``clear`` removes only the entries a run owns (``OWNED``), never other files of the user's.
"""

from __future__ import annotations

import enum
import json
import os
from typing import Any, Dict, List, Optional

import tensorflow as tf

from jsr_tf import filenames as FN
from jsr_tf.config import ExperimentConfig
from jsr_tf.models import factory

OWNED = (FN.CONFIG_FILE, FN.FINGERPRINT_FILE, FN.METRICS_FILE, FN.BEST_DIR, FN.LATEST_DIR,
         FN.BACKUP_DIR, FN.LOGS_DIR, FN.PROFILE_DIR)


class Target(enum.Enum):
    NEW = "new"
    RESUME = "resume"
    REPLACE = "replace"


class RunDirError(ValueError):
    """Training would modify a run directory it must not touch."""


def changed_fields(old: Dict[str, Any], new: Dict[str, Any]) -> List[str]:
    """``section.field`` names whose values differ between two ``ExperimentConfig.to_dict()``s
    (``preset`` if only the preset name differs)."""
    changed = sorted(f"{section}.{key}" for section in ("model", "train")
                     for key in set(old.get(section, {})) | set(new.get(section, {}))
                     if old.get(section, {}).get(key) != new.get(section, {}).get(key))
    if not changed and old.get("preset") != new.get("preset"):
        changed = ["preset"]
    return changed


def is_finished(model_dir: str) -> bool:
    """Whether ``<model_dir>/metrics.json`` holds the metrics of an evaluated split."""
    path = os.path.join(model_dir, FN.METRICS_FILE)
    if not tf.io.gfile.exists(path):
        return False
    try:
        with tf.io.gfile.GFile(path) as f:
            record = json.load(f)
    except ValueError:  # torn or foreign: treat as finished, never overwrite it silently
        return True
    return any(isinstance(record.get(split), dict) and record[split].get("metrics")
               for split in ("valid", "test"))


def _recorded_config(model_dir: str) -> Optional[Dict[str, Any]]:
    path = os.path.join(model_dir, FN.CONFIG_FILE)
    if not tf.io.gfile.exists(path):
        return None
    try:
        return factory.load_config(model_dir).to_dict()
    except (ValueError, TypeError):  # unreadable or from another version: never equal
        return {}


def check_target(model_dir: str, config: ExperimentConfig, overwrite: bool = False) -> Target:
    """What training ``config`` into ``model_dir`` may do (see the module table).

    Raises:
        RunDirError: ``model_dir`` holds a finished run, or an unfinished run of another config,
            and ``overwrite`` is False.
    """
    if not tf.io.gfile.isdir(model_dir):
        return Target.NEW
    present = set(name.rstrip("/") for name in tf.io.gfile.listdir(model_dir))
    if not present & set(OWNED):
        return Target.NEW
    if overwrite:
        return Target.REPLACE
    recorded = _recorded_config(model_dir)
    name = "a run" if not recorded else f"a {recorded.get('preset', '?')} run"
    if is_finished(model_dir):
        raise RunDirError(f"{model_dir} holds {name} that finished (metrics.json): "
                          "refusing to modify it. Pick another --model_dir, or pass --overwrite "
                          "to replace it.")
    if recorded is None:
        raise RunDirError(f"{model_dir} holds run files ({sorted(present & set(OWNED))}) but no "
                          f"{FN.CONFIG_FILE}: refusing to modify it. Pick another "
                          "--model_dir, or pass --overwrite to replace them.")
    changed = changed_fields(recorded, config.to_dict())
    if changed:
        raise RunDirError(f"{model_dir} holds an unfinished run with another config (differs in "
                          f"{', '.join(changed[:8])}{' …' if len(changed) > 8 else ''}): rerun "
                          "with its settings to resume it, pick another --model_dir, or pass "
                          "--overwrite to replace it.")
    return Target.RESUME


def clear(model_dir: str) -> None:
    """Removes the entries of ``OWNED`` from ``model_dir`` (other files are left alone)."""
    for name in OWNED:
        path = os.path.join(model_dir, name)
        if tf.io.gfile.isdir(path):
            tf.io.gfile.rmtree(path)
        elif tf.io.gfile.exists(path):
            tf.io.gfile.remove(path)
