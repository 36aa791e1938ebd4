"""``jsr-neighbour-features`` in passes: peak memory grows with a pass, not with the data set.

On the in-memory runner every grouping holds its whole input, so one pipeline over all examples
holds every example, every payload and every output record at once (3.5 GB at ``small``,
BENCHMARKS.md §8). With ``--examples_per_pass N`` the job runs as:

1. **timelines** (one pipeline): the raw CSVs → per-user timelines (the importer and
   ``BuildTimelines`` of ``jsr-preprocess``), written pickled under ``_timelines/`` in the
   staging dir, with the raw files' counters;
2. **pass p** (one pipeline each, ``plan_passes``): the examples of its segments (the next at most
   ``N`` records of the example files, in sorted file order), the table rows of their users,
   the timelines of the neighbours their slots need (filtered before the join), the payload join,
   and one uncompressed part file per (example file, pass) under ``_parts/``;
3. **concat** (one pipeline, ``ConcatParts``): each output file = its parts in pass order,
   streamed into the deterministic GZIP TFRecord, then the parts are deleted.

Peak memory = the timelines (every event once, as in ``jsr-preprocess``) + one pass's examples,
slots, payloads and records. A distributed runner spills its shuffles to disk, so there one pass
(``N = 0``) is the default. The output is byte-identical for every ``N``.
"""

from __future__ import annotations

import logging
import pickle
from typing import Iterable, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from jsr_tf import filenames as FN
from jsr_tf.pipelines import tfrecord_io

DEFAULT_EXAMPLES_PER_PASS = 100_000
"""Examples per pass on the in-memory runners (BENCHMARKS.md §8: peak RSS per pass)."""


class Segment(NamedTuple):
    """Records ``[start, stop)`` of one example file (``stop`` None: to the end)."""

    name: str
    split: str
    task: int
    path: str
    start: int = 0
    stop: Optional[int] = None


def plan_passes(files: Sequence, rows: Mapping[str, int],
                examples_per_pass: int) -> List[List[Segment]]:
    """Cuts the example files, concatenated in the given order, into passes.

    Args:
        files: ``ExampleFile`` (``name``, ``split``, ``task``, ``path``), in output order.
        rows: Records per file name (the examples' manifest).
        examples_per_pass: ``N``; 0 = one pass over whole files.

    Returns:
        One list of segments per pass (at least one pass); each pass holds at most ``N`` records,
        and a file's segments follow each other in pass order. Empty files get no segment.
    """
    if examples_per_pass < 0:
        raise ValueError("`examples_per_pass` should be a non-negative integer. "
                         f"Received: `examples_per_pass={examples_per_pass}`")
    if examples_per_pass == 0:
        return [[Segment(f.name, f.split, f.task, f.path) for f in files]]
    passes: List[List[Segment]] = [[]]
    room = examples_per_pass
    for f in files:
        start, total = 0, int(rows[f.name])
        while start < total:
            if room == 0:
                passes.append([])
                room = examples_per_pass
            stop = min(total, start + room)
            passes[-1].append(Segment(f.name, f.split, f.task, f.path, start, stop))
            room -= stop - start
            start = stop
    return passes


def part_path(staging: str, name: str, index: int) -> str:
    """Where pass ``index`` writes its records of example file ``name``."""
    return FileSystems.join(staging, FN.PARTS_DIR, f"{name}.part-{index:05d}")


def write_part(path: str, records: Iterable[bytes]) -> int:
    """Framed TFRecords, uncompressed (the concat stage compresses once); returns the count."""
    count = 0
    with FileSystems.create(path, mime_type="application/octet-stream",
                            compression_type="uncompressed") as out:
        for data in records:
            out.write(tfrecord_io.encode_record(data))
            count += 1
    return count


def read_part(path: str) -> Iterable[bytes]:
    with FileSystems.open(path, compression_type="uncompressed") as f:
        yield from tfrecord_io.read_tfrecords(f)


class ConcatParts(beam.DoFn):
    """``(file name, [part paths in pass order])`` → the output file, streamed; yields
    ``(name, records)`` and deletes the parts."""

    def __init__(self, output_dir: str) -> None:
        self._output_dir = output_dir

    def process(self, element) -> Iterable[Tuple[str, int]]:
        name, parts = element

        def records() -> Iterable[bytes]:
            for part in parts:
                yield from read_part(part)

        path = FileSystems.join(self._output_dir, name)
        count = tfrecord_io.write_gzip_tfrecords(path, records())
        if parts:
            FileSystems.delete(list(parts))
        logging.info("neighbour_features: wrote %s (%d examples, %d parts)", name, count,
                     len(parts))
        yield name, count


def write_timelines(timelines, staging: str) -> None:
    """``UserTimeline`` PCollection → pickled records under ``<staging>/_timelines/``."""
    (timelines
     | "PickleTimelines" >> beam.Map(pickle.dumps)
     | "WriteTimelines" >> beam.io.WriteToTFRecord(
         FileSystems.join(staging, FN.TIMELINES_DIR, "timelines")))


def read_timelines(pipeline: beam.Pipeline, staging: str):
    """The timelines ``write_timelines`` wrote, as ``UserTimeline``."""
    return (pipeline
            | "ReadTimelines" >> beam.io.ReadFromTFRecord(
                FileSystems.join(staging, FN.TIMELINES_DIR, "timelines*"))
            | "UnpickleTimelines" >> beam.Map(pickle.loads))


def delete_timelines(staging: str) -> None:
    """Removes ``_timelines/`` from the staging dir."""
    found = FileSystems.match([FileSystems.join(staging, FN.TIMELINES_DIR, "*")])[0].metadata_list
    if found:
        FileSystems.delete([m.path for m in found])
