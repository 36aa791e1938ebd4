"""Similar-user neighbours (``spec/similar_users.md`` §2a, §3): settings, snapshots, visibility.

Pure Python (no TF, no Beam). The Beam job is ``pipelines/neighbours.py``; the MinHash, LSH and
Jaccard arithmetic is in ``jsr_tf.neighbours.minhash``.

**Snapshots.** Neighbour lists are computed at boundaries ``T_0 < T_1 < …`` (unix ms). Snapshot
``k`` uses only events with ``ts < T_k``; a sample with target time ``t`` uses snapshot
``snapshot_index(t) = max{k : T_k ≤ t}`` and has no neighbours before ``T_0`` (index −1).

**Visibility** (§3 rule 4). Each table is built from the events one kind of sample may see:

- ``train``: no valid or test target of anyone (for train and valid samples);
- ``test``: no test target of anyone, valid targets allowed (for test samples);
- ``all``: every event (e.g. a serving table after the evaluation period).

Targets and splits come from ``jsr_tf.data.timeline.build_timeline`` with the same
``PreprocessConfig`` as the examples, so "target" means exactly what it means in the TFRecords.
"""

from __future__ import annotations

import bisect
import dataclasses
import json
from typing import Any, Dict, FrozenSet, List, NamedTuple, Sequence, Tuple

from jsr_tf.data.kuaisar_values import beijing_time_string, parse_beijing_time_s
from jsr_tf.data.timeline import Event, UserTimeline
from jsr_tf.features import Split
from jsr_tf.neighbours.minhash import FEED, SEARCH, SIDES
from jsr_tf.neighbours.windows import check_window

__all__ = ["NeighbourConfig", "NeighbourRow", "MODES", "LSH_LAYOUTS", "CANDIDATE_JOINS",
           "IN_MEMORY_RUNNERS", "resolve_layout", "is_in_memory_runner", "VISIBILITIES", "SIDES",
           "SEARCH", "FEED", "default_snapshots", "snapshot_index", "first_snapshot_seeing",
           "parse_snapshot", "snapshot_time_string", "excluded_event_indices", "visible_events",
           "beijing_midnight"]

MODE_LSH = "lsh"
MODE_EXACT = "exact"
MODES = (MODE_LSH, MODE_EXACT)
LAYOUT_AUTO = "auto"
LAYOUT_GROUPED = "grouped"
LAYOUT_KEYED = "keyed"
LSH_LAYOUTS = (LAYOUT_AUTO, LAYOUT_GROUPED, LAYOUT_KEYED)
JOIN_WINDOW = "window"
JOIN_BUCKET = "bucket"
CANDIDATE_JOINS = (JOIN_WINDOW, JOIN_BUCKET)
IN_MEMORY_RUNNERS = ("FnApiRunner", "DirectRunner", "BundleBasedDirectRunner",
                     "SwitchingDirectRunner")
"""Runners that run a pipeline in this process: ``lsh_layout="auto"`` means ``grouped`` there."""

VIS_TRAIN = "train"
VIS_TEST = "test"
VIS_ALL = "all"
VISIBILITIES = (VIS_TRAIN, VIS_TEST, VIS_ALL)

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
_BEIJING_OFFSET_MS = 8 * HOUR_MS


def config_dict(config) -> Dict[str, Any]:
    """A config dataclass with ``snapshots`` and ``visibilities`` tuples → a JSON-ready dict."""
    values = dataclasses.asdict(config)
    values["snapshots"] = list(config.snapshots)
    values["visibilities"] = list(config.visibilities)
    return values


