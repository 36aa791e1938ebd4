"""Leakage and split invariants, checked against the raw CSVs a pipeline run started from.

Used by the simulated-data tests; every check raises ``AssertionError`` naming the row.
"""

from __future__ import annotations

import collections
import csv
import os
from typing import Dict, List, Set, Tuple

from jsr_tf import features as F
from jsr_tf import filenames as FN
from tests.testing import read_examples, sessions_of

SHAPE = F.DataShape()  # the reference shape of the fixtures' data


def _raw_interactions(raw_dir: str) -> Dict[int, List[Tuple[int, int]]]:
    """user -> [(ts, item)] of feed clicks and search clicks, from the raw CSVs."""
    out: Dict[int, List[Tuple[int, int]]] = collections.defaultdict(list)
    with open(os.path.join(raw_dir, "rec_inter.csv"), newline="") as f:
        for row in csv.DictReader(f):
            if row["click"] in ("1", "1.0"):
                out[int(row["user_id"])].append((round(float(row["timestamp"])),
                                                 int(row["item_id"])))
    with open(os.path.join(raw_dir, "src_inter.csv"), newline="") as f:
        for row in csv.DictReader(f):
            if int(float(row["click_cnt"])) > 0:
                out[int(row["user_id"])].append((round(float(row["search_session_timestamp"])),
                                                 int(row["item_id"])))
    return out


def _first_seen(data_dir: str) -> Dict[int, int]:
    with open(os.path.join(data_dir, FN.VOCAB_DIR, FN.ITEMS_VOCAB), newline="") as f:
        return {int(r["item_id"]): int(r["first_seen_ts"]) for r in csv.DictReader(f, delimiter="\t")}


def load_all(data_dir: str) -> Dict[Tuple[str, int], List[Dict]]:
    return {(s.value, int(t)): read_examples(data_dir, s.value, t) for s in F.Split for t in F.Task}


def check_history_before_target(examples: Dict, strict: bool = True) -> int:
    """Every history timestamp is before the target's; histories are oldest first and capped."""
    checked = 0
    for rows in examples.values():
        for e in rows:
            t = int(e[F.TARGET_TS])
            for name in (F.FEED_TS, F.SEARCH_TS):
                stamps = [int(x) for x in e[name]]
                assert stamps == sorted(stamps), (name, e[F.USER_ID], e[F.TARGET_ROW])
                assert all((s < t) if strict else (s <= t) for s in stamps), (
                    "history at/after target", name, int(e[F.USER_ID]), int(e[F.TARGET_ROW]))
            assert len(e[F.FEED_ITEMS]) == len(e[F.FEED_TS]) == len(e[F.FEED_ROWS]) <= 30
            assert len(e[F.SEARCH_TS]) <= 30
            for name in F.SEARCH_PARALLEL:
                assert len(e[name]) == len(e[F.SEARCH_TS])
            assert sum(e[F.SEARCH_WORD_LENGTHS]) == len(e[F.SEARCH_WORDS])
            assert sum(e[F.SEARCH_CLICK_LENGTHS]) == len(e[F.SEARCH_CLICKS])
            assert all(0 < n <= 5 for n in e[F.SEARCH_CLICK_LENGTHS]) or not len(e[F.SEARCH_TS])
            checked += 1
    return checked


def check_no_heldout_in_train_histories(examples: Dict) -> int:
    """No train row's history holds a valid or test target (either task)."""
    heldout: Set[Tuple[int, int, int]] = set()  # (user, kind, row)
    for split in ("valid", "test"):
        for task in F.Task:
            for e in examples[(split, int(task))]:
                heldout.add((int(e[F.USER_ID]), int(task), int(e[F.TARGET_ROW])))
    assert heldout, "no held-out targets at all"
    seen = 0
    for task in F.Task:
        for e in examples[("train", int(task))]:
            user = int(e[F.USER_ID])
            for row in e[F.FEED_ROWS]:
                assert (user, F.EventKind.FEED, int(row)) not in heldout, ("feed", user, row)
                seen += 1
            for s in sessions_of(e):
                assert (user, F.EventKind.SEARCH, s["row"]) not in heldout, ("search", user, s)
                seen += 1
    return seen


def check_negatives(examples: Dict, raw_dir: str, data_dir: str,
                    must_predate: bool = True) -> int:
    """Negatives: right count, distinct, never the positive or the user's earlier items, and
    (by default) first seen before the target."""
    interactions = _raw_interactions(raw_dir)
    first_seen = _first_seen(data_dir)
    checked = 0
    for (split, _), rows in examples.items():
        expected = SHAPE.train_negatives if split == "train" else SHAPE.eval_negatives
        for e in rows:
            user, t = int(e[F.USER_ID]), int(e[F.TARGET_TS])
            negatives = [int(x) for x in e[F.NEGATIVES]]
            assert len(negatives) == len(set(negatives)) == expected, (split, user)
            assert int(e[F.TARGET_ITEM]) not in negatives
            prior = {item for ts, item in interactions[user] if ts < t}
            assert not prior & set(negatives), ("negative the user had before", user, t)
            if must_predate:
                assert all(first_seen[n] < t for n in negatives), ("negative first seen late", user)
            checked += 1
    return checked


