"""Unit tests of the transforms of ``pipelines/neighbours.py`` on in-memory inputs.

Token sets in the retrieval tests (one (visibility, side, snapshot) population)::

    user 1 {i:1, i:2, i:3}   user 2 {i:1, i:2}   user 3 {i:3, i:4}   user 4 {i:9}
    J(1, 2) = 2/3, J(1, 3) = 1/4, every other pair 0.
"""

from __future__ import annotations

import apache_beam as beam
import numpy as np
from apache_beam.testing.util import assert_that, equal_to

from jsr_tf.data.records import ItemRecord
from jsr_tf.neighbours import DAY_MS, NeighbourConfig, NeighbourRow
from jsr_tf.neighbours import minhash as mh
from jsr_tf.pipelines import neighbours as nb
from jsr_tf.pipelines.transforms import ITEMS, STATS
from tests import testing as T
from tests.pipelines import _fixtures as X
from tests.pipelines._fixtures import ts

SNAPSHOTS = [100, 200, 300]
POPULATION = [(1, ("i:1", "i:2", "i:3")), (2, ("i:1", "i:2")), (3, ("i:3", "i:4")),
              (4, ("i:9",))]


def _row(user, num_tokens, neighbours=(), jaccards=(), side="feed", k=0):
    """The ``NeighbourRow`` of ``user`` in the train table at snapshot ``k`` of ``SNAPSHOTS``."""
    return NeighbourRow("train", k, SNAPSHOTS[k], side, user, num_tokens, tuple(neighbours),
                        tuple(jaccards))


# The exact table of POPULATION with k_feed = 2 and min_jaccard = 0.3 (J(1, 3) is dropped).
EXACT_ROWS = [_row(1, 3, [2], [2 / 3]), _row(2, 2, [1], [2 / 3]), _row(3, 2), _row(4, 1)]
EXACT_COUNTS = {"train/0/feed/rows_written": 4, "train/0/feed/pairs_emitted": 2,
                "train/0/feed/below_min_jaccard": 2, "train/0/feed/users_below_k": 4,
                "train/0/feed/users_without_neighbours": 2}


# --------------------------------------------------------------------------- snapshots


def test_data_span_and_default_snapshots():
    with X.pipeline() as p:
        timelines = p | beam.Create([X.timeline(1), X.timeline(2, shift=10)])
        span = (timelines | beam.FlatMap(nb.event_span)
                | beam.CombineGlobally(nb.merge_spans))
        assert_that(span, equal_to([(ts(1), ts(15))]), label="span")
        # Every event is on 2023-05-23 (Beijing): one boundary, the next midnight.
        snapshots = span | beam.Map(nb.choose_snapshots, NeighbourConfig())
        assert_that(snapshots, equal_to([[T.T0_MS + DAY_MS]]), label="snapshots")


def test_no_events_no_snapshots():
    with X.pipeline() as p:
        snapshots = (p | beam.Create([]) | beam.FlatMap(nb.event_span)
                     | beam.CombineGlobally(nb.merge_spans)
                     | beam.Map(nb.choose_snapshots, NeighbourConfig()))
        assert_that(snapshots, equal_to([[]]))


# --------------------------------------------------------------------------- token sets


def test_user_tokens_per_interval_with_item_refs_and_stats():
    # Train visibility sees events [0]..[4] of user 1 (the rest is held out). Boundaries
    # ts(3), ts(10): [0]..[3] fall in interval 0, feed 12@3 in interval 1. User 2's events
    # (from minute 11) are after the last boundary: unused.
    config = NeighbourConfig(mode="exact", visibilities=("train",))
    with X.pipeline() as p:
        out = (p | beam.Create([X.timeline(1), X.timeline(2, shift=10)])
               | beam.ParDo(nb.UserTokens(config), [ts(3), ts(10)]).with_outputs(
                   nb.ITEM_REFS, STATS, main="partials"))
        assert_that(out.partials, equal_to([
            (("train", "search", 1), (0, ("i:30", "i:31", "w:7", "w:8"))),
            (("train", "feed", 1), (0, ("i:10", "i:11"))),
            (("train", "feed", 1), (1, ("i:12",)))]), label="partials")
        assert_that(out[nb.ITEM_REFS], equal_to([
            (10, ("train", 1, 0)), (11, ("train", 1, 0)), (12, ("train", 1, 1))]),
            label="refs")
        assert_that(out[STATS], X.merged_counters_equal(
            {"train/0/users_known": 1, "train/1/users_known": 1}), label="stats")


def test_user_tokens_count_an_empty_side():
    # Only feed events before ts(1.2): the search side is empty at snapshot 0.
    config = NeighbourConfig(mode="exact", visibilities=("train",))
    with X.pipeline() as p:
        out = (p | beam.Create([X.timeline(1)])
               | beam.ParDo(nb.UserTokens(config), [ts(1.2), ts(10)]).with_outputs(
                   nb.ITEM_REFS, STATS, main="partials"))
        assert_that(out.partials | beam.Map(lambda kv: (kv[0][1], kv[1][0])),
                    equal_to([("feed", 0), ("feed", 1), ("search", 1)]), label="partials")
        assert_that(out[STATS], X.merged_counters_equal(
            {"train/0/users_known": 1, "train/1/users_known": 1,
             "train/0/search/users_empty": 1}), label="stats")


