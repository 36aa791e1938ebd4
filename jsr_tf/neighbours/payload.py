"""Neighbour payloads of training examples (``spec/similar_users.md`` §2 "Two clocks", §3, §4).

Pure Python (no Beam; TensorFlow's protos only in ``add_neighbour_features``). The Beam job is
``pipelines/neighbour_features.py`` (``jsr-neighbour-features``); the fields written are the
"Neighbour payload" section of ``jsr_tf/features.py``.

An example of user ``u`` with target time ``t`` in split ``s``:

1. **Visibility** (§3 rule 4): ``train`` for train and valid examples, ``test`` for test
   examples (``example_visibility``).
2. **List**: the neighbour table's rows of ``(visibility, k(t), u)`` with
   ``k(t) = snapshot_index(t, snapshots)``; ``k = −1`` (before ``T_0``) means no neighbours.
   Slots = the feed-side neighbours (best first), then the search-side ones (``assemble_slots``).
   A missing row (no tokens on that side) gives no slots for that side.
3. **Payload** per slot (§2, rule 1): the neighbour's events that the visibility allows
   (``visible_events``) with ``ts < t − payload_lag`` (strict), cut by ``PayloadCutter``: the last
   ``Lf`` feed positives (their item) and the last ``Lq`` search sessions (the first ``Wn`` query
   words and the first ``Kn`` of ``Event.clicks``, i.e. the items the user's own history uses,
   fallback included), oldest first, each block right-padded with -1 to its fixed size.
"""

from __future__ import annotations

import bisect
from typing import Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from jsr_tf import features as F
from jsr_tf.data.timeline import Event, UserTimeline
from jsr_tf.features import EventKind, NeighbourSide, Split
from jsr_tf.neighbours import VIS_TEST, VIS_TRAIN, NeighbourRow, snapshot_index, visible_events
from jsr_tf.neighbours.minhash import FEED, SEARCH

__all__ = ["Slot", "Payload", "empty_payload", "PayloadCutter", "SIDE_ORDER", "RowKey",
           "example_visibility", "cut_time", "index_rows", "assemble_slots", "example_slots",
           "neighbour_values", "add_neighbour_features"]

# Table side name -> slot side, in slot order (feed side first).
SIDE_ORDER: Tuple[Tuple[str, NeighbourSide], ...] = ((FEED, NeighbourSide.FEED),
                                                     (SEARCH, NeighbourSide.SEARCH))

RowKey = Tuple[str, int, str]  # (visibility, snapshot, side) of one user's table rows


class Slot(NamedTuple):
    """One neighbour of an example's user.

    Attributes:
        side: ``NeighbourSide.FEED`` (1) or ``NeighbourSide.SEARCH`` (2).
        sim: Exact Jaccard from the neighbour table.
        user: The neighbour's raw user id.
    """

    side: int
    sim: float
    user: int


class Payload(NamedTuple):
    """A neighbour's recent events before a cut, in the fixed-size blocks of the contract.

    Attributes:
        rec_items: ``Lf`` feed-positive items, oldest first, right-padded with -1.
        src_words: ``Lq * Wn`` word ids: ``Lq`` sessions (oldest first, right-padded with
            all-padding sessions), each its first ``Wn`` words right-padded with -1.
        src_clicks: ``Lq * Kn`` item ids, laid out like ``src_words``.
        last_ts: ``ts`` of the newest event in the payload; 0 if it is empty.
        num_feed: Feed positives in the payload (``<= Lf``).
        num_search: Search sessions in the payload (``<= Lq``).
    """

    rec_items: Tuple[int, ...]
    src_words: Tuple[int, ...]
    src_clicks: Tuple[int, ...]
    last_ts: int
    num_feed: int
    num_search: int

    @property
    def num_events(self) -> int:
        """Feed positives plus search sessions."""
        return self.num_feed + self.num_search

    @property
    def is_empty(self) -> bool:
        return self.num_events == 0


def _padded(values: Sequence[int], size: int) -> Tuple[int, ...]:
    """The first ``size`` values, right-padded with ``RAW_PAD_ID`` to exactly ``size``."""
    values = tuple(int(v) for v in values[:size])
    return values + (F.RAW_PAD_ID,) * (size - len(values))


def empty_payload(shape: F.DataShape) -> Payload:
    """The payload of a neighbour with no event before the cut: padding blocks of ``shape``'s
    sizes (``slot_sizes``)."""
    sizes = shape.slot_sizes()
    return Payload(rec_items=_padded((), sizes[F.NBR_REC_ITEMS]),
                   src_words=_padded((), sizes[F.NBR_SRC_WORDS]),
                   src_clicks=_padded((), sizes[F.NBR_SRC_CLICKS]),
                   last_ts=0, num_feed=0, num_search=0)


