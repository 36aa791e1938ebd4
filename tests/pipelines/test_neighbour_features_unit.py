"""Unit tests of the DoFns of ``pipelines/neighbour_features.py`` on in-memory inputs: reading
example segments, planning slots from table rows, cutting neighbour payloads, adding them to the
examples and writing the example files."""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

from jsr_tf import features as F
from jsr_tf.neighbours import payload as pl
from jsr_tf.pipelines import neighbour_features as nf
from jsr_tf.pipelines import payload_passes as passes
from jsr_tf.pipelines import tfrecord_io
from jsr_tf.pipelines.transforms import STATS
from tests.pipelines import _fixtures as X
from tests.pipelines._fixtures import EMPTY, SHAPE, ts

NAME = "train-feed-00000-of-00001.tfrecord.gz"
KEY_A, KEY_B, KEY_C = (NAME, 0), (NAME, 1), (NAME, 2)


def test_read_examples_of_a_segment(tmp_path):
    path = str(tmp_path / NAME)
    records = [X.example_bytes(1, 500), X.example_bytes(2, 600), X.example_bytes(1, 700)]
    tfrecord_io.write_gzip_tfrecords(path, records)
    segment = passes.Segment(NAME, "train", 0, path, start=1)  # records 1 and 2
    with X.pipeline() as p:
        out = (p | beam.Create([segment])
               | beam.ParDo(nf.ReadExamples()).with_outputs(nf.ReadExamples.META, STATS,
                                                            main="examples"))
        assert_that(out.examples, equal_to([(KEY_B, records[1]), (KEY_C, records[2])]),
                    label="examples")
        assert_that(out[nf.ReadExamples.META], equal_to([
            (2, nf.ExampleMeta(KEY_B, "train", 600)), (1, nf.ExampleMeta(KEY_C, "train", 700))]),
            label="meta")
        assert_that(out[STATS], equal_to([{f"examples_read/file/{NAME}": 2,
                                           "examples_read/train/feed": 2}]), label="stats")


def test_parse_table_row_keeps_train_and_test_tables():
    lines = [X.table_row(1, "feed", visibility=v).to_json() for v in ("train", "test", "all")]
    with X.pipeline() as p:
        out = p | beam.Create(lines) | beam.FlatMap(nf.parse_table_row)
        assert_that(out, equal_to([(1, X.table_row(1, "feed", visibility="train")),
                                   (1, X.table_row(1, "feed", visibility="test"))]))


def _plan_input(rows):
    """User 1's examples (A: train at 150, list 0; B: test at 250, list 1; C: train at 50,
    before the first snapshot) with ``rows``, as PlanSlots' input."""
    return (1, {"examples": [nf.ExampleMeta(KEY_A, "train", 150),
                             nf.ExampleMeta(KEY_B, "test", 250),
                             nf.ExampleMeta(KEY_C, "train", 50)],
                "rows": rows})


def test_plan_slots_feed_side_first():
    rows = [X.table_row(1, "feed", [2], [0.5]), X.table_row(1, "search", [3, 4], [0.4, 0.2]),
            X.table_row(1, "feed", visibility="test", snapshot=1, snapshot_ts=200)]
    with X.pipeline() as p:
        out = (p | beam.Create([_plan_input(rows)])
               | beam.ParDo(nf.PlanSlots([100, 200], payload_lag_ms=10)).with_outputs(
                   nf.PlanSlots.PLAN, STATS, main="requests"))
        assert_that(out.requests, equal_to([
            (2, nf.Request(KEY_A, 0, int(F.NeighbourSide.FEED), 0.5, "train", 140)),
            (3, nf.Request(KEY_A, 1, int(F.NeighbourSide.SEARCH), 0.4, "train", 140)),
            (4, nf.Request(KEY_A, 2, int(F.NeighbourSide.SEARCH), 0.2, "train", 140))]),
            label="requests")
        assert_that(out[nf.PlanSlots.PLAN], equal_to([(KEY_A, 3), (KEY_B, 0), (KEY_C, 0)]),
                    label="plan")
        assert_that(out[STATS], X.merged_counters_equal({
            "examples/with_list": 2, "examples/before_first_snapshot": 1,
            "examples/with_slots": 1, "examples/without_slots": 2,
            "slots/planned/feed": 1, "slots/planned/search": 2}), label="stats")


def test_plan_slots_refuses_a_user_listed_as_its_own_neighbour():
    rows = [X.table_row(1, "feed", [1], [1.0])]
    with pytest.raises(Exception, match="never hold its own user"):
        with X.pipeline() as p:
            _ = (p | beam.Create([_plan_input(rows)])
                 | beam.ParDo(nf.PlanSlots([100, 200], payload_lag_ms=10)))


