"""Canonical records: what the KuaiSAR importer produces from raw CSV rows.

Plain ``NamedTuple``s: cheap, picklable (Beam ships them between workers) and typed. Field
meanings follow ``spec/kuaisar_format.md`` §4. All ids are Python ints (int64 range), all times
unix milliseconds.
"""

from __future__ import annotations

from typing import NamedTuple, Tuple


class FeedEvent(NamedTuple):
    """One ``rec_inter.csv`` row."""

    user_id: int
    item_id: int
    ts: int
    row: int
    click: int
    like: int
    follow: int
    forward: int
    search: int
    search_item_related: int
    playing_time: float
    duration_ms: float


class SearchRow(NamedTuple):
    """One ``src_inter.csv`` row (one shown item of a search session)."""

    user_id: int
    session_id: int
    ts: int
    row: int
    words: Tuple[int, ...]
    source: str
    item_id: int
    clicked: int
    item_type: str


class SearchSession(NamedTuple):
    """All ``src_inter.csv`` rows of one ``(user_id, search_session_id)``, assembled.

    ``clicked`` and ``shown`` keep file order. ``row`` is the first row index of the session.
    """

    user_id: int
    session_id: int
    ts: int
    row: int
    words: Tuple[int, ...]
    source: str
    clicked: Tuple[int, ...]
    shown: Tuple[int, ...]
    has_click: int


class ItemRecord(NamedTuple):
    """One ``item_features.csv`` row. ``categories`` = first..fourth level ids (0 = absent)."""

    item_id: int
    caption: Tuple[int, ...]
    author_id: int
    item_type: str
    upload_time: str
    upload_type: str
    categories: Tuple[int, int, int, int]


class UserRecord(NamedTuple):
    """One ``user_features.csv`` row."""

    user_id: int
    search_active_level: int
    rec_active_level: int
    onehot_feat1: int
    onehot_feat2: int


class FollowEdge(NamedTuple):
    """One ``social_network.csv`` row."""

    user_id: int
    user_follow_id: int


class Rejection(NamedTuple):
    """A row that failed validation: goes to ``dead_letter/`` with its reason."""

    file: str
    row: int
    reason: str
    line: str
