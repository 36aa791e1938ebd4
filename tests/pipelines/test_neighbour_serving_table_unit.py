"""Unit tests of the DoFns of ``pipelines/neighbour_serving_table.py`` on in-memory inputs:
table rows → slot requests → payloads cut at ``as_of`` → one serving row per user → shards."""

from __future__ import annotations

import gzip
import json

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

from jsr_tf import features as F
from jsr_tf.neighbours import payload as pl
from jsr_tf.pipelines import neighbour_serving_table as st
from jsr_tf.pipelines import tfrecord_io
from jsr_tf.pipelines.transforms import STATS
from tests.pipelines import _fixtures as X
from tests.pipelines._fixtures import EMPTY, SHAPE, ts

FEED, SEARCH = int(F.NeighbourSide.FEED), int(F.NeighbourSide.SEARCH)


def _as_of(p, minutes):
    """Side input ``{"as_of_ms": ts(minutes)}``."""
    return beam.pvalue.AsSingleton(
        p | f"AsOf{minutes}" >> beam.Create([{"as_of_ms": ts(minutes)}]))


def test_parse_table_row_keeps_one_visibility_and_snapshot():
    rows = [X.table_row(1, "feed"), X.table_row(2, "feed", visibility="test"),
            X.table_row(3, "feed", snapshot=1)]
    with X.pipeline() as p:
        out = (p | beam.Create([r.to_json() for r in rows])
               | beam.FlatMap(st.parse_table_row, "train", 0))
        assert_that(out, equal_to([(1, rows[0])]))


def test_plan_slots_per_user():
    elements = [(1, [X.table_row(1, "search", [3, 4], [0.4, 0.2]),
                     X.table_row(1, "feed", [2], [0.5])]),
                (5, [X.table_row(5, "search")])]  # a row without neighbours
    with X.pipeline() as p:
        out = (p | beam.Create(elements)
               | beam.ParDo(st.PlanSlots("train", 0)).with_outputs(
                   st.PlanSlots.PLAN, STATS, main="requests"))
        assert_that(out.requests, equal_to([(2, st.Request(1, 0, FEED, 0.5)),
                                            (3, st.Request(1, 1, SEARCH, 0.4)),
                                            (4, st.Request(1, 2, SEARCH, 0.2))]),
                    label="requests")
        assert_that(out[st.PlanSlots.PLAN], equal_to([(1, 3), (5, 0)]), label="plan")
        assert_that(out[STATS], X.merged_counters_equal({
            "users/in_table": 2, "table/rows_read/feed": 1, "table/rows_read/search": 2,
            "users/with_slots": 1, "users/without_slots": 1, "slots/planned/feed": 1,
            "slots/planned/search": 2}), label="stats")


def test_cut_payloads_at_as_of():
    elements = [(1, {"requests": [st.Request(7, 0, FEED, 0.5), st.Request(8, 1, SEARCH, 0.4)],
                     "timeline": [X.timeline(1)]}),
                (5, {"requests": [st.Request(7, 1, SEARCH, 0.3)], "timeline": []}),
                (6, {"requests": [], "timeline": [X.timeline(6)]})]  # nobody asked
    with X.pipeline() as p:
        out = (p | beam.Create(elements)
               | beam.ParDo(st.CutPayloads("train", SHAPE), _as_of(p, 3)).with_outputs(
                   STATS, main="slots"))
        assert_that(out.slots, equal_to([
            (7, (0, pl.Slot(FEED, 0.5, 1), X.PAYLOAD_BEFORE_3)),
            (8, (1, pl.Slot(SEARCH, 0.4, 1), X.PAYLOAD_BEFORE_3)),
            (7, (1, pl.Slot(SEARCH, 0.3, 5), EMPTY))]), label="slots")
        assert_that(out[STATS], X.merged_counters_equal({
            "slots/cut": 3, "slots/with_payload": 2, "slots/empty_payload": 1,
            "payload/feed_events/cut": 4, "payload/search_sessions/cut": 4,
            "slots/neighbour_without_timeline": 1}), label="stats")


