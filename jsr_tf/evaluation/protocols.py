"""Candidate protocols of the evaluation (spec/evaluation.md §9): which items a positive is ranked
against, all scored from the same trained weights.

=================  ==============================================================================
protocol           candidates of a row (the positive is always column 0)
=================  ==============================================================================
``sampled``        the stored ``negatives`` (1 + 99, popularity over the task's *train* targets):
                   the papers' protocol, kept for comparison. Its candidate set can give the
                   positive away (a positive that was never a train target is never a negative).
``sampled_fair``   the stored ``negatives_fair`` (1 + 99, popularity over the *same task and
                   split's positives*): negatives and positives come from one distribution, so an
                   item-only scorer is at chance. Same exclusions as ``sampled``.
``full``           every catalogue item (the vocabulary: train-visible items) except the items of
                   the row's history (the feed positives and clicked search items of the capped
                   history the row carries) and the target session's other clicks:
                   Recall@{10,50,100}, NDCG@{10,100}, MRR. A positive that is also in the history
                   stays the positive.
``impressions``    (search only) the items the target session showed and the user did not click
                   (``impressions``): real hard negatives; rows whose session showed nothing else
                   are skipped and counted.
=================  ==============================================================================

Ties count against the model in every protocol (``jsr_tf.evaluation.metrics``).

Shapes: ``B`` rows per batch, ``C`` candidates per row, ``I`` catalogue items, ``c`` items per
catalogue chunk.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any, Dict, Iterable, Optional, Sequence, Tuple

import jsr_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TF loads)
import numpy as np
import tensorflow as tf

from jsr_tf import features as F
from jsr_tf import filenames as FN
from jsr_tf.data import reader
from jsr_tf.evaluation import metrics as M

SAMPLED = "sampled"
SAMPLED_FAIR = "sampled_fair"
FULL = "full"
IMPRESSIONS = "impressions"
PROTOCOLS = (SAMPLED, SAMPLED_FAIR, FULL, IMPRESSIONS)
# Protocols whose candidates come from the optional evaluation fields (features.EVAL_FEATURES).
NEEDS_EVAL_FIELDS = (SAMPLED_FAIR, IMPRESSIONS)
SEARCH_ONLY = (IMPRESSIONS,)

FULL_RECALL_KS = (10, 50, 100)
FULL_NDCG_KS = (10, 100)
ROWS_SKIPPED = "rows_skipped"
POSITIVE_IN_HISTORY = "positive_in_history_fraction"
ROWS_PER_S = "rows_per_s"
CANDIDATES_PER_S = "candidates_per_s"


def metric_names(protocol: str) -> Tuple[str, ...]:
    """Metrics reported under a protocol (``full`` has its own cut-offs)."""
    if protocol == FULL:
        return (tuple(f"Recall@{k}" for k in FULL_RECALL_KS)
                + tuple(f"NDCG@{k}" for k in FULL_NDCG_KS) + ("MRR",))
    return M.metric_names()


def available_protocols(data_dir: str) -> Tuple[str, ...]:
    """The protocols a data dir supports: ``sampled_fair`` and ``impressions`` need data written
    by a pipeline that stores their fields (its manifest has ``sampler_fair``)."""
    path = os.path.join(data_dir, FN.MANIFEST_FILE)
    manifest: Dict[str, Any] = {}
    if tf.io.gfile.exists(path):
        with tf.io.gfile.GFile(path) as f:
            manifest = json.load(f)
    if "sampler_fair" in manifest:
        return PROTOCOLS
    return tuple(p for p in PROTOCOLS if p not in NEEDS_EVAL_FIELDS)


def resolve_protocols(requested: Optional[Sequence[str]], data_dir: str) -> Tuple[str, ...]:
    """Checks a ``--protocol`` list against the data; None = every protocol the data supports.

    Raises:
        ValueError: An unknown protocol, or one the data dir cannot serve (with the fix).
    """
    available = available_protocols(data_dir)
    if requested is None:
        return available
    requested = tuple(dict.fromkeys(requested))
    unknown = [p for p in requested if p not in PROTOCOLS]
    if unknown:
        raise ValueError(f"Unknown protocol(s) {unknown}; choose from {list(PROTOCOLS)}.")
    missing = [p for p in requested if p not in available]
    if missing:
        raise ValueError(f"{data_dir} has no candidates for {missing}: it was written before "
                         "these protocols existed. Rerun jsr-preprocess into a new directory to "
                         "add them (its files differ, so runs evaluated on the old directory "
                         "must be retrained on the new one).")
    if not requested:
        raise ValueError("Give at least one protocol.")
    return requested


def protocol_candidates(batch: Dict[str, np.ndarray], protocol: str
                        ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The candidates of a parsed batch under a candidate-list protocol.

    Args:
        batch: ``reader`` batch as numpy (with ``eval_fields`` for ``sampled_fair`` and
            ``impressions``).
        protocol: ``sampled``, ``sampled_fair`` or ``impressions``.

    Returns:
        ``(candidates [B, C], valid [B, C] bool, keep [B] bool)``: column 0 is the positive;
        ``valid`` marks real candidates (impressions are padded); rows with ``keep`` False have
        no usable candidate list under this protocol (skipped and counted).
    """
    positive = batch[reader.CANDIDATES][:, :1]
    if protocol == SAMPLED:
        candidates = batch[reader.CANDIDATES]
        return candidates, np.ones(candidates.shape, bool), np.ones(len(candidates), bool)
    if protocol == SAMPLED_FAIR:  # as many as the stored negatives (the reader pads to 99)
        negatives = batch[F.NEGATIVES_FAIR][:, :batch[reader.CANDIDATES].shape[1] - 1]
        candidates = np.concatenate([positive, negatives], axis=1)
        keep = np.all(negatives >= 0, axis=1)  # padding: RAW_PAD_ID
        return candidates, np.ones(candidates.shape, bool), keep
    if protocol == IMPRESSIONS:
        negatives = batch[F.IMPRESSIONS]
        candidates = np.concatenate([positive, negatives], axis=1)
        valid = candidates >= 0
        valid[:, 0] = True
        return candidates, valid, np.any(negatives >= 0, axis=1)
    raise ValueError(f"`protocol` should be one of {[SAMPLED, SAMPLED_FAIR, IMPRESSIONS]} here. "
                     f"Received: {protocol!r}")


