"""``tf.data`` input over the pipeline's TFRecords.

Batch first, then ``parse_example`` (one vectorised parse per batch), then pad every list to the
data's ``DataShape`` (read from its ``manifest.json``; ``features.DataShape.batch_fields`` is the
layout), so every batch has static inner shapes (XLA- and TPU-friendly).

Output of ``make_dataset`` (one dict per batch; B = batch size, C = 1 + negatives; Hf, Hs, W, Kc
= the shape's ``feed_history``, ``search_history``, ``query_words``, ``session_clicks``, by
default 30, 30, 50, 5):

========================  ===========  =====================================================
key                       shape        meaning
========================  ===========  =====================================================
user_id, task             [B]          int64
target_ts, target_row     [B]          int64
feed_items, feed_ts       [B, Hf]      raw ids / ms, oldest first, right-padded with -1 / 0
search_ts                 [B, Hs]      ms, oldest first, right-padded with 0
search_has_click          [B, Hs]      0/1
search_words              [B, Hs, W]   raw word ids per session, -1-padded
search_clicks             [B, Hs, Kc]  raw item ids per session, -1-padded
query_words               [B, W]       raw word ids of the target query (all -1 on feed rows)
candidates                [B, C]       raw item ids; column 0 is the positive (-1-padded)
label                     [B, C]       float32, 1.0 in column 0
========================  ===========  =====================================================

With ``neighbours=True`` (data written by ``jsr-neighbour-features``; the shape's K slots, Lf,
Lq, Wn, Kn, by default 10, 15, 10, 8, 2) five more keys, padding where a row has fewer slots or
no neighbour fields at all (ids -1, ``nbr_side`` and ``nbr_sim`` 0):

========================  ================  ================================================
nbr_side                  [B, K]            int64, 0 empty, 1 feed-similar, 2 search-similar
nbr_sim                   [B, K]            float32 Jaccard
nbr_rec_items             [B, K, Lf]        raw ids, oldest first, right-padded with -1
nbr_src_words             [B, K, Lq, Wn]    raw word ids per session
nbr_src_clicks            [B, K, Lq, Kn]    raw item ids per session
========================  ================  ================================================

Training negatives: the stored ones by default (spec/evaluation.md §3); ``NegativeResampler``
draws fresh ones per batch (and so per epoch) from the same popularity pool, seeded.
"""

from __future__ import annotations

import csv
import os
from typing import Dict, Optional

import jsr_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TF loads)
import numpy as np
import tensorflow as tf

from jsr_tf import features as F
from jsr_tf import filenames as FN


CANDIDATES = F.CANDIDATES
LABEL = F.LABEL


def parse_batch(serialized: tf.Tensor, shape: F.DataShape, with_labels: bool = True,
                neighbours: bool = False, eval_fields: bool = False) -> Dict[str, tf.Tensor]:
    """Parses a batch of serialized examples into padded dense tensors (see module table).

    Args:
        serialized: ``[B]`` tf.string.
        shape: The data's ``DataShape`` (``DataShape.read(data_dir)``): the padded sizes.
        with_labels: If False, skip the label fields and ``candidates``/``label``.
        neighbours: Also parse the neighbour payload (``nbr_*``, see the module docstring).
        eval_fields: Also parse the evaluation lists (``features.EVAL_FEATURES``).

    Returns:
        Dict of dense int64 tensors (plus float32 ``label`` and ``nbr_sim``).
    """
    parsed = tf.io.parse_example(serialized, F.parse_spec(with_labels, neighbours, eval_fields))
    return F.pad_batch(parsed, shape, neighbours=neighbours, eval_fields=eval_fields)


