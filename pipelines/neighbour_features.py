"""``jsr-neighbour-features``: examples + neighbour table → examples carrying neighbour payloads.

Attaches the neighbour payload of ``spec/similar_users.md`` §2 ("Two clocks") and §4 to a copy of
a preprocessed data dir, with the leakage rules of §3::

    jsr-neighbour-features --input_dir raw/ --examples_dir data/ --neighbours_dir nb/ \\
        --output_dir data_nbr/ [--payload_lag_ms 0]
    python -m jsr_tf.pipelines.neighbour_features ... --runner=DataflowRunner \\
        --setup_file ./setup.py

Without ``--runner`` the in-memory ``FnApiRunner`` is used (as in ``pipelines/preprocess.py``).

**Inputs.** ``--input_dir``: the KuaiSAR CSVs the examples were made from, read with the importer
of ``pipelines/preprocess.py`` (same up-front checks) and the examples' own
``<examples_dir>/preprocess_config.json``, so every user's timeline, targets and held-out events
are the examples'. ``--examples_dir``: a ``jsr-preprocess`` output (the six
``<split>-<task>-*.tfrecord.gz`` sets, ``manifest.json``, ``vocab/`` …). ``--neighbours_dir``: a
``jsr-neighbours`` output (``neighbours-*.jsonl``, ``neighbour_stats.json`` with the snapshots,
``neighbour_config.json``). Checked up front (``InputError``, exit code 2 from the CLI): the inputs
exist, the table was built with the examples' preprocess config (every field that decides
timelines, targets and splits: ``TIMELINE_FIELDS``) and has the ``train`` and ``test``
visibilities, and the output dir is not an input dir.

**Steps** (``jsr_tf/neighbours/payload.py`` holds the per-element logic):

1. Read every example file (one worker per file, records keep their index) → the serialized
   example keyed by ``(file, index)``, and ``(user, (key, split, target_ts))``.
2. Join by user with the user's table rows (``train`` and ``test`` visibilities): visibility =
   ``train`` for train/valid examples, ``test`` for test examples; list snapshot
   ``k = snapshot_index(target_ts)`` (−1: no neighbours); slots = the feed-side neighbours then
   the search-side ones, best first. Emits one *request* per slot keyed by the neighbour id
   (fan-out K per example) and the example's slot count.
3. ``CoGroupByKey`` the requests with the neighbour's timeline (``BuildTimelines``) and cut each
   payload by bisection: events visible to the request's visibility with
   ``ts < target_ts − payload_lag_ms``; the last ``Lf`` feed positives and ``Lq`` sessions.
4. Join the payloads back to their example by ``(file, index)``, add the ``nbr_*`` fields (every
   other field unchanged) and write each file under its input name, records in input order
   (deterministic GZIP TFRecords, ``pipelines/tfrecord_io.py``).

**Passes** (``--examples_per_pass N``, ``pipelines/payload_passes.py``): on the in-memory runners
(default ``N`` = 100,000) the timelines are built once, then steps 1–4 run as one pipeline per
``N`` examples (only the table rows of their users and the timelines of the neighbours they
need enter the joins), each writing part files that a last pipeline concatenates in order, so
peak memory grows with ``N``, not with the number of examples. Any other runner: one pass
(``N = 0``). The files are byte-identical for every ``N``.

**Outputs** under ``--output_dir``: the six example sets (same file names and row counts),
copies of ``vocab/``, ``schema.json``, ``stats.json`` and ``preprocess_config.json``;
``manifest.json`` (the input's, with each file's row count and fresh SHA-256, plus a
``"neighbours"`` section: inputs, ``payload_lag_ms``, caps, the neighbour config and counts); and
``neighbour_feature_stats.json``: examples read / written per file and per split and task,
examples with and without a list and with and without slots, slots per side, slots with an
empty payload, payload events, and reconciliation checks. A failed check raises
``ReconciliationError`` after the file is written.
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import StandardOptions

import jsr_tf
from jsr_tf import features as F
from jsr_tf import filenames as FN
from jsr_tf.data import kuaisar
from jsr_tf.data.config import PreprocessConfig
from jsr_tf.data.timeline import UserTimeline
from jsr_tf.neighbours import (VIS_TEST, VIS_TRAIN, NeighbourConfig, NeighbourRow,
                               is_in_memory_runner)
from jsr_tf.neighbours import payload as pl
from jsr_tf.pipelines import neighbour_common as common
from jsr_tf.pipelines import neighbours as nb
from jsr_tf.pipelines import tfrecord_io
from jsr_tf.pipelines.cli import bounded_int, console_main, pipeline_options
from jsr_tf.pipelines.neighbour_common import TIMELINE_FIELDS, require
from jsr_tf.pipelines import beam_patches, launch, outputs
from jsr_tf.pipelines import payload_passes as passes
from jsr_tf.pipelines.preprocess import LEGACY_OUTPUTS as PREPROCESS_LEGACY_OUTPUTS
from jsr_tf.pipelines.preprocess import resolve_inputs
from jsr_tf.pipelines.stats import (Checks, raise_unless_reconciled, read_json, reconcile_line,
                                    write_json)
from jsr_tf.pipelines.transforms import (REC, SRC, STATS, Counters, Progress, bump, merge_counters,
                                         parse_timelines)

COPIED_FILES = (FN.SCHEMA_FILE, FN.STATS_FILE, FN.PREPROCESS_CONFIG_FILE)
_PROGRESS = 20_000
TABLE_VISIBILITIES = (VIS_TRAIN, VIS_TEST)

ExampleKey = Tuple[str, int]  # (file name, record index)


class ExampleMeta(NamedTuple):
    """What step 2 needs of an example."""

    key: ExampleKey
    split: str
    target_ts: int


class Request(NamedTuple):
    """One slot of one example, sent to the slot's neighbour (step 2 → 3)."""

    key: ExampleKey
    slot: int
    side: int
    sim: float
    visibility: str
    before_ts: int


