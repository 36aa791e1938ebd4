"""Candidate evaluation over the shared valid/test files (spec/evaluation.md §3–4).

Every model (and every floor scorer in ``scorers.py``) is scored on the same fixed candidate
files ``<data_dir>/<split>-<task>-*.tfrecord.gz``, read in file order. The positive is candidate
column 0 in the files. Models must not depend on candidate order, so the evaluator

1. permutes the candidate columns with one fixed, seeded permutation (it always moves column 0,
   so the positive is never where the file put it),
2. scores the permuted batch inside a ``tf.function`` (one trace per task),
3. un-permutes the scores, and
4. computes the rank metrics of ``jsr_tf.evaluation.metrics`` with the positive at column 0
   (ties count against the model).

The candidates depend on the protocol (``jsr_tf.evaluation.protocols``): the stored negatives
(``sampled``), the fair ones (``sampled_fair``), the session's impressions (``impressions``, padded
columns masked), or the whole catalogue (``full``, ``evaluate_full``: no permutation needed, every
catalogue item is scored in chunks and only the count of items at or above the positive is kept).

Shapes: ``B`` rows per batch, ``C`` candidates per row (1 positive + negatives; 100 in the
reference files), ``N`` rows in one (split, task).
"""

from __future__ import annotations

import dataclasses
import json
import os
import weakref
import time
from typing import Any, Callable, Dict, Iterable, Optional, Protocol, Sequence

import jsr_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TF loads)
import numpy as np
import tensorflow as tf

from jsr_tf import features as F
from jsr_tf import filenames as FN
from jsr_tf.data import reader
from jsr_tf.data.vocab import load_vocab
from jsr_tf.evaluation import metrics as M
from jsr_tf.evaluation import protocols, report, scorers
from jsr_tf.models import factory

TASKS = (F.Task.FEED, F.Task.SEARCH)
ROWS = "rows"
TIE_FRACTION = "tie_fraction"
PER_ROW = "per_row"  # the ``return_rows=True`` extras
_PERMUTED_KEYS = (reader.CANDIDATES, reader.LABEL)


class Scorer(Protocol):
    """What the evaluator needs: the model contract of ``jsr_tf.models.base.JsrModel``."""

    def score(self, batch: Dict[str, tf.Tensor], task: int,
              training: bool = False) -> tf.Tensor:  # pragma: no cover - protocol
        ...


@dataclasses.dataclass(frozen=True)
class ScoredSplit:
    """Scores of one (split, task) in file order, columns in file order (positive = column 0).

    Attributes:
        scores: ``(N, C)`` float scores (logits).
        user_id: ``(N,)`` raw user ids (each user has at most one row per task and split).
        target_row: ``(N,)`` source-file row of each target.
        valid: ``(N, C)`` bool, real candidates (None: all; ``impressions`` rows are padded).
        rows_skipped: Rows without a candidate list under the protocol (not in ``scores``).
    """

    scores: np.ndarray
    user_id: np.ndarray
    target_row: np.ndarray
    valid: Optional[np.ndarray] = None
    rows_skipped: int = 0


def column_permutation(num_columns: int, seed: int) -> np.ndarray:
    """The fixed column permutation of the evaluator: ``permuted[:, j] = original[:, perm[j]]``.

    Seeded by ``seed`` and never leaves column 0 (the positive) in place, so a scorer that
    favours a column position cannot find the positive.

    Args:
        num_columns: C, candidates per row (>= 2).
        seed: Integer seed.

    Returns:
        ``(C,)`` int32 permutation with ``perm[0] != 0``.
    """
    if num_columns < 2:
        raise ValueError("`num_columns` should be >= 2 (a positive and a negative). Received: "
                         f"`num_columns={num_columns}`")
    rng = np.random.default_rng(seed)
    while True:
        perm = rng.permutation(num_columns)
        if perm[0] != 0:
            return perm.astype(np.int32)


def expected_num_candidates(data_dir: str, split: str) -> Optional[int]:
    """C of a split according to ``<data_dir>/manifest.json`` (None without a manifest)."""
    path = os.path.join(data_dir, FN.MANIFEST_FILE)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        sampler = json.load(f).get("sampler", {})
    key = "num_train_negatives" if F.Split(split) == F.Split.TRAIN else "num_eval_negatives"
    return 1 + int(sampler[key]) if key in sampler else None