def example_visibility(split: str) -> str:
    """The neighbour-table visibility an example of ``split`` may use (§3 rule 4).

    Args:
        split: ``"train"``, ``"valid"`` or ``"test"``.

    Returns:
        ``"train"`` for train and valid examples, ``"test"`` for test examples.
    """
    if split in (Split.TRAIN.value, Split.VALID.value):
        return VIS_TRAIN
    if split == Split.TEST.value:
        return VIS_TEST
    raise ValueError(f"`split` should be one of {[s.value for s in Split]}. "
                     f"Received: `split={split!r}`")


def cut_time(target_ts: int, payload_lag_ms: int) -> int:
    """Payload events must have ``ts < cut_time(target_ts, lag) = target_ts − lag`` (rule 1)."""
    if payload_lag_ms < 0:
        raise ValueError("`payload_lag_ms` should be a non-negative integer. "
                         f"Received: `payload_lag_ms={payload_lag_ms!r}`")
    return target_ts - payload_lag_ms


class PayloadCutter:
    """One neighbour's visible events, indexed per kind by time, cut into payloads.

    Building costs O(n); each ``cut`` costs O(log n + Lf + Lq·(Wn + Kn)).

    Args:
        events: The neighbour's events that the example's visibility allows, in canonical order
            (``jsr_tf.neighbours.visible_events``).
        shape: The examples' ``DataShape``: the block sizes ``Lf``, ``Lq``, ``Wn``, ``Kn``.
    """

    def __init__(self, events: Sequence[Event], shape: F.DataShape) -> None:
        self._shape = shape
        self._feed = [e for e in events if e.kind == EventKind.FEED]
        self._search = [e for e in events if e.kind == EventKind.SEARCH]
        self._feed_ts = [e.ts for e in self._feed]
        self._search_ts = [e.ts for e in self._search]
        for name, times in (("feed", self._feed_ts), ("search", self._search_ts)):
            if any(a > b for a, b in zip(times, times[1:])):
                raise ValueError(f"`events` should be in canonical order; the {name} events "
                                 "are not sorted by time.")

    @classmethod
    def from_timeline(cls, timeline: UserTimeline, visibility: str,
                      shape: F.DataShape) -> "PayloadCutter":
        """The cutter of ``timeline``'s events visible to ``visibility``."""
        return cls(visible_events(timeline, visibility), shape)

    def cut(self, before_ts: int) -> Payload:
        """The payload of events with ``ts < before_ts`` (strict).

        Args:
            before_ts: ``cut_time(target_ts, payload_lag_ms)``.

        Returns:
            The last ``Lf`` feed positives and ``Lq`` search sessions before ``before_ts``,
            oldest first, padded (``empty_payload``'s blocks when there are none).
        """
        n_feed = bisect.bisect_left(self._feed_ts, before_ts)
        n_search = bisect.bisect_left(self._search_ts, before_ts)
        shape, sizes = self._shape, self._shape.slot_sizes()
        feed = self._feed[max(0, n_feed - shape.nbr_feed_items):n_feed]
        sessions = self._search[max(0, n_search - shape.nbr_search_sessions):n_search]
        words: List[int] = []
        clicks: List[int] = []
        for session in sessions:
            words.extend(_padded(session.words, shape.nbr_query_words))
            clicks.extend(_padded(session.clicks, shape.nbr_session_clicks))
        last_ts = max(feed[-1].ts if feed else 0, sessions[-1].ts if sessions else 0)
        return Payload(
            rec_items=_padded([e.item for e in feed], sizes[F.NBR_REC_ITEMS]),
            src_words=_padded(words, sizes[F.NBR_SRC_WORDS]),
            src_clicks=_padded(clicks, sizes[F.NBR_SRC_CLICKS]),
            last_ts=int(last_ts),
            num_feed=len(feed), num_search=len(sessions))


def index_rows(rows: Iterable[NeighbourRow]) -> Dict[RowKey, NeighbourRow]:
    """One user's table rows by ``(visibility, snapshot, side)``.

    Raises:
        ValueError: Two rows share a key (a corrupt or doubly-read table).
    """
    out: Dict[RowKey, NeighbourRow] = {}
    for row in rows:
        key = (row.visibility, row.snapshot, row.side)
        if key in out:
            raise ValueError(f"The neighbour table should have one row per (visibility, "
                             f"snapshot, side, user). Received two for `{key + (row.user,)}`")
        out[key] = row
    return out