class NegativeResampler:
    """Fresh popularity-weighted training negatives per batch (the per-epoch resampling option).

    Draws ``2k`` items per row from the task's pool (``w_i`` = train-target count, read from
    ``vocab/items.tsv``), drops draws equal to the positive, to an item in the row's history, or
    first seen at or after the target, and to earlier draws of the row, and keeps the first ``k``.
    The exclusions are those a row can see: its (capped, masked) history. Unlike the stored
    negatives they do not cover the user's older items beyond the caps nor a search session's
    other clicks, so this option is approximate in that respect.
    Rows where fewer than ``k`` draws survive fill the missing slots with their stored negatives
    (repeated if fewer than ``k`` are stored), so every negative obeys the exclusions; only a
    degenerate pool can then produce a repeated negative.
    Stateless random ops seeded by ``(seed, batch index)``: deterministic, and different every
    epoch when the dataset repeats (``repeat=True``: the batch index keeps counting across
    epochs; without it each epoch restarts the index and redraws the same negatives).

    Args:
        data_dir: Pipeline output directory.
        task: ``features.Task``.
        num_negatives: ``k``.
        seed: Integer seed.
    """

    def __init__(self, data_dir: str, task: int, num_negatives: int, seed: int = 0) -> None:
        items, weights, first_seen = [], [], []
        column = FN.ItemsTsv.FEED_COUNT if task == F.Task.FEED else FN.ItemsTsv.SEARCH_COUNT
        with tf.io.gfile.GFile(os.path.join(data_dir, FN.VOCAB_DIR, FN.ITEMS_VOCAB)) as f:
            for row in csv.DictReader(f, delimiter="\t"):
                if int(row[column]) > 0:
                    items.append(int(row[FN.ItemsTsv.ITEM_ID]))
                    weights.append(float(row[column]))
                    first_seen.append(int(row[FN.ItemsTsv.FIRST_SEEN_TS]))
        if not items:
            raise ValueError(f"No item has a positive {column} in {data_dir}: cannot resample.")
        self.items = tf.constant(np.array(items, np.int64))
        cdf = np.cumsum(np.array(weights, np.float64))
        self.cdf = tf.constant(cdf / cdf[-1], tf.float64)  # inverse-CDF draws: O(log N) each
        self.first_seen = tf.constant(np.array(first_seen, np.int64))
        self.num_negatives = num_negatives
        self.seed = seed

    def __call__(self, index: tf.Tensor, batch: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        k = self.num_negatives
        positive = batch[CANDIDATES][:, :1]
        rows = tf.shape(positive)[0]
        uniform = tf.random.stateless_uniform(
            tf.stack([rows, 2 * k]), dtype=tf.float64,
            seed=tf.stack([tf.cast(self.seed, tf.int64), tf.cast(index, tf.int64)]))
        draws = tf.searchsorted(self.cdf, tf.reshape(uniform, [-1]), side="right")
        draws = tf.reshape(tf.minimum(draws, tf.size(self.cdf) - 1), [rows, 2 * k])
        items = tf.gather(self.items, draws)  # [B, 2k]
        seen = tf.gather(self.first_seen, draws)
        history = tf.concat([batch[F.FEED_ITEMS],
                             tf.reshape(batch[F.SEARCH_CLICKS], [rows, -1])], axis=1)
        bad = tf.reduce_any(items[:, :, None] == history[:, None, :], axis=2)
        bad |= items == positive
        bad |= seen >= batch[F.TARGET_TS][:, None]
        earlier = tf.linalg.band_part(tf.ones([2 * k, 2 * k], tf.bool), 0, -1)  # j <= i
        earlier &= ~tf.eye(2 * k, dtype=tf.bool)
        dup = tf.reduce_any((items[:, :, None] == items[:, None, :]) & earlier[None], axis=1)
        bad |= dup
        # Stable order: good draws first, in draw order.
        order = tf.argsort(tf.cast(bad, tf.int32) * (2 * k) + tf.range(2 * k)[None, :], axis=1)
        fresh = tf.gather(items, order, batch_dims=1)[:, :k]
        fresh_ok = ~tf.gather(bad, order, batch_dims=1)[:, :k]
        stored = batch[CANDIDATES][:, 1:]
        tf.debugging.assert_positive(
            tf.shape(stored)[1],
            message="resample_negatives needs at least one stored negative per row to fall back on")
        repeats = (k + tf.shape(stored)[1] - 1) // tf.shape(stored)[1]
        stored = tf.tile(stored, [1, repeats])[:, :k]  # valid negatives, repeated if too few
        negatives = tf.where(fresh_ok, fresh, stored)
        out = dict(batch)
        out[CANDIDATES] = tf.concat([positive, negatives], axis=1)
        out[LABEL] = tf.one_hot(tf.zeros([rows], tf.int32), 1 + k, dtype=tf.float32)
        return out


def make_dataset(data_dir: str, split: str, task: int, batch_size: int, *,
                 shuffle_buffer: Optional[int] = None, seed: int = 0,
                 repeat: bool = False, drop_remainder: bool = False,
                 resample_negatives: bool = False, num_negatives: Optional[int] = None,
                 num_parallel_reads: int = tf.data.AUTOTUNE,
                 neighbours: bool = False, eval_fields: bool = False) -> tf.data.Dataset:
    """Batched, parsed, padded dataset of one (split, task).

    Args:
        data_dir: Pipeline output directory (local or any TF filesystem).
        split: ``"train"``, ``"valid"`` or ``"test"``.
        task: ``features.Task``.
        batch_size: Rows per batch.
        shuffle_buffer: Examples in the shuffle buffer; default 10,000 for train, no shuffling
            for valid/test. 0 disables shuffling.
        seed: Seed of file order, shuffling and resampling.
        repeat: Repeat forever (reshuffled each epoch).
        drop_remainder: Drop the last partial batch (static batch dimension).
        resample_negatives: Draw fresh training negatives per batch (``NegativeResampler``).
        num_negatives: Negatives per row when resampling (default: as stored).
        num_parallel_reads: Files read in parallel.
        neighbours: Parse the neighbour payload too (models with ``neighbours != "none"``).
        eval_fields: Also give ``negatives_fair`` ``[B, eval_negatives]``, ``impressions`` and
            ``other_clicks`` ``[B, impressions]`` (-1-padded; all -1 where a row has none), for
            the evaluation protocols.

    Returns:
        A ``tf.data.Dataset`` of dicts as in the module table.

    Raises:
        FileNotFoundError: If no file matches the (split, task).
    """
    F.Split(split)
    pattern = os.path.join(data_dir, F.file_pattern(split, task))
    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(f"No TFRecords match {pattern!r}: run jsr-preprocess first.")
    is_train = split == F.Split.TRAIN.value
    if shuffle_buffer is None:
        shuffle_buffer = 10_000 if is_train else 0
    ds = tf.data.Dataset.from_tensor_slices(files)
    if shuffle_buffer:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    ds = ds.interleave(lambda f: tf.data.TFRecordDataset(f, compression_type="GZIP"),
                       cycle_length=min(len(files), 8), num_parallel_calls=num_parallel_reads,
                       deterministic=True)
    if shuffle_buffer:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    shape = F.DataShape.read(data_dir)
    ds = ds.map(lambda serialized: parse_batch(serialized, shape, neighbours=neighbours,
                                               eval_fields=eval_fields),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if resample_negatives:
        if not is_train:
            raise ValueError("`resample_negatives` is for the train split only: valid and test "
                             f"use the fixed candidate files. Received: `split={split!r}`")
        k = shape.train_negatives if num_negatives is None else num_negatives
        if k <= 0:
            raise ValueError(f"`num_negatives` should be positive. Received: `{num_negatives}`")
        ds = ds.enumerate().map(NegativeResampler(data_dir, task, k, seed),
                                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)