class ExampleFile(NamedTuple):
    """One input example file."""

    name: str
    split: str
    task: int
    path: str


def _split_task(split: str, task: int) -> str:
    return f"{split}/{F.task_name(task)}"


# --------------------------------------------------------------------------- input checks


def list_example_files(examples_dir: str, manifest: Dict) -> List[ExampleFile]:
    """The example files of ``examples_dir``, checked against its manifest.

    Raises:
        InputError: No example file, or the files on disk differ from the manifest's.
    """
    files = []
    for split in F.Split:
        for task in F.Task:
            pattern = FileSystems.join(examples_dir, F.file_pattern(split.value, task))
            for m in FileSystems.match([pattern])[0].metadata_list:
                name = m.path.rstrip("/").split("/")[-1]
                files.append(ExampleFile(name, split.value, int(task), m.path))
    files.sort()
    if not files:
        raise kuaisar.InputError(f"No example files ({F.file_pattern('train', 0)} …) in "
                                 f"{examples_dir!r}: is it a jsr-preprocess output?")
    listed = set(manifest.get("files", {}))
    found = {f.name for f in files}
    if listed != found:
        raise kuaisar.InputError(
            f"The example files in {examples_dir!r} should be those of its manifest.json. "
            f"Missing: {sorted(listed - found)}; not in the manifest: {sorted(found - listed)}")
    return files


def check_configs(examples_config: Dict, table_config: Dict) -> NeighbourConfig:
    """Checks that the table fits the examples; returns its ``NeighbourConfig``.

    Args:
        examples_config: ``<examples_dir>/preprocess_config.json``.
        table_config: ``<neighbours_dir>/neighbour_config.json``.

    Raises:
        InputError: Different timeline fields, or a missing visibility.
    """
    table_pre = table_config.get("preprocess", {})
    diff = common.timeline_field_diff(examples_config, table_pre)
    if diff:
        raise kuaisar.InputError(
            "The neighbour table should be built with the examples' preprocess config (pass "
            "--preprocess_config <examples_dir>/preprocess_config.json to jsr-neighbours). "
            "Received (examples, table): " + diff)
    others = sorted(k for k in set(examples_config) | set(table_pre)
                    if k not in TIMELINE_FIELDS and examples_config.get(k) != table_pre.get(k))
    if others:
        logging.info("neighbour_features: preprocess fields that differ but do not affect "
                     "timelines: %s", others)
    config = NeighbourConfig.from_dict(table_config.get("neighbours", {}))
    missing = [v for v in TABLE_VISIBILITIES if v not in config.visibilities]
    if missing:
        raise kuaisar.InputError(
            f"The neighbour table should have the visibilities {list(TABLE_VISIBILITIES)}. "
            f"Received: `visibilities={list(config.visibilities)}`")
    common.check_slot_count(config, F.DataShape.from_preprocess(examples_config))
    return config


class Inputs(NamedTuple):
    """Everything checked up front."""

    raw_paths: Dict[str, str]
    files: List[ExampleFile]
    manifest: Dict
    preprocess_config: PreprocessConfig
    neighbour_config: NeighbourConfig
    table_pattern: str
    snapshots: List[int]
    source_rows: Dict[str, Dict[str, Dict]]  # "examples" / "neighbour table" -> stats "files"


