"""Test model families and presets for the training tests, and a ``jsr-train`` entry that has them.

``python -m tests.training_doubles --data_dir … --model_dir … --model tiny_trainer`` runs the
training CLI with these families registered (the subprocess tests use it). With
``JSR_TEST_LOGICAL_CPUS=N`` in the environment the process first splits its CPU into N logical
devices, so ``--strategy mirrored`` has N replicas without a GPU.
"""

from __future__ import annotations

import json
import os

import jsr_tf  # noqa: F401
import tensorflow as tf
import tf_keras as keras

from jsr_tf import config as C
from jsr_tf import features as F
from jsr_tf.data import reader
from jsr_tf.models import factory
from tests import golden_fixture as G
from tests.doubles import TinyModel
from tests.testing import run_preprocess

TINY = "tiny_trainer"            # tests.doubles.TinyModel as is
SAFE = "tiny_trainer_safe"       # XLA- and tf.distribute-friendly variant
PREPROCESS_CONFIG = {"num_train_negatives": 2, "num_eval_negatives": 3}


class SafeTinyModel(TinyModel):
    """``TinyModel`` with modulo hashing (XLA has no string hashing) and a functional mean BCE
    (Keras ``Loss`` objects with AUTO reduction refuse to run under a non-default strategy)."""

    def __init__(self, bins: int = 1024, **kwargs) -> None:
        super().__init__(bins=bins, **kwargs)
        self.bins = bins

    def score_prepared(self, batch, task, training=False):
        def embed(table, ids):
            return table(tf.math.floormod(ids, self.bins))

        hist = batch[F.FEED_ITEMS]
        valid = tf.cast(hist > 0, tf.float32)[..., None]
        user = tf.reduce_sum(embed(self.items, hist) * valid, 1) / tf.maximum(
            tf.reduce_sum(valid, 1), 1.0)
        if task == F.Task.SEARCH:
            q = batch[F.QUERY_WORDS]
            qv = tf.cast(q > 0, tf.float32)[..., None]
            user += tf.reduce_sum(embed(self.words, q) * qv, 1) / tf.maximum(
                tf.reduce_sum(qv, 1), 1.0)
        return tf.einsum("bd,bcd->bc", user, embed(self.items, batch[reader.CANDIDATES]))

    def loss_prepared(self, inputs, training=False):
        def bce(batch, task):
            logits = self.score_prepared(batch, task, training)
            return tf.reduce_mean(keras.losses.binary_crossentropy(
                batch[reader.LABEL], logits, from_logits=True))

        loss = 0.0
        if "feed" in inputs:
            loss += bce(inputs["feed"], F.Task.FEED)
        if "search" in inputs:
            loss += self.search_weight * bce(inputs["search"], F.Task.SEARCH)
        return loss


@factory.register_model(TINY)
def build_tiny(config: C.ExperimentConfig, vocab) -> TinyModel:
    del vocab
    return TinyModel(dim=8, l2=config.train.l2 if config.train.optimizer == "adam" else 0.0)


@factory.register_model(SAFE)
def build_safe(config: C.ExperimentConfig, vocab) -> SafeTinyModel:
    del vocab
    return SafeTinyModel(dim=8, l2=config.train.l2 if config.train.optimizer == "adam" else 0.0)


def small_train(**kwargs) -> C.TrainConfig:
    values = dict(batch_size=2, eval_batch_size=4, epochs=3, steps_per_epoch=3,
                  learning_rate=0.05, shuffle_buffer=16)
    values.update(kwargs)
    return C.TrainConfig(**values)


@C.register_preset
def tiny_trainer() -> C.ExperimentConfig:
    """TinyModel on the golden fixture: a few 3-step epochs."""
    return C.ExperimentConfig(preset=TINY, model=C.ModelConfig(name=TINY), train=small_train())


@C.register_preset
def tiny_trainer_safe() -> C.ExperimentConfig:
    """SafeTinyModel on the golden fixture."""
    return C.ExperimentConfig(preset=SAFE, model=C.ModelConfig(name=SAFE), train=small_train())


UNISAR = "unisar_tiny_trainer"


@C.register_preset
def unisar_tiny_trainer() -> C.ExperimentConfig:
    """The real UniSAR (8 InfoNCE negatives: the fixture has few items) on the golden fixture."""
    return C.ExperimentConfig(preset=UNISAR, model=C.ModelConfig(num_qi_negatives=8),
                              train=small_train())


def write_data(root: str) -> str:
    """Preprocesses the golden fixture (2 train negatives, 3 eval) into ``<root>/data``."""
    os.makedirs(root, exist_ok=True)
    config = os.path.join(root, "preprocess.json")
    with open(config, "w") as f:
        json.dump(PREPROCESS_CONFIG, f)
    out = os.path.join(root, "data")
    run_preprocess(G.write(os.path.join(root, "raw")), out, "--config", config)
    return out


def _split_cpu() -> None:
    n = int(os.environ.get("JSR_TEST_LOGICAL_CPUS", "0"))
    if n > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(n)])


def main() -> None:
    _split_cpu()
    from jsr_tf.cli import train

    train.run()


if __name__ == "__main__":
    main()
