"""Pieces shared by the two jobs that cut neighbour payloads from a neighbour table.

``jsr-neighbour-features`` (``pipelines/neighbour_features.py``, payloads on training examples)
and ``jsr-neighbour-serving-table`` (``pipelines/neighbour_serving_table.py``, payloads at export
time) read the same inputs (KuaiSAR CSVs + a ``jsr-neighbours`` output) and run the same payload
steps: up-front input checks, the slot and payload counters, the raw stats files, and the slot
and payload sections of the stats and of the summary table. ``jsr-dense-neighbours`` uses the
output-dir checks too.
"""

from __future__ import annotations

import os
from typing import Dict, List, Sequence, Tuple

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from jsr_tf import features as F
from jsr_tf import filenames as FN
from jsr_tf.data import kuaisar
from jsr_tf.neighbours import NeighbourConfig
from jsr_tf.neighbours import payload as pl
from jsr_tf.pipelines import neighbours as nb
from jsr_tf.pipelines.stats import read_json, write_json
from jsr_tf.pipelines.transforms import Counters, bump, merge_counters

# PreprocessConfig fields that decide events, targets, splits and hence visibility: the table
# and the examples must agree on these. The others (negatives, shards) only shape the examples.
TIMELINE_FIELDS = ("max_query_words", "max_session_clicks", "no_click_fallback",
                   "history_requirement", "min_targets_per_task", "strict_same_ts",
                   "period_start_ms", "period_end_ms")
SIDE_NAMES = tuple(name for name, _ in pl.SIDE_ORDER)  # feed, search

# --------------------------------------------------------------------------- input checks


def timeline_field_diff(left: Dict, right: Dict) -> str:
    """The ``TIMELINE_FIELDS`` on which two preprocess config dicts differ, as
    ``"`name=left` vs `right`, ..."`` (empty if none)."""
    diff = {name: (left.get(name), right.get(name)) for name in TIMELINE_FIELDS
            if left.get(name) != right.get(name)}
    return ", ".join(f"`{k}={a!r}` vs `{b!r}`" for k, (a, b) in sorted(diff.items()))


def require(path: str, what: str) -> str:
    """``path`` if it exists.

    Raises:
        InputError: "<what> not found: <path>."
    """
    if not FileSystems.exists(path):
        raise kuaisar.InputError(f"{what} not found: {path!r}.")
    return path


def _norm(path: str) -> str:
    return path.rstrip("/") if "://" in path else os.path.realpath(path)


def check_output_dir(output_dir: str, inputs: Sequence[Tuple[str, str]]) -> None:
    """Checks that ``output_dir`` is none of the ``(flag name, dir)`` inputs.

    Raises:
        InputError: The first input equal to ``output_dir``.
    """
    out = _norm(output_dir)
    for name, path in inputs:
        if _norm(path) == out:
            raise kuaisar.InputError(f"`output_dir` should differ from `{name}`. "
                                     f"Received: `output_dir={output_dir!r}`")


def read_table_stats(neighbours_dir: str) -> Tuple[Dict, List[int]]:
    """``neighbour_stats.json`` of a ``jsr-neighbours`` output and its snapshot times.

    Raises:
        InputError: No stats file.
    """
    stats = read_json(require(FileSystems.join(neighbours_dir, FN.NEIGHBOUR_STATS_FILE),
                              "Neighbour table stats"))
    return stats, [int(s["snapshot_ts"]) for s in stats.get("snapshots", [])]


def table_pattern(neighbours_dir: str) -> str:
    """The glob of the table's JSONL shards.

    Raises:
        InputError: No shard matches.
    """
    pattern = FileSystems.join(neighbours_dir, f"{nb.TABLE_PREFIX}-*{FN.JSONL_SUFFIX}")
    if not FileSystems.match([pattern])[0].metadata_list:
        raise kuaisar.InputError(f"No neighbour table ({nb.TABLE_PREFIX}-*{FN.JSONL_SUFFIX}) in "
                                 f"{neighbours_dir!r}.")
    return pattern


# --------------------------------------------------------------------------- pipeline pieces