# -- full catalogue ------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class FullRanks:
    """Full-catalogue ranks of one (split, task) in file order.

    Attributes:
        ranks: ``(N,)`` rank of the positive among itself and the non-excluded catalogue items.
        user_id: ``(N,)`` raw user ids.
        target_row: ``(N,)`` source-file rows.
        positive_in_history: ``(N,)`` bool, the positive is also one of the row's history items.
        wall_time_s: Seconds spent scoring.
        candidates_scored: Catalogue scores computed (rows × catalogue size).
    """

    ranks: np.ndarray
    user_id: np.ndarray
    target_row: np.ndarray
    positive_in_history: np.ndarray
    wall_time_s: float
    candidates_scored: int


def history_items(batch: Dict[str, tf.Tensor]) -> tf.Tensor:
    """``[B, 30 + 30·5]`` the row's interacted items: feed positives and the clicks of clicked
    search sessions (a no-click session's fallback item was only shown, so it is not excluded);
    ``RAW_PAD_ID`` = padding."""
    clicks = batch[F.SEARCH_CLICKS]
    clicked = tf.not_equal(batch[F.SEARCH_HAS_CLICK], 0)[:, :, None]
    clicks = tf.where(clicked, clicks, tf.fill(tf.shape(clicks), tf.constant(F.RAW_PAD_ID,
                                                                             clicks.dtype)))
    rows = tf.shape(clicks)[0]
    return tf.concat([batch[F.FEED_ITEMS], tf.reshape(clicks, [rows, -1])], axis=1)