def check_inputs(input_dir: str, examples_dir: str, neighbours_dir: str,
                 output_dir: str) -> Inputs:
    """All up-front checks (see the module docstring).

    Raises:
        InputError: With the file or field named.
    """
    common.check_output_dir(output_dir, (("examples_dir", examples_dir),
                                         ("neighbours_dir", neighbours_dir),
                                         ("input_dir", input_dir)))
    require(neighbours_dir, "Neighbours dir")
    require(examples_dir, "Examples dir")
    raw_paths = resolve_inputs(input_dir)
    examples_config = read_json(require(
        FileSystems.join(examples_dir, FN.PREPROCESS_CONFIG_FILE), "Examples' preprocess config"))
    manifest = read_json(require(FileSystems.join(examples_dir, FN.MANIFEST_FILE),
                                 "Examples' manifest"))
    for name in COPIED_FILES:
        require(FileSystems.join(examples_dir, name), f"Examples' {name}")
    files = list_example_files(examples_dir, manifest)
    table_config = read_json(require(FileSystems.join(neighbours_dir, FN.NEIGHBOUR_CONFIG_FILE),
                                     "Neighbour table config"))
    neighbour_config = check_configs(examples_config, table_config)
    table_stats, snapshots = common.read_table_stats(neighbours_dir)
    table_pattern = common.table_pattern(neighbours_dir)
    examples_stats = read_json(FileSystems.join(examples_dir, FN.STATS_FILE))
    source_rows = {"examples": examples_stats.get("files", {}),
                   "neighbour table": table_stats.get("files", {})}
    return Inputs(raw_paths, files, manifest, PreprocessConfig.from_dict(examples_config),
                  neighbour_config, table_pattern, snapshots, source_rows)


# Files of a run from before ``FN.OWNED_FILE`` existed, which a rerun may delete.
LEGACY_OUTPUTS = PREPROCESS_LEGACY_OUTPUTS[:1]  # the example shards


# --------------------------------------------------------------------------- steps


class ReadExamples(beam.DoFn):
    """``Segment`` (records ``[start, stop)`` of an example file) → ``((file, index), bytes)``;
    tagged ``meta``: ``(user, ExampleMeta)``."""

    META = "meta"

    def setup(self):
        from tensorflow.core.example import example_pb2  # pylint: disable=g-import-not-at-top
        self._example_pb2 = example_pb2

    def process(self, file: passes.Segment):
        count = 0
        for index, data in enumerate(tfrecord_io.read_gzip_tfrecords(file.path)):
            if index < file.start:
                continue
            if file.stop is not None and index >= file.stop:
                break
            feature = self._example_pb2.Example.FromString(data).features.feature
            user = feature[F.USER_ID].int64_list.value[0]
            target_ts = feature[F.TARGET_TS].int64_list.value[0]
            key = (file.name, index)
            yield key, data
            yield beam.pvalue.TaggedOutput(self.META, (user, ExampleMeta(key, file.split,
                                                                         target_ts)))
            count += 1
            if count % _PROGRESS == 0:
                logging.info("neighbour_features/read %s: %d examples", file.name, count)
        logging.info("neighbour_features/read %s: %d examples", file.name, count)
        yield beam.pvalue.TaggedOutput(STATS, {
            f"examples_read/file/{file.name}": count,
            f"examples_read/{_split_task(file.split, file.task)}": count})


def parse_table_row(line: str) -> Iterable[Tuple[int, NeighbourRow]]:
    """A table line → ``(user, row)`` for the ``train`` and ``test`` visibilities."""
    row = NeighbourRow.from_json(line)
    if row.visibility in TABLE_VISIBILITIES:
        yield row.user, row


