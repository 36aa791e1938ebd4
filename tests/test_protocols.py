"""Evaluation protocols (jsr_tf/evaluation/protocols.py): golden ranks of ``full`` and
``impressions``, history exclusion, a positive in the history, the count floors, and a fixture on
which the ``sampled`` candidates give the positive away and the ``sampled_fair`` ones do not."""

import json

import numpy as np
import pytest

import jsr_tf  # noqa: F401
import tensorflow as tf

from jsr_tf import features as F
from jsr_tf import filenames as FN
from jsr_tf.data import reader
from jsr_tf.data.vocab import load_vocab
from jsr_tf.evaluation import evaluator, metrics, protocols, report, scorers
from tests import golden_fixture as G
from tests.testing import item_row, read_examples, rec_row, run_preprocess, src_row, user_row
from tests.testing import write_kuaisar

B = G.BIG_ITEM


class TableScorer:
    """Scores a candidate by a fixed table of item -> score (0 for other items)."""

    def __init__(self, table):
        keys = tf.constant(list(table), tf.int64)
        values = tf.constant(list(table.values()), tf.float32)
        self.table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(keys, values), default_value=0.0)

    def score(self, batch, task, training=False):
        return self.table.lookup(batch[reader.CANDIDATES])


def _batch(positive, feed_items, clicks, has_click):
    """A one-row batch with just what ``full`` reads."""
    return {reader.CANDIDATES: tf.constant([[positive]], tf.int64),
            F.FEED_ITEMS: tf.constant([feed_items], tf.int64),
            F.SEARCH_CLICKS: tf.constant([clicks], tf.int64),
            F.SEARCH_HAS_CLICK: tf.constant([has_click], tf.int64)}


# -- full: golden counts on a hand-made row -------------------------------------------------------
def test_full_step_excludes_history_and_counts_ties_against():
    # positive 5 scores 4; 1 (5) beats it, 2 ties (4), 3 loses (1); 7 and 8 are history items
    # and score 9 but are excluded; 9 is a no-click session's fallback, so it is not excluded.
    scorer = TableScorer({5: 4.0, 1: 5.0, 2: 4.0, 3: 1.0, 7: 9.0, 8: 9.0, 9: 6.0})
    batch = _batch(5, [7, 0], [[8, 0], [9, 0]], [1, 0])
    step = protocols._full_step(scorer, F.Task.FEED)
    count, in_history = step(batch, tf.constant([1, 2, 3, 7, 8, 9], tf.int64))
    assert count.numpy().tolist() == [3]  # 1, 2 (tie) and 9
    assert in_history.numpy().tolist() == [False]


def test_full_step_excludes_the_sessions_other_clicks():
    # Item 2 was clicked in the same session as the positive 5: relevant, never a negative.
    scorer = TableScorer({5: 4.0, 1: 5.0, 2: 6.0})
    batch = _batch(5, [0], [[0]], [0])
    step = protocols._full_step(scorer, F.Task.SEARCH)
    ids = tf.constant([1, 2], tf.int64)
    assert step(batch, ids)[0].numpy().tolist() == [2]
    batch[F.OTHER_CLICKS] = tf.constant([[2, 0]], tf.int64)
    assert step(batch, ids)[0].numpy().tolist() == [1]


def test_full_step_positive_in_history_stays_the_positive():
    # The positive 7 is also a feed history item: it is ranked (against 1 and 3), never
    # excluded, and its catalogue copy does not count against it.
    scorer = TableScorer({7: 3.0, 1: 5.0, 3: 1.0})
    batch = _batch(7, [7, 4], [[0, 0]], [0])
    count, in_history = protocols._full_step(scorer, F.Task.FEED)(
        batch, tf.constant([1, 3, 4, 7], tf.int64))
    assert count.numpy().tolist() == [1]  # only item 1; 4 is history, 7 is the positive
    assert in_history.numpy().tolist() == [True]