def check_positive_ints(config, names: Sequence[str]) -> None:
    """Raises ``ValueError`` unless every field ``names`` of ``config`` is an int >= 1."""
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` should be a positive integer. "
                             f"Received: `{name}={value!r}`")


def check_snapshots_and_visibilities(snapshots: Sequence[int],
                                     visibilities: Sequence[str]) -> None:
    """Raises ``ValueError`` unless ``snapshots`` are strictly increasing integer unix ms and
    ``visibilities`` distinct values of ``VISIBILITIES`` (at least one)."""
    if any(isinstance(t, bool) or not isinstance(t, int) for t in snapshots) or any(
            a >= b for a, b in zip(snapshots, snapshots[1:])):
        raise ValueError("`snapshots` should be strictly increasing integer unix ms. "
                         f"Received: `snapshots={snapshots!r}`")
    if not visibilities or any(v not in VISIBILITIES for v in visibilities) or len(
            set(visibilities)) != len(visibilities):
        raise ValueError(f"`visibilities` should be distinct values of {VISIBILITIES}. "
                         f"Received: `visibilities={visibilities!r}`")


@dataclasses.dataclass(frozen=True)
class NeighbourConfig:
    """Settings of the neighbour retrieval job (defaults: ``similar_users.md`` §7).

    Attributes:
        mode: ``"lsh"`` (MinHash + banding + exact re-rank) or ``"exact"`` (brute-force Jaccard
            over all pairs of a snapshot and side; small data and tests only).
        lsh_layout: How ``lsh`` mode is laid out on Beam. ``"grouped"``: one worker per
            (visibility, snapshot, side) holds that population's band keys and token sets and
            does the candidate join, candidate ranking and re-rank in memory (numpy; fast;
            memory grows with the population, fine at KuaiSAR scale). ``"keyed"``: buckets are
            Beam keys ``(visibility, side, snapshot, band, key)`` and token sets travel through
            joins (scales out: the work spreads over workers by bucket, then by user; one
            shuffled element per user and band and per candidate pair, so much slower on a
            single machine). ``"auto"`` (default): ``grouped`` on the in-memory runners
            (``IN_MEMORY_RUNNERS``), ``keyed`` on any other (``resolve_layout``). Both layouts
            give the same table.
        candidate_join: How band keys become candidate pairs. ``"window"`` (default, issue 17;
            ``jsr_tf.neighbours.windows``): per band, users sorted by ``window_depth`` band keys,
            each paired with the members of its bucket at most ``window`` positions away; at
            most ``2·window·bands`` pairs per user whatever the population. ``"bucket"`` (issue
            6): every pair of a bucket, buckets above ``max_bucket`` skipped; pairs per user grow
            with the population.
        num_perm: MinHash functions ``P``.
        bands: LSH bands ``b``. Default 128 with ``r = 1`` (spec/similar_users.md proposes
            64 × 2): measured on the ``small`` simulator preset (2,000 users, train table), 64 × 2
            found 0.45 (search) and 0.66 (feed) of the exact top-5 neighbours, whose median
            Jaccard is only 0.09 / 0.13; 128 × 1 found 0.996 / 0.994 in the same time (one run,
            bucket join). The window join's recall is in BENCHMARKS.md §8.
        rows: Rows per band ``r``; ``bands * rows == num_perm``.
        hash_seed: Seed of the MinHash coefficients.
        k_search: Neighbours kept on the search side ``k_s``.
        k_feed: Neighbours kept on the feed side ``k_r``.
        min_jaccard: Pairs with a lower exact Jaccard are dropped.
        max_bucket: Bucket join only: buckets with more users are skipped (and counted).
        window: Window join: ``W``, how many sorted positions away a user meets the members of
            its bucket (each side). Default 8 (BENCHMARKS.md §8: recall of the exact top-5 on
            ``small``).
        window_depth: Window join: ``D``, band keys per sort key (the bucket's, then the next
            ``D − 1`` bands'). Default 4.
        max_candidates: ``M``: candidates kept per user, most colliding bands first.
        snapshot_hours: Spacing of the default snapshots, aligned to Beijing midnight (24 =
            every midnight). The default boundaries run from the first one after the earliest
            event to the first one after the latest event (that last list sees every event).
        snapshots: Explicit boundaries (unix ms, strictly increasing); overrides
            ``snapshot_hours``.
        visibilities: Which tables to build (``"train"``, ``"test"``, ``"all"``).
    """

    mode: str = MODE_LSH
    lsh_layout: str = LAYOUT_AUTO
    candidate_join: str = JOIN_WINDOW
    num_perm: int = 128
    bands: int = 128
    rows: int = 1
    hash_seed: int = 1
    k_search: int = 5
    k_feed: int = 5
    min_jaccard: float = 0.02
    max_bucket: int = 500
    window: int = 8
    window_depth: int = 4
    max_candidates: int = 200
    snapshot_hours: int = 24
    snapshots: Tuple[int, ...] = ()
    visibilities: Tuple[str, ...] = (VIS_TRAIN, VIS_TEST)

    def k(self, side: str) -> int:
        """Neighbours kept on ``side``."""
        return {SEARCH: self.k_search, FEED: self.k_feed}[side]

    def validate(self) -> "NeighbourConfig":
        """Checks every field and cross-field rule; returns self."""
        if self.mode not in MODES:
            raise ValueError(f"`mode` should be one of {MODES}. Received: `mode={self.mode!r}`")
        if self.lsh_layout not in LSH_LAYOUTS:
            raise ValueError(f"`lsh_layout` should be one of {LSH_LAYOUTS}. "
                             f"Received: `lsh_layout={self.lsh_layout!r}`")
        if self.candidate_join not in CANDIDATE_JOINS:
            raise ValueError(f"`candidate_join` should be one of {CANDIDATE_JOINS}. "
                             f"Received: `candidate_join={self.candidate_join!r}`")
        check_positive_ints(self, ("num_perm", "bands", "rows", "k_search", "k_feed",
                                   "max_bucket", "max_candidates", "snapshot_hours"))
        check_window(self.bands, self.window_depth, self.window)
        if self.bands * self.rows != self.num_perm:
            raise ValueError("`bands * rows` should equal `num_perm`. Received: "
                             f"`bands={self.bands}`, `rows={self.rows}`, "
                             f"`num_perm={self.num_perm}`")
        if isinstance(self.hash_seed, bool) or not isinstance(self.hash_seed, int) \
                or self.hash_seed < 0:
            raise ValueError("`hash_seed` should be a non-negative integer. "
                             f"Received: `hash_seed={self.hash_seed!r}`")
        if not isinstance(self.min_jaccard, (int, float)) or not 0.0 <= self.min_jaccard <= 1.0:
            raise ValueError("`min_jaccard` should be a number in [0, 1]. "
                             f"Received: `min_jaccard={self.min_jaccard!r}`")
        check_snapshots_and_visibilities(self.snapshots, self.visibilities)
        return self

    def to_dict(self) -> Dict[str, Any]:
        return config_dict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "NeighbourConfig":
        """Builds and validates a config; unknown keys raise ``ValueError``."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"Unknown NeighbourConfig fields: {unknown}")
        values = dict(values)
        for name in ("snapshots", "visibilities"):
            if name in values:
                values[name] = tuple(values[name])
        return cls(**values).validate()


def resolve_layout(config: NeighbourConfig, runner: str) -> NeighbourConfig:
    """``config`` with ``lsh_layout="auto"`` resolved for ``runner``.

    Args:
        config: A validated config.
        runner: The Beam runner's name (``StandardOptions.runner``), e.g. ``"FnApiRunner"``
            or ``"DataflowRunner"``.

    Returns:
        ``config`` itself unless its layout is ``"auto"``; then ``grouped`` on the in-memory
        runners (``IN_MEMORY_RUNNERS``), ``keyed`` on any other runner.
    """
    if config.lsh_layout != LAYOUT_AUTO:
        return config
    layout = LAYOUT_GROUPED if is_in_memory_runner(runner) else LAYOUT_KEYED
    return dataclasses.replace(config, lsh_layout=layout)


def is_in_memory_runner(runner) -> bool:
    """Whether ``runner`` (a Beam runner's name or instance) is one of ``IN_MEMORY_RUNNERS``."""
    name = runner if isinstance(runner, str) else type(runner).__name__
    return name in IN_MEMORY_RUNNERS


class NeighbourRow(NamedTuple):
    """One line of the neighbour table: a user's list on one side at one snapshot.

    Written for every user with a non-empty token set on that side before the snapshot, so a
    user with no neighbour has a row with empty lists.

    Attributes:
        visibility: ``"train"``, ``"test"`` or ``"all"``.
        snapshot: Snapshot index ``k``.
        snapshot_ts: ``T_k`` (unix ms); only events with ``ts < T_k`` were used.
        side: ``"search"`` or ``"feed"``.
        user: Raw user id.
        num_tokens: ``|X_u|`` on this side at this snapshot.
        neighbours: Raw user ids, best first (Jaccard descending, ties to the smaller id).
        jaccards: Their exact Jaccard values, same order.
    """

    visibility: str
    snapshot: int
    snapshot_ts: int
    side: str
    user: int
    num_tokens: int
    neighbours: Tuple[int, ...]
    jaccards: Tuple[float, ...]

    def to_json(self) -> str:
        return json.dumps({"visibility": self.visibility, "snapshot": self.snapshot,
                           "snapshot_ts": self.snapshot_ts, "side": self.side, "user": self.user,
                           "num_tokens": self.num_tokens, "neighbours": list(self.neighbours),
                           "jaccards": list(self.jaccards)}, sort_keys=True)

    @classmethod
    def from_json(cls, line: str) -> "NeighbourRow":
        d = json.loads(line)
        return cls(d["visibility"], d["snapshot"], d["snapshot_ts"], d["side"], d["user"],
                   d["num_tokens"], tuple(d["neighbours"]), tuple(d["jaccards"]))


def beijing_midnight(ts_ms: int) -> int:
    """The Beijing midnight at or before ``ts_ms`` (unix ms)."""
    return (ts_ms + _BEIJING_OFFSET_MS) // DAY_MS * DAY_MS - _BEIJING_OFFSET_MS


def default_snapshots(min_ts: int, max_ts: int, interval_ms: int = DAY_MS) -> List[int]:
    """Boundaries every ``interval_ms`` from Beijing midnight, covering ``(min_ts, max_ts]``.

    Returns:
        The first boundary after ``min_ts`` through the first boundary after ``max_ts``: the
        first snapshot sees at least one event and the last sees them all.
    """
    if interval_ms <= 0 or min_ts > max_ts:
        raise ValueError(f"Need interval_ms > 0 and min_ts <= max_ts. Received: {interval_ms}, "
                         f"{min_ts}, {max_ts}")
    origin = beijing_midnight(min_ts)
    t = origin + ((min_ts - origin) // interval_ms + 1) * interval_ms
    out = [t]
    while t <= max_ts:
        t += interval_ms
        out.append(t)
    return out


def snapshot_index(t: int, snapshots: Sequence[int]) -> int:
    """``k(t) = max{k : T_k ≤ t}``: the list a sample at time ``t`` uses; −1 before ``T_0``."""
    return bisect.bisect_right(snapshots, t) - 1


def first_snapshot_seeing(ts: int, snapshots: Sequence[int]) -> int:
    """``min{k : ts < T_k}``: the first snapshot an event at ``ts`` enters (``len`` if none)."""
    return bisect.bisect_right(snapshots, ts)


def parse_snapshot(text: str) -> int:
    """A boundary from the command line: unix ms, or Beijing ``YYYY-MM-DD[ HH:MM[:SS]]``."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    if len(text) == 10:
        text += " 00:00:00"
    elif len(text) == 16:
        text += ":00"
    try:
        return parse_beijing_time_s(text) * 1000
    except (ValueError, OverflowError):
        raise ValueError(f"A snapshot should be unix ms or a Beijing time 'YYYY-MM-DD[ HH:MM[:SS]]'"
                         f". Received: {text!r}") from None


def snapshot_time_string(ts_ms: int) -> str:
    """Beijing time of a boundary, for logs and stats."""
    return beijing_time_string(ts_ms)


def excluded_event_indices(timeline: UserTimeline, visibility: str) -> FrozenSet[int]:
    """Indices into ``timeline.events`` that a table of ``visibility`` may not use."""
    if visibility == VIS_TRAIN:
        return frozenset(timeline.heldout)
    if visibility == VIS_TEST:
        return frozenset(t.index for t in timeline.targets if t.split == Split.TEST.value)
    if visibility == VIS_ALL:
        return frozenset()
    raise ValueError(f"`visibility` should be one of {VISIBILITIES}. "
                     f"Received: `visibility={visibility!r}`")


def visible_events(timeline: UserTimeline, visibility: str) -> List[Event]:
    """The user's canonical events a table of ``visibility`` may use, in canonical order."""
    excluded = excluded_event_indices(timeline, visibility)
    return [e for i, e in enumerate(timeline.events) if i not in excluded]