def evaluate_scores(scores: np.ndarray, *, return_rows: bool = False,
                    valid: Optional[np.ndarray] = None) -> Dict[str, Any]:
    """Rank metrics of ``(N, C)`` scores whose positive is column 0.

    Args:
        scores: ``(N, C)`` scores, file column order.
        return_rows: Also return ``"per_row"``: ``{metric: (N,) array}`` plus ``"rank"`` and
            ``"tie"`` arrays, for paired bootstrap tests.
        valid: ``(N, C)`` bool, the real candidates of padded rows (None: every column); padding
            columns never outrank or tie the positive.

    Returns:
        ``{"HR@1": …, …, "MRR": …, "rows": N, "tie_fraction": x, "positive_tie_fraction": y}``
        (metrics NaN when N = 0).
    """
    scores = np.asarray(scores)
    if scores.ndim != 2 or scores.shape[1] < 2:
        raise ValueError("`scores` should have shape (N, C) with C >= 2. Received: "
                         f"`scores.shape={scores.shape}`")
    out: Dict[str, Any] = dict(M.rank_metrics(scores, positive_index=0, valid=valid))
    out[ROWS] = int(out[ROWS])
    if return_rows:
        ranks = M.positive_ranks(scores, positive_index=0, valid=valid)
        per_row: Dict[str, np.ndarray] = dict(M.per_row_metrics(ranks))
        per_row["rank"] = ranks
        per_row["tie"] = M.tie_mask(scores, valid)
        out[PER_ROW] = per_row
    return out


def _scoring_function(scorer: Scorer, task: int, perm: np.ndarray,
                      element_spec: Dict[str, tf.TensorSpec]) -> Callable:
    """``tf.function`` batch -> un-permuted scores, traced once (batch dimension unknown)."""
    perm_t = tf.constant(perm, tf.int32)
    inverse_t = tf.constant(np.argsort(perm), tf.int32)
    task = F.Task(task)

    def score(batch: Dict[str, tf.Tensor]) -> tf.Tensor:
        permuted = dict(batch)
        for key in _PERMUTED_KEYS:
            permuted[key] = tf.gather(batch[key], perm_t, axis=1)
        logits = tf.convert_to_tensor(scorer.score(permuted, task, training=False))
        check = tf.debugging.assert_equal(
            tf.shape(logits), tf.shape(batch[reader.CANDIDATES]),
            message="score() should return logits of shape [B, C] (the candidates' shape)")
        with tf.control_dependencies([check]):  # before the gather (GPUs don't range-check)
            return tf.gather(logits, inverse_t, axis=1)

    return tf.function(score, input_signature=[element_spec])


_SCORING_FUNCTIONS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _cached_scoring_function(scorer: Scorer, task: int, perm: np.ndarray,
                             element_spec: Dict[str, tf.TensorSpec]) -> Callable:
    """``_scoring_function``, cached per scorer (weakly, outside the object: a Keras model would
    track a dict attribute and refuse to checkpoint it), so repeated evaluations (one per
    training epoch) reuse one trace per (task, permutation)."""
    try:
        cache = _SCORING_FUNCTIONS.setdefault(scorer, {})
    except TypeError:  # not weak-referenceable: no cache
        return _scoring_function(scorer, task, perm, element_spec)
    key = (int(task), tuple(int(i) for i in perm), repr(element_spec))
    if key not in cache:
        cache[key] = _scoring_function(scorer, task, perm, element_spec)
    return cache[key]


def _check_candidates(candidates: np.ndarray, user_ids: np.ndarray, expected: int,
                      where: str) -> None:
    if candidates.shape[1] != expected:
        raise ValueError(f"Rows of {where} should have {expected} candidates (1 positive + "
                         f"negatives). Received: {candidates.shape[1]} in a batch")
    short = np.any(candidates < 0, axis=1)  # the reader pads with RAW_PAD_ID
    if short.any():
        bad = user_ids[short][:5].tolist()
        raise ValueError(f"{int(short.sum())} rows of {where} have fewer than {expected} "
                         f"candidates (padded with {F.RAW_PAD_ID}); users {bad}. The candidate "
                         "files are corrupt or were written with another sampler setting.")


