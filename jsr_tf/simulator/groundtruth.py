"""Ground-truth files of a simulated dataset, under ``<output_dir>/oracle/``.

The importer reads only the five CSVs; these files let ``jsr_tf.simulator.oracle.Oracle`` recompute
every choice distribution and let tests check the planted structure. Arrays are ``.npy`` files of
structured dtypes (byte-identical for equal inputs; load with ``allow_pickle=False``). Indices
(``user``, ``cat2``, ``topic``) are dense 0-based indices of this folder's tables; ids are the raw
ids of the CSVs.

=========================  =====================================================================
``params.json``            preset, seed, period, ``DynamicsParams``, sizes, row counts
``items.npy``              every item (feed and search-only): id, kind, cat2, topic, weights
``users.npy``              user id, community, long-term interest slots
``sessions.npy``           every search session in file order: user, ts, topic, first_row,
                           num_rows, session_id, origin, parent, has_click
``intervals.npy``          community-episode (kind 0) and demand (kind 1) intervals per user
``feed_clicks.npy``        every feed click (user, ts, item, rec_inter row), by (user, ts):
                           the seen items that ``feed_exclude_seen`` removes from later choices
``categories.csv``         cat2 index -> second/first-level category ids
``communities.csv``        user_id, community (labels for similar-user experiments)
``community_episodes.csv`` episode, community, time_ms, cat2_id, topic
``dirty_faults.json``      injected faults and the importer counters they should produce
=========================  =====================================================================

``sessions.parent``: for a triggered session (origin ``trigger_*``) the ``rec_inter.csv`` row of
the feed item on which search was opened; for a reformulation the ``first_row`` of the previous
session of the chain; for an episode search the community episode; otherwise -1. Row numbers are
0-based data-line indices of the written files (dirty lines included).
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict

import numpy as np

from jsr_tf.simulator.presets import MAX_INTERESTS

SUBDIR = "oracle"
PARAMS = "params.json"
ITEMS = "items.npy"
USERS = "users.npy"
SESSIONS = "sessions.npy"
INTERVALS = "intervals.npy"
FEED_CLICKS = "feed_clicks.npy"
CATEGORIES = "categories.csv"
COMMUNITIES = "communities.csv"
COMMUNITY_EPISODES = "community_episodes.csv"
DIRTY_FAULTS = "dirty_faults.json"
FORMAT_VERSION = 1

ITEM_DTYPE = np.dtype([("item_id", "<i8"), ("kind", "i1"), ("cat2", "<i4"), ("topic", "<i4"),
                       ("feed_weight", "<f8"), ("search_weight", "<f8")])
USER_DTYPE = np.dtype([("user_id", "<i8"), ("community", "<i4"),
                       ("lt_cat", "<i4", (MAX_INTERESTS,)), ("lt_weight", "<f8", (MAX_INTERESTS,))])
SESSION_DTYPE = np.dtype([("user", "<i4"), ("ts", "<i8"), ("topic", "<i4"), ("first_row", "<i8"),
                          ("num_rows", "<i4"), ("session_id", "<i8"), ("origin", "i1"),
                          ("parent", "<i8"), ("has_click", "i1")])
INTERVAL_DTYPE = np.dtype([("kind", "i1"), ("user", "<i4"), ("start", "<i8"), ("end", "<i8"),
                           ("cat2", "<i4"), ("topic", "<i4"), ("event", "<i4")])
FEED_CLICK_DTYPE = np.dtype([("user", "<i4"), ("ts", "<i8"), ("item", "<i4"), ("row", "<i8")])
EPISODE, DEMAND = 0, 1


def folder(raw_dir: str) -> str:
    """``<raw_dir>/oracle``."""
    return os.path.join(raw_dir, SUBDIR)


def save_array(path: str, array: np.ndarray) -> None:
    """``np.save`` without pickles (deterministic bytes)."""
    with open(path, "wb") as out:
        np.save(out, array, allow_pickle=False)


def load_array(path: str) -> np.ndarray:
    """Loads one ground-truth array."""
    return np.load(path, allow_pickle=False)


def save_json(path: str, obj: Any) -> None:
    """Deterministic JSON (sorted keys)."""
    with open(path, "w", encoding="utf-8") as out:
        json.dump(obj, out, indent=2, sort_keys=True)
        out.write("\n")


def load_json(path: str) -> Dict[str, Any]:
    """Loads one JSON file."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def records(dtype: np.dtype, **columns: np.ndarray) -> np.ndarray:
    """Builds a structured array from equally long columns."""
    n = len(next(iter(columns.values())))
    out = np.zeros(n, dtype)
    for name, values in columns.items():
        out[name] = values
    return out


def write_csv(path: str, header: str, rows) -> None:
    """Small helper for the human-readable CSVs."""
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        out.write(header + "\n")
        for row in rows:
            out.write(",".join(str(x) for x in row) + "\n")