def test_full_metrics_golden_values():
    result = protocols.FullRanks(ranks=np.array([1, 4, 60, 200]), user_id=np.arange(4),
                                 target_row=np.arange(4),
                                 positive_in_history=np.array([True, False, False, False]),
                                 wall_time_s=2.0, candidates_scored=4000)
    out = protocols.full_metrics(result)
    assert out["Recall@10"] == pytest.approx(0.5)
    assert out["Recall@50"] == pytest.approx(0.5)
    assert out["Recall@100"] == pytest.approx(0.75)
    assert out["NDCG@10"] == pytest.approx((1 + 1 / np.log2(5)) / 4)
    assert out["NDCG@100"] == pytest.approx((1 + 1 / np.log2(5) + 1 / np.log2(61)) / 4)
    assert out["MRR"] == pytest.approx((1 + 1 / 4 + 1 / 60 + 1 / 200) / 4)
    assert out["rows"] == 4 and out[protocols.POSITIVE_IN_HISTORY] == 0.25
    assert out[protocols.ROWS_PER_S] == 2.0 and out[protocols.CANDIDATES_PER_S] == 2000.0


def _preprocess(root, write_raw):
    """Runs the pipeline with 1 train and 3 eval negatives on the raw files ``write_raw`` writes."""
    config = root / "config.json"
    config.write_text(json.dumps({"num_train_negatives": 1, "num_eval_negatives": 3}))
    out = str(root / "data")
    run_preprocess(write_raw(str(root / "raw")), out, "--config", str(config))
    return out


@pytest.fixture(scope="module")
def golden_dir(tmp_path_factory):
    return _preprocess(tmp_path_factory.mktemp("protocols_golden"), G.write)


def test_full_ranks_on_the_golden_fixture_by_hand(golden_dir):
    # U1's feed test row: positive 506 at minute 60; its history holds the feed items 501 (an
    # ineligible target is still history), 503, 504 and BIG and the clicks 602, 603 (session 7)
    # and 606 (session 9); session 8's 604 is a no-click fallback, so it stays a candidate.
    catalogue = np.array([501, 502, 503, 504, 506, 601, 602, 603, 604, 606, B])
    table = {506: 4.0, 501: 5.0, 502: 1.0, 601: 4.0, 604: 7.0,
             503: 9.0, 504: 9.0, 602: 9.0, 603: 9.0, 606: 9.0, B: 9.0}
    result = protocols.full_ranks(TableScorer(table), golden_dir, "test", F.Task.FEED,
                                  catalogue, batch_size=1, chunk=4)
    by_user = dict(zip(result.user_id.tolist(), result.ranks.tolist()))
    assert by_user[G.U1] == 3  # 601 (a tie) and 604 score >= 4; 501 is excluded
    # U2's feed test row: positive 511 (not in the catalogue, score 0); history 501, 508, 509,
    # 510 and the clicks 620, 621, 622: the other 10 catalogue items all score >= 0.
    assert by_user[G.U2] == 1 + len(catalogue) - 1
    out = protocols.full_metrics(result)
    assert out["Recall@10"] == pytest.approx(0.5)
    assert out["MRR"] == pytest.approx((1 / 3 + 1 / 11) / 2)


def test_full_subset_is_fixed_and_about_the_asked_size():
    users = np.arange(10_000, dtype=np.int64)
    mask = protocols.subset_mask(users, 0.1)
    assert 900 < mask.sum() < 1100
    assert (protocols.subset_mask(users, 0.1) == mask).all()
    assert protocols.subset_mask(users, 1.0).all()