def assemble_slots(user: int, rows: Mapping[RowKey, NeighbourRow], visibility: str,
                   snapshot: int) -> Tuple[List[Slot], int]:
    """An example's slots: the feed-side neighbours (best first), then the search-side ones.

    Args:
        user: The example's user (never its own neighbour, §3 rule 3).
        rows: The user's rows (``index_rows``).
        visibility: ``example_visibility(split)``.
        snapshot: ``snapshot_index(target_ts, snapshots)``; −1 gives no slots.

    Returns:
        ``(slots, rows_found)``: the slots, and how many of the two sides had a row.

    Raises:
        ValueError: A row lists the user itself.
    """
    if snapshot < 0:
        return [], 0
    slots: List[Slot] = []
    found = 0
    for side_name, side in SIDE_ORDER:
        row = rows.get((visibility, snapshot, side_name))
        if row is None:
            continue
        found += 1
        if user in row.neighbours:
            raise ValueError(f"A neighbour list should never hold its own user (§3 rule 3). "
                             f"Received: `user={user}` in its {visibility}/{side_name} row of "
                             f"snapshot {snapshot}")
        slots.extend(Slot(int(side), float(j), int(v))
                     for v, j in zip(row.neighbours, row.jaccards))
    return slots, found


def example_slots(user: int, rows: Mapping[RowKey, NeighbourRow], split: str, target_ts: int,
                  snapshots: Sequence[int]) -> Tuple[str, int, List[Slot], int]:
    """``(visibility, snapshot, slots, rows_found)`` of one example (steps 1–2 of the module)."""
    visibility = example_visibility(split)
    snapshot = snapshot_index(target_ts, snapshots)
    slots, found = assemble_slots(user, rows, visibility, snapshot)
    return visibility, snapshot, slots, found


def neighbour_values(slots: Sequence[Slot], payloads: Sequence[Payload]) -> Dict[str, list]:
    """The ``nbr_*`` feature lists of one example (``features.NEIGHBOUR_FEATURES``).

    Args:
        slots: In slot order.
        payloads: One per slot, same order.

    Returns:
        Name -> flat list; per slot ``DataShape.slot_sizes()[name]`` values.
    """
    if len(slots) != len(payloads):
        raise ValueError("`payloads` should have one entry per slot. Received: "
                         f"`len(slots)={len(slots)}`, `len(payloads)={len(payloads)}`")
    values: Dict[str, list] = {name: [] for name in F.NEIGHBOUR_FEATURES}
    for slot, payload in zip(slots, payloads):
        values[F.NBR_SIDE].append(int(slot.side))
        values[F.NBR_SIM].append(float(slot.sim))
        values[F.NBR_USERS].append(int(slot.user))
        values[F.NBR_LAST_TS].append(int(payload.last_ts))
        values[F.NBR_REC_ITEMS].extend(payload.rec_items)
        values[F.NBR_SRC_WORDS].extend(payload.src_words)
        values[F.NBR_SRC_CLICKS].extend(payload.src_clicks)
    return values


def add_neighbour_features(serialized: bytes, values: Optional[Mapping[str, Sequence]]) -> bytes:
    """Adds the ``nbr_*`` fields to a serialized ``tf.train.Example``; other fields unchanged.

    Every neighbour field is written, as an empty list when the example has no slots
    (``nbr_sim`` as a ``float_list``, the others as ``int64_list``).

    Args:
        serialized: A serialized example of the contract (without neighbour fields).
        values: ``neighbour_values(...)``; None for an example without slots.

    Returns:
        The deterministic serialization of the extended example.

    Raises:
        ValueError: The example already has a neighbour field.
    """
    from tensorflow.core.example import example_pb2  # pylint: disable=g-import-not-at-top

    example = example_pb2.Example.FromString(serialized)
    feature_map = example.features.feature
    present = sorted(name for name in F.NEIGHBOUR_FEATURES if name in feature_map)
    if present:
        raise ValueError("Input examples should not carry neighbour fields yet (run "
                         "jsr-neighbour-features on a jsr-preprocess output). "
                         f"Received: fields {present}")
    values = values or {}
    for name in F.NEIGHBOUR_FEATURES:
        feature = feature_map[name]
        if name == F.NBR_SIM:
            feature.float_list.SetInParent()
            feature.float_list.value.extend(values.get(name, ()))
        else:
            feature.int64_list.SetInParent()
            feature.int64_list.value.extend(values.get(name, ()))
    return example.SerializeToString(deterministic=True)