def _item(item, row_category):
    """``(row, ItemRecord)`` of ``item`` with second-level category ``row_category[1]``."""
    row, category = row_category
    return row, ItemRecord(item, (), 7, "NORMAL", "2023-05-01", "LongImport",
                           (1, category, 0, 0))


def test_join_categories_tokens_and_item_counters():
    elements = [
        (10, {"refs": [("train", 1, 0), ("test", 2, 1)],
              "features": [_item(10, (3, 55)), _item(10, (0, 55)), _item(10, (5, 66))]}),
        (12, {"refs": [("train", 1, 1)], "features": []}),
        (13, {"refs": [("train", 1, 0)], "features": [_item(13, (1, 0))]}),
        (14, {"refs": [], "features": [_item(14, (2, 77))]}),
    ]
    with X.pipeline() as p:
        out = (p | beam.Create(elements)
               | beam.FlatMap(nb.join_categories).with_outputs(STATS, main="partials"))
        # Item 10: row 0 wins (category 55); row 3 repeats it, row 5 conflicts.
        assert_that(out.partials, equal_to([(("train", "feed", 1), (0, ("c2:55",))),
                                            (("test", "feed", 2), (1, ("c2:55",)))]),
                    label="partials")
        assert_that(out[STATS], X.merged_counters_equal({
            f"{ITEMS}/canonical": 3, f"{ITEMS}/dropped_duplicate": 1,
            f"{ITEMS}/dropped_conflicting_id": 1,
            "feed/positive_items_without_features": 1,
            "feed/positive_items_without_category": 1}), label="stats")


def test_cumulative_signatures_union_intervals():
    config = NeighbourConfig(mode="exact", num_perm=16, bands=16)
    hasher = mh.MinHasher(16, config.hash_seed)
    parts = [(1, ("i:1",)), (2, ("i:2", "i:3")), (1, ("i:4",))]

    def check(indexed):
        by_k = {r.snapshot: r for r in indexed}
        assert sorted(by_k) == [1, 2], sorted(by_k)
        for k, tokens in ((1, ("i:1", "i:4")), (2, ("i:1", "i:2", "i:3", "i:4"))):
            record = by_k[k]
            assert (record.visibility, record.side, record.user, record.tokens) == (
                "train", "feed", 7, tokens), record
            np.testing.assert_array_equal(record.signature,
                                          hasher.signature_of_tokens(tokens, "feed"))

    with X.pipeline() as p:
        out = (p | beam.Create([(("train", "feed", 7), parts)])
               | beam.ParDo(nb.CumulativeSignatures(config), SNAPSHOTS).with_outputs(
                   STATS, main="indexed"))
        assert_that(out.indexed, X.satisfies(check), label="indexed")
        assert_that(out[STATS], X.merged_counters_equal(
            {"train/1/feed/users_indexed": 1, "train/2/feed/users_indexed": 1}), label="stats")


# --------------------------------------------------------------------------- retrieval


def test_exact_neighbours_of_one_group():
    config = NeighbourConfig(mode="exact", k_feed=2, min_jaccard=0.3)
    with X.pipeline() as p:
        out = (p | beam.Create([(("train", "feed", 0), POPULATION)])
               | beam.ParDo(nb.ExactNeighbours(config), SNAPSHOTS).with_outputs(
                   STATS, main="rows"))
        assert_that(out.rows, equal_to(EXACT_ROWS), label="rows")
        assert_that(out[STATS], X.merged_counters_equal(EXACT_COUNTS), label="stats")


def test_bucket_members_pairs_and_skips():
    buckets = [(("train", "feed", 0, 0, 11), [2, 1]),
               (("train", "feed", 0, 1, 12), [3, 4, 5]),  # above max_bucket = 2: skipped
               (("train", "feed", 0, 2, 13), [6]),
               (("train", "feed", 0, 3, 14), [7, 7])]  # one distinct member
    with X.pipeline() as p:
        out = (p | beam.Create(buckets)
               | beam.FlatMap(nb.bucket_members, 2).with_outputs(STATS, main="members"))
        assert_that(out.members, equal_to([(("train", "feed", 0, 1), (2,)),
                                           (("train", "feed", 0, 2), (1,))]), label="members")
        assert_that(out[STATS], X.merged_counters_equal(
            {"train/0/feed/buckets_skipped": 1, "train/0/feed/bucket_users_skipped": 3}),
            label="stats")