# -- impressions and padding ----------------------------------------------------------------------
def test_impressions_golden_rank_ignores_padding():
    batch = {reader.CANDIDATES: np.array([[10, 1, 2, 3], [11, 4, 5, 6]]),
             F.IMPRESSIONS: np.array([[20, 21, -1], [-1, -1, -1]])}
    candidates, valid, keep = protocols.protocol_candidates(batch, protocols.IMPRESSIONS)
    assert candidates.tolist() == [[10, 20, 21, -1], [11, -1, -1, -1]]
    assert valid.tolist() == [[True, True, True, False], [True, False, False, False]]
    assert keep.tolist() == [True, False]  # a session that showed nothing else is skipped
    # Scores: 21 beats the positive, 20 ties it, the padding column's 9 is ignored.
    out = evaluator.evaluate_scores(np.array([[0.5, 0.5, 0.7, 9.0]]), valid=valid[:1])
    assert out["HR@1"] == 0 and out["HR@5"] == 1
    assert out["MRR"] == pytest.approx(1 / 3)
    assert out["NDCG@5"] == pytest.approx(0.5)
    assert out["positive_tie_fraction"] == 1.0


def test_padding_never_ties_or_beats_the_positive():
    # A NaN positive (ranked as -inf) still beats nothing but never loses to padding.
    scores = np.array([[-5.0, 3.0, -5.0, -5.0], [np.nan, 0.3, 7.0, 7.0]])
    valid = np.array([[True, True, False, False], [True, True, False, False]])
    assert metrics.positive_ranks(scores, valid=valid).tolist() == [2, 2]
    assert metrics.tie_mask(scores, valid).tolist() == [False, False]
    assert metrics.positive_ranks(scores).tolist() == [4, 4]  # unmasked: pads count
    with pytest.raises(ValueError, match="positive's column"):
        metrics.positive_ranks(scores, valid=np.array([[False, True, True, True]] * 2))


def test_sampled_fair_skips_rows_without_fair_negatives():
    batch = {reader.CANDIDATES: np.array([[10, 1, 2], [11, 2, 3]]),
             F.NEGATIVES_FAIR: np.array([[3, 4, -1, -1], [-1, -1, -1, -1]])}  # padded past C - 1
    candidates, valid, keep = protocols.protocol_candidates(batch, protocols.SAMPLED_FAIR)
    assert candidates.tolist() == [[10, 3, 4], [11, -1, -1]]
    assert valid.all() and keep.tolist() == [True, False]


# -- a fixture where the sampled candidates leak and the fair ones do not -------------------------
N_USERS = 200


def _leaky_world(directory):
    """Train targets of every user are the popular items 1..20; each user's valid and test targets
    are items nobody had as a train target (so ``sampled`` negatives, drawn by train-target
    popularity, can never look like the positive)."""
    rec, src, items = [], [], set()
    for u in range(N_USERS):
        user = 100 + u
        for k in range(4):  # feed train targets on the popular items (the first is ineligible)
            rec.append(rec_row(user, 1 + (3 * u + k) % 20, 10 + k))
            items.add(1 + (3 * u + k) % 20)
        for k, item in enumerate((1000 + 2 * u, 1001 + 2 * u)):  # valid, test: fresh items
            rec.append(rec_row(user, item, 100 + 10 * k + u * 0.01))
            items.add(item)
        for k in range(3):  # one search session per time: train targets on popular items
            src.append(src_row(user, 10 * user + k, 20 + k, [7, k], 1 + (3 * u + k + 7) % 20, 1))
            items.add(1 + (3 * u + k + 7) % 20)
        for k, item in enumerate((3000 + 2 * u, 3001 + 2 * u)):
            session = 10 * user + 5 + k
            src.append(src_row(user, session, 150 + 10 * k + u * 0.01, [8, k], item, 1))
            src.append(src_row(user, session, 150 + 10 * k + u * 0.01, [8, k], 5000 + u, 0))
            items.update((item, 5000 + u))
    # Every fresh item is delivered (not clicked) to user 99 at the start: first seen early.
    for item in sorted(items):
        rec.append(rec_row(99, item, 1, click=0))
    return write_kuaisar(directory, rec, src, [item_row(i) for i in sorted(items)],
                         [user_row(u) for u in [99] + [100 + u for u in range(N_USERS)]])


