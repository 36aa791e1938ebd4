"""``build_model(config, vocab)``: the only place an ``ExperimentConfig`` turns into a model.

Model families register a builder with ``@register_model("name")``. ``load_trained`` rebuilds a
trained run from its directory (``config.json`` + the best weights written by training) and
refuses, with a ``RunMismatchError``, weights that do not fit the recorded config or data:

- ``fingerprint.json`` (written by training; older runs lack it) records the model name, the
  config's SHA-256, the vocabulary sizes and digest and every variable's name and shape. The
  config must hash the same, and the data dir's vocabulary must be the one trained on (ids map to
  embedding rows through it: other data would index other rows, or past the table's end).
- The weights are restored into a model whose variables exist already (one batch scored per
  task), and every variable must receive a value from the checkpoint
  (``assert_existing_objects_matched``): another model family's weights never load silently.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from typing import Any, Callable, Dict, Optional, Tuple

import jsr_tf  # noqa: F401
import numpy as np
import tensorflow as tf

from jsr_tf.config import ExperimentConfig
from jsr_tf.data.vocab import Vocab, load_vocab
from jsr_tf.filenames import BEST_WEIGHTS, CONFIG_FILE, FINGERPRINT_FILE
from jsr_tf.models.base import JsrModel

Builder = Callable[[ExperimentConfig, Vocab], JsrModel]
_BUILDERS: Dict[str, Builder] = {}


def register_model(name: str) -> Callable[[Builder], Builder]:
    """Registers a builder for ``config.model.name == name``."""

    def wrap(fn: Builder) -> Builder:
        _BUILDERS[name] = fn
        return fn

    return wrap


def model_names() -> Tuple[str, ...]:
    _import_families()
    return tuple(sorted(_BUILDERS))


def _import_families() -> None:
    """Imports every module of ``jsr_tf.models``, so that each family's ``@register_model``
    runs (lazily, to avoid import cycles): a new family is one new module, no list to edit."""
    import importlib
    import pkgutil

    from jsr_tf import models

    for info in pkgutil.iter_modules(models.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{models.__name__}.{info.name}")


def build_model(config: ExperimentConfig, vocab: Vocab) -> JsrModel:
    """Builds the model named by ``config.model.name``."""
    _import_families()
    name = config.model.name
    if name not in _BUILDERS:
        raise ValueError(f"Unknown model `{name}`. Known: {sorted(_BUILDERS)}")
    model = _BUILDERS[name](config.validate(), vocab)
    model.configure_training(config.train)
    if config.model.uses_neighbours and not model.supports_neighbours:
        raise ValueError(f"Model `{name}` does not read the neighbour payload: `model.neighbours` "
                         "should be 'none' for it (neighbours are implemented for "
                         "unisar and sasrec). Received: "
                         f"`neighbours={config.model.neighbours!r}`")
    return model


def save_config(config: ExperimentConfig, model_dir: str) -> None:
    tf.io.gfile.makedirs(model_dir)
    with tf.io.gfile.GFile(os.path.join(model_dir, CONFIG_FILE), "w") as f:
        f.write(config.to_json())


def load_config(model_dir: str) -> ExperimentConfig:
    path = os.path.join(model_dir, CONFIG_FILE)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{path!r} not found: is {model_dir!r} a jsr-train model dir?")
    with tf.io.gfile.GFile(path) as f:
        return ExperimentConfig.from_dict(json.load(f))


class RunMismatchError(ValueError):
    """A run's weights do not fit its recorded config, or the data it is used with."""


def vocab_fingerprint(vocab: Vocab) -> Dict[str, Any]:
    """Sizes and SHA-256 of what the model's lookup and side-feature tables are built from."""
    digest = hashlib.sha256()
    for array in (vocab.item_ids, vocab.item_categories, vocab.item_captions, vocab.word_ids,
                  vocab.user_ids, vocab.user_features):
        array = np.ascontiguousarray(np.asarray(array, np.int64))
        digest.update(str(array.shape).encode("ascii"))
        digest.update(array.tobytes())
    return {"items": int(len(vocab.item_ids)), "words": int(len(vocab.word_ids)),
            "users": int(len(vocab.user_ids)), "sha256": digest.hexdigest()}


def fingerprint(model: JsrModel, config: ExperimentConfig, vocab: Vocab) -> Dict[str, Any]:
    """What ``fingerprint.json`` records about a trained model (see the module docstring)."""
    from jsr_tf.evaluation import report  # deferred: evaluation imports this module

    return {"model": config.model.name, "preset": config.preset,
            "config_sha256": report.config_hash(config), "vocab": vocab_fingerprint(vocab),
            "variables": [[v.name, list(v.shape)] for v in model.variables]}


