"""Time-indexed state lookups: a user's last search before t and the interval active at t."""

from __future__ import annotations

from typing import Tuple

import numpy as np

_TIME_BITS = 42  # unix ms < 2**42 until the year 2109.
NONE = -1


def time_key(user: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Sortable int64 key of ``(user index, ts)``; ``0 <= ts < 2**42``, ``user < 2**20``."""
    return (np.asarray(user, np.int64) << _TIME_BITS) + np.asarray(ts, np.int64)


class SessionTimeline:
    """Search sessions sorted by ``(user, ts)`` (ties in canonical file order).

    Args:
        user: ``[S]`` user index, sorted together with ``ts``.
        ts: ``[S]`` session time, ms.
        cat2: ``[S]`` category of the session's query topic.
    """

    def __init__(self, user: np.ndarray, ts: np.ndarray, cat2: np.ndarray) -> None:
        self.keys = time_key(user, ts)
        if np.any(np.diff(self.keys) < 0):
            raise ValueError("SessionTimeline needs sessions sorted by (user, ts).")
        self.user = np.asarray(user, np.int64)
        self.ts = np.asarray(ts, np.int64)
        self.cat2 = np.asarray(cat2, np.int64)

    def last_before(self, user: np.ndarray, t: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Category and time of each user's last session with ``ts < t`` (``-1, -1`` if none)."""
        pos = np.searchsorted(self.keys, time_key(user, t), side="left") - 1
        if len(self.keys) == 0:
            return np.full(len(pos), NONE), np.full(len(pos), NONE)
        safe = np.maximum(pos, 0)
        ok = (pos >= 0) & (self.user[safe] == np.asarray(user))
        return np.where(ok, self.cat2[safe], NONE), np.where(ok, self.ts[safe], NONE)


class IntervalTable:
    """Per-user, non-overlapping time intervals ``[start, end)`` with a category and topic.

    Args:
        user: ``[K]`` user index (sorted with ``start``).
        start: ``[K]`` start, ms.
        end: ``[K]`` end, ms (``<=`` the user's next start).
        cat2: ``[K]`` category index.
        topic: ``[K]`` topic index.
    """

    def __init__(self, user: np.ndarray, start: np.ndarray, end: np.ndarray, cat2: np.ndarray,
                 topic: np.ndarray) -> None:
        self.keys = time_key(user, start)
        if np.any(np.diff(self.keys) < 0):
            raise ValueError("IntervalTable needs intervals sorted by (user, start).")
        same = np.asarray(user)[1:] == np.asarray(user)[:-1]
        if np.any(same & (np.asarray(end)[:-1] > np.asarray(start)[1:])):
            raise ValueError("IntervalTable needs non-overlapping intervals per user.")
        self.user = np.asarray(user, np.int64)
        self.start = np.asarray(start, np.int64)
        self.end = np.asarray(end, np.int64)
        self.cat2 = np.asarray(cat2, np.int64)
        self.topic = np.asarray(topic, np.int64)

    def active(self, user: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Index of the interval active at t for each user (``start <= t < end``), or -1."""
        t = np.asarray(t, np.int64)
        pos = np.searchsorted(self.keys, time_key(user, t), side="right") - 1
        if len(self.keys) == 0:
            return np.full(len(pos), NONE)
        safe = np.maximum(pos, 0)
        ok = (pos >= 0) & (self.user[safe] == np.asarray(user)) & (t < self.end[safe])
        return np.where(ok, pos, NONE)

    def active_cat(self, user: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Category of the active interval, or -1."""
        return self.take(self.cat2, self.active(user, t))

    @staticmethod
    def take(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """``values[idx]`` where ``idx >= 0``, else -1 (``idx`` from ``active``)."""
        if len(values) == 0:
            return np.full(len(idx), NONE)
        return np.where(idx >= 0, values[np.maximum(idx, 0)], NONE)
