"""Unit tests of the transforms of ``pipelines/transforms.py`` on in-memory inputs.

Each test runs one DoFn, PTransform or ``beam.Map``/``FlatMap``/``CombinePerKey`` function of
the preprocessing graph in a ``TestPipeline`` and checks its outputs (main and tagged) against
hand-computed values; the world is described in ``tests/pipelines/_fixtures.py``.
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to

from jsr_tf import features as F
from jsr_tf.data.config import PreprocessConfig
from jsr_tf.data.examples import KeyedExample
from jsr_tf.data.negatives import NegativePool
from jsr_tf.features import Task
from jsr_tf.pipelines import transforms as tr
from tests import testing as T
from tests.pipelines import _fixtures as X
from tests.pipelines._fixtures import ts

FEED, SEARCH = int(Task.FEED), int(Task.SEARCH)


# --------------------------------------------------------------------------- counters


def test_merge_counters_combines_globally():
    with X.pipeline() as p:
        merged = (p | beam.Create([{"b": 1, "a": 2}, {"b": 3}, {}, {"c": 0}])
                  | beam.CombineGlobally(tr.merge_counters))
        assert_that(merged, equal_to([{"a": 2, "b": 4, "c": 0}]))
        keys = merged | "Keys" >> beam.Map(list)
        assert_that(keys, equal_to([["a", "b", "c"]]), label="sorted keys")


def test_merge_counters_of_nothing_is_empty():
    with X.pipeline() as p:
        merged = p | beam.Create([]) | beam.CombineGlobally(tr.merge_counters)
        assert_that(merged, equal_to([{}]))


def test_bump():
    counts = {"a": 1}
    tr.bump(counts, "a")
    tr.bump(counts, "b", 3)
    assert counts == {"a": 2, "b": 3}


# --------------------------------------------------------------------------- parsing


def _raw_world(tmp_path, extra_lines=None):
    """Writes the world (user 1) as KuaiSAR CSVs, with one item and one user row; returns the
    file name → path map."""
    rec, src = X.world_rows(1)
    directory = T.write_kuaisar(str(tmp_path / "raw"), rec, src,
                                [T.item_row(i, caption=(i + 500,)) for i in (10, 11)],
                                [T.user_row(1)], extra_lines=extra_lines)
    return {name: f"{directory}/{name}" for name in tr.REQUIRED_FILES + tr.OPTIONAL_FILES}


def test_parse_file_splits_records_dead_letters_and_stats(tmp_path):
    bad = b"1,oops,1000.0,2000.0,2023-05-23 00:01:00,1684771260000.0,1,0,0,0,0,0"
    paths = _raw_world(tmp_path, {tr.REC: [bad]})
    feed, _ = X.world_records(1)
    with X.pipeline() as p:
        out = p | tr.ParseFile(tr.REC, paths[tr.REC], PreprocessConfig())
        assert_that(out.records, equal_to(feed), label="records")
        assert_that(out.dead_letter | beam.Map(lambda r: (r.file, r.row, r.reason, r.line)),
                    equal_to([(tr.REC, 6, "bad_id", bad.decode())]), label="dead")
        assert_that(out.stats, equal_to([{
            "rec_inter.csv/rows_read": 7, "rec_inter.csv/rejected/bad_id": 1,
            "rec_inter.csv/first_ts_ms": ts(1), "rec_inter.csv/last_ts_ms": ts(5)}]),
            label="stats")


def test_parse_file_keeps_row_indices_of_item_rows(tmp_path):
    paths = _raw_world(tmp_path)
    with X.pipeline() as p:
        out = p | tr.ParseFile(tr.ITEMS, paths[tr.ITEMS], PreprocessConfig())
        assert_that(out.records | beam.Map(lambda rr: (rr[0], rr[1].item_id, rr[1].caption,
                                                       rr[1].categories)),
                    equal_to([(0, 10, (510,), (1, 10, 0, 0)), (1, 11, (511,), (1, 10, 0, 0))]),
                    label="records")
        assert_that(out.dead_letter, equal_to([]), label="dead")
        assert_that(out.stats, equal_to([{"item_features.csv/rows_read": 2}]), label="stats")


def test_parse_file_dead_letters_rows_outside_the_period(tmp_path):
    paths = _raw_world(tmp_path)
    config = PreprocessConfig(period_start_ms=ts(3), period_end_ms=ts(100))
    with X.pipeline() as p:
        out = p | tr.ParseFile(tr.REC, paths[tr.REC], config)
        assert_that(out.records | beam.Map(lambda e: e.item_id), equal_to([12, 13, 14]),
                    label="records")
        assert_that(out.dead_letter | beam.Map(lambda r: (r.row, r.reason)),
                    equal_to([(0, "timestamp_out_of_period"), (1, "timestamp_out_of_period"),
                              (5, "timestamp_out_of_period")]), label="dead")
        assert_that(out.stats, equal_to([{
            "rec_inter.csv/rows_read": 6, "rec_inter.csv/rejected/timestamp_out_of_period": 3,
            "rec_inter.csv/first_ts_ms": ts(3), "rec_inter.csv/last_ts_ms": ts(5)}]),
            label="stats")


# --------------------------------------------------------------------------- timelines


def test_build_timelines_from_grouped_records():
    feed, search = X.world_records(1)
    dup = feed[0]._replace(row=6)  # an exact duplicate of the first feed row
    with X.pipeline() as p:
        out = (p | beam.Create([(1, {"feed": feed + [dup], "search": search}),
                                (2, {"feed": [],
                                     "search": [X.search_row(2, 9, 7, (5,), 40, 1, 0)]})])
               | beam.ParDo(tr.BuildTimelines(PreprocessConfig())).with_outputs(
                   tr.STATS, main="tl"))
        summary = out.tl | beam.Map(lambda t: (
            t.user_id, len(t.events), [(x.index, x.task, x.split) for x in t.targets],
            sorted(t.heldout), sorted(t.exposures)))
        assert_that(summary, equal_to([
            (1, 9, [(1, SEARCH, "train"), (2, FEED, "train"), (3, SEARCH, "train"),
                    (4, FEED, "train"), (5, SEARCH, "valid"), (6, FEED, "valid"),
                    (7, SEARCH, "test"), (8, FEED, "test")],
             [5, 6, 7, 8],
             sorted([(10, ts(1)), (11, ts(2)), (12, ts(3)), (20, ts(1)), (30, ts(1.5)),
                     (31, ts(2.5))])),
            (2, 1, [], [], [(40, ts(7))])]), label="timelines")
        assert_that(out.stats, X.merged_counters_equal({
            "rec_inter.csv/canonical": 6, "rec_inter.csv/dropped_duplicate": 1,
            "src_inter.csv/canonical": 6, "feed/events": 6, "search/sessions": 5,
            "feed/positives": 5, "search/sessions_with_click": 5,
            "feed/targets": 5, "feed/dropped_history_requirement": 1, "feed/users": 1,
            "search/targets": 5, "search/dropped_history_requirement": 1, "search/users": 1,
            "users/with_events": 2}), label="stats")


# --------------------------------------------------------------------------- counts and pools


def _two_users(p):
    """The world for user 1 and, 10 minutes later, user 2 (same items): a PCollection."""
    return p | "Timelines" >> beam.Create([X.timeline(1), X.timeline(2, shift=10)])


def test_target_counts_per_key():
    with X.pipeline() as p:
        timelines = _two_users(p)
        train = (timelines | "Train" >> beam.FlatMap(tr.train_target_items)
                 | "SumTrain" >> beam.CombinePerKey(sum))
        assert_that(train, equal_to([((FEED, 11), 2), ((FEED, 12), 2), ((SEARCH, 30), 2),
                                     ((SEARCH, 31), 2)]), label="train")
        held = (timelines | "Eval" >> beam.FlatMap(tr.eval_target_items)
                | "SumEval" >> beam.CombinePerKey(sum))
        assert_that(held, equal_to([((FEED, "valid", 13), 2), ((FEED, "test", 14), 2),
                                    ((SEARCH, "valid", 32), 2), ((SEARCH, "test", 34), 2)]),
                    label="eval")


def test_train_visible_words_and_queries_skip_heldout_sessions():
    with X.pipeline() as p:
        timelines = _two_users(p)
        words = (timelines | "Words" >> beam.FlatMap(tr.train_visible_words)
                 | "SumWords" >> beam.CombinePerKey(sum))
        assert_that(words, equal_to([(7, 2), (8, 4)]), label="words")  # s3, s4 held out
        queries = (timelines | "Queries" >> beam.FlatMap(tr.train_visible_queries)
                   | "SumQueries" >> beam.CombinePerKey(sum))
        assert_that(queries, equal_to([((7, 8), 2), ((8,), 2)]), label="queries")


def test_first_seen_with_and_without_heldout_exposures():
    with X.pipeline() as p:
        timelines = _two_users(p)
        visible = (timelines | "Visible" >> beam.FlatMap(lambda t: t.exposures)
                   | "MinVisible" >> beam.CombinePerKey(min))
        assert_that(visible, equal_to([(10, ts(1)), (11, ts(2)), (12, ts(3)), (20, ts(1)),
                                       (30, ts(1.5)), (31, ts(2.5))]), label="visible")
        every = (timelines | "All" >> beam.FlatMap(tr.all_exposures)
                 | "MinAll" >> beam.CombinePerKey(min))
        assert_that(every, equal_to([(10, ts(1)), (11, ts(2)), (12, ts(3)), (20, ts(1)),
                                     (30, ts(1.5)), (31, ts(2.5)), (32, ts(3.5)),
                                     (33, ts(3.5)), (13, ts(4)), (34, ts(4.5)), (14, ts(5))]),
                    label="all")


def test_eval_row_times_and_exclusions():
    with X.pipeline() as p:
        timelines = _two_users(p)
        times = (timelines | "Times" >> beam.FlatMap(tr.eval_row_times)
                 | "Group" >> beam.GroupByKey()
                 | "Sort" >> beam.MapTuple(lambda k, v: (k, sorted(v))))
        assert_that(times, equal_to([
            ((FEED, "valid"), [ts(4), ts(14)]), ((FEED, "test"), [ts(5), ts(15)]),
            ((SEARCH, "valid"), [ts(3.5), ts(13.5)]), ((SEARCH, "test"), [ts(4.5), ts(14.5)])]),
            label="times")
        # First seen = user 1's times. User 2's rows (10 min later) exclude every earlier item
        # of theirs, all first seen before; user 1's rows too, except an item first seen at or
        # after the row (its own positive).
        first_seen = {10: ts(1), 11: ts(2), 12: ts(3), 20: ts(1), 30: ts(1.5), 31: ts(2.5),
                      32: ts(3.5), 13: ts(4), 34: ts(4.5), 14: ts(5)}
        excluded = (timelines
                    | "Excluded" >> beam.FlatMap(tr.excluded_allowed_items, first_seen)
                    | "SumExcluded" >> beam.CombinePerKey(sum))
        prior_feed_valid = (10, 30, 11, 31, 12, 32)  # the items before feed target [6]
        expected = {}
        for item in prior_feed_valid:
            expected[(FEED, "valid", item)] = 2
        expected[(FEED, "valid", 13)] = 1  # user 2 only: user 1's 13 is first seen at its row
        for item in prior_feed_valid + (13,):
            expected[(SEARCH, "test", item)] = 2
        expected[(SEARCH, "test", 34)] = 1
        for item in prior_feed_valid[:-1]:
            expected[(SEARCH, "valid", item)] = 2
        expected[(SEARCH, "valid", 32)] = 1
        for item in prior_feed_valid + (13, 34):
            expected[(FEED, "test", item)] = 2
        expected[(FEED, "test", 14)] = 1
        assert_that(excluded, equal_to(sorted(expected.items())), label="excluded")


def test_fair_weights_by_hand():
    counts = {1: 2, 2: 1, 3: 4, 4: 0, 5: 3, 6: 1}
    first_seen = {1: 100, 2: 250, 3: 50, 4: 10, 5: 400, 6: 10}
    rows = [300, 200, 400]
    excluded = {1: 1, 6: 3}
    # Rows after first seen, minus exclusions: 1 → 3 − 1; 2 → 2; 3 → 3; 5 → 0 (seen at the
    # last row); 6 → 3 − 3; 4 has no count, 7 no first-seen time.
    assert tr.fair_weights(counts, first_seen, rows, excluded) == {
        1: 1.0, 2: 0.5, 3: 4 / 3, 5: 0.0, 6: 0.0}
    assert tr.fair_weights({**counts, 7: 5}, first_seen, rows, excluded,
                           must_predate=False) == {1: 1.0, 2: 1 / 3, 3: 4 / 3, 5: 1.0, 6: 0.0}


def _pool_summary(pools):
    """``{key: (items, weights, first_seen, fallback items)}`` of a pool dict, as lists."""
    return {key: (pool.items.tolist(), pool.weights.tolist(), pool.first_seen.tolist(),
                  pool.fallback_items.tolist()) for key, pool in pools.items()}


def test_build_pools_from_side_inputs():
    with X.pipeline() as p:
        timelines = _two_users(p)
        counts = (timelines | "Train" >> beam.FlatMap(tr.train_target_items)
                  | "Sum" >> beam.CombinePerKey(sum))
        first_seen = (timelines | "Exposures" >> beam.FlatMap(lambda t: t.exposures)
                      | "Min" >> beam.CombinePerKey(min))
        pools = (p | "Seed" >> beam.Create([None])
                 | "Pools" >> beam.Map(tr.build_pools, counts=beam.pvalue.AsDict(counts),
                                       first_seen=beam.pvalue.AsDict(first_seen))
                 | "Summary" >> beam.Map(_pool_summary))
        visible = [10, 11, 12, 20, 30, 31]
        assert_that(pools, equal_to([{
            Task.FEED: ([11, 12], [2.0, 2.0], [ts(2), ts(3)], visible),
            Task.SEARCH: ([30, 31], [2.0, 2.0], [ts(1.5), ts(2.5)], visible)}]))


def test_build_fair_pools_correct_for_exclusions():
    with X.pipeline() as p:
        pools = (p | beam.Create([None])
                 | beam.Map(tr.build_fair_pools,
                            counts={(FEED, "valid", 5): 2, (FEED, "valid", 6): 1,
                                    (SEARCH, "test", 7): 3},
                            first_seen={5: 10, 6: 10, 7: 10},
                            row_times={(FEED, "valid"): [20, 30], (SEARCH, "test"): [20]},
                            excluded={(FEED, "valid", 5): 1})
                 | beam.Map(_pool_summary))
        assert_that(pools, equal_to([{
            (FEED, "valid"): ([5, 6], [2.0, 0.5], [10, 10], []),  # 5: 2 / (2 − 1); 6: 1 / 2
            (FEED, "test"): ([], [], [], []),
            (SEARCH, "valid"): ([], [], [], []),
            (SEARCH, "test"): ([7], [3.0], [10], [])}]))


# --------------------------------------------------------------------------- examples


def _fixed_pools():
    """Pools that always draw item 99 (``negatives``) and item 98 (``negatives_fair``): first
    seen at 0, in no history."""
    pools = {Task.FEED: NegativePool.build({99: 1}, {99: 0}),
             Task.SEARCH: NegativePool.build({99: 1}, {99: 0})}
    fair = {(int(t), s): NegativePool.build({98: 1}, {98: 0}, uniform_fallback=False)
            for t in Task for s in ("valid", "test")}
    return pools, fair


def _example_summary(keyed: KeyedExample):
    values = keyed.values
    return (keyed.split, keyed.task, keyed.user_id, keyed.target_row,
            values[F.TARGET_ITEM], values[F.FEED_ITEMS], values[F.NEGATIVES],
            values.get(F.NEGATIVES_FAIR), values.get(F.IMPRESSIONS))


def test_make_examples_one_per_target_with_stats():
    pools, fair = _fixed_pools()
    config = PreprocessConfig(num_train_negatives=1, num_eval_negatives=1)
    with X.pipeline() as p:
        out = (p | "Timelines" >> beam.Create([X.timeline(1)])
               | beam.ParDo(tr.MakeExamples(config), pools=pools, fair_pools=fair)
               .with_outputs(tr.STATS, main="ex"))
        h = [10, 11, 12, 13]
        assert_that(out.ex | beam.Map(_example_summary), equal_to([
            ("train", SEARCH, 1, 0, [30], h[:1], [99], None, None),
            ("train", FEED, 1, 1, [11], h[:1], [99], None, None),
            ("train", SEARCH, 1, 1, [31], h[:2], [99], None, None),
            ("train", FEED, 1, 2, [12], h[:2], [99], None, None),
            ("valid", SEARCH, 1, 2, [32], h[:3], [99], [98], [33]),
            ("valid", FEED, 1, 3, [13], h[:3], [99], [98], None),
            ("test", SEARCH, 1, 4, [34], h, [99], [98], []),
            ("test", FEED, 1, 4, [14], h, [99], [98], None)]), label="examples")
        assert_that(out.stats, X.merged_counters_equal({
            "examples/train/feed": 2, "examples/train/search": 2, "examples/valid/feed": 1,
            "examples/valid/search": 1, "examples/test/feed": 1, "examples/test/search": 1,
            "feed/fair_negatives/written": 2, "search/fair_negatives/written": 2,
            "search/impressions/written": 1, "search/impressions/empty": 1,
            "search/rows_without_search_history": 1}), label="stats")  # [1]: only feed [0]


def test_make_examples_drops_rows_without_enough_negatives():
    pools = {Task.FEED: NegativePool.build({11: 1}, {11: 0}),  # only the user's own items
             Task.SEARCH: NegativePool.build({30: 1}, {30: 0})}
    config = PreprocessConfig(num_train_negatives=1, num_eval_negatives=1)
    with X.pipeline() as p:
        out = (p | beam.Create([X.timeline(1)])
               | beam.ParDo(tr.MakeExamples(config), pools=pools).with_outputs(
                   tr.STATS, main="ex"))
        # Every feed row has 11 as its positive or an earlier item, every search row 30:
        # neither the weighted pool nor the uniform fallback ({11} / {30}) has a negative.
        assert_that(out.ex, equal_to([]), label="examples")
        assert_that(out.stats, X.merged_counters_equal({
            "feed/dropped_insufficient_negatives": 4,
            "feed/dropped_insufficient_negatives/train": 2,
            "feed/dropped_insufficient_negatives/valid": 1,
            "feed/dropped_insufficient_negatives/test": 1,
            "search/dropped_insufficient_negatives": 4,
            "search/dropped_insufficient_negatives/train": 2,
            "search/dropped_insufficient_negatives/valid": 1,
            "search/dropped_insufficient_negatives/test": 1,
            # each dropped row tried both fallbacks first
            "negatives/fallback_exhaustive": 8, "negatives/fallback_uniform": 8}), label="stats")


def test_serialize_examples_shards_by_user():
    values = {name: [] for name in F.ALL_FEATURES}
    values.update({F.USER_ID: [1], F.TARGET_ITEM: [11], F.NEGATIVES: [99]})
    keyed = [KeyedExample("train", FEED, 1, 5, values),
             KeyedExample("train", FEED, 2, 6, {**values, F.USER_ID: [2]}),
             KeyedExample("test", SEARCH, 2, 7, {**values, F.USER_ID: [2]})]

    def decoded(element):
        from tensorflow.core.example import example_pb2
        key, (user_row, data) = element
        example = F.to_example_dict(example_pb2.Example.FromString(data))
        return key, user_row, example[F.USER_ID].tolist(), example[F.TARGET_ITEM].tolist()

    with X.pipeline() as p:
        out = (p | beam.Create(keyed)
               | beam.ParDo(tr.SerializeExamples({"train": 4, "valid": 1, "test": 1}))
               | beam.Map(decoded))
        # Shard = (user · 2654435761 mod 2³²) mod n: user 1 → 2654435761 mod 4 = 1, user 2 →
        # 1013904226 mod 4 = 2; the test split has one shard.
        assert_that(out, equal_to([(("train", FEED, 1), (1, 5), 1, 11),
                                   (("train", FEED, 2), (2, 6), 2, 11),
                                   (("test", SEARCH, 0), (2, 7), 2, 11)]))


# --------------------------------------------------------------------------- the composite


def test_kuaisar_to_examples_on_a_tiny_world(tmp_path):
    bad = b"not,a,number,row"
    paths = _raw_world(tmp_path, {tr.SRC: [bad]})
    config = PreprocessConfig(num_train_negatives=1, num_eval_negatives=1)
    with X.pipeline() as p:
        out = p | tr.KuaisarToExamples(paths, config)
        assert_that(out["examples"] | beam.Map(lambda e: (e.split, e.task, e.target_row)),
                    equal_to([("train", SEARCH, 0), ("train", FEED, 1), ("train", SEARCH, 1),
                              ("train", FEED, 2), ("valid", SEARCH, 2), ("valid", FEED, 3),
                              ("test", SEARCH, 4), ("test", FEED, 4)]), label="examples")
        # items.tsv rows: (item, feed count, search count, first seen, author, 4 categories,
        # caption); only train-visible items, features of 10 and 11 only.
        assert_that(out["items"], equal_to([
            (10, 0, 0, ts(1), 7, 1, 10, 0, 0, (510,)), (11, 1, 0, ts(2), 7, 1, 10, 0, 0, (511,)),
            (12, 1, 0, ts(3), 0, 0, 0, 0, 0, ()), (20, 0, 0, ts(1), 0, 0, 0, 0, 0, ()),
            (30, 0, 1, ts(1.5), 0, 0, 0, 0, 0, ()), (31, 0, 1, ts(2.5), 0, 0, 0, 0, 0, ())]),
            label="items")
        assert_that(out["words"], equal_to([(7, 1), (8, 2), (510, 1), (511, 1)]), label="words")
        assert_that(out["queries"], equal_to([((7, 8), 1), ((8,), 1)]), label="queries")
        assert_that(out["users"], equal_to([(1, 3, 2, 1, 4, 1, 0, 0, 1)]), label="users")
        assert_that(out["dead_letter"] | beam.Map(lambda r: (r.file, r.row, r.reason)),
                    equal_to([(tr.SRC, 5, "wrong_field_count")]), label="dead")

        def reconciles(stats):
            assert len(stats) == 1
            c = stats[0]
            for name in (tr.REC, tr.SRC, tr.ITEMS, tr.USERS):
                rejected = sum(v for k, v in c.items() if k.startswith(f"{name}/rejected/"))
                assert c[f"{name}/rows_read"] == (
                    c.get(f"{name}/canonical", 0) + c.get(f"{name}/dropped_duplicate", 0)
                    + c.get(f"{name}/dropped_conflicting_id", 0) + rejected), name
            assert (c["src_inter.csv/rows_read"], c["src_inter.csv/rejected/wrong_field_count"],
                    c["rec_inter.csv/rows_read"]) == (6, 1, 6)
            assert (c["vocab/items"], c["vocab/words"], c["vocab/queries"], c["vocab/users"]) \
                == (6, 4, 2, 1)
            assert {k: c[k] for k in c if k.startswith("examples/")} == {
                f"examples/{s}/{t}": n for s, n in (("train", 2), ("valid", 1), ("test", 1))
                for t in ("feed", "search")}
        assert_that(out["stats"], X.satisfies(reconciles), label="stats")