def uses_neighbours(scorer: Any) -> bool:
    """Whether a scorer reads the neighbour payload: its ``config.uses_neighbours`` (a model's
    ``ModelConfig``), also through a wrapper's ``model`` (e.g. ``QueryBlindScorer``)."""
    for obj in (scorer, getattr(scorer, "model", None)):
        config = getattr(obj, "config", None)
        if bool(getattr(config, "uses_neighbours", False)):
            return True
    return False


def score_split(scorer: Scorer, data_dir: str, split: str, task: int, *,
                batch_size: int = 512, permutation_seed: Optional[int] = 0,
                neighbours: Optional[bool] = None,
                protocol: str = protocols.SAMPLED) -> ScoredSplit:
    """Scores every row of one (split, task) with the column permutation of the evaluator.

    Args:
        scorer: A model or scorer implementing ``score(batch, task, training=False)``.
        data_dir: Pipeline output directory.
        split: ``"train"``, ``"valid"`` or ``"test"``.
        task: ``features.Task``.
        batch_size: Rows per batch.
        permutation_seed: Seed of the column permutation. None scores the file's column order
            (positive first); only tests should need that.
        neighbours: Parse the neighbour payload (``nbr_*``); None = ``uses_neighbours(scorer)``.
        protocol: ``sampled`` (the stored candidates), ``sampled_fair`` or ``impressions``
            (``jsr_tf.evaluation.protocols``).

    Returns:
        A ``ScoredSplit`` (scores un-permuted: the positive is column 0).

    Raises:
        FileNotFoundError: No file of that (split, task).
        ValueError: A row with fewer candidates than the manifest says, or a bad score shape.
    """
    if not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"`batch_size` should be a positive integer. Received: "
                         f"`batch_size={batch_size!r}`")
    if neighbours is None:
        neighbours = uses_neighbours(scorer)
    eval_fields = protocol in protocols.NEEDS_EVAL_FIELDS
    ds = reader.make_dataset(data_dir, split, task, batch_size, shuffle_buffer=0,
                             neighbours=neighbours, eval_fields=eval_fields)
    where = os.path.join(data_dir, F.file_pattern(split, task))
    expected = expected_num_candidates(data_dir, split)
    if protocol == protocols.IMPRESSIONS:
        expected = 1 + F.DataShape.read(data_dir).impressions
    fn = None
    scores, users, rows, valids = [], [], [], []
    skipped = 0
    for batch in ds:
        if protocol != protocols.SAMPLED:
            numpy_batch = {k: v.numpy() for k, v in batch.items()}
            candidates, valid, keep = protocols.protocol_candidates(numpy_batch, protocol)
            skipped += int((~keep).sum())
            if not keep.any():
                continue
            batch = {k: tf.constant(v[keep]) for k, v in numpy_batch.items()}
            batch[reader.CANDIDATES] = tf.constant(candidates[keep])
            batch[reader.LABEL] = tf.one_hot(tf.zeros([int(keep.sum())], tf.int32),
                                             candidates.shape[1])
            valid = valid[keep]
        candidates = batch[reader.CANDIDATES].numpy()
        user_ids = batch[F.USER_ID].numpy()
        if protocol == protocols.SAMPLED:
            valid = np.ones(candidates.shape, bool)
        if expected is None:
            expected = candidates.shape[1]
        if protocol != protocols.IMPRESSIONS:
            _check_candidates(candidates, user_ids, expected, where)
        if fn is None:
            perm = (np.arange(expected, dtype=np.int32) if permutation_seed is None
                    else column_permutation(expected, permutation_seed))
            spec = {k: tf.TensorSpec([None, *v.shape[1:]], v.dtype) for k, v in batch.items()}
            fn = _cached_scoring_function(scorer, task, perm, spec)
        scores.append(fn(batch).numpy())
        valids.append(valid)
        users.append(user_ids)
        rows.append(batch[F.TARGET_ROW].numpy())
    if not scores:
        return ScoredSplit(np.zeros([0, expected or 2], np.float32), np.zeros([0], np.int64),
                           np.zeros([0], np.int64), np.zeros([0, expected or 2], bool), skipped)
    return ScoredSplit(np.concatenate(scores), np.concatenate(users), np.concatenate(rows),
                       np.concatenate(valids), skipped)