def save_fingerprint(model: JsrModel, config: ExperimentConfig, vocab: Vocab,
                     model_dir: str) -> None:
    tf.io.gfile.makedirs(model_dir)
    with tf.io.gfile.GFile(os.path.join(model_dir, FINGERPRINT_FILE), "w") as f:
        f.write(json.dumps(fingerprint(model, config, vocab), indent=1, sort_keys=True))


def load_fingerprint(model_dir: str) -> Optional[Dict[str, Any]]:
    """``<model_dir>/fingerprint.json``, or None for a run written before it existed."""
    path = os.path.join(model_dir, FINGERPRINT_FILE)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def check_fingerprint(model_dir: str, config: ExperimentConfig, vocab: Vocab,
                      data_dir: str) -> None:
    """Compares ``fingerprint.json`` (if any) with ``config.json`` and ``data_dir``'s vocabulary.

    Raises:
        RunMismatchError: The config changed since training, or the vocabulary differs.
    """
    from jsr_tf.evaluation import report

    recorded = load_fingerprint(model_dir)
    if recorded is None:
        return
    with tf.io.gfile.GFile(os.path.join(model_dir, CONFIG_FILE)) as f:
        as_written = json.load(f)  # a run written before a field was renamed or added
    if recorded.get("config_sha256") not in (report.config_hash(config),
                                             report.config_hash(as_written)):
        raise RunMismatchError(
            f"{os.path.join(model_dir, CONFIG_FILE)} ({config.model.name}) is not the config the "
            f"weights in {model_dir} were trained with ({recorded.get('model')}, preset "
            f"{recorded.get('preset')}): it was modified after training. Restore it or retrain.")
    trained, given = recorded.get("vocab") or {}, vocab_fingerprint(vocab)
    if trained and trained.get("sha256") != given["sha256"]:
        sizes = ", ".join(f"{k} {trained.get(k)} vs {given[k]}" for k in ("items", "words",
                                                                         "users"))
        raise RunMismatchError(
            f"{data_dir} has another vocabulary than the data {model_dir} was trained on "
            f"({sizes}): evaluate or export a run with the data dir it was trained on.")


def build_variables(model: JsrModel, config: ExperimentConfig, data_dir: str) -> None:
    """Creates the variables ``score`` uses by scoring one valid batch of each task."""
    from jsr_tf.data import reader  # deferred: keeps this module's imports light
    from jsr_tf import features as F

    for task in F.Task:
        try:
            dataset = reader.make_dataset(data_dir, F.Split.VALID.value, task, 2,
                                          shuffle_buffer=0,
                                          neighbours=config.model.uses_neighbours)
        except FileNotFoundError:
            continue
        for batch in dataset.take(1):
            model.score(batch, task, training=False)


def restore_checked(model: JsrModel, prefix: str, config: ExperimentConfig) -> None:
    """Restores ``prefix`` into ``model`` (variables built) and checks that every variable got a
    value.

    Raises:
        RunMismatchError: A variable has no value in the checkpoint, or one of another shape.
    """
    try:
        status = model.load_weights(prefix)
        status.assert_existing_objects_matched()
    except AssertionError as error:
        found = re.search(r"Found (\d+) Python objects", str(error))
        count = found.group(1) if found else "some"
        raise RunMismatchError(
            f"The weights at {prefix} do not fit the {config.model.name} model (preset "
            f"{config.preset}) that config.json describes: {count} of its variables have no "
            "value there. The run's config.json was replaced or belongs to another run: restore "
            "it or retrain.") from None
    except (ValueError, tf.errors.InvalidArgumentError) as error:
        detail = " ".join(str(error).split())[:160]
        raise RunMismatchError(
            f"The weights at {prefix} do not fit the {config.model.name} model (preset "
            f"{config.preset}) built from config.json and the data dir's vocabulary ({detail}): "
            "use the data dir the run was trained on and the run's own config.json.") from None
    status.expect_partial()  # the optimizer's slots and loss-only variables are not needed


def load_trained(model_dir: str, data_dir: str) -> Tuple[JsrModel, ExperimentConfig]:
    """Rebuilds a trained model from ``model_dir`` and restores its best weights, checked.

    Raises:
        FileNotFoundError: If the config or the best weights are missing.
        RunMismatchError: If the weights do not fit the config, or ``data_dir``'s vocabulary is
            not the one trained on (see the module docstring).
    """
    config = load_config(model_dir)
    prefix = os.path.join(model_dir, BEST_WEIGHTS)
    if not tf.io.gfile.glob(prefix + "*"):
        raise FileNotFoundError(f"No best weights at {prefix!r}: training has not finished.")
    vocab = load_vocab(data_dir)
    check_fingerprint(model_dir, config, vocab, data_dir)
    model = build_model(config, vocab)
    build_variables(model, config, data_dir)
    restore_checked(model, prefix, config)
    return model, config
