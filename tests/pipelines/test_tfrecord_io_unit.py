"""The Beam sinks that write GZIP TFRecords through ``pipelines/tfrecord_io.py`` (which has no
transform of its own): ``preprocess.WriteShard`` (the example shards) and
``payload_passes.ConcatParts`` (the neighbour-features passes), on in-memory inputs; the files
are read back with ``tfrecord_io`` (CRCs checked)."""

from __future__ import annotations

import os

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to

from jsr_tf.pipelines import payload_passes as passes
from jsr_tf.pipelines import tfrecord_io
from jsr_tf.pipelines.preprocess import WriteShard
from tests.pipelines import _fixtures as X

TRAIN_0 = "train-feed-00000-of-00002.tfrecord.gz"
TRAIN_1 = "train-feed-00001-of-00002.tfrecord.gz"
TEST_0 = "test-search-00000-of-00001.tfrecord.gz"
NUM_SHARDS = {"train": 2, "valid": 1, "test": 1}
# ``SerializeExamples`` outputs: ((split, task, shard), ((user, row), bytes)).
SERIALIZED = [(("train", 0, 0), ((2, 1), b"u2r1")), (("train", 0, 0), ((1, 5), b"u1r5")),
              (("train", 0, 0), ((1, 2), b"u1r2")), (("train", 0, 1), ((3, 0), b"u3r0"))]


def _write_shards(directory, serialized):
    """``serialized`` plus an empty test shard → grouped → ``WriteShard``; checks what it
    yields."""
    with X.pipeline() as p:
        skeleton = p | "Skeleton" >> beam.Create([(("test", 1, 0), None)])
        written = ((p | "Examples" >> beam.Create(serialized), skeleton)
                   | beam.Flatten() | beam.GroupByKey()
                   | beam.ParDo(WriteShard(directory, NUM_SHARDS)))
        assert_that(written, equal_to([(TRAIN_0, 3), (TRAIN_1, 1), (TEST_0, 0)]))


def test_write_shard_sorts_by_user_and_row(tmp_path):
    _write_shards(str(tmp_path), SERIALIZED)
    assert list(tfrecord_io.read_gzip_tfrecords(str(tmp_path / TRAIN_0))) == [
        b"u1r2", b"u1r5", b"u2r1"]
    assert list(tfrecord_io.read_gzip_tfrecords(str(tmp_path / TRAIN_1))) == [b"u3r0"]
    assert list(tfrecord_io.read_gzip_tfrecords(str(tmp_path / TEST_0))) == []


def test_write_shard_bytes_do_not_depend_on_input_order(tmp_path):
    _write_shards(str(tmp_path / "a"), SERIALIZED)
    _write_shards(str(tmp_path / "b"), SERIALIZED[::-1])
    for name in (TRAIN_0, TRAIN_1, TEST_0):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_concat_parts_in_pass_order(tmp_path):
    staging = str(tmp_path)
    parts = [passes.part_path(staging, "f.tfrecord.gz", i) for i in range(3)]
    for index, records in enumerate(([b"a", b"b"], [], [b"c"])):
        passes.write_part(parts[index], records)
    with X.pipeline() as p:
        written = (p | beam.Create([("f.tfrecord.gz", parts), ("empty.tfrecord.gz", [])])
                   | beam.ParDo(passes.ConcatParts(staging)))
        assert_that(written, equal_to([("f.tfrecord.gz", 3), ("empty.tfrecord.gz", 0)]))
    assert list(tfrecord_io.read_gzip_tfrecords(str(tmp_path / "f.tfrecord.gz"))) == [
        b"a", b"b", b"c"]
    assert list(tfrecord_io.read_gzip_tfrecords(str(tmp_path / "empty.tfrecord.gz"))) == []
    assert not any(os.path.exists(part) for part in parts)  # the parts are deleted