def evaluate_model(model_or_scorer: Scorer, data_dir: str, split: str,
                   tasks: Iterable[int] = TASKS, batch_size: int = 512,
                   permutation_seed: Optional[int] = 0, *,
                   return_rows: bool = False,
                   protocol: str = protocols.SAMPLED) -> Dict[str, Dict[str, Any]]:
    """Metrics of a model or scorer on the fixed candidate files of one split.

    Args:
        model_or_scorer: Implements ``score(batch, task, training=False) -> [B, C]`` logits.
        data_dir: Pipeline output directory.
        split: ``"valid"`` or ``"test"`` (``"train"`` works too, with its few stored negatives).
        tasks: ``features.Task`` values to evaluate.
        batch_size: Rows per batch.
        permutation_seed: Seed of the fixed column permutation (see ``score_split``).
        return_rows: Add ``"per_row"`` to each task's dict: the arrays of ``evaluate_scores``
            plus ``"user_id"`` and ``"target_row"``, all in file order (the pairing key of a
            paired bootstrap across models).
        protocol: A candidate-list protocol: ``sampled``, ``sampled_fair`` or ``impressions``
            (``full`` is ``evaluate_full``); tasks a protocol does not cover are left out.

    Returns:
        ``{task_name: {metric: value, "rows": N, "tie_fraction": x, "rows_skipped": k, …}}``.
    """
    results: Dict[str, Dict[str, Any]] = {}
    for task in protocols.tasks_of(tasks, protocol):
        scored = score_split(model_or_scorer, data_dir, split, task, batch_size=batch_size,
                             permutation_seed=permutation_seed, protocol=protocol)
        out = evaluate_scores(scored.scores, return_rows=return_rows, valid=scored.valid)
        out[protocols.ROWS_SKIPPED] = scored.rows_skipped
        if return_rows:
            out[PER_ROW]["user_id"] = scored.user_id
            out[PER_ROW]["target_row"] = scored.target_row
        results[F.task_name(task)] = out
    return results


@dataclasses.dataclass(frozen=True)
class FullOptions:
    """Settings of the ``full`` protocol.

    Attributes:
        max_rows: Rows scored per (split, task): a fixed hash-chosen subset of users, the same for
            every model (None = every row).
        batch_size: Rows per scoring call.
        chunk: Catalogue items per scoring call.
    """

    max_rows: Optional[int] = None
    batch_size: int = 32
    chunk: int = 4096


def evaluate_full(model_or_scorer: Scorer, data_dir: str, split: str,
                  tasks: Iterable[int] = TASKS, options: FullOptions = FullOptions(),
                  catalogue: Optional[np.ndarray] = None,
                  log: Optional[Callable[[str], None]] = None) -> Dict[str, Dict[str, Any]]:
    """``full`` protocol metrics: the positive against every catalogue item minus the history.

    Args:
        model_or_scorer: Implements ``score`` for any number of candidates.
        data_dir: Pipeline output directory.
        split: ``"valid"`` or ``"test"``.
        tasks: ``features.Task`` values.
        options: ``FullOptions``.
        catalogue: Raw item ids to rank against; default: the vocabulary's items.
        log: Optional progress sink.

    Returns:
        ``{task_name: protocols.full_metrics(...)}``.
    """
    if catalogue is None:
        catalogue = load_vocab(data_dir).item_ids
    out = {}
    for task in tasks:
        result = protocols.full_ranks(model_or_scorer, data_dir, split, task, catalogue,
                                      batch_size=options.batch_size, chunk=options.chunk,
                                      max_rows=options.max_rows,
                                      neighbours=uses_neighbours(model_or_scorer), log=log)
        out[F.task_name(task)] = protocols.full_metrics(result)
    return out


def training_free_floors(data_dir: str) -> Dict[str, Scorer]:
    """The floors that no trained model may lose to: ``{label: scorer}``."""
    vocab = load_vocab(data_dir)
    return {report.POPULARITY: scorers.PopularityScorer(vocab),
            report.RANDOM: scorers.RandomScorer(RANDOM_FLOOR_SEED),
            report.COUNT_SAME: scorers.CountScorer(vocab, same_task=True),
            report.COUNT_OTHER: scorers.CountScorer(vocab, same_task=False)}


_FLOOR_CACHE: Dict[tuple, Dict[str, Any]] = {}


