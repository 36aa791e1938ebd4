"""The simulator oracle: true choice probabilities and Bayes-optimal metrics (evaluation.md §7).

``Oracle.load(raw_dir)`` reads the ground truth that ``jsr_tf.simulator`` writes to
``<raw_dir>/oracle/`` and recomputes, with the simulator's own code (``simulator.dynamics``), the
distribution each target was drawn from:

- feed target (user u, time t): p(i | state of u at t), where the state is u's long-term interest,
  the category and age of u's last search before t, and the community episode / demand active at
  t; restricted to items u did not click in an earlier request (``feed_exclude_seen``). It depends
  on ``(user_id, target_ts)`` only; ``target_row`` is not needed.
- search target (the session starting at ``src_inter.csv`` row ``target_row``): p(i | state,
  query), using the session's true query topic.

``oracle_metrics`` turns p into the preference oracle (sort by p) and the set oracle (sort by
p / w, w = the negative sampler's weight of each candidate), realised and expected.
``oracle_metrics_from_files`` does it for the pipeline's valid/test files.
"""

from __future__ import annotations

import dataclasses
import glob
import os
from typing import Dict, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from jsr_tf import features as F
from jsr_tf import filenames as FN
from jsr_tf.simulator import groundtruth as gt
from jsr_tf.simulator import ragged
from jsr_tf.simulator.dynamics import ChoiceModel, feed_weights, personal_weights
from jsr_tf.simulator.presets import DynamicsParams
from jsr_tf.simulator.state import IntervalTable, SessionTimeline, time_key
from jsr_tf.evaluation import metrics as M

_ROWS = 1 << 16  # targets per chunk
_PAIRS = 1 << 20  # (target, seen item) pairs per chunk


class UserState(NamedTuple):
    """A user's latent state at given times (``(N,)`` arrays; -1 = none).

    Attributes:
        drift_cat, drift_ts: Category index and time of the last search strictly before t.
        episode_cat, episode_start: Community episode active at t and when the user entered it.
        demand_cat: Spontaneous demand active at t.
        community: The user's community label.
    """

    drift_cat: np.ndarray
    drift_ts: np.ndarray
    episode_cat: np.ndarray
    episode_start: np.ndarray
    demand_cat: np.ndarray
    community: np.ndarray


