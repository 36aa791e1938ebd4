"""Per-user merge without Beam: caps, fallback clicks, canonical tie order, repairs."""

import dataclasses

from jsr_tf import features as F
from jsr_tf.data.config import PreprocessConfig
from jsr_tf.data.examples import user_examples
from jsr_tf.data.negatives import NegativePool
from jsr_tf.data.records import FeedEvent, SearchRow
from jsr_tf.data.timeline import build_timeline

USER = 7


def feed(item, ts, row, click=1):
    return FeedEvent(USER, item, ts, row, click, 0, 0, 0, 0, 0, 1.0, 2.0)


def search(session, ts, row, words, item, clicked):
    return SearchRow(USER, session, ts, row, tuple(words), "USER_INPUT", item, clicked, "VIDEO")


def _pools(items):
    counts = {i: 1 for i in items}
    seen = {i: 0 for i in items}
    return {F.Task.FEED: NegativePool.build(counts, seen),
            F.Task.SEARCH: NegativePool.build(counts, seen)}


def test_histories_keep_the_most_recent_30_oldest_first_and_cap_words_and_clicks():
    rows = [feed(100 + i, 1000 * (i + 1), i) for i in range(40)]  # feed clicks at 1s..40s
    long_query = list(range(1, 61))  # 60 words -> the first 50 kept
    srows = [search(1, 500, 0, long_query, 900 + k, 1) for k in range(7)]  # 7 clicks -> 5 kept
    srows += [search(2 + s, 1500 + 1000 * s, 7 + s, [5], 950 + s, 1) for s in range(35)]
    config = PreprocessConfig(num_train_negatives=1, num_eval_negatives=2)
    timeline = build_timeline(USER, rows, srows, config)
    examples = list(user_examples(timeline, _pools(range(5000, 5100)), config, {}))
    test_feed = [e for e in examples if e.task == F.Task.FEED and e.split == "test"][0].values
    # Target = feed click at 40s; held-out events stay in valid/test histories.
    assert test_feed[F.FEED_ITEMS] == list(range(109, 139))  # the 30 most recent of 39 earlier
    assert test_feed[F.FEED_TS] == sorted(test_feed[F.FEED_TS])
    assert len(test_feed[F.SEARCH_TS]) == 30
    # 36 sessions precede 40s (the long one at 0.5s, rows 7..41 at 1.5s..35.5s): the last 30
    # start at row 12.
    assert test_feed[F.SEARCH_ROWS][0] == 12 and test_feed[F.SEARCH_ROWS][-1] == 41
    first_session_example = [e for e in examples
                             if e.task == F.Task.FEED and e.values[F.TARGET_TS][0] == 2000][0]
    v = first_session_example.values  # history: feed@1s, the long session@0.5s, one@1.5s
    assert v[F.SEARCH_WORD_LENGTHS] == [50, 1] and v[F.SEARCH_WORDS] == list(range(1, 51)) + [5]
    assert v[F.SEARCH_CLICK_LENGTHS] == [5, 1]
    assert v[F.SEARCH_CLICKS] == [900, 901, 902, 903, 904, 950]


def test_no_click_session_enters_history_with_its_first_shown_item_unless_disabled():
    rows = [feed(100 + i, 1000 * (i + 1), i) for i in range(5)]
    srows = [search(1, 1500, 0, [3], 801, 0), search(1, 1500, 1, [3], 802, 0)]
    for fallback, clicks, lengths in (("first_shown", [801], [1]), ("none", [], [0])):
        config = PreprocessConfig(num_train_negatives=1, num_eval_negatives=2,
                                  no_click_fallback=fallback)
        timeline = build_timeline(USER, rows, srows, config)
        e = [x for x in user_examples(timeline, _pools(range(5000, 5100)), config, {})
             if x.split == "test"][0].values
        assert e[F.SEARCH_CLICKS] == clicks and e[F.SEARCH_CLICK_LENGTHS] == lengths
        assert e[F.SEARCH_HAS_CLICK] == [0]


def test_feed_wins_ties_and_strict_same_ts_is_configurable():
    rows = [feed(100, 1000, 0), feed(101, 2000, 1), feed(102, 3000, 2), feed(103, 3000, 3),
            feed(104, 4000, 4)]
    srows = [search(1, 3000, 0, [3], 801, 1)]
    for strict, expected in ((True, [100, 101]), (False, [100, 101, 102])):
        config = PreprocessConfig(num_train_negatives=1, num_eval_negatives=2,
                                  strict_same_ts=strict, min_targets_per_task=3)
        timeline = build_timeline(USER, rows, srows, config)
        order = [(e.kind, e.row) for e in timeline.events]
        assert order == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (0, 4)]  # feed before search
        examples = list(user_examples(timeline, _pools(range(5000, 5100)), config, {}))
        valid = [e for e in examples if e.split == "valid"][0].values  # feed row 3 @3000
        assert valid[F.FEED_ITEMS] == expected


def test_disagreeing_session_rows_are_repaired_and_counted():
    rows = [feed(100, 1000, 0)]
    srows = [search(1, 1500, 0, [3], 801, 1), search(1, 1600, 1, [4], 802, 0)]
    counters = {}
    timeline = build_timeline(USER, rows, srows, PreprocessConfig(), counters)
    session = [e for e in timeline.events if e.kind == F.EventKind.SEARCH][0]
    assert (session.ts, session.words, session.clicks) == (1500, (3,), (801,))
    assert counters["sessions/rows_repaired"] == 1


def test_items_clicked_at_the_same_moment_are_never_negatives():
    """Strict histories drop same-timestamp clicks, but they stay excluded from negatives."""
    rows = [feed(100, 1000, 0), feed(101, 2000, 1), feed(102, 3000, 2), feed(103, 3000, 3)]
    srows = [search(1, 500, 0, [3], 801, 1)]
    config = PreprocessConfig(num_train_negatives=1, num_eval_negatives=3)
    timeline = build_timeline(USER, rows, srows, config)
    pool = _pools([102, 103, 200, 201, 202, 203])
    for seed in range(20):
        seeded = dataclasses.replace(config, candidate_seed=seed)
        examples = list(user_examples(timeline, pool, seeded, {}))
        test = [e for e in examples if e.split == "test"][0].values  # item 103 @3000
        assert test[F.FEED_ITEMS] == [100, 101]  # 102 shares the timestamp: not history
        assert 102 not in test[F.NEGATIVES]      # ... and never a negative