def floor_metrics(data_dir: str, split: str, protocol: str, tasks: Iterable[int] = TASKS, *,
                  batch_size: int = 512, permutation_seed: Optional[int] = 0,
                  full: FullOptions = FullOptions()) -> Dict[str, Dict[str, Any]]:
    """``{label: {task: metrics}}`` of the training-free floors under one protocol.

    Fresh scorers per call (the random floor does not depend on what ran before), and cached per
    data (its manifest digest), split, protocol and settings: a grid scores them once, not once
    per model and seed.
    """
    tasks = tuple(int(t) for t in tasks)
    key = (os.path.abspath(data_dir), report.data_fingerprint(data_dir)["digest"], split,
           protocol, tasks, batch_size, permutation_seed, full)
    if key not in _FLOOR_CACHE:
        _FLOOR_CACHE[key] = {
            label: evaluate_protocol(scorer, data_dir, split, protocol, tasks,
                                     batch_size=batch_size, permutation_seed=permutation_seed,
                                     full=full)
            for label, scorer in training_free_floors(data_dir).items()}
    return _FLOOR_CACHE[key]


def evaluate_protocol(scorer: Scorer, data_dir: str, split: str, protocol: str,
                      tasks: Iterable[int] = TASKS, *, batch_size: int = 512,
                      permutation_seed: Optional[int] = 0,
                      full: FullOptions = FullOptions(),
                      log: Optional[Callable[[str], None]] = None) -> Dict[str, Dict[str, Any]]:
    """``{task: metrics}`` of one scorer under one protocol (``full`` included)."""
    if protocol == protocols.FULL:
        return evaluate_full(scorer, data_dir, split, tasks, full, log=log)
    return evaluate_model(scorer, data_dir, split, tasks, batch_size, permutation_seed,
                          protocol=protocol)


# -- a whole run ---------------------------------------------------------------------------------
RANDOM_FLOOR_SEED = 0


def resolve_raw_dir(data_dir: str, raw_dir: Optional[str] = None) -> Optional[str]:
    """``raw_dir`` if given, else ``input_dir`` from ``<data_dir>/stats.json`` (None if absent)."""
    if raw_dir:
        return raw_dir
    path = os.path.join(data_dir, FN.STATS_FILE)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return json.load(f).get("input_dir") or None


def oracle_reports(raw_dir: Optional[str], data_dir: str,
                   split: str) -> Optional[Dict[str, Dict[str, Any]]]:
    """``{task: OracleReport dict}`` when ``raw_dir`` holds simulator ground truth, else None."""
    if not raw_dir:
        return None
    from jsr_tf.simulator import oracle as oracle_lib  # simulator code: loaded only when needed

    try:
        oracle = oracle_lib.Oracle.load(raw_dir)
    except FileNotFoundError:  # real KuaiSAR (or a moved raw dir): no oracle, tables say n/a
        return None
    reports = oracle_lib.oracle_metrics_from_files(raw_dir, data_dir, split, oracle=oracle)
    return {task: report.to_dict() for task, report in reports.items()}


def evaluate_protocols(model: Scorer, data_dir: str, split: str,
                       protocol_list: Sequence[str], *, batch_size: int = 512,
                       permutation_seed: int = 0, full: FullOptions = FullOptions(),
                       tasks: Iterable[int] = TASKS,
                       log: Optional[Callable[[str], None]] = None) -> Dict[str, Dict[str, Any]]:
    """A model and the floors under every protocol of ``protocol_list``.

    Returns:
        ``{protocol: {"metrics": {task: …}, "floors": {label: {task: …}}, "wall_time_s": s}}``;
        the floors are the training-free scorers plus, except under ``full``, the model's
        query-blind search score.
    """
    out: Dict[str, Dict[str, Any]] = {}
    tasks = tuple(tasks)
    for protocol in protocol_list:
        start = time.perf_counter()
        metrics = evaluate_protocol(model, data_dir, split, protocol, tasks,
                                    batch_size=batch_size, permutation_seed=permutation_seed,
                                    full=full, log=log)
        wall = time.perf_counter() - start
        entry_floors: Dict[str, Any] = dict(floor_metrics(
            data_dir, split, protocol, tasks, batch_size=batch_size,
            permutation_seed=permutation_seed, full=full))
        search = F.task_name(F.Task.SEARCH)
        entry_floors[report.QUERY_BLIND] = None
        if protocol != protocols.FULL and search in metrics:
            entry_floors[report.QUERY_BLIND] = evaluate_protocol(
                scorers.QueryBlindScorer(model), data_dir, split, protocol, (F.Task.SEARCH,),
                batch_size=batch_size, permutation_seed=permutation_seed)
        out[protocol] = {"metrics": metrics, "floors": entry_floors, "wall_time_s": wall}
        if protocol == protocols.FULL:
            out[protocol]["options"] = dataclasses.asdict(full)
        if log is not None:
            log(f"{split} · {protocol}: {wall:.1f} s")
    return out