class Oracle:
    """True choice probabilities of a simulated dataset.

    Args:
        params: The dynamics parameters of the run.
        items: ``groundtruth.ITEM_DTYPE`` records.
        users: ``groundtruth.USER_DTYPE`` records.
        sessions: ``groundtruth.SESSION_DTYPE`` records in file order.
        intervals: ``groundtruth.INTERVAL_DTYPE`` records.
        feed_clicks: ``groundtruth.FEED_CLICK_DTYPE`` records sorted by (user, ts).
        meta: The ``params.json`` dict.
    """

    def __init__(self, params: DynamicsParams, items: np.ndarray, users: np.ndarray,
                 sessions: np.ndarray, intervals: np.ndarray, feed_clicks: np.ndarray,
                 meta: Dict) -> None:
        self.params = params
        self.meta = meta
        self.num_cat2 = int(meta["num_cat2"])
        self.num_topics = int(meta["num_topics"])
        self.topics_per_cat2 = int(meta["topics_per_cat2"])
        self.items = items
        self.users = users
        self.sessions = sessions
        self.model = ChoiceModel(params, items["cat2"], items["topic"], items["feed_weight"],
                                 items["search_weight"], self.num_cat2, self.num_topics)
        self._item_order = np.argsort(items["item_id"], kind="stable")
        self._item_sorted = items["item_id"][self._item_order]
        self._user_order = np.argsort(users["user_id"], kind="stable")
        self._user_sorted = users["user_id"][self._user_order]
        self._timeline = SessionTimeline(sessions["user"], sessions["ts"],
                                         sessions["topic"] // self.topics_per_cat2)
        if np.any(np.diff(sessions["first_row"]) <= 0):
            raise ValueError("Oracle sessions should be in file order (increasing first_row).")
        self.intervals = intervals
        tables = []
        for kind in (gt.EPISODE, gt.DEMAND):
            part = intervals[intervals["kind"] == kind]
            tables.append(IntervalTable(part["user"], part["start"], part["end"], part["cat2"],
                                        part["topic"]))
        self._episodes, self._demands = tables
        self.feed_clicks = feed_clicks
        self._click_keys = time_key(feed_clicks["user"], feed_clicks["ts"])
        if np.any(np.diff(self._click_keys) < 0):
            raise ValueError("Oracle feed clicks should be sorted by (user, ts).")

    @classmethod
    def load(cls, raw_dir: str) -> "Oracle":
        """Loads ``<raw_dir>/oracle/`` written by the simulator.

        Raises:
            FileNotFoundError: ``raw_dir`` has no ground truth (e.g. real KuaiSAR data).
        """
        folder = gt.folder(raw_dir)
        params_path = os.path.join(folder, gt.PARAMS)
        if not os.path.exists(params_path):
            raise FileNotFoundError(f"No simulator ground truth in {folder!r}: the oracle exists "
                                    "only for simulated data.")
        meta = gt.load_json(params_path)
        if meta.get("format_version") != gt.FORMAT_VERSION:
            raise ValueError(f"Unsupported ground-truth format_version "
                             f"{meta.get('format_version')!r} in {params_path!r}.")
        return cls(DynamicsParams.from_dict(meta["dynamics"]),
                   gt.load_array(os.path.join(folder, gt.ITEMS)),
                   gt.load_array(os.path.join(folder, gt.USERS)),
                   gt.load_array(os.path.join(folder, gt.SESSIONS)),
                   gt.load_array(os.path.join(folder, gt.INTERVALS)),
                   gt.load_array(os.path.join(folder, gt.FEED_CLICKS)), meta)

    # -- id lookups ------------------------------------------------------------------------------
    def item_indices(self, item_ids: np.ndarray) -> np.ndarray:
        """Dense item indices of raw ids (any shape); -1 for ids the world does not have."""
        ids = np.asarray(item_ids, np.int64)
        pos = np.minimum(np.searchsorted(self._item_sorted, ids), len(self._item_sorted) - 1)
        found = self._item_sorted[pos] == ids
        return np.where(found, self._item_order[pos], -1)

    def user_indices(self, user_ids: np.ndarray) -> np.ndarray:
        """Dense user indices of raw ids.

        Raises:
            KeyError: An unknown user id.
        """
        ids = np.asarray(user_ids, np.int64)
        pos = np.minimum(np.searchsorted(self._user_sorted, ids), len(self._user_sorted) - 1)
        found = self._user_sorted[pos] == ids
        if not np.all(found):
            raise KeyError(f"Unknown user ids: {ids[~found][:5].tolist()}")
        return self._user_order[pos]

    def state(self, user_ids: np.ndarray, ts: np.ndarray) -> UserState:
        """The latent state of users at times ``ts`` (e.g. to slice targets by episode)."""
        return self._state(self.user_indices(user_ids), np.asarray(ts, np.int64))

    def _state(self, u: np.ndarray, t: np.ndarray) -> UserState:
        drift_cat, drift_ts = self._timeline.last_before(u, t)
        episode = self._episodes.active(u, t)
        return UserState(drift_cat, drift_ts, self._episodes.take(self._episodes.cat2, episode),
                         self._episodes.take(self._episodes.start, episode),
                         self._demands.active_cat(u, t), self.users["community"][u])

    def communities(self) -> Dict[int, int]:
        """Raw user id -> community label."""
        return dict(zip(self.users["user_id"].tolist(), self.users["community"].tolist()))

    # -- probabilities ---------------------------------------------------------------------------
    def session_indices(self, user_ids: np.ndarray, target_rows: np.ndarray,
                        target_ts: Optional[np.ndarray] = None) -> np.ndarray:
        """Sessions starting at ``src_inter.csv`` rows ``target_rows``.

        Raises:
            KeyError: No session of that user starts at that row (or its time differs).
        """
        rows = np.asarray(target_rows, np.int64)
        first = self.sessions["first_row"]
        pos = np.minimum(np.searchsorted(first, rows), len(first) - 1)
        ok = (first[pos] == rows) & (self.sessions["user"][pos] == self.user_indices(user_ids))
        if target_ts is not None:
            ok &= self.sessions["ts"][pos] == np.asarray(target_ts, np.int64)
        if not np.all(ok):
            bad = rows[~ok][:5].tolist()
            raise KeyError(f"No search session of the given user (and time) starts at "
                           f"src_inter.csv rows {bad}.")
        return pos

    def feed_probabilities(self, user_ids: np.ndarray, target_ts: np.ndarray,
                           items: np.ndarray) -> np.ndarray:
        """p(item | state at target_ts) for feed choices.

        Args:
            user_ids: ``(N,)`` raw user ids.
            target_ts: ``(N,)`` times, unix ms.
            items: ``(N, C)`` raw item ids.

        Returns:
            ``(N, C)`` probabilities (0 for items that never reach the feed).
        """
        u = self.user_indices(user_ids)
        t = np.asarray(target_ts, np.int64)
        cand = self.item_indices(items)
        if len(u) <= _ROWS:
            return self._feed_probabilities(u, t, cand)
        return np.concatenate([self._feed_probabilities(u[a:a + _ROWS], t[a:a + _ROWS],
                                                        cand[a:a + _ROWS])
                               for a in range(0, len(u), _ROWS)])

    def _feed_probabilities(self, u: np.ndarray, t: np.ndarray, cand: np.ndarray) -> np.ndarray:
        st = self._state(u, t)
        weights = feed_weights(self.params, t, st.drift_ts, st.episode_cat >= 0,
                               st.demand_cat >= 0)
        state = (weights, self.users["lt_cat"][u], self.users["lt_weight"][u], st.drift_cat,
                 st.episode_cat, st.demand_cat)
        p = self.model.feed_probabilities(*state, cand)
        if not self.params.feed_exclude_seen:
            return p
        # Restrict to items not clicked in earlier requests (ts < t) and renormalise.
        lo = np.searchsorted(self._click_keys, time_key(u, np.zeros_like(t)), side="left")
        hi = np.searchsorted(self._click_keys, time_key(u, t), side="left")
        seen = self.feed_clicks["item"][np.repeat(lo, hi - lo) + ragged.positions(hi - lo)]
        pairs = np.unique((ragged.segment_ids(hi - lo) << 32) | seen)  # (target, seen item)
        row, seen = pairs >> 32, pairs & 0xFFFFFFFF
        mass = np.zeros(len(u))
        for a in range(0, len(row), _PAIRS):
            r = row[a:a + _PAIRS]
            p_seen = self.model.feed_probabilities(*(x[r] for x in state),
                                                   seen[a:a + _PAIRS, None])[:, 0]
            mass += np.bincount(r, weights=p_seen, minlength=len(u))
        keys = (np.arange(len(u), dtype=np.int64)[:, None] << 32) | np.maximum(cand, 0)
        p = np.where(np.isin(keys, pairs) & (cand >= 0), 0.0, p)
        return p / np.maximum(1.0 - mass, 1e-300)[:, None]

    def search_probabilities(self, user_ids: np.ndarray, target_rows: np.ndarray,
                             items: np.ndarray,
                             target_ts: Optional[np.ndarray] = None) -> np.ndarray:
        """p(item | state, query) for the sessions starting at ``target_rows``: ``(N, C)``."""
        s = self.session_indices(user_ids, target_rows, target_ts)
        sessions = self.sessions[s]
        u = sessions["user"].astype(np.int64)
        t = sessions["ts"]
        ep = self._episodes.active_cat(u, t)
        dem = self._demands.active_cat(u, t)
        personal = personal_weights(self.params, ep >= 0, dem >= 0)
        return self.model.search_probabilities(
            sessions["topic"].astype(np.int64), personal, self.users["lt_cat"][u],
            self.users["lt_weight"][u], ep, dem, self.item_indices(items))

    def probabilities(self, user_ids: np.ndarray, task: int, target_ts: np.ndarray,
                      target_rows: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """True probabilities ``(N, C)`` of candidate items for N targets of one task.

        Args:
            user_ids: ``(N,)`` raw user ids.
            task: ``features.Task.FEED`` or ``features.Task.SEARCH``.
            target_ts: ``(N,)`` target times, unix ms.
            target_rows: ``(N,)`` 0-based data-line index of the target (rec_inter.csv row for
                feed, the session's first src_inter.csv row for search).
            candidates: ``(N, C)`` raw item ids.
        """
        candidates = np.asarray(candidates, np.int64)
        if candidates.ndim != 2:
            raise ValueError(f"`candidates` should have shape (N, C). Received: "
                             f"`candidates.shape={candidates.shape}`")
        if F.Task(task) == F.Task.FEED:
            return self.feed_probabilities(user_ids, target_ts, candidates)
        return self.search_probabilities(user_ids, target_rows, candidates, target_ts)

    def probability(self, user_id: int, task: int, target_ts: int, target_row: int,
                    candidate_ids: Sequence[int]) -> np.ndarray:
        """``probabilities`` for one target: ``(C,)``."""
        return self.probabilities(np.array([user_id]), task, np.array([target_ts]),
                                  np.array([target_row]), np.asarray([candidate_ids]))[0]


# ------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class OracleReport:
    """Bayes-optimal metrics on one candidate file.

    Attributes:
        rows: Candidate rows.
        positive_zero_weight_fraction: Share of rows whose positive has w = 0 (the set alone
            identifies it).
        positive_zero_probability_fraction: Share of rows whose positive has p = 0 (should be 0).
        positive_excluded_fraction: Share of rows whose positive is marked ``excluded`` (an item the
            sampler could not draw as a negative, e.g. one in the user's history): the set
            identifies it too. 0 when no exclusions were given.
        preference_realised, preference_expected: Sort by p.
        set_realised, set_expected: Sort by p / w.
        popularity_realised: Sort by w (the popularity floor, same tie rule).
    """

    rows: int
    positive_zero_weight_fraction: float
    positive_zero_probability_fraction: float
    positive_excluded_fraction: float
    preference_realised: Dict[str, float]
    preference_expected: Dict[str, float]
    set_realised: Dict[str, float]
    set_expected: Dict[str, float]
    popularity_realised: Dict[str, float]

    def to_dict(self) -> Dict:
        """JSON-ready dict."""
        return dataclasses.asdict(self)


def set_scores(p: np.ndarray, w: np.ndarray, total_weight: Optional[float] = None,
               excluded: Optional[np.ndarray] = None) -> np.ndarray:
    """Set-oracle scores ``p / w`` (``+inf`` where ``w = 0 < p``; 0 where ``p = w = 0``).

    Args:
        p: ``(N, C)`` true probabilities.
        w: ``(N, C)`` negative-sampling weights (train-target counts).
        total_weight: If given, the exact with-replacement factor ``(1 - w / W)^-(C - 1)``.
        excluded: ``(N, C)`` True for candidates the sampler could not draw as negatives (the
            user's earlier items, items first seen after the target); treated like ``w = 0``.
    """
    p = np.asarray(p, np.float64)
    w = np.asarray(w, np.float64)
    if excluded is not None:
        w = np.where(np.asarray(excluded, bool), 0.0, w)
    safe = np.where(w > 0, w, 1.0)
    score = np.where(w > 0, p / safe, np.where(p > 0, np.inf, 0.0))
    if total_weight:
        factor = np.where(w > 0, (1.0 - np.minimum(w / total_weight, 1 - 1e-12)) ** -(
            p.shape[1] - 1), 1.0)
        score = score * factor
    return score


def set_posterior(score: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Normalised posterior over the set from set scores: infinite scores take all the mass."""
    inf = np.isinf(score)
    has_inf = inf.any(axis=1, keepdims=True)
    mass = np.where(has_inf, np.where(inf, p, 0.0), np.where(np.isfinite(score), score, 0.0))
    total = mass.sum(axis=1, keepdims=True)
    return np.where(total > 0, mass / np.where(total > 0, total, 1.0), 1.0 / score.shape[1])


def oracle_metrics(candidates: np.ndarray, p: np.ndarray, w: np.ndarray,
                   total_weight: Optional[float] = None,
                   excluded: Optional[np.ndarray] = None) -> OracleReport:
    """Preference and set oracle metrics, realised and expected.

    The expected metrics of both orderings use the set posterior ``p̃ ∝ p / w`` (with uniform
    negatives pass ``w = 1``: then p̃ ∝ p and the two oracles coincide).

    Args:
        candidates: ``(N, C)`` item ids, positive in column 0 (only its shape is used).
        p: ``(N, C)`` true choice probabilities of the candidates.
        w: ``(N, C)`` weight of each candidate under the negative sampler.
        total_weight: Total sampler weight W, for the exact factor (optional).
        excluded: ``(N, C)`` candidates the sampler could not draw as negatives (optional; they
            get ``w = 0`` in the set oracle, because only the positive can be such an item).

    Returns:
        An ``OracleReport``.
    """
    candidates = np.asarray(candidates)
    p = np.asarray(p, np.float64)
    w = np.asarray(w, np.float64)
    if candidates.ndim != 2 or p.shape != candidates.shape or w.shape != candidates.shape:
        raise ValueError(f"`candidates`, `p` and `w` should share one (N, C) shape. Received: "
                         f"{candidates.shape}, {p.shape}, {w.shape}")
    if excluded is not None and np.shape(excluded) != p.shape:
        raise ValueError(f"`excluded` should have shape {p.shape}. Received: "
                         f"{np.shape(excluded)}")
    score = set_scores(p, w, total_weight, excluded)
    posterior = set_posterior(score, p)
    n = len(p)
    nan = float("nan")
    return OracleReport(
        rows=n,
        positive_zero_weight_fraction=float(np.mean(w[:, 0] <= 0)) if n else nan,
        positive_zero_probability_fraction=float(np.mean(p[:, 0] <= 0)) if n else nan,
        positive_excluded_fraction=(float(np.mean(np.asarray(excluded, bool)[:, 0]))
                                    if n and excluded is not None else (0.0 if n else nan)),
        preference_realised=M.rank_metrics(p),
        preference_expected=M.expected_metrics(p, posterior),
        set_realised=M.rank_metrics(score),
        set_expected=M.expected_metrics(score, posterior),
        popularity_realised=M.rank_metrics(w))


# ------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class CandidateRows:
    """The targets and candidates of one candidate file (candidates = [target] + negatives).

    Attributes:
        user_id, target_ts, target_row: ``(N,)`` target fields.
        candidates: ``(N, 1 + negatives)`` raw item ids, positive in column 0.
        history: per row, the items the row's history shows the user engaged with (feed
            positives and clicks of sessions with a click), which the sampler never draws.
    """

    user_id: np.ndarray
    target_ts: np.ndarray
    target_row: np.ndarray
    candidates: np.ndarray
    history: Tuple[np.ndarray, ...]

    def in_history(self) -> np.ndarray:
        """``(N, C)`` True where a candidate occurs in the row's history."""
        return np.stack([np.isin(c, h) for c, h in zip(self.candidates, self.history)]
                        ) if len(self.candidates) else np.zeros(self.candidates.shape, bool)


def read_candidates(data_dir: str, split: str, task: int) -> CandidateRows:
    """Reads ``<data_dir>/<split>-<task>-*.tfrecord.gz`` (GZIP ``tf.train.Example``s).

    Raises:
        FileNotFoundError: No such files.
        ValueError: Rows with different numbers of negatives.
    """
    import tensorflow as tf  # Deferred: only this wrapper needs TensorFlow.

    files = sorted(glob.glob(os.path.join(data_dir, F.file_pattern(split, task))))
    if not files:
        raise FileNotFoundError(f"No files match {F.file_pattern(split, task)!r} in {data_dir!r}.")
    users, ts, rows, cands, history = [], [], [], [], []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator():
        ex = F.to_example_dict(tf.train.Example.FromString(record))
        users.append(ex[F.USER_ID])
        ts.append(ex[F.TARGET_TS])
        rows.append(ex[F.TARGET_ROW])
        cands.append(np.concatenate([[ex[F.TARGET_ITEM]], ex[F.NEGATIVES]]))
        clicked = np.repeat(ex[F.SEARCH_HAS_CLICK], ex[F.SEARCH_CLICK_LENGTHS]) > 0
        history.append(np.concatenate([ex[F.FEED_ITEMS], ex[F.SEARCH_CLICKS][clicked]]))
    if len({len(c) for c in cands}) > 1:
        raise ValueError(f"Rows of {files[0]!r} have different numbers of negatives.")
    width = len(cands[0]) if cands else 1
    return CandidateRows(np.array(users, np.int64), np.array(ts, np.int64),
                         np.array(rows, np.int64),
                         np.array(cands, np.int64).reshape(len(cands), width), tuple(history))


@dataclasses.dataclass(frozen=True)
class ItemWeights:
    """``vocab/items.tsv`` columns the oracle needs, sorted by item id."""

    item_id: np.ndarray
    counts: Dict[int, np.ndarray]  # Task -> train-target counts
    first_seen: np.ndarray

    def lookup(self, ids: np.ndarray, values: np.ndarray, default: float) -> np.ndarray:
        """``values`` of every id in ``ids`` (``default`` for ids not in the vocabulary)."""
        ids = np.asarray(ids, np.int64)
        if not len(self.item_id):
            return np.full(ids.shape, default, np.float64)
        pos = np.minimum(np.searchsorted(self.item_id, ids), len(self.item_id) - 1)
        return np.where(self.item_id[pos] == ids, values[pos], default).astype(np.float64)


def read_item_weights(data_dir: str) -> ItemWeights:
    """Train-target counts per task and first-seen times from ``<data_dir>/vocab/items.tsv``."""
    path = os.path.join(data_dir, FN.VOCAB_DIR, FN.ITEMS_VOCAB)
    names = (FN.ItemsTsv.ITEM_ID, FN.ItemsTsv.FEED_COUNT, FN.ItemsTsv.SEARCH_COUNT,
             FN.ItemsTsv.FIRST_SEEN_TS)
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        cols = [header.index(name) for name in names]
        rows = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    table = np.array([[int(r[c]) for c in cols] for r in rows], np.int64).reshape(-1, len(cols))
    table = table[np.argsort(table[:, 0], kind="stable")]
    return ItemWeights(table[:, 0], {F.Task.FEED: table[:, 1], F.Task.SEARCH: table[:, 2]},
                       table[:, 3])


def oracle_metrics_from_files(raw_dir: str, data_dir: str, split: str,
                              oracle: Optional[Oracle] = None, exact_factor: bool = False,
                              use_exclusions: bool = True) -> Dict[str, OracleReport]:
    """Oracle metrics on the pipeline's candidate files of one split.

    Args:
        raw_dir: The simulated KuaiSAR directory (with ``oracle/``).
        data_dir: The pipeline output (``<split>-<task>-*.tfrecord.gz``, ``vocab/items.tsv`` and,
            if present, ``preprocess_config.json``).
        split: ``"valid"`` or ``"test"``.
        oracle: A loaded oracle (default: ``Oracle.load(raw_dir)``).
        exact_factor: Apply the with-replacement factor ``(1 - w / W)^-(C - 1)`` to the set
            oracle (default: the first-order ``p / w`` of the spec).
        use_exclusions: Let the set oracle also use what the sampler excludes and the row shows:
            the items in the row's history and (``negatives_must_predate_target``) items first
            seen at or after the target. A model sees the same, so this is the fair ceiling.

    Returns:
        ``{"feed": report, "search": report}`` for the tasks that have files.
    """
    oracle = oracle or Oracle.load(raw_dir)
    weights = read_item_weights(data_dir)
    predate = True
    config_path = os.path.join(data_dir, FN.PREPROCESS_CONFIG_FILE)
    if os.path.exists(config_path):
        predate = bool(gt.load_json(config_path).get("negatives_must_predate_target", True))
    reports: Dict[str, OracleReport] = {}
    for task in F.Task:
        try:
            rows = read_candidates(data_dir, split, task)
        except FileNotFoundError:
            continue
        p = oracle.probabilities(rows.user_id, task, rows.target_ts, rows.target_row,
                                 rows.candidates)
        w = weights.lookup(rows.candidates, weights.counts[task], 0.0)
        excluded = None
        if use_exclusions:
            excluded = rows.in_history()
            if predate:
                seen = weights.lookup(rows.candidates, weights.first_seen, np.inf)
                excluded |= seen >= rows.target_ts[:, None]
        total = float(weights.counts[task].sum()) if exact_factor else None
        reports[F.task_name(task)] = oracle_metrics(rows.candidates, p, w, total_weight=total,
                                                    excluded=excluded)
    return reports