class PlanSlots(beam.DoFn):
    """``(user, {"examples": [ExampleMeta], "rows": [NeighbourRow]})`` → requests (step 2).

    Main output: ``(neighbour, Request)`` per slot. Tagged: ``plan`` ``((file, index), slots)``
    per example, and ``stats``.
    """

    PLAN = "plan"

    def __init__(self, snapshots: Sequence[int], payload_lag_ms: int) -> None:
        self._snapshots = list(snapshots)
        self._lag = payload_lag_ms
        self._progress = Progress("neighbour_features", "plan")

    def process(self, element):
        user, grouped = element
        rows = pl.index_rows(grouped["rows"])
        counts: Counters = {}
        for meta in grouped["examples"]:
            visibility, snapshot, slots, found = pl.example_slots(
                user, rows, meta.split, meta.target_ts, self._snapshots)
            bump(counts, "examples/before_first_snapshot" if snapshot < 0
                  else "examples/with_list" if found else "examples/without_row")
            bump(counts, "examples/with_slots" if slots else "examples/without_slots")
            before_ts = pl.cut_time(meta.target_ts, self._lag)
            for i, slot in enumerate(slots):
                bump(counts, f"slots/planned/{F.NeighbourSide(slot.side).name.lower()}")
                yield slot.user, Request(meta.key, i, slot.side, slot.sim, visibility, before_ts)
            yield beam.pvalue.TaggedOutput(self.PLAN, (meta.key, len(slots)))
            self._progress.tick()
        yield beam.pvalue.TaggedOutput(STATS, counts)


class CutPayloads(beam.DoFn):
    """``(neighbour, {"requests": [Request], "timeline": [UserTimeline]})`` → payloads (step 3).

    Main output: ``((file, index), (slot, Slot, Payload))`` per request (+ ``stats``). A
    neighbour without a timeline (not in the raw data) gets empty payloads, counted.
    """

    def __init__(self, shape: F.DataShape) -> None:
        self._shape = shape
        self._progress = Progress("neighbour_features", "cut")

    def process(self, element):
        neighbour, grouped = element
        timelines: List[UserTimeline] = list(grouped["timeline"])
        cutters: Dict[str, pl.PayloadCutter] = {}
        counts: Counters = {}
        for request in grouped["requests"]:
            if timelines:
                if request.visibility not in cutters:
                    cutters[request.visibility] = pl.PayloadCutter.from_timeline(
                        timelines[0], request.visibility, self._shape)
                payload = cutters[request.visibility].cut(request.before_ts)
            else:
                bump(counts, "slots/neighbour_without_timeline")
                payload = pl.empty_payload(self._shape)
            common.count_cut(counts, payload)
            slot = pl.Slot(request.side, request.sim, neighbour)
            yield request.key, (request.slot, slot, payload)
            self._progress.tick()
        if counts:
            yield beam.pvalue.TaggedOutput(STATS, counts)


class AddNeighbours(beam.DoFn):
    """``((file, index), {"example", "plan", "slots"})`` → ``(file, (index, bytes))`` (step 4)."""

    def __init__(self) -> None:
        self._progress = Progress("neighbour_features", "assemble")

    def process(self, element):
        key, grouped = element
        examples = list(grouped["example"])
        plans = list(grouped["plan"])
        indices, slots, payloads = common.order_parts(grouped["slots"])
        if len(examples) != 1 or len(plans) != 1 or indices != list(range(plans[0])):
            raise RuntimeError(f"Example {key}: expected one example, one plan and its slots. "
                               f"Received: {len(examples)} examples, plans {plans}, slots "
                               f"{indices}")
        values = pl.neighbour_values(slots, payloads) if slots else None
        data = pl.add_neighbour_features(examples[0], values)
        counts: Counters = {"slots/written": len(slots)}
        for slot, payload in zip(slots, payloads):
            common.count_written(counts, F.NeighbourSide(slot.side).name.lower(), payload)
        self._progress.tick()
        yield key[0], (key[1], data)
        yield beam.pvalue.TaggedOutput(STATS, counts)


class WriteExampleFile(beam.DoFn):
    """``(file, [(index, bytes), ...])`` → the file under ``output_dir``, records in input order
    (with ``part``: the pass's part file of it, ``payload_passes.part_path``)."""

    def __init__(self, output_dir: str, part: Optional[int] = None) -> None:
        self._output_dir = output_dir
        self._part = part

    def process(self, element):
        name, values = element
        records = sorted(v for v in values if v is not None)
        data = (data for _, data in records)
        if self._part is None:
            count = tfrecord_io.write_gzip_tfrecords(FileSystems.join(self._output_dir, name),
                                                     data)
            logging.info("neighbour_features: wrote %s (%d examples)", name, count)
        else:
            count = passes.write_part(passes.part_path(self._output_dir, name, self._part), data)
        yield name, count


def _keyed_set(pcoll, label: str):
    """A side input ``{value: None}`` of the distinct values of ``pcoll``."""
    return beam.pvalue.AsDict(pcoll
                              | f"Distinct{label}" >> beam.Distinct()
                              | f"Key{label}" >> beam.Map(lambda v: (v, None)))


