"""The simulated period and its time conventions (spec/kuaisar_format.md §1, §3.3).

Times are unix milliseconds (int64). The period is KuaiSAR-small's: 2023-05-22 14:50 → 2023-05-31
14:50 Beijing time (UTC+8). ``beijing_strings`` renders the informational ``time`` columns.
"""

from __future__ import annotations

import datetime
import functools
from typing import List

import numpy as np

BEIJING = datetime.timezone(datetime.timedelta(hours=8))
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
PERIOD_START_MS = int(datetime.datetime(2023, 5, 22, 14, 50, tzinfo=BEIJING).timestamp()) * 1000
PERIOD_END_MS = int(datetime.datetime(2023, 5, 31, 14, 50, tzinfo=BEIJING).timestamp()) * 1000
PERIOD_DAYS = (PERIOD_END_MS - PERIOD_START_MS) / DAY_MS

# Relative activity per Beijing hour of day (night trough, evening peak).
_HOURLY_ACTIVITY = np.array([0.60, 0.35, 0.20, 0.12, 0.10, 0.12, 0.25, 0.50, 0.70, 0.80, 0.85,
                             0.90, 1.00, 0.95, 0.85, 0.85, 0.90, 1.00, 1.10, 1.30, 1.50, 1.60,
                             1.40, 1.00])
_BEIJING_OFFSET_S = 8 * 3600


def sample_diurnal(rng: np.random.Generator, n: int, start_ms: int = PERIOD_START_MS,
                   end_ms: int = PERIOD_END_MS) -> np.ndarray:
    """Draws ``n`` times in ``[start_ms, end_ms)`` with a Beijing-time daily activity profile.

    Args:
        rng: Random stream.
        n: Number of times.
        start_ms: Start of the range (inclusive).
        end_ms: End of the range (exclusive).

    Returns:
        ``[n]`` int64 unix ms, unsorted.
    """
    first_hour = -(-start_ms // HOUR_MS) * HOUR_MS  # Bins follow clock hours.
    edges = np.unique(np.concatenate([[start_ms], np.arange(first_hour, end_ms, HOUR_MS)]))
    edges = edges.astype(np.int64)
    widths = np.minimum(edges + HOUR_MS, end_ms) - edges
    hours = ((edges // 1000 + _BEIJING_OFFSET_S) // 3600) % 24
    mass = _HOURLY_ACTIVITY[hours] * widths
    cum = np.cumsum(mass)
    x = rng.random(n) * cum[-1]
    b = np.minimum(np.searchsorted(cum, x, side="right"), len(edges) - 1)
    within = (x - (cum[b] - mass[b])) / mass[b]
    out = edges[b] + np.floor(within * widths[b]).astype(np.int64)
    return np.clip(out, start_ms, end_ms - 1)


def beijing_strings(ts_ms: np.ndarray) -> List[str]:
    """Renders unix ms as Beijing ``YYYY-MM-DD HH:MM:SS`` strings (seconds floored).

    Vectorised through lookup tables of dates and seconds-of-day; exact for any ``ts_ms >= 0``.

    Args:
        ts_ms: int64 unix milliseconds.

    Returns:
        One string per value.
    """
    ts_ms = np.asarray(ts_ms, dtype=np.int64)
    if ts_ms.size == 0:
        return []
    local_s = ts_ms // 1000 + _BEIJING_OFFSET_S
    day = local_s // 86400
    second = local_s - day * 86400
    first = int(day.min())
    dates = np.array([(datetime.date(1970, 1, 1) + datetime.timedelta(days=d)).isoformat()
                      for d in range(first, int(day.max()) + 1)])
    return np.strings.add(np.strings.add(dates[day - first], " "),
                          _clock_table()[second]).tolist()


@functools.lru_cache(maxsize=1)
def _clock_table() -> np.ndarray:
    """``[86400]`` strings ``HH:MM:SS``, indexed by second of day (built once, never mutated)."""
    return np.array([f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(86400)])


def date_strings(days_since_epoch: np.ndarray) -> List[str]:
    """Renders day numbers (days since 1970-01-01) as ``YYYY-MM-DD``."""
    days = np.asarray(days_since_epoch, dtype=np.int64)
    return np.datetime_as_string(days.astype("datetime64[D]"), unit="D").tolist()