def check_split_order(examples: Dict) -> None:
    """Per user and task: ≤ 1 valid and ≤ 1 test row; train < valid < test in time."""
    for task in F.Task:
        last_train: Dict[int, Tuple[int, int]] = {}
        for e in examples[("train", int(task))]:
            key = (int(e[F.TARGET_TS]), int(e[F.TARGET_ROW]))
            user = int(e[F.USER_ID])
            last_train[user] = max(last_train.get(user, key), key)
        valid = {}
        for split in ("valid", "test"):
            users = [int(e[F.USER_ID]) for e in examples[(split, int(task))]]
            assert len(users) == len(set(users)), (split, task)
        for e in examples[("valid", int(task))]:
            user = int(e[F.USER_ID])
            valid[user] = (int(e[F.TARGET_TS]), int(e[F.TARGET_ROW]))
            if user in last_train:
                assert last_train[user] < valid[user], (task, user)
        for e in examples[("test", int(task))]:
            user = int(e[F.USER_ID])
            if user in valid:
                assert valid[user] < (int(e[F.TARGET_TS]), int(e[F.TARGET_ROW])), (task, user)


def _raw_sessions(raw_dir: str) -> Dict[Tuple[int, int], Dict]:
    """(user, session first row) -> {"shown": [items], "clicked": {items}} from src_inter.csv."""
    by_id: Dict[Tuple[int, int], Dict] = {}
    with open(os.path.join(raw_dir, "src_inter.csv"), newline="") as f:
        for row_index, row in enumerate(csv.DictReader(f)):
            key = (int(row["user_id"]), int(row["search_session_id"]))
            entry = by_id.setdefault(key, {"row": row_index, "shown": [], "clicked": set()})
            entry["shown"].append(int(row["item_id"]))
            if int(float(row["click_cnt"])) > 0:
                entry["clicked"].add(int(row["item_id"]))
    return {(user, entry["row"]): entry for (user, _), entry in by_id.items()}


def _raw_first_exposure(raw_dir: str) -> Dict[int, int]:
    """item -> first time any user was shown it (feed deliveries and search impressions)."""
    first: Dict[int, int] = {}
    for name, ts_column in (("rec_inter.csv", "timestamp"),
                            ("src_inter.csv", "search_session_timestamp")):
        with open(os.path.join(raw_dir, name), newline="") as f:
            for row in csv.DictReader(f):
                item, ts = int(row["item_id"]), round(float(row[ts_column]))
                first[item] = min(first.get(item, ts), ts)
    return first


def check_fair_negatives(examples: Dict, raw_dir: str, must_predate: bool = True
                         ) -> Tuple[int, Dict[Tuple[str, str], int]]:
    """``negatives_fair``: on valid/test rows only; 99 distinct, or none where the pool ran short;
    never the positive, the session's other clicks or the user's earlier items; first shown to
    anyone before the target. ``impressions``: shown in the target session, not clicked.

    Returns:
        ``(rows checked, {(split, task): rows without fair negatives})``.
    """
    interactions = _raw_interactions(raw_dir)
    sessions = _raw_sessions(raw_dir)
    first = _raw_first_exposure(raw_dir)
    short: Dict[Tuple[str, str], int] = collections.Counter()
    checked = 0
    for (split, task), rows in examples.items():
        for e in rows:
            if split == "train":
                assert not set(F.EVAL_FEATURES) & set(e)
                continue
            user, t = int(e[F.USER_ID]), int(e[F.TARGET_TS])
            negatives = [int(x) for x in e[F.NEGATIVES_FAIR]]
            assert len(negatives) == len(set(negatives)), (split, user)
            assert len(negatives) in (0, SHAPE.eval_negatives), (split, user)
            short[(split, F.task_name(task))] += not negatives
            positive = int(e[F.TARGET_ITEM])
            assert positive not in negatives
            prior = {item for ts, item in interactions[user] if ts < t}
            assert not prior & set(negatives), ("fair negative the user had before", user, t)
            if must_predate:
                assert all(first[n] < t for n in negatives), ("fair negative seen late", user)
            if task == F.Task.SEARCH:
                session = sessions[(user, int(e[F.TARGET_ROW]))]
                assert not session["clicked"] & set(negatives), ("session click", user)
                impressions = [int(x) for x in e[F.IMPRESSIONS]]
                expected = [i for i in dict.fromkeys(session["shown"])
                            if i not in session["clicked"]][:SHAPE.impressions]
                assert impressions == expected, (user, t)
                others = [int(x) for x in e[F.OTHER_CLICKS]]
                assert set(others) == session["clicked"] - {positive}, (user, t)
            else:
                assert F.IMPRESSIONS not in e and F.OTHER_CLICKS not in e
            checked += 1
    return checked, dict(short)