def add_payloads(pipeline: beam.Pipeline, inputs: Inputs, timelines, segments: Sequence,
                 payload_lag_ms: int, only_needed: bool) -> Tuple:
    """Steps 1–4 up to the assembled records, for the examples of ``segments``.

    Args:
        pipeline: The pipeline.
        inputs: The checked inputs.
        timelines: ``UserTimeline`` PCollection (the neighbours' events).
        segments: ``payload_passes.Segment`` list: the examples to read.
        payload_lag_ms: As given to ``run``.
        only_needed: Keep only the table rows of these examples' users and the timelines of
            the neighbours their slots need, before the joins (a pass of several).

    Returns:
        ``(records, stats)``: ``(file, (index, bytes))`` and the list of stats PCollections.
    """
    examples = (pipeline
                | "ExampleFiles" >> beam.Create(list(segments))
                | "ReadExamples" >> beam.ParDo(ReadExamples()).with_outputs(
                    ReadExamples.META, STATS, main="examples"))
    rows = (pipeline
            | "ReadTable" >> beam.io.ReadFromText(inputs.table_pattern)
            | "ParseTable" >> beam.FlatMap(parse_table_row))
    if only_needed:
        users = _keyed_set(examples[ReadExamples.META] | "ExampleUsers" >> beam.Keys(), "Users")
        rows = rows | "RowsOfPass" >> beam.Filter(lambda kv, keep: kv[0] in keep, users)
    planned = ({"examples": examples[ReadExamples.META], "rows": rows}
               | "JoinLists" >> beam.CoGroupByKey()
               | "PlanSlots" >> beam.ParDo(PlanSlots(inputs.snapshots, payload_lag_ms))
               .with_outputs(PlanSlots.PLAN, STATS, main="requests"))
    if only_needed:
        needed = _keyed_set(planned.requests | "Neighbours" >> beam.Keys(), "Neighbours")
        timelines = timelines | "NeededTimelines" >> beam.Filter(
            lambda t, keep: t.user_id in keep, needed)
    keyed_timelines = timelines | "KeyTimelines" >> beam.Map(lambda t: (t.user_id, t))
    payloads = ({"requests": planned.requests, "timeline": keyed_timelines}
                | "JoinNeighbours" >> beam.CoGroupByKey()
                | "CutPayloads" >> beam.ParDo(CutPayloads(inputs.preprocess_config.data_shape()))
                .with_outputs(STATS, main="slots"))
    assembled = ({"example": examples.examples, "plan": planned[PlanSlots.PLAN],
                  "slots": payloads.slots}
                 | "JoinPayloads" >> beam.CoGroupByKey()
                 | "AddNeighbours" >> beam.ParDo(AddNeighbours()).with_outputs(
                     STATS, main="records"))
    return assembled.records, [examples.stats, planned.stats, payloads.stats, assembled.stats]


def build_pipeline(pipeline: beam.Pipeline, inputs: Inputs, output_dir: str,
                   payload_lag_ms: int) -> None:
    """Adds the whole graph to ``pipeline`` (one pass over every example)."""
    parsed, timelines = parse_timelines(pipeline, inputs.raw_paths,
                                               inputs.preprocess_config)
    records, stats = add_payloads(pipeline, inputs, timelines.tl,
                                  passes.plan_passes(inputs.files, {}, 0)[0], payload_lag_ms,
                                  only_needed=False)
    skeleton = pipeline | "FileSkeleton" >> beam.Create([(f.name, None) for f in inputs.files])
    written = ((records, skeleton)
               | "WithEmptyFiles" >> beam.Flatten()
               | "GroupFiles" >> beam.GroupByKey()
               | "WriteFiles" >> beam.ParDo(WriteExampleFile(output_dir)))
    common.write_file_counts(written, FileSystems.join(output_dir, FN.FILE_COUNTS_FILE))

    stats_parts = [p.stats for p in parsed.values()] + [timelines.stats] + stats
    common.write_raw_stats(stats_parts,
                           FileSystems.join(output_dir, FN.NEIGHBOUR_FEATURE_RAW_COUNTERS_FILE))


def build_timelines_pipeline(pipeline: beam.Pipeline, inputs: Inputs, staging: str) -> None:
    """Stage 1 of a run in passes: the timelines, pickled into the staging dir (+ counters)."""
    parsed, timelines = parse_timelines(pipeline, inputs.raw_paths, inputs.preprocess_config)
    passes.write_timelines(timelines.tl, staging)
    common.write_raw_stats([p.stats for p in parsed.values()] + [timelines.stats],
                           FileSystems.join(staging, _raw_name("timelines")))


