"""``jsr-neighbour-serving-table``: neighbour table + KuaiSAR logs → per-user serving rows.

The serving export of ``spec/similar_users.md`` §5: per user, the latest neighbour list plus
each neighbour's payload cut at export time, in the request layout of the ``feed_nbr`` /
``search_nbr`` signatures (``export/serving.py``), for a key-value store the client reads::

    jsr-neighbour-serving-table --input_dir raw/ --neighbours_dir nb/ --output_dir table/ \\
        [--visibility all] [--as_of_ms T] [--preprocess_config cfg.json] [--num_shards 1]
    python -m jsr_tf.pipelines.neighbour_serving_table ... --runner=DataflowRunner \\
        --setup_file ./setup.py

Without ``--runner`` the in-memory ``FnApiRunner`` is used (as in ``pipelines/preprocess.py``).
Rerun it at the payload cadence; a user without a row gets all-padding neighbour inputs, which is
exactly the base path.

**Inputs.** ``--input_dir``: the KuaiSAR CSVs (read with the importer of
``pipelines/preprocess.py``, same up-front checks). ``--neighbours_dir``: a ``jsr-neighbours``
output with the chosen visibility (default ``all``: build it with
``jsr-neighbours --visibility all``). The timelines use the table's own preprocess config
(``neighbour_config.json``); ``--preprocess_config`` may be passed to check that it is the one
expected (the fields that decide timelines, ``neighbour_common.TIMELINE_FIELDS``, must agree).
Checked up front (``InputError``, exit code 2 from the CLI): the inputs exist, the table has the
visibility and a snapshot at or before ``--as_of_ms``, and the output dir is not an input dir.

**Cut.** ``as_of`` = ``--as_of_ms``, or one ms after the newest canonical event of the logs
(feed positives and search sessions: every event is in the payloads). List = the table's rows
of ``(visibility, k)`` with ``k`` the newest snapshot, or with ``--as_of_ms`` the last snapshot
with ``T_k <= as_of`` (``snapshot_index``). Slots = the feed-side neighbours then the
search-side ones, best first (``payload.assemble_slots``, as in training; never the user
itself). Payload of each slot = ``payload.PayloadCutter`` over the neighbour's events that the
visibility allows (``all``: every event) cut strictly before ``as_of``: the last ``Lf`` feed
positives and ``Lq`` search sessions (first ``Wn`` words, first ``Kn`` clicks), oldest first,
padded with ``RAW_PAD_ID = -1``. The same code path as ``jsr-neighbour-features``, so a row equals the payload of a
training example of that visibility with ``target_ts − payload_lag = as_of`` at the same snapshot.

**Steps**: parse the logs → ``BuildTimelines``; read the table rows of ``(visibility, k)`` →
group by user → slots (one *request* per slot keyed by the neighbour) → ``CoGroupByKey`` with
the neighbour's timeline → payloads → group by user → one row per user with a row on either
side (a user whose rows list no neighbour gets an all-padding row) → shard ``user % num_shards``,
users ascending (byte-identical reruns).

**Outputs** under ``--output_dir``:

- ``serving_table-SSSSS-of-NNNNN.jsonl``: one JSON object per user (keys sorted)::

      {"user_id": 1, "snapshot": 2, "snapshot_ts": ..., "as_of_ms": ..., "num_slots": 2,
       "nbr_side": [K], "nbr_sim": [K], "nbr_rec_items": [K][Lf],
       "nbr_src_words": [K][Lq][Wn], "nbr_src_clicks": [K][Lq][Kn],
       "nbr_users": [n], "nbr_last_ts": [n]}

  The five model inputs (``features.NEIGHBOUR_INPUTS``) are one row of the ``*_nbr`` request
  layout, padded to ``K = MAX_NEIGHBOURS`` slots (side 0 = empty slot, ids -1), so rows of several
  users stack into a batch and paste as-is into a REST row-format instance. ``nbr_users`` and
  ``nbr_last_ts`` (audit only, not model inputs) list the ``n`` real slots among them. Slots
  beyond ``K`` (``k_feed + k_search > K``) are left out of the JSON row (counted), as the
  reader and the signatures drop them.
- ``serving_table-SSSSS-of-NNNNN.tfrecord.gz``: the same users, same order, as
  ``tf.train.Example`` with ``user_id``, ``snapshot_ts``, ``as_of_ms`` and the flat ``nbr_*``
  fields of the training examples (every slot, ``DataShape.slot_sizes()`` values each;
  ``features.neighbour_blocks`` reads them).
- ``serving_table_stats.json``: table rows read per side, users in the table / with and
  without slots / written (per file, JSON lines and TFRecord records counted back), slots per
  side, slots with an empty payload, payload events, and reconciliation checks. A failed check
  raises ``ReconciliationError`` after the file is written.
- ``serving_table_info.json``: the source table (dir, config, visibility, snapshot index and
  time), ``as_of_ms`` and where it came from, the newest event, caps, the row layout, files.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import time
from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

import jsr_tf
from jsr_tf import features as F
from jsr_tf import filenames as FN
from jsr_tf.data import kuaisar
from jsr_tf.data.config import PreprocessConfig
from jsr_tf.data.timeline import UserTimeline
from jsr_tf.neighbours import (VIS_ALL, VISIBILITIES, NeighbourConfig, NeighbourRow,
                               snapshot_index, snapshot_time_string)
from jsr_tf.neighbours import payload as pl
from jsr_tf.neighbours.minhash import SIDES
from jsr_tf.pipelines import neighbour_common as common
from jsr_tf.pipelines import neighbours as nb
from jsr_tf.pipelines import tfrecord_io
from jsr_tf.pipelines.cli import bounded_int, console_main, pipeline_options
from jsr_tf.pipelines.neighbour_common import require
from jsr_tf.pipelines import launch, outputs
from jsr_tf.pipelines.preprocess import resolve_inputs
from jsr_tf.pipelines.stats import (Checks, raise_unless_reconciled, read_json, reconcile_line,
                                    write_json)
from jsr_tf.pipelines.transforms import REC, SRC, STATS, Counters, Progress, bump, parse_timelines

PREFIX = "serving_table"
SNAPSHOT_TS = "snapshot_ts"
AS_OF_MS = "as_of_ms"
NUM_SLOTS = "num_slots"
_SIDE_NAMES = {int(side): name for name, side in pl.SIDE_ORDER}


class Inputs(NamedTuple):
    """Everything checked up front."""

    raw_paths: Dict[str, str]
    preprocess_config: PreprocessConfig
    neighbour_config: NeighbourConfig
    table_pattern: str
    table_stats: Dict
    visibility: str
    snapshots: List[int]
    snapshot: int  # index k of the list used

    @property
    def snapshot_ts(self) -> int:
        return self.snapshots[self.snapshot]


class Request(NamedTuple):
    """One slot of one user's row, sent to the slot's neighbour."""

    user: int
    slot: int
    side: int
    sim: float


def shard_name(shard: int, num_shards: int, suffix: str) -> str:
    """``serving_table-SSSSS-of-NNNNN<suffix>``."""
    return f"{PREFIX}-{shard:05d}-of-{num_shards:05d}{suffix}"


# --------------------------------------------------------------------------- rows (pure)


def _pad(values: Sequence, size: int, fill) -> list:
    values = list(values[:size])
    return values + [fill] * (size - len(values))


def _reshape(flat: Sequence[int], rows: int, width: int) -> List[List[int]]:
    return [list(flat[r * width:(r + 1) * width]) for r in range(rows)]


def serving_row(user: int, slots: Sequence[pl.Slot], payloads: Sequence[pl.Payload],
                snapshot: int, snapshot_ts: int, as_of_ms: int, shape: F.DataShape) -> Dict:
    """One user's JSON row: the ``*_nbr`` request layout for one row, padded to ``K`` slots.

    Args:
        user: Raw user id.
        slots: The user's slots, in slot order (feed side first, best first).
        payloads: One per slot, same order.
        snapshot: Index ``k`` of the list.
        snapshot_ts: ``T_k``.
        as_of_ms: The payload cut.
        shape: The ``DataShape`` of the examples (``K``, ``Lq``, ``Wn``, ``Kn``).

    Returns:
        ``{"user_id", "snapshot", "snapshot_ts", "as_of_ms", "num_slots", "nbr_side" [K],
        "nbr_sim" [K], "nbr_rec_items" [K][Lf], "nbr_src_words" [K][Lq][Wn],
        "nbr_src_clicks" [K][Lq][Kn], "nbr_users" [n], "nbr_last_ts" [n]}`` with
        ``n = min(len(slots), K)``.
    """
    if len(slots) != len(payloads):
        raise ValueError("`payloads` should have one entry per slot. Received: "
                         f"`len(slots)={len(slots)}`, `len(payloads)={len(payloads)}`")
    k, lq = shape.neighbour_slots, shape.nbr_search_sessions
    kept = list(zip(slots, payloads))[:k]
    empty = pl.empty_payload(shape)
    padded = [p for _, p in kept] + [empty] * (k - len(kept))
    return {
        F.USER_ID: int(user),
        "snapshot": int(snapshot),
        SNAPSHOT_TS: int(snapshot_ts),
        AS_OF_MS: int(as_of_ms),
        NUM_SLOTS: len(kept),
        F.NBR_SIDE: _pad([int(s.side) for s, _ in kept], k, int(F.NeighbourSide.EMPTY)),
        F.NBR_SIM: _pad([float(s.sim) for s, _ in kept], k, 0.0),
        F.NBR_REC_ITEMS: [list(p.rec_items) for p in padded],
        F.NBR_SRC_WORDS: [_reshape(p.src_words, lq, shape.nbr_query_words) for p in padded],
        F.NBR_SRC_CLICKS: [_reshape(p.src_clicks, lq, shape.nbr_session_clicks)
                           for p in padded],
        F.NBR_USERS: [int(s.user) for s, _ in kept],
        F.NBR_LAST_TS: [int(p.last_ts) for _, p in kept],
    }


def serving_example(user: int, slots: Sequence[pl.Slot], payloads: Sequence[pl.Payload],
                    snapshot_ts: int, as_of_ms: int) -> bytes:
    """One user's ``tf.train.Example``: ``user_id``, ``snapshot_ts``, ``as_of_ms`` and the flat
    ``nbr_*`` fields of the training examples (every slot)."""
    from tensorflow.core.example import example_pb2  # pylint: disable=g-import-not-at-top

    base = example_pb2.Example()
    for name, value in ((F.USER_ID, user), (SNAPSHOT_TS, snapshot_ts), (AS_OF_MS, as_of_ms)):
        base.features.feature[name].int64_list.value.append(int(value))
    values = pl.neighbour_values(slots, payloads) if slots else None
    return pl.add_neighbour_features(base.SerializeToString(deterministic=True), values)


# --------------------------------------------------------------------------- input checks


def check_preprocess(table_config: Dict, expected: Optional[Dict]) -> PreprocessConfig:
    """The table's preprocess config; with ``expected`` (a resolved ``PreprocessConfig`` dict),
    checks that the timeline fields agree.

    Raises:
        InputError: Different timeline fields.
    """
    table_pre = table_config.get("preprocess", {})
    if expected is not None:
        diff = common.timeline_field_diff(expected, table_pre)
        if diff:
            raise kuaisar.InputError(
                "The neighbour table should be built with the given preprocess config (pass the "
                "same --preprocess_config to jsr-neighbours). Received (given, table): " + diff)
    return PreprocessConfig.from_dict(table_pre)


def choose_snapshot(snapshots: Sequence[int], as_of_ms: Optional[int]) -> int:
    """The newest snapshot, or the last one with ``T_k <= as_of_ms``.

    Raises:
        InputError: No snapshot (at or before ``as_of_ms``).
    """
    if not snapshots:
        raise kuaisar.InputError("The neighbour table has no snapshot (neighbour_stats.json).")
    if as_of_ms is None:
        return len(snapshots) - 1
    k = snapshot_index(as_of_ms, snapshots)
    if k < 0:
        raise kuaisar.InputError(
            f"The neighbour table has no snapshot at or before `as_of_ms={as_of_ms}` "
            f"({snapshot_time_string(as_of_ms)}); its first is {snapshots[0]} "
            f"({snapshot_time_string(snapshots[0])}).")
    return k


def check_inputs(input_dir: str, neighbours_dir: str, output_dir: str, visibility: str,
                 as_of_ms: Optional[int], preprocess_config_path: Optional[str] = None
                 ) -> Inputs:
    """All up-front checks (see the module docstring).

    Raises:
        InputError: With the file or field named.
    """
    common.check_output_dir(output_dir, (("neighbours_dir", neighbours_dir),
                                         ("input_dir", input_dir)))
    require(neighbours_dir, "Neighbours dir")
    require(input_dir, "Input dir")
    raw_paths = resolve_inputs(input_dir)
    table_config = read_json(require(FileSystems.join(neighbours_dir, FN.NEIGHBOUR_CONFIG_FILE),
                                     "Neighbour table config"))
    expected = None
    if preprocess_config_path:
        values = read_json(require(preprocess_config_path, "Preprocess config"))
        try:  # resolved as jsr-neighbours resolves its --preprocess_config
            expected = PreprocessConfig.from_dict(values).to_dict()
        except (TypeError, ValueError) as err:
            raise kuaisar.InputError(f"Invalid preprocess config {preprocess_config_path!r}: "
                                     f"{err}") from None
    preprocess_config = check_preprocess(table_config, expected)
    config = NeighbourConfig.from_dict(table_config.get("neighbours", {}))
    if visibility not in config.visibilities:
        raise kuaisar.InputError(
            f"The neighbour table in {neighbours_dir!r} has no `{visibility}` visibility: "
            f"rebuild it with `jsr-neighbours --visibility {visibility}` (or pass --visibility "
            f"one of {list(config.visibilities)}). Received: "
            f"`visibilities={list(config.visibilities)}`")
    table_stats, snapshots = common.read_table_stats(neighbours_dir)
    k = choose_snapshot(snapshots, as_of_ms)
    table_pattern = common.table_pattern(neighbours_dir)
    common.check_slot_count(config, preprocess_config.data_shape())
    return Inputs(raw_paths, preprocess_config, config, table_pattern, table_stats, visibility,
                  snapshots, k)


# Files of a run from before ``FN.OWNED_FILE`` existed, which a rerun may delete.
LEGACY_OUTPUTS = tuple(f"{PREFIX}{outputs.SHARD}" + re.escape(suffix)
                       for suffix in (FN.JSONL_SUFFIX, FN.TFRECORD_SUFFIX))


# --------------------------------------------------------------------------- steps


def parse_table_row(line: str, visibility: str, snapshot: int
                    ) -> Iterable[Tuple[int, NeighbourRow]]:
    """A table line → ``(user, row)`` if it is of ``(visibility, snapshot)``."""
    row = NeighbourRow.from_json(line)
    if row.visibility == visibility and row.snapshot == snapshot:
        yield row.user, row


class PlanSlots(beam.DoFn):
    """``(user, [NeighbourRow])`` → ``(neighbour, Request)`` per slot; tagged ``plan``
    ``(user, slot count)`` and ``stats``."""

    PLAN = "plan"

    def __init__(self, visibility: str, snapshot: int) -> None:
        self._visibility = visibility
        self._snapshot = snapshot
        self._progress = Progress("serving_table", "plan")

    def process(self, element):
        user, rows = element
        rows = list(rows)
        slots, _ = pl.assemble_slots(user, pl.index_rows(rows), self._visibility, self._snapshot)
        counts: Counters = {"users/in_table": 1}
        for row in rows:
            bump(counts, f"table/rows_read/{row.side}")
        bump(counts, "users/with_slots" if slots else "users/without_slots")
        for i, slot in enumerate(slots):
            bump(counts, f"slots/planned/{_SIDE_NAMES[slot.side]}")
            yield slot.user, Request(user, i, slot.side, slot.sim)
        yield beam.pvalue.TaggedOutput(self.PLAN, (user, len(slots)))
        yield beam.pvalue.TaggedOutput(STATS, counts)
        self._progress.tick()


class CutPayloads(beam.DoFn):
    """``(neighbour, {"requests": [Request], "timeline": [UserTimeline]})`` → payloads.

    Main output: ``(user, (slot, Slot, Payload))`` per request (+ ``stats``). Payloads hold the
    neighbour's events visible to ``visibility`` with ``ts < as_of`` (side input). A neighbour
    without a timeline gets empty payloads, counted.
    """

    def __init__(self, visibility: str, shape: F.DataShape) -> None:
        self._visibility = visibility
        self._shape = shape
        self._progress = Progress("serving_table", "cut")

    def process(self, element, as_of: Dict):
        neighbour, grouped = element
        requests = list(grouped["requests"])
        if not requests:
            return
        timelines: List[UserTimeline] = list(grouped["timeline"])
        counts: Counters = {}
        if timelines:
            payload = pl.PayloadCutter.from_timeline(timelines[0], self._visibility,
                                                     self._shape).cut(as_of["as_of_ms"])
        else:
            payload = pl.empty_payload(self._shape)
            bump(counts, "slots/neighbour_without_timeline", len(requests))
        for request in requests:
            common.count_cut(counts, payload)
            slot = pl.Slot(request.side, request.sim, neighbour)
            yield request.user, (request.slot, slot, payload)
            self._progress.tick()
        yield beam.pvalue.TaggedOutput(STATS, counts)


class AssembleRows(beam.DoFn):
    """``(user, {"plan": [n], "slots": [(slot, Slot, Payload)]})`` →
    ``(shard, (user, json line, serialized Example))`` (+ ``stats``)."""

    def __init__(self, snapshot: int, snapshot_ts: int, num_shards: int,
                 shape: F.DataShape) -> None:
        self._shape = shape
        self._snapshot = snapshot
        self._snapshot_ts = snapshot_ts
        self._num_shards = num_shards
        self._progress = Progress("serving_table", "assemble")

    def process(self, element, as_of: Dict):
        user, grouped = element
        plans = list(grouped["plan"])
        indices, slots, payloads = common.order_parts(grouped["slots"])
        if len(plans) != 1 or indices != list(range(plans[0])):
            raise RuntimeError(f"User {user}: expected one plan and its slots. Received: plans "
                               f"{plans}, slots {indices}")
        as_of_ms = as_of["as_of_ms"]
        row = serving_row(user, slots, payloads, self._snapshot, self._snapshot_ts, as_of_ms,
                          self._shape)
        line = json.dumps(row, sort_keys=True, separators=(",", ":"))
        example = serving_example(user, slots, payloads, self._snapshot_ts, as_of_ms)
        counts: Counters = {"users/assembled": 1, "slots/written": len(slots),
                            "slots/beyond_k": len(slots) - row[NUM_SLOTS]}
        for slot, payload in zip(slots, payloads):
            common.count_written(counts, _SIDE_NAMES[slot.side], payload)
            if payload.last_ts >= as_of_ms:  # never: PayloadCutter cuts strictly before
                bump(counts, "payload/at_or_after_as_of")
        yield user % self._num_shards, (user, line, example)
        yield beam.pvalue.TaggedOutput(STATS, counts)
        self._progress.tick()


class WriteShard(beam.DoFn):
    """``(shard, [(user, line, example), ...])`` → the shard's JSONL and TFRecord files, users
    ascending; yields ``(file name, count)`` for both."""

    def __init__(self, output_dir: str, num_shards: int) -> None:
        self._output_dir = output_dir
        self._num_shards = num_shards

    def process(self, element):
        shard, values = element
        rows = sorted(v for v in values if v is not None)
        jsonl = shard_name(shard, self._num_shards, FN.JSONL_SUFFIX)
        with FileSystems.create(FileSystems.join(self._output_dir, jsonl),
                                compression_type="uncompressed") as out:
            for _, line, _ in rows:
                out.write(line.encode("utf-8") + b"\n")
        records = shard_name(shard, self._num_shards, FN.TFRECORD_SUFFIX)
        count = tfrecord_io.write_gzip_tfrecords(FileSystems.join(self._output_dir, records),
                                                 (example for _, _, example in rows))
        logging.info("serving_table: wrote %s and %s (%d users)", jsonl, records, count)
        yield jsonl, len(rows)
        yield records, count


def resolve_as_of(span: Optional[Tuple[int, int]], as_of_ms: Optional[int]) -> Dict:
    """``{"as_of_ms", "source", "newest_event_ts"}``: the flag, or the newest event + 1 ms."""
    newest = span[1] if span else None
    if as_of_ms is not None:
        return {"as_of_ms": int(as_of_ms), "source": "--as_of_ms", "newest_event_ts": newest}
    if span is None:
        raise ValueError("The logs have no canonical event: pass --as_of_ms.")
    return {"as_of_ms": int(newest) + 1, "source": "newest event + 1 ms",
            "newest_event_ts": newest}


def build_pipeline(pipeline: beam.Pipeline, inputs: Inputs, output_dir: str,
                   as_of_ms: Optional[int], num_shards: int) -> None:
    """Adds the whole graph to ``pipeline``."""
    parsed, timelines = parse_timelines(pipeline, inputs.raw_paths,
                                               inputs.preprocess_config)
    as_of = (timelines.tl
             | "EventSpan" >> beam.FlatMap(nb.event_span)
             | "DataSpan" >> beam.CombineGlobally(nb.merge_spans)
             | "AsOf" >> beam.Map(resolve_as_of, as_of_ms))
    as_of_side = beam.pvalue.AsSingleton(as_of)
    keyed_timelines = timelines.tl | "KeyTimelines" >> beam.Map(lambda t: (t.user_id, t))

    planned = (pipeline
               | "ReadTable" >> beam.io.ReadFromText(inputs.table_pattern)
               | "ParseTable" >> beam.FlatMap(parse_table_row, inputs.visibility,
                                              inputs.snapshot)
               | "GroupRows" >> beam.GroupByKey()
               | "PlanSlots" >> beam.ParDo(PlanSlots(inputs.visibility, inputs.snapshot))
               .with_outputs(PlanSlots.PLAN, STATS, main="requests"))
    payloads = ({"requests": planned.requests, "timeline": keyed_timelines}
                | "JoinNeighbours" >> beam.CoGroupByKey()
                | "CutPayloads" >> beam.ParDo(
                    CutPayloads(inputs.visibility, inputs.preprocess_config.data_shape()),
                    as_of_side)
                .with_outputs(STATS, main="slots"))
    assembled = ({"plan": planned[PlanSlots.PLAN], "slots": payloads.slots}
                 | "JoinPayloads" >> beam.CoGroupByKey()
                 | "AssembleRows" >> beam.ParDo(
                     AssembleRows(inputs.snapshot, inputs.snapshot_ts, num_shards,
                                  inputs.preprocess_config.data_shape()), as_of_side)
                 .with_outputs(STATS, main="rows"))
    skeleton = pipeline | "ShardSkeleton" >> beam.Create([(s, None) for s in range(num_shards)])
    written = ((assembled.rows, skeleton)
               | "WithEmptyShards" >> beam.Flatten()
               | "GroupShards" >> beam.GroupByKey()
               | "WriteShards" >> beam.ParDo(WriteShard(output_dir, num_shards)))
    common.write_file_counts(written,
                             FileSystems.join(output_dir, FN.SERVING_TABLE_FILE_COUNTS_FILE))
    as_of | "WriteAsOf" >> beam.Map(write_json,
                                    FileSystems.join(output_dir, FN.SERVING_TABLE_AS_OF_FILE))

    stats_parts = [p.stats for p in parsed.values()]
    stats_parts += [timelines.stats, planned.stats, payloads.stats, assembled.stats]
    common.write_raw_stats(stats_parts,
                           FileSystems.join(output_dir, FN.SERVING_TABLE_RAW_COUNTERS_FILE))


# --------------------------------------------------------------------------- stats


def _count_back(output_dir: str, name: str) -> int:
    """Lines of a JSONL shard or records of a TFRecord shard, read back from disk."""
    path = FileSystems.join(output_dir, name)
    if name.endswith(FN.TFRECORD_SUFFIX):
        return sum(1 for _ in tfrecord_io.read_gzip_tfrecords(path))
    with FileSystems.open(path, compression_type="uncompressed") as f:
        return sum(1 for line in f.read().split(b"\n") if line.strip())


def _table_rows_written(table_stats: Dict, visibility: str, side: str, k: int) -> Optional[int]:
    try:
        return int(table_stats["tables"][visibility][side]["per_snapshot"][k]["rows_written"])
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def summarise(counters: Dict[str, int], file_counts: Dict[str, int],
              read_back: Dict[str, int], inputs: Inputs) -> Dict:
    """Structured stats and reconciliation checks from the flat counters."""
    c = counters.get
    check = Checks()
    raw = nb.file_counts(counters, (REC, SRC), check, by_reason=False)

    table = {}
    for side in SIDES:
        read = c(f"table/rows_read/{side}", 0)
        expected = _table_rows_written(inputs.table_stats, inputs.visibility, side,
                                       inputs.snapshot)
        table[side] = {"rows_read": read, "table_stats_rows_written": expected}
        if expected is not None:
            check(f"{side} rows read = the table's rows_written ({inputs.visibility}, snapshot "
                  f"{inputs.snapshot})", read, expected)

    jsonl = {n: v for n, v in sorted(file_counts.items()) if n.endswith(FN.JSONL_SUFFIX)}
    records = {n: v for n, v in sorted(file_counts.items()) if n.endswith(FN.TFRECORD_SUFFIX)}
    files = {n: {"written": v, "read_back": read_back.get(n, 0)}
             for n, v in sorted(file_counts.items())}
    for name, info in files.items():
        check(f"{name}: written = read back", info["written"], info["read_back"])
    users = {"in_table": c("users/in_table", 0), "with_slots": c("users/with_slots", 0),
             "without_slots": c("users/without_slots", 0),
             "assembled": c("users/assembled", 0),
             "written_jsonl": sum(jsonl.values()), "written_tfrecord": sum(records.values())}
    check("users in table = with_slots + without_slots", users["in_table"],
          users["with_slots"] + users["without_slots"])
    check("users in table = assembled", users["in_table"], users["assembled"])
    check("users in table = JSON lines written", users["in_table"], users["written_jsonl"])
    check("users in table = TFRecord records written", users["in_table"],
          users["written_tfrecord"])

    slots, payload = common.slot_and_payload_counts(counters, check)
    slots["beyond_k_left_out_of_json"] = c("slots/beyond_k", 0)
    payload["at_or_after_as_of"] = c("payload/at_or_after_as_of", 0)
    check("payload events at or after as_of = 0", payload["at_or_after_as_of"], 0)
    return {"files": files, "users": users, "slots": slots, "payload": payload, "table": table,
            "raw": raw, "users_with_events": c("users/with_events", 0), "checks": list(check),
            "reconciled": check.reconciled, "counters": counters}


def finalize(output_dir: str, inputs: Inputs, args: argparse.Namespace,
             elapsed_s: float) -> Dict:
    """Writes the stats and the info file; returns the stats.

    Raises:
        ReconciliationError: If a count check fails (after the stats are written).
    """
    counters = read_json(FileSystems.join(output_dir, FN.SERVING_TABLE_RAW_COUNTERS_FILE))
    file_counts = read_json(FileSystems.join(output_dir, FN.SERVING_TABLE_FILE_COUNTS_FILE))
    as_of = read_json(FileSystems.join(output_dir, FN.SERVING_TABLE_AS_OF_FILE))
    read_back = {name: _count_back(output_dir, name) for name in file_counts}
    stats = summarise(counters, file_counts, read_back, inputs)
    stats.update(elapsed_s=round(elapsed_s, 2), input_dir=args.input_dir,
                 neighbours_dir=args.neighbours_dir, visibility=inputs.visibility,
                 snapshot=inputs.snapshot, snapshot_ts=inputs.snapshot_ts,
                 as_of_ms=as_of["as_of_ms"], jsr_tf_version=jsr_tf.__version__)
    shape = inputs.preprocess_config.data_shape()
    k, lf, lq = shape.neighbour_slots, shape.nbr_feed_items, shape.nbr_search_sessions
    wn, kn = shape.nbr_query_words, shape.nbr_session_clicks
    slots = shape.slot_shapes()
    info = {
        "input_dir": args.input_dir,
        "neighbours_dir": args.neighbours_dir,
        "table": {"visibility": inputs.visibility, "snapshot": inputs.snapshot,
                  "snapshot_ts": inputs.snapshot_ts,
                  "snapshot_time": snapshot_time_string(inputs.snapshot_ts),
                  "snapshots": inputs.snapshots,
                  "config": inputs.neighbour_config.to_dict(),
                  "mode": inputs.neighbour_config.mode},
        "preprocess": inputs.preprocess_config.to_dict(),
        "as_of_ms": as_of["as_of_ms"],
        "as_of_time": snapshot_time_string(as_of["as_of_ms"]),
        "as_of_source": as_of["source"],
        "newest_event_ts": as_of["newest_event_ts"],
        "payload_visibility": inputs.visibility,
        "caps": {"max_neighbours": k, "feed_items": lf, "search_sessions": lq,
                 "query_words": wn, "session_clicks": kn},
        "row_layout": {**{name: [k, *slots[name]] for name in F.NEIGHBOUR_INPUTS},
                       F.NBR_USERS: ["num_slots"], F.NBR_LAST_TS: ["num_slots"]},
        "signatures": ["feed_nbr", "search_nbr"],
        "num_shards": args.num_shards,
        "files": {name: {"rows": n, "sha256": tfrecord_io.sha256_of(
            FileSystems.join(output_dir, name))} for name, n in sorted(file_counts.items())},
        "counts": {"users": stats["users"], "slots": stats["slots"],
                   "payload": stats["payload"]},
        "jsr_tf_version": jsr_tf.__version__,
    }
    write_json(stats, FileSystems.join(output_dir, FN.SERVING_TABLE_STATS_FILE))
    write_json(info, FileSystems.join(output_dir, FN.SERVING_TABLE_INFO_FILE))
    FileSystems.delete([FileSystems.join(output_dir, name)
                        for name in (FN.SERVING_TABLE_RAW_COUNTERS_FILE,
                                     FN.SERVING_TABLE_FILE_COUNTS_FILE,
                                     FN.SERVING_TABLE_AS_OF_FILE)])
    raise_unless_reconciled(stats, "Serving table counts")
    return stats


def format_table(stats: Dict) -> str:
    """A plain-text summary."""
    u = stats["users"]
    lines = ["", f"table {stats['visibility']}, snapshot {stats['snapshot']} "
                 f"({snapshot_time_string(stats['snapshot_ts'])}), payloads before "
                 f"{stats['as_of_ms']} ({snapshot_time_string(stats['as_of_ms'])})",
             f"users: {u['in_table']:,} in the table, {u['with_slots']:,} with slots, "
             f"{u['written_jsonl']:,} written",
             common.slot_line(stats), reconcile_line(stats)]
    return "\n".join(lines)


# --------------------------------------------------------------------------- entry points


def run(argv: Optional[Sequence[str]] = None, save_main_session: bool = False) -> Dict:
    """Parses arguments, checks the inputs, builds the serving rows (the Beam pipeline), then
    writes the info file and the stats and returns the stats.

    Args:
        argv: Command-line arguments (pipeline options included).
        save_main_session: Passed to ``SetupOptions``.

    Returns:
        The stats dict (also written to ``serving_table_stats.json``).

    Raises:
        InputError: A missing or mismatched input, or no snapshot at or before ``--as_of_ms``
            (see ``check_inputs``).
        ReconciliationError: Users, slots or payload events in and out differ.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input_dir", required=True,
                        help="Directory with the KuaiSAR CSVs the table was built from.")
    parser.add_argument("--neighbours_dir", required=True, help="A jsr-neighbours output.")
    parser.add_argument("--output_dir", required=True, help="Where to write the serving table.")
    parser.add_argument("--visibility", default=VIS_ALL, choices=VISIBILITIES,
                        help="Which table (and payload events) to use; default all.")
    parser.add_argument("--as_of_ms", type=bounded_int("as_of_ms", 0, "non-negative unix ms"),
                        default=None,
                        help="Payload cut (unix ms, events strictly before it) and list "
                             "(last snapshot at or before it). Default: newest event + 1 ms, "
                             "newest snapshot.")
    parser.add_argument("--preprocess_config", default=None,
                        help="Optional: check that the table was built with this preprocess "
                             "config (timeline fields).")
    parser.add_argument("--num_shards", type=bounded_int("num_shards", 1, "a positive integer"),
                        default=1,
                        help="Output shards (users by user_id %% num_shards).")
    args, beam_args = parser.parse_known_args(argv)

    options = pipeline_options(beam_args, save_main_session)
    launch.check_runner(options, {"input_dir": args.input_dir,
                                  "neighbours_dir": args.neighbours_dir,
                                  "output_dir": args.output_dir})

    start = time.time()
    inputs = check_inputs(args.input_dir, args.neighbours_dir, args.output_dir, args.visibility,
                          args.as_of_ms, args.preprocess_config)
    logging.info("serving_table: %s + %s -> %s, %s table, snapshot %d (%s), as_of %s",
                 args.input_dir, args.neighbours_dir, args.output_dir, inputs.visibility,
                 inputs.snapshot, snapshot_time_string(inputs.snapshot_ts),
                 args.as_of_ms if args.as_of_ms is not None else "newest event + 1 ms")

    def produce(staging: str) -> Dict:
        return launch.run_job(
            options, lambda pipeline: build_pipeline(pipeline, inputs, staging, args.as_of_ms,
                                                     args.num_shards),
            lambda: finalize(staging, inputs, args, time.time() - start))

    stats = outputs.run_staged(args.output_dir, "jsr-neighbour-serving-table", produce,
                               LEGACY_OUTPUTS)
    logging.info("serving_table: done in %.1f s", stats["elapsed_s"])
    return stats


def main(argv: Optional[Sequence[str]] = None) -> None:
    """``jsr-neighbour-serving-table`` entry point: runs and prints the summary table."""
    console_main(run, format_table, argv)


if __name__ == "__main__":
    main()
