"""``WriteSortedText``: text shards whose bytes do not depend on the runner.

Beam's ``WriteToText`` writes lines in the order the runner delivers them, and with
``num_shards=0`` lets the runner choose the shard count, so the same job writes other bytes on the
in-memory runner, the multi-process runner, Dask or Dataflow. ``WriteSortedText`` fixes both: the
caller gives each line its shard and a sort key; each shard is grouped on one worker, sorted by
key and written with Beam's ``FileSystems`` (any path, ``gs://`` included). Every shard file is
written, empty ones too, so the file set depends only on ``num_shards``.

Used for the neighbour table and, through ``WriteDeadLetters``, for the dead letters of
``jsr-preprocess`` and ``jsr-neighbours`` (``dead_letter/rejected-00000-of-00001.jsonl``, in
(file, row) order).
"""

from __future__ import annotations

import json
import logging
from typing import Any, Iterable, Tuple

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from jsr_tf import filenames as FN

ShardedLine = Tuple[int, Any, str]  # (shard, sort key, line without its newline)


def shard_file_name(prefix: str, shard: int, num_shards: int, suffix: str) -> str:
    """``<prefix>-SSSSS-of-NNNNN<suffix>``, the layout of Beam's ``WriteToText`` shards."""
    return f"{prefix}-{shard:05d}-of-{num_shards:05d}{suffix}"


class _WriteShard(beam.DoFn):
    """``(shard, [(key, line) or None, ...])`` → the shard's file, lines in key order; yields
    ``(file name relative to the output dir, lines written)``."""

    def __init__(self, directory: str, prefix: str, suffix: str, num_shards: int) -> None:
        self._directory = directory
        self._prefix = prefix
        self._suffix = suffix
        self._num_shards = num_shards

    def process(self, element: Tuple[int, Iterable]):
        shard, values = element
        rows = sorted(v for v in values if v is not None)
        name = shard_file_name(self._prefix, shard, self._num_shards, self._suffix)
        with FileSystems.create(FileSystems.join(self._directory, name),
                                compression_type="uncompressed") as out:
            for _, line in rows:
                out.write(line.encode("utf-8") + b"\n")
        logging.info("wrote %s (%d lines)", name, len(rows))
        yield name, len(rows)


class WriteSortedText(beam.PTransform):
    """``(shard, sort key, line)`` elements → ``num_shards`` sorted text files.

    Args:
        directory: Output directory (any Beam filesystem).
        prefix: File name prefix, may contain a sub-directory (``dead_letter/rejected``).
        suffix: File name suffix (``.jsonl``).
        num_shards: Number of files; every element's shard must be in ``[0, num_shards)``.

    Returns (from ``expand``):
        A PCollection of ``(file name relative to directory, lines written)``, one per shard.
    """

    def __init__(self, directory: str, prefix: str, suffix: str, num_shards: int) -> None:
        super().__init__()
        if num_shards < 1:
            raise ValueError(f"`num_shards` should be a positive integer. "
                             f"Received: `num_shards={num_shards}`")
        self.directory = directory
        self.prefix = prefix
        self.suffix = suffix
        self.num_shards = num_shards

    def expand(self, lines):
        skeleton = lines.pipeline | "ShardSkeleton" >> beam.Create(
            [(shard, None) for shard in range(self.num_shards)])
        return ((lines | "KeyByShard" >> beam.Map(lambda s: (s[0], (s[1], s[2]))), skeleton)
                | "WithEmptyShards" >> beam.Flatten()
                | "GroupShards" >> beam.GroupByKey()
                | "WriteShards" >> beam.ParDo(_WriteShard(self.directory, self.prefix,
                                                          self.suffix, self.num_shards)))


class WriteDeadLetters(beam.PTransform):
    """``Rejection`` records → ``<directory>/dead_letter/rejected-00000-of-00001.jsonl``, one JSON
    object per line (sorted keys), in (file, row) order."""

    def __init__(self, directory: str, dead_letter_dir: str) -> None:
        super().__init__()
        self.directory = directory
        self.dead_letter_dir = dead_letter_dir

    def expand(self, rejections):
        return (rejections
                | "DeadJson" >> beam.Map(
                    lambda r: (0, (r.file, r.row), json.dumps(r._asdict(), sort_keys=True)))
                | "WriteDead" >> WriteSortedText(self.directory, f"{self.dead_letter_dir}/rejected",
                                                 FN.JSONL_SUFFIX, 1))
