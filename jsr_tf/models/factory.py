"""``build_model(config, vocab)``: the only place an ``ExperimentConfig`` turns into a model.

Model families register a builder with ``@register_model("name")``. ``load_trained`` rebuilds a
trained run from its directory (``config.json`` + the best weights written by training).
"""

from __future__ import annotations

import json
import os
from typing import Callable, Dict, Tuple

import jsr_tf  # noqa: F401
import tensorflow as tf

from jsr_tf.config import ExperimentConfig
from jsr_tf.data.vocab import Vocab, load_vocab
from jsr_tf.models.base import JsrModel

Builder = Callable[[ExperimentConfig, Vocab], JsrModel]
_BUILDERS: Dict[str, Builder] = {}

CONFIG_FILE = "config.json"
BEST_WEIGHTS = os.path.join("best", "weights")  # TF checkpoint prefix under the model dir


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
    """Imports the modules that register model families (kept lazy to avoid import cycles)."""
    import importlib

    for module in ("jsr_tf.models.unisar", "jsr_tf.models.sasrec", "jsr_tf.models.two_tower",
                   "jsr_tf.models.search_baseline", "jsr_tf.models.mixed_sequence",
                   "jsr_tf.models.sesrec"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:  # a family not written yet
            if err.name != module:
                raise


def build_model(config: ExperimentConfig, vocab: Vocab) -> JsrModel:
    """Builds the model named by ``config.model.name``."""
    _import_families()
    name = config.model.name
    if name not in _BUILDERS:
        raise ValueError(f"Unknown model `{name}`. Known: {sorted(_BUILDERS)}")
    model = _BUILDERS[name](config.validate(), vocab)
    if config.model.uses_neighbours and not getattr(model, "supports_neighbours", False):
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


def load_trained(model_dir: str, data_dir: str) -> Tuple[JsrModel, ExperimentConfig]:
    """Rebuilds a trained model from ``model_dir`` and restores its best weights.

    Raises:
        FileNotFoundError: If the config or the best weights are missing.
    """
    config = load_config(model_dir)
    model = build_model(config, load_vocab(data_dir))
    prefix = os.path.join(model_dir, BEST_WEIGHTS)
    if not tf.io.gfile.glob(prefix + "*"):
        raise FileNotFoundError(f"No best weights at {prefix!r}: training has not finished.")
    model.load_weights(prefix).expect_partial()
    return model, config