def build_pass_pipeline(pipeline: beam.Pipeline, inputs: Inputs, staging: str,
                        payload_lag_ms: int, segments: Sequence, index: int) -> None:
    """Stage 2, pass ``index``: the payloads of ``segments``' examples → part files."""
    timelines = passes.read_timelines(pipeline, staging)
    records, stats = add_payloads(pipeline, inputs, timelines, segments, payload_lag_ms,
                                  only_needed=True)
    (records
     | "GroupFiles" >> beam.GroupByKey()
     | "WriteParts" >> beam.ParDo(WriteExampleFile(staging, part=index)))
    common.write_raw_stats(stats, FileSystems.join(staging, _raw_name(f"pass-{index:05d}")))


def build_concat_pipeline(pipeline: beam.Pipeline, inputs: Inputs, staging: str,
                          plan: Sequence[Sequence]) -> None:
    """Stage 3: every output file from its parts, in pass order (empty files included)."""
    parts = {f.name: [] for f in inputs.files}
    for index, segments in enumerate(plan):
        for segment in segments:
            parts[segment.name].append(passes.part_path(staging, segment.name, index))
    written = (pipeline
               | "FileParts" >> beam.Create(sorted(parts.items()))
               | "ConcatParts" >> beam.ParDo(passes.ConcatParts(staging)))
    common.write_file_counts(written, FileSystems.join(staging, FN.FILE_COUNTS_FILE))


def _raw_name(stage: str) -> str:
    return FN.NEIGHBOUR_FEATURE_RAW_COUNTERS_FILE.replace(".json", f"-{stage}.json")


# --------------------------------------------------------------------------- stats


def summarise(counters: Dict[str, int], file_counts: Dict[str, int],
              inputs: Inputs) -> Dict:
    """Structured stats and reconciliation checks from the flat counters."""
    c = counters.get
    check = Checks()
    raw = nb.file_counts(counters, (REC, SRC), check, conflicting_id=False, by_reason=False)
    # The held-out targets this run rebuilds from --input_dir must be the examples' and the
    # table's: the same raw files, row for row (a later dump would move splits and could let a
    # valid or test target into a train payload).
    for name in (REC, SRC):
        for source, source_files in inputs.source_rows.items():
            for field in ("rows_read", "canonical"):
                if field in source_files.get(name, {}):
                    check(f"{name}: {field} = {field} of the {source} (the same raw data)",
                          raw[name][field], source_files[name][field])

    files = {}
    for f in inputs.files:
        files[f.name] = {"read": c(f"examples_read/file/{f.name}", 0),
                         "written": file_counts.get(f.name, 0),
                         "input_manifest_rows": inputs.manifest["files"][f.name]["rows"]}
        check(f"{f.name}: examples read = written", files[f.name]["read"],
              files[f.name]["written"])
        check(f"{f.name}: examples read = input manifest rows", files[f.name]["read"],
              files[f.name]["input_manifest_rows"])
    per_split = {s.value: {F.task_name(t): c(f"examples_read/{_split_task(s.value, t)}", 0)
                           for t in F.Task} for s in F.Split}
    read = sum(v["read"] for v in files.values())
    examples = {"read": read, "written": sum(v["written"] for v in files.values()),
                "per_split": per_split,
                "with_list": c("examples/with_list", 0),
                "without_row": c("examples/without_row", 0),
                "before_first_snapshot": c("examples/before_first_snapshot", 0),
                "with_slots": c("examples/with_slots", 0),
                "without_slots": c("examples/without_slots", 0)}
    check("examples read = with_list + without_row + before_first_snapshot", read,
          examples["with_list"] + examples["without_row"] + examples["before_first_snapshot"])
    check("examples read = with_slots + without_slots", read,
          examples["with_slots"] + examples["without_slots"])
    slots, payload = common.slot_and_payload_counts(counters, check)
    return {"files": files, "examples": examples, "slots": slots, "payload": payload,
            "raw": raw, "users_with_events": c("users/with_events", 0), "checks": list(check),
            "reconciled": check.reconciled, "counters": counters}


def _copy(source: str, destination: str) -> None:
    with FileSystems.open(source, compression_type="uncompressed") as src:
        data = src.read()
    with FileSystems.create(destination, compression_type="uncompressed") as out:
        out.write(data)