def test_top_candidates_most_colliding_first():
    lists = [(2, 3), (3,), (4, 2)]  # collisions: 2 → 2, 3 → 2, 4 → 1
    with X.pipeline() as p:
        source = p | beam.Create([(("train", "feed", 0, 1), lists)])
        bucket = source | "Bucket" >> beam.ParDo(nb.TopCandidates(NeighbourConfig(
            candidate_join="bucket", max_candidates=2))).with_outputs(STATS, main="cands")
        assert_that(bucket.cands, equal_to([(("train", "feed", 0, 1), (2, 3))]),
                    label="cands")
        assert_that(bucket[STATS], X.merged_counters_equal(
            {"train/0/feed/candidate_pairs": 2, "train/0/feed/users_candidates_truncated": 1}),
            label="bucket stats")
        window = source | "Window" >> beam.ParDo(nb.TopCandidates(NeighbourConfig(
            max_candidates=5))).with_outputs(STATS, main="cands")
        assert_that(window.cands, equal_to([(("train", "feed", 0, 1), (2, 3, 4))]),
                    label="window cands")
        assert_that(window[STATS], X.merged_counters_equal(
            {"train/0/feed/candidate_pairs": 3, "train/0/feed/window_pairs": 5}),
            label="window stats")


def test_serve_tokens_to_requesting_users():
    with X.pipeline() as p:
        out = (p | beam.Create([(("train", "feed", 0, 9), {"tokens": [("a",)], "requests": [1, 3]}),
                                (("train", "feed", 0, 8), {"tokens": [], "requests": [1]})])
               | beam.FlatMap(nb.serve_tokens))
        assert_that(out, equal_to([(("train", "feed", 0, 1), (9, ("a",))),
                                   (("train", "feed", 0, 3), (9, ("a",)))]))


def test_rerank_exact_jaccard_of_candidates():
    config = NeighbourConfig(k_feed=1, min_jaccard=0.0)
    elements = [(("train", "feed", 0, 1), {"self": [("a", "b", "c")],
                                           "candidates": [(2, ("a", "b")), (3, ("c", "d")),
                                                          (4, ("x",))]}),
                (("train", "feed", 0, 5), {"self": [], "candidates": [(1, ("a",))]})]
    with X.pipeline() as p:
        out = (p | beam.Create(elements)
               | beam.ParDo(nb.ReRank(config), SNAPSHOTS).with_outputs(STATS, main="rows"))
        assert_that(out.rows, equal_to([_row(1, 3, [2], [2 / 3])]), label="rows")
        # Candidate 3 is cut at k = 1; candidate 4 (J = 0) is dropped.
        assert_that(out[STATS], X.merged_counters_equal({
            "train/0/feed/rows_written": 1, "train/0/feed/pairs_emitted": 1,
            "train/0/feed/below_min_jaccard": 1, "train/0/feed/candidates_scored": 3}),
            label="stats")


def _indexed(config):
    """``Indexed`` records of ``POPULATION`` (train, feed, snapshot 0) for ``config``'s hasher."""
    hasher = mh.MinHasher(config.num_perm, config.hash_seed)
    return [nb.Indexed("train", "feed", 0, user, tokens,
                       hasher.signature_of_tokens(tokens, "feed")) for user, tokens in POPULATION]


def test_retrieve_neighbours_exact_mode():
    config = NeighbourConfig(mode="exact", k_feed=2, min_jaccard=0.3)
    with X.pipeline() as p:
        snapshots = p | "Snapshots" >> beam.Create([SNAPSHOTS])
        out = (p | "Indexed" >> beam.Create(_indexed(config))
               | nb.RetrieveNeighbours(config, snapshots))
        assert_that(out["rows"], equal_to(EXACT_ROWS), label="rows")
        assert_that(out["stats"][0], X.merged_counters_equal(EXACT_COUNTS), label="stats")


def test_retrieve_neighbours_keyed_lsh_layout():
    # 64 single-row bands: identical or overlapping sets very likely share a band; the re-rank
    # is exact, so the rows equal the exact table.
    config = NeighbourConfig(mode="lsh", lsh_layout="keyed", candidate_join="bucket",
                             num_perm=64, bands=64, k_feed=2, min_jaccard=0.3)
    with X.pipeline() as p:
        snapshots = p | "Snapshots" >> beam.Create([SNAPSHOTS])
        out = (p | "Indexed" >> beam.Create(_indexed(config))
               | nb.RetrieveNeighbours(config, snapshots))
        assert_that(out["rows"], equal_to(EXACT_ROWS), label="rows")


def test_retrieve_grouped_layout():
    config = NeighbourConfig(mode="lsh", lsh_layout="grouped", num_perm=64, bands=64,
                             k_feed=2, min_jaccard=0.3)
    partials = [(("train", "feed", user), [(0, tokens)]) for user, tokens in POPULATION]
    with X.pipeline() as p:
        snapshots = p | "Snapshots" >> beam.Create([SNAPSHOTS[:1]])
        out = p | "Partials" >> beam.Create(partials) | nb.RetrieveGrouped(config, snapshots)
        assert_that(out["rows"], equal_to(EXACT_ROWS), label="rows")
        assert_that(out["stats"][0], X.merged_counters_equal(
            {"train/0/feed/users_indexed": 4}), label="history stats")