def evaluate_run(model_dir: str, data_dir: str, split: str = "test",
                 raw_dir: Optional[str] = None, *, batch_size: int = 512,
                 permutation_seed: int = 0, model: Optional[Scorer] = None,
                 write: bool = True, protocol_list: Optional[Sequence[str]] = None,
                 full: FullOptions = FullOptions(),
                 log: Optional[Callable[[str], None]] = None) -> Dict[str, Any]:
    """Evaluates a trained run on one split and writes its results record.

    Scores the model and the training-free floors (popularity, random, both count scorers) and
    the query-blind search floor under each protocol and, on simulated data, reads the oracle
    (``sampled`` only), all on the same candidates. The split's entry is merged into
    ``<model_dir>/metrics.json`` (other splits and training's keys are kept; see
    ``jsr_tf.evaluation.report``).

    Args:
        model_dir: A jsr-train model dir (``config.json`` + ``best/weights``).
        data_dir: Pipeline output directory.
        split: ``"valid"`` or ``"test"``.
        raw_dir: Raw KuaiSAR directory; default ``input_dir`` of ``<data_dir>/stats.json``. The
            oracle is used only if it holds the simulator's ground truth.
        batch_size: Rows per batch.
        permutation_seed: Seed of the column permutation.
        model: An already built model (training's in-memory best model); default: restore it
            with ``jsr_tf.models.factory.load_trained``.
        write: Write ``metrics.json``.
        protocol_list: Protocols (``jsr_tf.evaluation.protocols``); default ``("sampled",)``.
            ``sampled`` always runs: the record's top-level ``metrics`` are its.
        full: Settings of the ``full`` protocol.
        log: Optional progress sink.

    Returns:
        The merged results record (what ``metrics.json`` now holds).
    """
    if model is None:
        model, config = factory.load_trained(model_dir, data_dir)
    else:
        config = factory.load_config(model_dir)
    requested = protocols.resolve_protocols(protocol_list or (protocols.SAMPLED,), data_dir)
    ordered = (protocols.SAMPLED, *[p for p in requested if p != protocols.SAMPLED])
    results = evaluate_protocols(model, data_dir, split, ordered, batch_size=batch_size,
                                 permutation_seed=permutation_seed, full=full, log=log)
    sampled = results[protocols.SAMPLED]
    oracle = oracle_reports(resolve_raw_dir(data_dir, raw_dir), data_dir, split)
    floors = sampled["floors"]
    entry = report.split_record(split, sampled["metrics"], popularity=floors[report.POPULARITY],
                                random=floors[report.RANDOM],
                                query_blind=floors[report.QUERY_BLIND], oracle=oracle,
                                permutation_seed=permutation_seed,
                                wall_time_s=sampled["wall_time_s"],
                                protocol_results={p: results[p] for p in ordered
                                                  if p == protocols.SAMPLED or p in requested})
    new = report.results_record(model=config.model.name, preset=config.preset, config=config,
                                data_dir=data_dir, seed=config.train.seed, splits={split: entry})
    path = os.path.join(model_dir, FN.METRICS_FILE)
    existing = None
    if tf.io.gfile.exists(path):
        with tf.io.gfile.GFile(path) as f:
            existing = json.load(f)
    record = report.merge_records(existing, new)
    if write:
        tmp = path + ".tmp"
        with tf.io.gfile.GFile(tmp, "w") as f:
            json.dump(record, f, indent=2, sort_keys=True, allow_nan=False)
        tf.io.gfile.rename(tmp, path, overwrite=True)
    return record