@pytest.fixture(scope="module")
def leaky_dir(tmp_path_factory):
    return _preprocess(tmp_path_factory.mktemp("leaky"), _leaky_world)


def test_count_floor_finds_the_positive_under_sampled_but_not_under_sampled_fair(leaky_dir):
    vocab = load_vocab(leaky_dir)
    count = scorers.CountScorer(vocab, same_task=True)
    expected_random = np.mean(1 / np.log2(np.arange(1, 5) + 1))  # NDCG@10 with C = 4
    for task in ("feed", "search"):
        sampled = evaluator.evaluate_model(count, leaky_dir, "test")[task]
        fair = evaluator.evaluate_model(count, leaky_dir, "test",
                                        protocol=protocols.SAMPLED_FAIR)[task]
        assert sampled["rows"] == fair["rows"] == N_USERS
        assert sampled["NDCG@10"] == 1.0, task  # every positive has count 0, negatives > 0
        # 200 rows: the standard error of a random NDCG@10 at C = 4 is about 0.017.
        assert abs(fair["NDCG@10"] - expected_random) < 0.05, (task, fair["NDCG@10"])


def test_fair_negatives_come_from_the_same_splits_positives(leaky_dir):
    for task, offset in ((F.Task.FEED, 1000), (F.Task.SEARCH, 3000)):
        for split, parity in (("valid", 0), ("test", 1)):
            rows = read_examples(leaky_dir, split, task)
            positives = {int(e[F.TARGET_ITEM]) for e in rows}
            assert positives == {offset + 2 * u + parity for u in range(N_USERS)}
            for e in rows:
                fair = set(int(x) for x in e[F.NEGATIVES_FAIR])
                assert len(fair) == 3 and fair <= positives - {int(e[F.TARGET_ITEM])}
        for e in read_examples(leaky_dir, "train", task):
            assert F.NEGATIVES_FAIR not in e


def test_impressions_hold_the_shown_unclicked_items(leaky_dir):
    rows = read_examples(leaky_dir, "test", F.Task.SEARCH)
    assert {int(e[F.USER_ID]): e[F.IMPRESSIONS].tolist() for e in rows} == {
        100 + u: [5000 + u] for u in range(N_USERS)}
    # Ranked against one impression each: a scorer that prefers the clicked item is perfect.
    prefer = TableScorer({3001 + 2 * u: 1.0 for u in range(N_USERS)})
    out = evaluator.evaluate_model(prefer, leaky_dir, "test", protocol=protocols.IMPRESSIONS)
    assert set(out) == {"search"}
    assert out["search"]["MRR"] == 1.0 and out["search"]["rows"] == N_USERS


def test_protocols_of_a_data_dir(leaky_dir, tmp_path):
    assert protocols.available_protocols(leaky_dir) == protocols.PROTOCOLS
    assert protocols.resolve_protocols(None, leaky_dir) == protocols.PROTOCOLS
    assert protocols.resolve_protocols(["full", "full"], leaky_dir) == ("full",)
    with pytest.raises(ValueError, match="Unknown protocol"):
        protocols.resolve_protocols(["bogus"], leaky_dir)
    (tmp_path / FN.MANIFEST_FILE).write_text(json.dumps({"files": {}}))
    assert protocols.available_protocols(str(tmp_path)) == (protocols.SAMPLED, protocols.FULL)
    with pytest.raises(ValueError, match="Rerun jsr-preprocess"):
        protocols.resolve_protocols(["sampled_fair"], str(tmp_path))


