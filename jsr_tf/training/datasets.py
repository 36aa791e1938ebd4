"""The joint training input (spec/unisar.md §9): one feed batch and one search batch per step.

Each element is ``{"feed": feed_batch, "search": search_batch}`` (``keys.Inputs``), each batch as
``jsr_tf.data.reader.make_dataset`` yields it. The feed batch has ``batch_size`` rows; the search
batch has ``floor(n_search / (floor(n_feed / batch_size) + 1)) + 1`` rows (``n_*`` = train
examples, from ``<data_dir>/stats.json``), so the search stream, which repeats on its own, cycles
about once per feed epoch (88 rows on KuaiSAR at batch 1024). Both streams repeat forever, with
``drop_remainder=True`` so every shape is static (XLA, TPU); ``fit`` bounds an epoch with
``steps_per_epoch``.

Single-task input: a model trained on one task, or data without search examples, gets only that
task's key. The epoch is then one pass over that task's train data.

Under a distribution strategy both batches are global and split across replicas, so the search
batch is rounded up to a multiple of the replica count, and the feed batch must be one. Across
workers the input is sharded by data (``AutoShardPolicy.DATA``): each worker reads every file
and keeps its share of the steps.

A model with neighbours (``model.neighbours != "none"``) gets the neighbour payload too
(``reader.make_dataset(..., neighbours=True)``); ``check_neighbour_data`` warns when the data
were not written with it (every slot is then empty and the model equals its base).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Dict, Sequence

import jsr_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TF loads)
import tensorflow as tf
from absl import logging

from jsr_tf import features as F
from jsr_tf import filenames as FN
from jsr_tf.config import ExperimentConfig
from jsr_tf.data import reader
from jsr_tf.keys import Inputs

_KEYS = {F.Task.FEED: Inputs.FEED.value, F.Task.SEARCH: Inputs.SEARCH.value}
SEARCH_SEED_OFFSET = 1  # the search stream's shuffle seed = train seed + 1 (independent order)


@dataclasses.dataclass(frozen=True)
class TrainInput:
    """The training dataset and its sizes.

    Attributes:
        dataset: Infinite ``tf.data.Dataset`` of ``{"feed": ..., "search": ...}`` dicts.
        steps_per_epoch: Steps ``fit`` runs per epoch.
        batch_sizes: Rows per step for each key present.
        num_examples: Train examples per task (``stats.json``), keyed like ``batch_sizes``.
    """

    dataset: tf.data.Dataset
    steps_per_epoch: int
    batch_sizes: Dict[str, int]
    num_examples: Dict[str, int]


def train_counts(data_dir: str) -> Dict[str, int]:
    """Train examples per task name (``{"feed": n, "search": m}``) from ``stats.json``.

    Raises:
        FileNotFoundError: If ``stats.json`` is missing (run ``jsr-preprocess`` first).
    """
    path = os.path.join(data_dir, FN.STATS_FILE)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{path!r} not found: run jsr-preprocess first.")
    with tf.io.gfile.GFile(path) as f:
        examples = json.load(f)["examples"][F.Split.TRAIN.value]
    return {F.task_name(t): int(examples.get(F.task_name(t), 0)) for t in F.Task}


NEIGHBOURS_SECTION = "neighbours"  # the manifest section ``jsr-neighbour-features`` writes


def has_neighbour_payload(data_dir: str) -> bool:
    """Whether ``<data_dir>/manifest.json`` has a ``"neighbours"`` section (False without one)."""
    path = os.path.join(data_dir, FN.MANIFEST_FILE)
    if not tf.io.gfile.exists(path):
        return False
    with tf.io.gfile.GFile(path) as f:
        return NEIGHBOURS_SECTION in json.load(f)


def check_neighbour_data(data_dir: str) -> bool:
    """Logs a warning unless ``data_dir`` carries the neighbour payload; returns whether it does.

    Call for a model with neighbours: on data without the payload every neighbour slot is empty,
    the fusion is an exact identity, and the model trains and scores like its base model.
    """
    present = has_neighbour_payload(data_dir)
    if not present:
        logging.warning(
            "The model uses neighbours (`model.neighbours` != 'none') but %s has no "
            "'%s' section in %s: every neighbour slot will be empty and the model equals its "
            "base model. Run jsr-neighbour-features on the data first.", data_dir,
            NEIGHBOURS_SECTION, FN.MANIFEST_FILE)
    return present


def search_batch_size(n_feed: int, n_search: int, batch_size: int) -> int:
    """``floor(n_search / (floor(n_feed / batch_size) + 1)) + 1`` (spec/unisar.md §9)."""
    if batch_size <= 0:
        raise ValueError(f"`batch_size` should be positive. Received: `batch_size={batch_size}`")
    return n_search // (n_feed // batch_size + 1) + 1


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def make_train_input(config: ExperimentConfig, data_dir: str,
                     tasks: Sequence[int] = tuple(F.Task), num_replicas: int = 1,
                     shuffle: bool = True) -> TrainInput:
    """Builds the joint (or single-task) training input.

    Iterate each returned dataset once: the reshuffle of every repetition draws from a seed
    generator shared by all iterators of the dataset, and an abandoned iterator's prefetching
    keeps advancing it, so a second iterator's order is not reproducible. Build another input
    (e.g. ``shuffle=False`` for a batch to create variables with) instead.

    Args:
        config: Uses ``train.batch_size``, ``steps_per_epoch``, ``seed``, ``shuffle_buffer``,
            ``resample_negatives`` and ``model.neighbours`` (parse the neighbour payload).
        data_dir: Pipeline output directory.
        tasks: Tasks the model trains on; a task without train examples is left out.
        num_replicas: ``strategy.num_replicas_in_sync``.
        shuffle: False reads in file order (no shuffle buffer).

    Returns:
        A ``TrainInput``.

    Raises:
        ValueError: If no requested task has train data, one epoch would have no full batch,
            or ``batch_size`` is not a multiple of ``num_replicas``.
    """
    train = config.train
    counts = train_counts(data_dir)
    present = [F.Task(t) for t in tasks if counts[F.task_name(t)] > 0]
    if not present:
        raise ValueError(f"No train examples for tasks {[F.task_name(t) for t in tasks]} in "
                         f"{data_dir}. Received counts: {counts}")
    if train.batch_size % num_replicas:
        raise ValueError("`batch_size` should be a multiple of the replica count. Received: "
                         f"`batch_size={train.batch_size}` with {num_replicas} replicas")
    primary = present[0]  # feed when present: it defines the epoch
    n_primary = counts[F.task_name(primary)]
    sizes = {_KEYS[primary]: train.batch_size}
    if F.Task.SEARCH in present and primary == F.Task.FEED:
        sizes[Inputs.SEARCH.value] = _round_up(
            search_batch_size(n_primary, counts[F.task_name(F.Task.SEARCH)], train.batch_size),
            num_replicas)
    steps = train.steps_per_epoch or n_primary // train.batch_size
    if steps <= 0:
        raise ValueError(f"One epoch has no full batch: {n_primary} {F.task_name(primary)} "
                         f"train examples < `batch_size={train.batch_size}`. Lower the batch "
                         "size or set `train.steps_per_epoch`.")
    neighbours = config.model.uses_neighbours
    if neighbours:
        check_neighbour_data(data_dir)
    streams = {}
    for offset, task in enumerate(present):
        key = _KEYS[task]
        if key not in sizes:
            continue
        streams[key] = reader.make_dataset(
            data_dir, F.Split.TRAIN.value, task, sizes[key],
            shuffle_buffer=train.shuffle_buffer if shuffle else 0,
            seed=train.seed + offset * SEARCH_SEED_OFFSET, repeat=True, drop_remainder=True,
            resample_negatives=train.resample_negatives, neighbours=neighbours)
    dataset = tf.data.Dataset.zip(streams).prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    # Multi-worker: every worker reads the same seeded stream and keeps every N-th step. FILE
    # sharding would leave workers without data when a split has fewer files than workers.
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA)
    dataset = dataset.with_options(options)
    return TrainInput(dataset=dataset, steps_per_epoch=steps, batch_sizes=dict(sizes),
                      num_examples={_KEYS[t]: counts[F.task_name(t)] for t in present})