def test_cut_payloads_per_visibility_and_missing_timelines():
    feed, search = int(F.NeighbourSide.FEED), int(F.NeighbourSide.SEARCH)
    elements = [
        (1, {"requests": [nf.Request(KEY_A, 0, feed, 0.5, "train", ts(3)),
                          nf.Request(KEY_B, 2, search, 0.4, "test", ts(1))],
             "timeline": [X.timeline(1)]}),
        (5, {"requests": [nf.Request(KEY_C, 0, feed, 0.1, "train", ts(3))], "timeline": []}),
    ]
    with X.pipeline() as p:
        out = (p | beam.Create(elements)
               | beam.ParDo(nf.CutPayloads(SHAPE)).with_outputs(STATS, main="slots"))
        assert_that(out.slots, equal_to([
            (KEY_A, (0, pl.Slot(feed, 0.5, 1), X.PAYLOAD_BEFORE_3)),
            (KEY_B, (2, pl.Slot(search, 0.4, 1), EMPTY)),  # nothing before 1 min
            (KEY_C, (0, pl.Slot(feed, 0.1, 5), EMPTY))]), label="slots")
        assert_that(out[STATS], X.merged_counters_equal({
            "slots/cut": 3, "slots/with_payload": 1, "slots/empty_payload": 2,
            "payload/feed_events/cut": 2, "payload/search_sessions/cut": 2,
            "slots/neighbour_without_timeline": 1}), label="stats")


def test_add_neighbours_in_slot_order():
    example = X.example_bytes(1, 500)
    slots = [(1, pl.Slot(2, 0.25, 3), EMPTY),
             (0, pl.Slot(1, 0.5, 2), X.PAYLOAD_BEFORE_3)]
    elements = [(KEY_A, {"example": [example], "plan": [2], "slots": slots}),
                (KEY_B, {"example": [example], "plan": [0], "slots": []})]

    def summary(element):
        name, (index, data) = element
        values = X.features_of(data)
        return (name, index, values[F.USER_ID], values[F.NBR_USERS], values[F.NBR_SIDE],
                values[F.NBR_SIM], values[F.NBR_LAST_TS], values[F.NBR_REC_ITEMS][:3],
                len(values[F.NBR_REC_ITEMS]))

    with X.pipeline() as p:
        out = (p | beam.Create(elements)
               | beam.ParDo(nf.AddNeighbours()).with_outputs(STATS, main="records"))
        assert_that(out.records | beam.Map(summary), equal_to([
            (NAME, 0, [1], [2, 3], [1, 2], [0.5, 0.25], [ts(2.5), 0], [10, 11, -1],
             2 * SHAPE.nbr_feed_items),
            (NAME, 1, [1], [], [], [], [], [], 0)]), label="records")
        assert_that(out[STATS], X.merged_counters_equal({
            "slots/written": 2, "slots/written/feed": 1, "slots/written/search": 1,
            "payload/feed_events/written": 2, "payload/search_sessions/written": 2}),
            label="stats")


def test_add_neighbours_refuses_a_missing_slot():
    element = (KEY_A, {"example": [X.example_bytes(1, 500)], "plan": [2],
                       "slots": [(1, pl.Slot(2, 0.25, 3), EMPTY)]})
    with pytest.raises(Exception, match=r"expected one example, one plan and its slots"):
        with X.pipeline() as p:
            _ = p | beam.Create([element]) | beam.ParDo(nf.AddNeighbours())


def test_write_example_file_in_index_order(tmp_path):
    elements = [(NAME, [(1, b"second"), None, (0, b"first")]), ("empty.tfrecord.gz", [None])]
    with X.pipeline() as p:
        written = (p | beam.Create(elements)
                   | beam.ParDo(nf.WriteExampleFile(str(tmp_path))))
        assert_that(written, equal_to([(NAME, 2), ("empty.tfrecord.gz", 0)]))
    assert list(tfrecord_io.read_gzip_tfrecords(str(tmp_path / NAME))) == [b"first", b"second"]
    assert list(tfrecord_io.read_gzip_tfrecords(str(tmp_path / "empty.tfrecord.gz"))) == []


def test_write_example_file_part_of_a_pass(tmp_path):
    with X.pipeline() as p:
        written = (p | beam.Create([(NAME, [(3, b"b"), (2, b"a")])])
                   | beam.ParDo(nf.WriteExampleFile(str(tmp_path), part=4)))
        assert_that(written, equal_to([(NAME, 2)]))
    part = passes.part_path(str(tmp_path), NAME, 4)
    assert list(passes.read_part(part)) == [b"a", b"b"]