def test_count_scorers_count_the_right_task_and_break_ties(leaky_dir):
    vocab = load_vocab(leaky_dir)
    batch = {reader.CANDIDATES: tf.constant([[1, 1000, 1001]], tf.int64)}
    same = scorers.CountScorer(vocab, same_task=True).score(batch, F.Task.FEED).numpy()[0]
    other = scorers.CountScorer(vocab, same_task=False).score(batch, F.Task.FEED).numpy()[0]
    feed_count = dict(zip(vocab.item_ids.tolist(), vocab.item_feed_count.tolist()))[1]
    search_count = dict(zip(vocab.item_ids.tolist(), vocab.item_search_count.tolist()))[1]
    assert -feed_count <= same[0] < -feed_count + 0.5
    assert -search_count <= other[0] < -search_count + 0.5
    assert 0 <= same[1] < 0.5 and 0 <= same[2] < 0.5 and same[1] != same[2]  # ties broken
    again = scorers.CountScorer(vocab, same_task=True).score(batch, F.Task.FEED).numpy()[0]
    assert (again == same).all()  # a fixed order, the same in every call


def test_floor_beats_flags_only_training_free_floors():
    model = {"feed": {"NDCG@10": 0.3}, "search": {"NDCG@10": 0.5}}
    floors = {report.POPULARITY: {"feed": {"NDCG@10": 0.4}},
              report.COUNT_SAME: {"search": {"NDCG@10": 0.6}},
              report.QUERY_BLIND: {"search": {"NDCG@10": 0.9}}}
    beats = report.floor_beats(model, floors)
    assert [(b["task"], b["floor"]) for b in beats] == [
        ("feed", report.POPULARITY), ("search", report.COUNT_SAME)]
    lines = report.beats_lines(beats, "sampled", "unisar")
    assert lines[0] == ("WARNING: training-free popularity beats unisar on feed under sampled "
                        "(NDCG@10 0.4000 vs 0.3000)")


def test_fair_weights_divide_by_the_rows_allowed_to_draw_each_item():
    from jsr_tf.pipelines.transforms import fair_weights

    counts = {1: 2, 2: 1, 3: 1, 4: 1, 5: 3}
    first_seen = {1: 0, 2: 50, 3: 0, 4: 200, 6: 0}  # 5 was never seen: not drawable
    rows = [10, 60, 100]
    excluded = {1: 1}  # one row has item 1 in its own history
    weights = fair_weights(counts, first_seen, rows, excluded)
    # 1: 3 rows after t=0, minus the excluding row -> 2/2; 2: 2 rows after t=50 -> 1/2;
    # 3: 1/3; 4: no row after t=200 -> 0 (never a negative).
    assert weights == pytest.approx({1: 1.0, 2: 0.5, 3: 1 / 3, 4: 0.0})
    # Without the first-seen rule every row may draw every item it does not exclude.
    assert fair_weights(counts, first_seen, rows, excluded, must_predate=False) == pytest.approx(
        {1: 1.0, 2: 1 / 3, 3: 1 / 3, 4: 1 / 3})


def test_weighted_exhaustive_pass_follows_the_weights():
    from jsr_tf.data.negatives import NegativePool, NegativeSampler

    # Rejection stalls (the two heavy items are excluded), so every draw comes from the
    # exhaustive pass over the light items 3 (weight 9) and 4 (weight 1).
    pool = NegativePool.build({1: 1e6, 2: 1e6, 3: 9, 4: 1}, {1: 0, 2: 0, 3: 0, 4: 0},
                              uniform_fallback=False)
    assert pool.weighted_exhaustive and pool.fallback_items.size == 0
    firsts = [NegativeSampler(pool, seed).sample(1, {1, 2}, 10)[0] for seed in range(400)]
    assert 0.8 < firsts.count(3) / len(firsts) < 0.97  # 0.9 expected; a uniform order gives 0.5
    counters = {}
    assert NegativeSampler(pool, 0).sample(3, {1, 2}, 10, counters) is None  # only 2 left
    assert counters == {"negatives/fallback_exhaustive": 1, "negatives/fallback_uniform": 1}