def copy_metadata(examples_dir: str, output_dir: str, shape: F.DataShape) -> None:
    """Copies ``vocab/`` and the metadata files of the examples dir (``schema.json`` with the
    neighbour fields of ``shape`` added)."""
    for name in COPIED_FILES:
        _copy(FileSystems.join(examples_dir, name), FileSystems.join(output_dir, name))
    # schema.json also describes the added fields.
    schema = read_json(FileSystems.join(examples_dir, FN.SCHEMA_FILE))
    schema["neighbour_features"] = F.neighbour_feature_description(shape)
    schema["neighbour_caps"] = {"slots": shape.neighbour_slots,
                                "feed_items": shape.nbr_feed_items,
                                "search_sessions": shape.nbr_search_sessions,
                                "query_words": shape.nbr_query_words,
                                "session_clicks": shape.nbr_session_clicks}
    write_json(schema, FileSystems.join(output_dir, FN.SCHEMA_FILE))
    pattern = FileSystems.join(examples_dir, FN.VOCAB_DIR, "*")
    for m in FileSystems.match([pattern])[0].metadata_list:
        name = m.path.rstrip("/").split("/")[-1]
        _copy(m.path, FileSystems.join(output_dir, FN.VOCAB_DIR, name))


def finalize(output_dir: str, inputs: Inputs, args: argparse.Namespace,
             elapsed_s: float, num_passes: int = 1) -> Dict:
    """Writes the manifest, the stats and the copied metadata; returns the stats.

    Raises:
        ReconciliationError: If a count check fails (after the stats are written).
    """
    raw_pattern = FN.NEIGHBOUR_FEATURE_RAW_COUNTERS_FILE.replace(".json", "*.json")
    raw_files = [m.path for m in FileSystems.match(
        [FileSystems.join(output_dir, raw_pattern)])[0].metadata_list]
    counters = merge_counters(read_json(path) for path in sorted(raw_files))
    file_counts = read_json(FileSystems.join(output_dir, FN.FILE_COUNTS_FILE))
    stats = summarise(counters, file_counts, inputs)
    stats.update(elapsed_s=round(elapsed_s, 2), input_dir=args.input_dir, passes=num_passes,
                 examples_dir=args.examples_dir, neighbours_dir=args.neighbours_dir,
                 payload_lag_ms=args.payload_lag_ms, jsr_tf_version=jsr_tf.__version__)
    shape = inputs.preprocess_config.data_shape()
    copy_metadata(args.examples_dir, output_dir, shape)

    manifest = dict(inputs.manifest)
    files = {}
    for name, rows in sorted(file_counts.items()):
        path = FileSystems.join(output_dir, name)
        files[name] = {"rows": rows, "sha256": tfrecord_io.sha256_of(path),
                       "records_sha256": tfrecord_io.records_sha256(path)}
    manifest["files"] = files
    manifest["neighbours"] = {
        "examples_dir": args.examples_dir,
        "neighbours_dir": args.neighbours_dir,
        "payload_lag_ms": args.payload_lag_ms,
        "snapshots": inputs.snapshots,
        "caps": {"max_neighbours": shape.neighbour_slots, "feed_items": shape.nbr_feed_items,
                 "search_sessions": shape.nbr_search_sessions,
                 "query_words": shape.nbr_query_words,
                 "session_clicks": shape.nbr_session_clicks},
        "visibility": {"train": VIS_TRAIN, "valid": VIS_TRAIN, "test": VIS_TEST},
        "config": inputs.neighbour_config.to_dict(),
        "input_files": {name: {"sha256": info.get("sha256"),
                               "records_sha256": info.get("records_sha256")}
                        for name, info in sorted(inputs.manifest["files"].items())},
        "counts": {"examples": stats["examples"], "slots": stats["slots"],
                   "payload": stats["payload"]},
    }
    write_json(stats, FileSystems.join(output_dir, FN.NEIGHBOUR_FEATURE_STATS_FILE))
    write_json(manifest, FileSystems.join(output_dir, FN.MANIFEST_FILE))
    FileSystems.delete(raw_files + [FileSystems.join(output_dir, FN.FILE_COUNTS_FILE)])
    raise_unless_reconciled(stats, "Neighbour feature counts")
    return stats


def format_table(stats: Dict) -> str:
    """A plain-text summary."""
    e = stats["examples"]
    lines = ["", f"{'file':<42}{'read':>10}{'written':>10}"]
    for name, f in stats["files"].items():
        lines.append(f"{name:<42}{f['read']:>10,}{f['written']:>10,}")
    lines.append(f"examples: {e['read']:,} read, {e['with_slots']:,} with slots, "
                 f"{e['before_first_snapshot']:,} before the first snapshot, "
                 f"{e['without_row']:,} without a table row")
    lines.append(common.slot_line(stats))
    lines.append(reconcile_line(stats))
    return "\n".join(lines)


