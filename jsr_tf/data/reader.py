"""``tf.data`` input over the pipeline's TFRecords.

Batch first, then ``parse_example`` (one vectorised parse per batch), then pad every list to the
contract's caps, so every batch has static inner shapes (XLA- and TPU-friendly).

Output of ``make_dataset`` (one dict per batch; B = batch size, C = 1 + negatives):

========================  ===========  =====================================================
key                       shape        meaning
========================  ===========  =====================================================
user_id, task             [B]          int64
target_ts, target_row     [B]          int64
feed_items, feed_ts       [B, 30]      raw ids / ms, oldest first, right-padded with -1 / 0
search_ts                 [B, 30]      ms, oldest first, right-padded with 0
search_has_click          [B, 30]      0/1
search_words              [B, 30, 50]  raw word ids per session, -1-padded
search_clicks             [B, 30, 5]   raw item ids per session, -1-padded
query_words               [B, 50]      raw word ids of the target query (all -1 on feed rows)
candidates                [B, C]       raw item ids; column 0 is the positive (-1-padded)
label                     [B, C]       float32, 1.0 in column 0
========================  ===========  =====================================================

With ``neighbours=True`` (data written by ``jsr-neighbour-features``; K = 10 slots, Lf = 15,
Lq = 10, Wn = 8, Kn = 2, see ``features.py``) five more keys, padding where a row has fewer
slots or no neighbour fields at all (ids -1, ``nbr_side`` and ``nbr_sim`` 0):

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


CANDIDATES = "candidates"
LABEL = "label"


def _ragged_spec(with_labels: bool = True, neighbours: bool = False,
                 eval_fields: bool = False) -> Dict[str, object]:
    spec: Dict[str, object] = {name: tf.io.FixedLenFeature([], tf.int64)
                               for name in F.SCALAR_FEATURES}
    for name in (F.QUERY_WORDS, F.NEGATIVES, F.FEED_ITEMS, F.FEED_TS, F.SEARCH_TS,
                 F.SEARCH_HAS_CLICK):
        spec[name] = tf.io.RaggedFeature(tf.int64)
    for values, (lengths, _) in F.SESSION_LIST_CAPS.items():
        spec[values] = tf.io.RaggedFeature(
            tf.int64, value_key=values,
            partitions=[tf.io.RaggedFeature.RowLengths(lengths)])
    if neighbours:
        for name in F.NEIGHBOUR_INPUTS:
            spec[name] = tf.io.RaggedFeature(tf.float32 if name == F.NBR_SIM else tf.int64)
    if eval_fields:
        for name in F.EVAL_FEATURES:
            spec[name] = tf.io.RaggedFeature(tf.int64)
    if not with_labels:
        for name in F.LABEL_FEATURES:
            spec.pop(name, None)
    return spec


def neighbour_tensors(parsed: Dict[str, tf.RaggedTensor],
                      num_slots: int = F.MAX_NEIGHBOURS) -> Dict[str, tf.Tensor]:
    """Flattened per-row neighbour lists (ragged ``[B, None]``) → dense ``[B, K, ...]`` blocks.

    Each stored slot occupies a fixed number of values (``features.NEIGHBOUR_SLOT_SIZES``), so
    padding or truncating a row to ``K * size`` values and reshaping gives the slots; rows with
    more than ``K`` slots keep their first ``K`` (feed side first, best first).
    """
    shapes = {F.NBR_SIDE: (), F.NBR_SIM: (), F.NBR_REC_ITEMS: (F.NBR_FEED_ITEMS,),
              F.NBR_SRC_WORDS: (F.NBR_SEARCH_SESSIONS, F.NBR_QUERY_WORDS),
              F.NBR_SRC_CLICKS: (F.NBR_SEARCH_SESSIONS, F.NBR_SESSION_CLICKS)}
    out = {}
    for name, inner in shapes.items():
        size = F.NEIGHBOUR_SLOT_SIZES[name]
        pad = 0 if name in (F.NBR_SIDE, F.NBR_SIM) else F.RAW_PAD_ID
        dense = parsed[name].to_tensor(default_value=pad, shape=[None, num_slots * size])
        out[name] = tf.reshape(dense, [-1, num_slots, *inner])
    return out


def parse_batch(serialized: tf.Tensor, with_labels: bool = True,
                neighbours: bool = False, eval_fields: bool = False) -> Dict[str, tf.Tensor]:
    """Parses a batch of serialized examples into padded dense tensors (see module table).

    Args:
        serialized: ``[B]`` tf.string.
        with_labels: If False, skip the label fields and ``candidates``/``label``.
        neighbours: Also parse the neighbour payload (``nbr_*``, see the module docstring).

    Returns:
        Dict of dense int64 tensors (plus float32 ``label`` and ``nbr_sim``).
    """
    parsed = tf.io.parse_example(serialized, _ragged_spec(with_labels, neighbours, eval_fields))
    out = {name: parsed[name] for name in F.SCALAR_FEATURES if name in parsed}

    def pad(name: str, *caps: int, value: int = F.RAW_PAD_ID) -> tf.Tensor:
        return parsed[name].to_tensor(default_value=value, shape=[None, *caps])

    out[F.QUERY_WORDS] = pad(F.QUERY_WORDS, F.MAX_QUERY_WORDS)
    out[F.FEED_ITEMS] = pad(F.FEED_ITEMS, F.MAX_FEED_HISTORY)
    out[F.FEED_TS] = pad(F.FEED_TS, F.MAX_FEED_HISTORY, value=0)
    out[F.SEARCH_TS] = pad(F.SEARCH_TS, F.MAX_SEARCH_HISTORY, value=0)
    out[F.SEARCH_HAS_CLICK] = pad(F.SEARCH_HAS_CLICK, F.MAX_SEARCH_HISTORY, value=0)
    out[F.SEARCH_WORDS] = pad(F.SEARCH_WORDS, F.MAX_SEARCH_HISTORY, F.MAX_QUERY_WORDS)
    out[F.SEARCH_CLICKS] = pad(F.SEARCH_CLICKS, F.MAX_SEARCH_HISTORY, F.MAX_SESSION_CLICKS)
    if with_labels:
        negatives = parsed[F.NEGATIVES].to_tensor(default_value=F.RAW_PAD_ID)
        out[CANDIDATES] = tf.concat([parsed[F.TARGET_ITEM][:, None], negatives], axis=1)
        out[LABEL] = tf.one_hot(tf.zeros_like(parsed[F.TARGET_ITEM], tf.int32),
                                tf.shape(out[CANDIDATES])[1], dtype=tf.float32)
    if neighbours:
        out.update(neighbour_tensors(parsed))
    if eval_fields:  # absent on a row (train rows, old data) = all padding
        out[F.NEGATIVES_FAIR] = pad(F.NEGATIVES_FAIR, F.NUM_EVAL_NEGATIVES)
        out[F.IMPRESSIONS] = pad(F.IMPRESSIONS, F.MAX_IMPRESSIONS)
        out[F.OTHER_CLICKS] = pad(F.OTHER_CLICKS, F.MAX_IMPRESSIONS)
    return out


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
        column = "feed_count" if task == F.Task.FEED else "search_count"
        with tf.io.gfile.GFile(os.path.join(data_dir, FN.VOCAB_DIR, FN.ITEMS_VOCAB)) as f:
            for row in csv.DictReader(f, delimiter="\t"):
                if int(row[column]) > 0:
                    items.append(int(row["item_id"]))
                    weights.append(float(row[column]))
                    first_seen.append(int(row["first_seen_ts"]))
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
        eval_fields: Also give ``negatives_fair``, ``impressions`` and ``other_clicks``, each
            ``[B, 99]`` (-1-padded; all -1 where a row has none), for the evaluation protocols.

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
    ds = ds.map(lambda serialized: parse_batch(serialized, neighbours=neighbours,
                                               eval_fields=eval_fields),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if resample_negatives:
        if not is_train:
            raise ValueError("`resample_negatives` is for the train split only: valid and test "
                             f"use the fixed candidate files. Received: `split={split!r}`")
        k = F.NUM_TRAIN_NEGATIVES if num_negatives is None else num_negatives
        if k <= 0:
            raise ValueError(f"`num_negatives` should be positive. Received: `{num_negatives}`")
        ds = ds.enumerate().map(NegativeResampler(data_dir, task, k, seed),
                                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)