SLOTS = [(1, pl.Slot(SEARCH, 0.25, 3), EMPTY),
         (0, pl.Slot(FEED, 0.5, 2), X.PAYLOAD_BEFORE_3)]


def _row_summary(element):
    """``(shard, user, JSON fields, example fields)`` of an ``AssembleRows`` output."""
    shard, (user, line, example) = element
    row = json.loads(line)
    values = X.features_of(example)
    return (shard, user, row[st.NUM_SLOTS], row[F.NBR_USERS], row[F.NBR_SIDE][:3],
            row[F.NBR_LAST_TS], row[F.NBR_REC_ITEMS][0][:3], len(row[F.NBR_REC_ITEMS]),
            row[F.NBR_SRC_WORDS][0][1][:2], row[st.AS_OF_MS], row[st.SNAPSHOT_TS],
            values[F.USER_ID], values[F.NBR_USERS], values[st.AS_OF_MS])


def test_assemble_rows_one_per_user():
    elements = [(11, {"plan": [2], "slots": SLOTS}), (12, {"plan": [0], "slots": []})]
    with X.pipeline() as p:
        out = (p | beam.Create(elements)
               | beam.ParDo(st.AssembleRows(0, 100, num_shards=4, shape=SHAPE), _as_of(p, 3)).with_outputs(
                   STATS, main="rows"))
        assert_that(out.rows | beam.Map(_row_summary), equal_to([
            (3, 11, 2, [2, 3], [FEED, SEARCH, 0], [ts(2.5), 0], [10, 11, -1], SHAPE.neighbour_slots,
             [8, -1], ts(3), 100, [11], [2, 3], [ts(3)]),
            (0, 12, 0, [], [0, 0, 0], [], [-1, -1, -1], SHAPE.neighbour_slots, [-1, -1], ts(3), 100,
             [12], [], [ts(3)])]), label="rows")
        assert_that(out[STATS], X.merged_counters_equal({
            "users/assembled": 2, "slots/written": 2, "slots/beyond_k": 0,
            "slots/written/feed": 1, "slots/written/search": 1,
            "payload/feed_events/written": 2, "payload/search_sessions/written": 2}),
            label="stats")


def test_assemble_rows_counts_a_payload_at_or_after_as_of():
    # The payload's newest event (2.5 min) is after an as-of of 2 min: the guard counts it.
    with X.pipeline() as p:
        out = (p | beam.Create([(11, {"plan": [2], "slots": SLOTS})])
               | beam.ParDo(st.AssembleRows(0, 100, num_shards=1, shape=SHAPE), _as_of(p, 2)).with_outputs(
                   STATS, main="rows"))
        assert_that(out[STATS] | beam.Map(lambda c: c.get("payload/at_or_after_as_of")),
                    equal_to([1]), label="stats")


def test_assemble_rows_refuses_missing_slots():
    with pytest.raises(Exception, match="expected one plan and its slots"):
        with X.pipeline() as p:
            _ = (p | beam.Create([(11, {"plan": [3], "slots": SLOTS})])
                 | beam.ParDo(st.AssembleRows(0, 100, num_shards=1, shape=SHAPE), _as_of(p, 3)))


def test_write_shard_jsonl_and_tfrecords_by_user(tmp_path):
    element = (1, [(9, "nine", b"e9"), None, (5, "five", b"e5")])
    jsonl, records = st.shard_name(1, 2, ".jsonl"), st.shard_name(1, 2, ".tfrecord.gz")
    assert (jsonl, records) == ("serving_table-00001-of-00002.jsonl",
                                "serving_table-00001-of-00002.tfrecord.gz")
    with X.pipeline() as p:
        written = p | beam.Create([element]) | beam.ParDo(st.WriteShard(str(tmp_path), 2))
        assert_that(written, equal_to([(jsonl, 2), (records, 2)]))
    assert (tmp_path / jsonl).read_text() == "five\nnine\n"
    assert list(tfrecord_io.read_gzip_tfrecords(str(tmp_path / records))) == [b"e5", b"e9"]
    with gzip.open(tmp_path / records) as f:  # a plain gzip stream of framed records
        assert f.read() == tfrecord_io.encode_record(b"e5") + tfrecord_io.encode_record(b"e9")