def write_file_counts(written, path: str) -> None:
    """``(file name, count)`` pairs → one JSON object at ``path``, names sorted."""
    (written | "FileCounts" >> beam.combiners.ToList()
     | "WriteFileCounts" >> beam.Map(lambda pairs: write_json(dict(sorted(pairs)), path)))


def write_raw_stats(stats_parts: Sequence, path: str) -> None:
    """Every ``stats`` output → the merged flat counters at ``path``."""
    (list(stats_parts)
     | "AllStats" >> beam.Flatten()
     | "MergeStats" >> beam.CombineGlobally(merge_counters)
     | "WriteRawStats" >> beam.Map(write_json, path))


def order_parts(parts) -> Tuple[List[int], List[pl.Slot], List[pl.Payload]]:
    """``(slot, Slot, Payload)`` triples → slot indices, slots and payloads in slot order."""
    ordered = sorted(parts, key=lambda part: part[0])
    return [p[0] for p in ordered], [p[1] for p in ordered], [p[2] for p in ordered]


def count_cut(counts: Counters, payload: pl.Payload) -> None:
    """Counters of one payload cut for one slot."""
    bump(counts, "slots/cut")
    bump(counts, "slots/empty_payload" if payload.is_empty else "slots/with_payload")
    bump(counts, "payload/feed_events/cut", payload.num_feed)
    bump(counts, "payload/search_sessions/cut", payload.num_search)


def count_written(counts: Counters, side_name: str, payload: pl.Payload) -> None:
    """Counters of one slot written (``side_name``: feed or search)."""
    bump(counts, f"slots/written/{side_name}")
    bump(counts, "payload/feed_events/written", payload.num_feed)
    bump(counts, "payload/search_sessions/written", payload.num_search)


# --------------------------------------------------------------------------- stats


def slot_and_payload_counts(counters: Dict[str, int], check) -> Tuple[Dict, Dict]:
    """``(slots, payload)`` sections of the stats; checks that every planned slot is cut and
    written, and that the payload events cut are written."""
    c = counters.get
    slots = {"planned": {s: c(f"slots/planned/{s}", 0) for s in SIDE_NAMES},
             "written": {s: c(f"slots/written/{s}", 0) for s in SIDE_NAMES},
             "cut": c("slots/cut", 0), "with_payload": c("slots/with_payload", 0),
             "empty_payload": c("slots/empty_payload", 0),
             "neighbour_without_timeline": c("slots/neighbour_without_timeline", 0)}
    planned = sum(slots["planned"].values())
    for s in SIDE_NAMES:
        check(f"{s} slots planned = written", slots["planned"][s], slots["written"][s])
    check("slots planned = cut", planned, slots["cut"])
    check("slots cut = with_payload + empty_payload", slots["cut"],
          slots["with_payload"] + slots["empty_payload"])
    check("slots written = planned", c("slots/written", 0), planned)
    payload = {"feed_events": c("payload/feed_events/cut", 0),
               "search_sessions": c("payload/search_sessions/cut", 0)}
    for name in ("feed_events", "search_sessions"):
        check(f"payload {name}: cut = written", c(f"payload/{name}/cut", 0),
              c(f"payload/{name}/written", 0))
    return slots, payload


def slot_line(stats: Dict) -> str:
    """The summary-table line of the slots and payload events."""
    s, payload = stats["slots"], stats["payload"]
    return (f"slots: feed {s['planned']['feed']:,}, search {s['planned']['search']:,}, "
            f"empty payload {s['empty_payload']:,}; payload events "
            f"{payload['feed_events']:,} feed, {payload['search_sessions']:,} search")


def check_slot_count(config: NeighbourConfig, shape: F.DataShape) -> None:
    """Raises ``InputError`` if a table has more neighbours per user than the model has slots.

    The reader, the models and the serving signatures read ``shape.neighbour_slots`` slots;
    a table with ``k_feed + k_search`` above it would lose its search-side neighbours (they come
    last) without a word.
    """
    total = config.k_feed + config.k_search
    if total > shape.neighbour_slots:
        raise kuaisar.InputError(
            f"`k_feed + k_search` should be at most {shape.neighbour_slots} (the slots the reader, "
            f"the models and the serving signatures read). Received: `k_feed={config.k_feed}`, "
            f"`k_search={config.k_search}`")