def _full_step(scorer, task: int):
    """``(batch, ids [c]) -> (count [B], positive_in_history [B])``: per row, how many non-excluded
    chunk items score >= the positive (scored in the same call, column 0)."""

    def step(batch: Dict[str, tf.Tensor], ids: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
        positive = batch[reader.CANDIDATES][:, :1]
        rows = tf.shape(positive)[0]
        candidates = tf.concat([positive, tf.tile(ids[None, :], [rows, 1])], axis=1)
        scored = dict(batch)
        scored[reader.CANDIDATES] = candidates
        scored[reader.LABEL] = tf.one_hot(tf.zeros([rows], tf.int32), tf.shape(candidates)[1])
        scores = tf.convert_to_tensor(scorer.score(scored, task, training=False))
        scores = tf.where(tf.math.is_nan(scores), tf.cast(-np.inf, scores.dtype), scores)
        history = history_items(batch)
        in_history = tf.reduce_any(tf.equal(ids[None, :, None], history[:, None, :]), axis=-1)
        excluded = in_history | tf.equal(ids[None, :], positive)
        if F.OTHER_CLICKS in batch:  # the session's other clicks: relevant, never negatives
            others = batch[F.OTHER_CLICKS]
            excluded |= tf.reduce_any(tf.equal(ids[None, :, None], others[:, None, :]), axis=-1)
        beats = (scores[:, 1:] >= scores[:, :1]) & ~excluded
        count = tf.reduce_sum(tf.cast(beats, tf.int64), axis=1)
        positive_in_history = tf.reduce_any(tf.equal(positive, history), axis=1)
        return count, positive_in_history

    return step


def subset_mask(user_ids: np.ndarray, fraction: float) -> np.ndarray:
    """A fixed, hash-chosen subset of users (the same for every model): ``(N,)`` bool."""
    if fraction >= 1.0:
        return np.ones(len(user_ids), bool)
    hashed = (np.asarray(user_ids, np.uint64) * np.uint64(2654435761)) % np.uint64(1 << 32)
    return hashed < np.uint64(int(fraction * (1 << 32)))


def count_rows(data_dir: str, split: str, task: int) -> Optional[int]:
    """Rows of one (split, task) from the manifest (None without one)."""
    path = os.path.join(data_dir, FN.MANIFEST_FILE)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        files = json.load(f).get("files", {})
    prefix = F.shard_prefix(split, task)
    return sum(int(info.get("rows", 0)) for name, info in files.items() if name.startswith(prefix))


def full_ranks(scorer, data_dir: str, split: str, task: int, catalogue: np.ndarray, *,
               batch_size: int = 32, chunk: int = 4096, max_rows: Optional[int] = None,
               neighbours: bool = False, log=None) -> FullRanks:
    """Ranks every row's positive against the whole catalogue minus the row's history items.

    The catalogue is scored in chunks of ``chunk`` items (``[B, 1 + c]`` per call, the positive in
    column 0 of every call), so memory stays bounded and only counts leave the graph.

    Args:
        scorer: Implements ``score(batch, task, training=False)`` for any number of candidates.
        data_dir: Pipeline output directory.
        split: ``"valid"`` or ``"test"``.
        task: ``features.Task``.
        catalogue: ``(I,)`` raw item ids (without padding).
        batch_size: Rows per call.
        chunk: Catalogue items per call.
        max_rows: Score about this many rows, a fixed hash-chosen subset of users (None = all).
        neighbours: Parse the neighbour payload (neighbour models).
        log: Optional progress sink (one line per batch group).

    Returns:
        ``FullRanks`` of the scored rows.
    """
    catalogue = np.asarray(catalogue, np.int64)
    catalogue = catalogue[catalogue >= 0]
    if catalogue.size == 0:
        raise ValueError("The catalogue is empty: no items to rank against.")
    total = count_rows(data_dir, split, task)
    fraction = 1.0 if not max_rows or not total or max_rows >= total else max_rows / total
    eval_fields = SAMPLED_FAIR in available_protocols(data_dir)  # other_clicks are stored
    ds = reader.make_dataset(data_dir, split, task, batch_size, shuffle_buffer=0,
                             neighbours=neighbours, eval_fields=eval_fields)
    fn = tf.function(_full_step(scorer, task), reduce_retracing=True)
    chunks = [tf.constant(catalogue[i:i + chunk]) for i in range(0, catalogue.size, chunk)]
    ranks, users, rows, in_history = [], [], [], []
    start = time.perf_counter()
    for index, batch in enumerate(ds):
        user_ids = batch[F.USER_ID].numpy()
        keep = subset_mask(user_ids, fraction)
        if not keep.any():
            continue
        if not keep.all():
            batch = {k: tf.boolean_mask(v, keep) for k, v in batch.items()}
        count = np.zeros(int(keep.sum()), np.int64)
        positive_in_history = None
        for ids in chunks:
            c, h = fn(batch, ids)
            count += c.numpy()
            positive_in_history = h.numpy()
        ranks.append(1 + count)
        users.append(user_ids[keep])
        rows.append(batch[F.TARGET_ROW].numpy())
        in_history.append(positive_in_history)
        if log is not None and (index + 1) % 20 == 0:
            done = sum(len(r) for r in ranks)
            log(f"full catalogue: {done} rows, {done / (time.perf_counter() - start):.1f} rows/s")
    wall = time.perf_counter() - start

    def cat(parts, dtype):
        return np.concatenate(parts).astype(dtype) if parts else np.zeros([0], dtype)

    ranks_all = cat(ranks, np.int64)
    return FullRanks(ranks_all, cat(users, np.int64), cat(rows, np.int64),
                     cat(in_history, bool), wall, int(ranks_all.size) * int(catalogue.size))


def full_metrics(result: FullRanks) -> Dict[str, Any]:
    """Recall@{10,50,100}, NDCG@{10,100}, MRR of full-catalogue ranks (NaN without rows), plus
    ``rows``, ``positive_in_history_fraction``, ``rows_per_s`` and ``candidates_per_s``."""
    per_row = M.per_row_metrics(result.ranks, hr_ks=FULL_RECALL_KS, ndcg_ks=FULL_NDCG_KS)
    n = result.ranks.size
    out: Dict[str, Any] = {}
    for name, values in per_row.items():
        name = name.replace("HR@", "Recall@")  # one relevant item: Recall@K = HR@K
        out[name] = float(np.mean(values)) if n else float("nan")
    out["rows"] = int(n)
    out[POSITIVE_IN_HISTORY] = float(np.mean(result.positive_in_history)) if n else float("nan")
    wall = max(result.wall_time_s, 1e-9)
    out[ROWS_PER_S] = n / wall
    out[CANDIDATES_PER_S] = result.candidates_scored / wall
    return out


def tasks_of(tasks: Iterable[int], protocol: str) -> Tuple[int, ...]:
    """The tasks a protocol covers (``impressions``: search only)."""
    return tuple(t for t in tasks
                 if not (protocol in SEARCH_ONLY and F.Task(t) != F.Task.SEARCH))