# --------------------------------------------------------------------------- entry points


def run(argv: Optional[Sequence[str]] = None, save_main_session: bool = False) -> Dict:
    """Parses arguments, checks the inputs, adds the payloads to a copy of the examples (the Beam
    pipeline), then writes the manifest and the stats and returns the stats.

    Args:
        argv: Command-line arguments (pipeline options included).
        save_main_session: Passed to ``SetupOptions``.

    Returns:
        The stats dict (also written to ``neighbour_feature_stats.json``).

    Raises:
        InputError: A missing or mismatched input (see ``check_inputs``).
        ReconciliationError: Examples, slots or payload events in and out differ.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input_dir", required=True,
                        help="Directory with the KuaiSAR CSVs the examples were made from.")
    parser.add_argument("--examples_dir", required=True, help="A jsr-preprocess output.")
    parser.add_argument("--neighbours_dir", required=True, help="A jsr-neighbours output.")
    parser.add_argument("--output_dir", required=True,
                        help="Where to write the examples with neighbour payloads.")
    parser.add_argument("--payload_lag_ms",
                        type=bounded_int("payload_lag_ms", 0, "a non-negative integer"), default=0,
                        help="Payload events must have ts < target_ts - payload_lag_ms.")
    parser.add_argument("--examples_per_pass",
                        type=bounded_int("examples_per_pass", 0, "a non-negative integer"),
                        default=None,
                        help="Run in passes of at most this many examples, so that peak memory "
                             "grows with a pass (pipelines/payload_passes.py); 0 = one pass. "
                             f"Default: {passes.DEFAULT_EXAMPLES_PER_PASS:,} on the in-memory "
                             "runners, 0 on any other runner (its shuffles spill to disk).")
    args, beam_args = parser.parse_known_args(argv)

    options = pipeline_options(beam_args, save_main_session)
    launch.check_runner(options, {"input_dir": args.input_dir, "examples_dir": args.examples_dir,
                                  "neighbours_dir": args.neighbours_dir,
                                  "output_dir": args.output_dir})
    per_pass = args.examples_per_pass
    if per_pass is None:
        in_memory = is_in_memory_runner(options.view_as(StandardOptions).runner)
        per_pass = passes.DEFAULT_EXAMPLES_PER_PASS if in_memory else 0

    start = time.time()
    inputs = check_inputs(args.input_dir, args.examples_dir, args.neighbours_dir,
                          args.output_dir)
    plan = passes.plan_passes(inputs.files, {name: info["rows"] for name, info in
                                             inputs.manifest["files"].items()}, per_pass)
    logging.info("neighbour_features: %s + %s -> %s, %d files, %d snapshots, lag %d ms, "
                 "%d pass(es)", args.examples_dir, args.neighbours_dir, args.output_dir,
                 len(inputs.files), len(inputs.snapshots), args.payload_lag_ms, len(plan))

    def produce(staging: str) -> Dict:
        if len(plan) == 1:  # one pipeline: any runner (a Dataflow dry run builds its graph)
            return launch.run_job(
                options, lambda pipeline: build_pipeline(pipeline, inputs, staging,
                                                         args.payload_lag_ms),
                lambda: finalize(staging, inputs, args, time.time() - start))
        beam_patches.install_for(options)  # the passes run outside launch.run_job
        with beam.Pipeline(options=options) as pipeline:
            build_timelines_pipeline(pipeline, inputs, staging)
        for index, segments in enumerate(plan):
            logging.info("neighbour_features: pass %d of %d (%d examples)", index + 1,
                         len(plan), sum(s.stop - s.start for s in segments))
            with beam.Pipeline(options=options) as pipeline:
                build_pass_pipeline(pipeline, inputs, staging, args.payload_lag_ms,
                                    segments, index)
        with beam.Pipeline(options=options) as pipeline:
            build_concat_pipeline(pipeline, inputs, staging, plan)
        passes.delete_timelines(staging)
        return finalize(staging, inputs, args, time.time() - start, len(plan))

    stats = outputs.run_staged(args.output_dir, "jsr-neighbour-features", produce,
                               LEGACY_OUTPUTS)
    logging.info("neighbour_features: done in %.1f s", stats["elapsed_s"])
    return stats


def main(argv: Optional[Sequence[str]] = None) -> None:
    """``jsr-neighbour-features`` entry point: runs and prints the summary table."""
    console_main(run, format_table, argv)


if __name__ == "__main__":
    main()
