"""The simulator oracle: exact probabilities and Bayes-optimal metrics (evaluation.md §7, §8)."""

import csv
import dataclasses
import os

import numpy as np
import pytest

from jsr_tf import features as F
from jsr_tf import filenames as FN
from jsr_tf import simulator
from jsr_tf.evaluation import metrics as M
from jsr_tf.simulator import dynamics
from jsr_tf.simulator import oracle as O

PIPELINE = os.path.join(os.path.dirname(__file__), os.pardir, "pipelines", "preprocess.py")


def _rows(directory, name):
    with open(os.path.join(directory, name), encoding="utf-8", newline="") as f:
        return list(csv.reader(f))[1:]


class Targets:
    """Leave-last-out targets built from the CSVs alone (the pipeline's recipe, simplified)."""

    def __init__(self, raw):
        rec = np.array([[r[0], r[1], r[5][:-2], r[6]] for r in _rows(raw, "rec_inter.csv")],
                       dtype=np.int64)
        self.items = np.array(sorted({int(r[0]) for r in _rows(raw, "item_features.csv")}))
        src = _rows(raw, "src_inter.csv")
        # Feed: every click is an event; each user's last click is the target.
        clicks = np.flatnonzero(rec[:, 3] == 1)
        order = clicks[np.lexsort((clicks, rec[clicks, 2], rec[clicks, 0]))]
        self.feed = self._split(rec[order, 0], rec[order, 1], rec[order, 2], order)
        # Search: sessions in first-row order; clicked ones are events, positive = first click.
        sessions = {}
        for i, r in enumerate(src):
            s = sessions.setdefault((int(r[0]), int(r[1])), {"row": i, "ts": int(r[3][:-2]),
                                                             "clicks": []})
            if int(r[7]) > 0:
                s["clicks"].append(int(r[6]))
        clicked = sorted(((s["ts"], s["row"], u, s["clicks"]) for (u, _), s in sessions.items()
                          if s["clicks"]), key=lambda x: (x[2], x[0], x[1]))
        self.search_universe = np.array(sorted({int(r[6]) for r in src}))
        self.search = self._split(np.array([c[2] for c in clicked]),
                                  np.array([c[3][0] for c in clicked]),
                                  np.array([c[0] for c in clicked]),
                                  np.array([c[1] for c in clicked]),
                                  also=[set(c[3]) for c in clicked])

    @staticmethod
    def _split(user, item, ts, row, also=None):
        last = np.ones(len(user), bool)
        last[:-1] = user[1:] != user[:-1]
        counts = {}
        for i in np.flatnonzero(~last):
            counts[int(item[i])] = counts.get(int(item[i]), 0) + 1
        prior = {}
        targets = []
        for i in range(len(user)):
            u = int(user[i])
            if last[i] and len(prior.get(u, ())) >= 2:
                targets.append((u, int(ts[i]), int(row[i]), int(item[i]), set(prior[u]),
                                also[i] if also else set()))
            prior.setdefault(u, []).append(int(item[i]))
        return {"targets": targets, "counts": counts}


def candidates(task_data, universe, rng, popularity):
    """``(users, ts, rows, candidates [N, 100], w [N, 100])``, uniform or popularity negatives."""
    counts = task_data["counts"]
    pool = np.array(sorted(counts)) if popularity else universe
    weights = np.array([counts[i] for i in pool], float) if popularity else np.ones(len(pool))
    users, ts, rows, cands = [], [], [], []
    for user, t, row, item, prior, also in task_data["targets"]:
        ok = ~np.isin(pool, list(prior | also | {item}))
        p = weights * ok
        neg = rng.choice(pool, 99, replace=False, p=p / p.sum())
        users.append(user), ts.append(t), rows.append(row), cands.append([item, *neg])
    cands = np.array(cands)
    w = (np.vectorize(lambda i: counts.get(int(i), 0))(cands).astype(float) if popularity
         else np.ones(cands.shape))
    return np.array(users), np.array(ts), np.array(rows), cands, w


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    raw = str(tmp_path_factory.mktemp("oracle") / "raw")
    config = simulator.get_preset("tiny")
    sim = simulator.simulate(config, 2)
    simulator.generate(config, 2, raw, simulation=sim)
    return raw, sim, O.Oracle.load(raw), Targets(raw)


# -- probabilities --------------------------------------------------------------------------------
def test_probabilities_are_distributions(world):
    raw, sim, oracle, _ = world
    items = sim.world.items
    feed_ids = items.item_id[:items.num_feed]
    rng = np.random.default_rng(0)
    users = rng.choice(sim.world.users.user_id, 50)
    ts = rng.integers(oracle.meta["period_start_ms"], oracle.meta["period_end_ms"], 50)
    p = oracle.probabilities(users, F.Task.FEED, ts, np.zeros(50, int),
                             np.broadcast_to(feed_ids, (50, len(feed_ids))))
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-9)
    others = items.item_id[items.num_feed:]
    search_only = oracle.feed_probabilities(users[:3], ts[:3],
                                            np.broadcast_to(others, (3, len(others))))
    assert np.all(search_only == 0)
    sessions = oracle.sessions[::25]
    uid = sim.world.users.user_id[sessions["user"]]
    ps = oracle.probabilities(uid, F.Task.SEARCH, sessions["ts"], sessions["first_row"],
                              np.broadcast_to(items.item_id, (len(uid), len(items.item_id))))
    np.testing.assert_allclose(ps.sum(axis=1), 1.0, atol=1e-9)


def test_realised_choices_are_calibrated(world):
    _, sim, oracle, _ = world
    feed, items, users = sim.log.feed, sim.world.items, sim.world.users
    clicks = np.flatnonzero(feed.click == 1)[::5]
    uid, ts = users.user_id[feed.user[clicks]], feed.ts[clicks]
    all_feed = np.broadcast_to(items.item_id[:items.num_feed], (len(clicks), items.num_feed))
    p_all = oracle.feed_probabilities(uid, ts, all_feed)
    p_real = p_all[np.arange(len(clicks)), feed.item[clicks]]
    assert np.all(p_real > 0)
    cats = items.cat2[:items.num_feed]
    predicted = np.array([p_all[:, cats == c].sum() for c in range(sim.config.num_cat2)])
    observed = np.bincount(items.cat2[feed.item[clicks]], minlength=sim.config.num_cat2)
    tv = 0.5 * np.abs(predicted / predicted.sum() - observed / observed.sum()).sum()
    assert tv < 0.05
    # The true state explains the clicks far better than another user's state.
    shuffled = oracle.feed_probabilities(np.roll(uid, 997), ts,
                                         items.item_id[feed.item[clicks]][:, None])[:, 0]
    assert np.mean(np.log(p_real)) > np.mean(np.log(np.maximum(shuffled, 1e-12))) + 1.0


def test_search_clicks_have_positive_probability(world):
    _, sim, oracle, targets = world
    search = sim.log.search
    clicked = np.flatnonzero(search.has_click == 1)
    first = np.array([search.row_item[search.row_offsets[k] + np.flatnonzero(
        search.row_click_cnt[search.row_offsets[k]:search.row_offsets[k + 1]])[0]]
        for k in clicked])
    uid = sim.world.users.user_id[search.user[clicked]]
    p = oracle.search_probabilities(uid, oracle.sessions["first_row"][clicked],
                                    sim.world.items.item_id[first][:, None], search.ts[clicked])
    assert np.all(p > 0)
    assert np.mean(p) > 50 / len(sim.world.items.item_id)


def _with_params(oracle, **changes):
    """A copy of ``oracle`` whose dynamics parameters are perturbed."""
    params = dataclasses.replace(oracle.params, **changes)
    return O.Oracle(params, oracle.items, oracle.users, oracle.sessions, oracle.intervals,
                    oracle.feed_clicks, oracle.meta)


@pytest.mark.parametrize("changes", [
    dict(feed_drift=0.0), dict(feed_drift=6.0), dict(drift_half_life_s=12 * 3600.0),
    dict(feed_episode=0.0), dict(feed_demand=0.0), dict(feed_long_term=2.0),
    dict(feed_exclude_seen=False), dict(search_topic=0.25, search_category=0.55),
    dict(search_personal=0.0, search_topic=0.7), dict(personal_episode=0.0)])
def test_true_parameters_maximise_likelihood(world, changes):
    _, sim, oracle, _ = world
    feed, items, users, search = sim.log.feed, sim.world.items, sim.world.users, sim.log.search
    clicks = np.flatnonzero(feed.click == 1)[::4]
    sessions = np.flatnonzero(search.has_click == 1)
    first = np.array([search.row_item[a + np.flatnonzero(search.row_click_cnt[a:b])[0]]
                      for a, b in zip(search.row_offsets[sessions],
                                      search.row_offsets[sessions + 1])])

    def log_likelihood(o):
        feed_p = o.feed_probabilities(users.user_id[feed.user[clicks]], feed.ts[clicks],
                                      items.item_id[feed.item[clicks]][:, None])
        search_p = o.search_probabilities(users.user_id[search.user[sessions]],
                                          o.sessions["first_row"][sessions],
                                          items.item_id[first][:, None])
        return (np.mean(np.log(np.maximum(feed_p, 1e-300))),
                np.mean(np.log(np.maximum(search_p, 1e-300))))

    true_feed, true_search = log_likelihood(oracle)
    other_feed, other_search = log_likelihood(_with_params(oracle, **changes))
    assert (true_feed, true_search) != (other_feed, other_search)
    assert true_feed >= other_feed and true_search >= other_search


def test_sampler_matches_probabilities(world):
    _, sim, oracle, _ = world
    rng = np.random.default_rng(5)
    model, config, n = oracle.model, sim.config, 200_000
    user = int(np.flatnonzero((sim.world.users.lt_cat >= 0).sum(axis=1) >= 3)[0])
    lt_cat = np.repeat(sim.world.users.lt_cat[user:user + 1], n, axis=0)
    lt_weight = np.repeat(sim.world.users.lt_weight[user:user + 1], n, axis=0)
    one = np.ones(1, int)
    weights = dynamics.feed_weights(config.dynamics, np.array([10_000]), np.array([5_000]),
                                    one > 0, one > 0)
    state = (lt_cat[:1], lt_weight[:1], np.array([3]), np.array([7]), np.array([11]))
    drawn = model.sample_feed(rng, np.repeat(weights, n, axis=0), lt_cat, lt_weight,
                              *(np.repeat(x, n) for x in state[2:]))
    every = np.arange(len(oracle.items))[None, :]
    p = model.feed_probabilities(weights, *state, every)[0]
    topics = oracle.items["topic"]
    observed = np.bincount(topics[drawn], minlength=config.num_topics) / n
    expected = np.bincount(topics, weights=p, minlength=config.num_topics)
    assert 0.5 * np.abs(observed - expected).sum() < 0.02
    personal = dynamics.personal_weights(config.dynamics, one > 0, one < 0)
    drawn = model.sample_search(rng, np.full(n, 17), np.repeat(personal, n, axis=0), lt_cat,
                                lt_weight, np.full(n, 7), np.full(n, -1))
    p = model.search_probabilities(np.array([17]), personal, lt_cat[:1], lt_weight[:1],
                                   np.array([7]), np.array([-1]), every)[0]
    observed = np.bincount(topics[drawn], minlength=config.num_topics) / n
    expected = np.bincount(topics, weights=p, minlength=config.num_topics)
    assert 0.5 * np.abs(observed - expected).sum() < 0.02
    assert p.sum() == pytest.approx(1.0)


def test_oracle_state_matches_the_simulator(world):
    _, sim, oracle, _ = world
    feed = sim.log.feed
    users = sim.world.users.user_id[feed.request_user]
    state = oracle.state(users, feed.request_ts)
    np.testing.assert_array_equal(state.drift_cat, feed.request_drift_cat)
    np.testing.assert_array_equal(state.drift_ts, feed.request_drift_ts)
    sched = sim.world.schedule
    inside = state.episode_cat >= 0
    assert 0.05 < inside.mean() < 0.95
    assert np.all(state.episode_start[inside] <= feed.request_ts[inside])
    assert np.isin(state.episode_start[inside], sched.episode_start).all()
    assert np.all(state.episode_start[~inside] == -1)
    assert oracle.communities() == dict(zip(sim.world.users.user_id.tolist(),
                                            sim.world.users.community.tolist()))


def test_lookup_errors(world, tmp_path):
    raw, sim, oracle, _ = world
    user = int(sim.world.users.user_id[0])
    with pytest.raises(KeyError):
        oracle.probability(-5, F.Task.FEED, oracle.meta["period_start_ms"], 0, [1, 2])
    with pytest.raises(KeyError):  # no session starts at row 10**9
        oracle.probability(user, F.Task.SEARCH, oracle.meta["period_start_ms"], 10**9, [1, 2])
    s = oracle.sessions[0]
    owner = int(sim.world.users.user_id[s["user"]])
    with pytest.raises(KeyError):  # right row, wrong time
        oracle.probability(owner, F.Task.SEARCH, int(s["ts"]) + 1, int(s["first_row"]), [1])
    p = oracle.probability(owner, F.Task.SEARCH, int(s["ts"]), int(s["first_row"]),
                           [123, int(sim.world.items.item_id[0])])
    assert p[0] == 0.0 and p[1] > 0.0  # unknown items get p = 0
    with pytest.raises(FileNotFoundError, match="simulated"):
        O.Oracle.load(str(tmp_path))


# -- oracle metrics (pure function) ---------------------------------------------------------------
def test_set_oracle_divides_by_weight():
    cands = np.arange(8).reshape(2, 4)
    p = np.array([[0.2, 0.4, 0.3, 0.1], [0.1, 0.5, 0.2, 0.2]])
    w = np.array([[1.0, 4.0, 3.0, 1.0], [0.0, 5.0, 1.0, 1.0]])
    report = O.oracle_metrics(cands, p, w)
    # Row 0: p/w = [0.2, 0.1, 0.1, 0.1] -> positive first; by p it is third.
    # Row 1: w = 0 identifies the positive.
    assert report.set_realised["HR@1"] == 1.0
    assert report.preference_realised["MRR"] == pytest.approx((1 / 3 + 1 / 4) / 2)
    assert report.positive_zero_weight_fraction == 0.5
    assert report.set_expected["HR@1"] == pytest.approx((0.2 / 0.5 + 1.0) / 2)
    assert report.popularity_realised["HR@1"] == 0.0
    with pytest.raises(ValueError, match="shape"):
        O.oracle_metrics(cands, p[:, :3], w)


def test_exact_factor_favours_rare_items():
    p = np.array([[0.5, 0.5]])
    w = np.array([[1.0, 2.0]])
    plain = O.set_scores(p, w)
    exact = O.set_scores(p, w, total_weight=4.0)
    assert exact[0, 1] / exact[0, 0] > plain[0, 1] / plain[0, 0]


def test_uniform_negatives_oracles_coincide(world):
    _, sim, oracle, targets = world
    rng = np.random.default_rng(0)
    for task, data, universe in ((F.Task.FEED, targets.feed, targets.items),
                                 (F.Task.SEARCH, targets.search, targets.search_universe)):
        users, ts, rows, cands, w = candidates(data, universe, rng, popularity=False)
        assert len(users) >= 80
        p = oracle.probabilities(users, task, ts, rows, cands)
        assert np.all(p[:, 0] > 0)
        report = O.oracle_metrics(cands, p, w)
        assert report.set_realised == report.preference_realised
        assert report.set_expected == report.preference_expected
        assert report.positive_zero_weight_fraction == 0.0
        ranks = np.broadcast_to(np.arange(p.shape[1]), p.shape)  # any fixed order = random
        random_ndcg5 = M.expected_metrics(ranks, np.ones_like(p))["NDCG@5"]
        assert random_ndcg5 == pytest.approx(0.0296, abs=1e-3)
        assert report.preference_realised["NDCG@5"] > random_ndcg5 + 0.25, task


def test_popularity_negatives_set_oracle_wins(world):
    _, sim, oracle, targets = world
    rng = np.random.default_rng(1)
    for task, data, universe in ((F.Task.FEED, targets.feed, targets.items),
                                 (F.Task.SEARCH, targets.search, targets.search_universe)):
        users, ts, rows, cands, w = candidates(data, universe, rng, popularity=True)
        p = oracle.probabilities(users, task, ts, rows, cands)
        report = O.oracle_metrics(cands, p, w)
        assert report.set_expected["NDCG@5"] >= report.preference_expected["NDCG@5"], task
        assert report.set_expected["HR@10"] >= report.preference_expected["HR@10"] - 1e-12
        pop = report.popularity_realised["NDCG@5"]
        assert report.set_realised["NDCG@5"] > pop + 0.2, task
        assert report.preference_realised["NDCG@5"] > pop + 0.2, task


def test_history_exclusions_identify_repeat_positives(world):
    _, _, oracle, targets = world
    rng = np.random.default_rng(4)
    for task, data, universe in ((F.Task.FEED, targets.feed, targets.items),
                                 (F.Task.SEARCH, targets.search, targets.search_universe)):
        users, ts, rows, cands, w = candidates(data, universe, rng, popularity=True)
        excluded = np.stack([np.isin(c, list(t[4])) for c, t in zip(cands, data["targets"])])
        assert not excluded[:, 1:].any()  # negatives never come from the history
        p = oracle.probabilities(users, task, ts, rows, cands)
        plain = O.oracle_metrics(cands, p, w)
        informed = O.oracle_metrics(cands, p, w, excluded=excluded)
        if task == F.Task.FEED:  # the feed never repeats a clicked item
            assert informed.positive_excluded_fraction == 0.0
            assert informed == dataclasses.replace(plain, positive_excluded_fraction=0.0)
        else:  # search clicks do repeat: the set identifies those positives
            assert informed.positive_excluded_fraction > 0.02
            assert informed.set_expected["NDCG@5"] > plain.set_expected["NDCG@5"]
            assert informed.set_realised["MRR"] >= plain.set_realised["MRR"]


# -- file wrapper ---------------------------------------------------------------------------------
def _write_candidate_files(data_dir, split, task, users, ts, rows, cands):
    tf = pytest.importorskip("tensorflow")

    def int_list(values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))

    path = os.path.join(data_dir, f"{F.shard_prefix(split, task)}-00000-of-00001"
                                  f"{FN.TFRECORD_SUFFIX}")
    with tf.io.TFRecordWriter(path, options="GZIP") as out:
        for u, t, r, c in zip(users, ts, rows, cands):
            feats = {name: int_list([]) for name in F.ALL_FEATURES}
            feats.update({F.USER_ID: int_list([u]), F.TASK: int_list([int(task)]),
                          F.TARGET_ITEM: int_list([c[0]]), F.TARGET_TS: int_list([t]),
                          F.TARGET_ROW: int_list([r]), F.NEGATIVES: int_list(c[1:])})
            example = tf.train.Example(features=tf.train.Features(feature=feats))
            out.write(example.SerializeToString())


def test_file_wrapper_matches_pure_function(world, tmp_path):
    raw, _, oracle, targets = world
    data_dir = str(tmp_path / "data")
    os.makedirs(os.path.join(data_dir, FN.VOCAB_DIR))
    rng = np.random.default_rng(2)
    feed = candidates(targets.feed, targets.items, rng, popularity=True)
    search = candidates(targets.search, targets.search_universe, rng, popularity=True)
    _write_candidate_files(data_dir, "valid", F.Task.FEED, *feed[:4])
    _write_candidate_files(data_dir, "valid", F.Task.SEARCH, *search[:4])
    ids = sorted(set(targets.feed["counts"]) | set(targets.search["counts"]))
    with open(os.path.join(data_dir, FN.VOCAB_DIR, FN.ITEMS_VOCAB), "w") as f:
        f.write("item_id\tfeed_count\tsearch_count\tfirst_seen_ts\tauthor_id\tcat1\tcat2\tcat3"
                "\tcat4\tcaption\n")
        for i in ids:
            f.write(f"{i}\t{targets.feed['counts'].get(i, 0)}\t"
                    f"{targets.search['counts'].get(i, 0)}\t0\t0\t0\t0\t0\t0\t1 2\n")
    plain = O.oracle_metrics_from_files(raw, data_dir, "valid", oracle=oracle,
                                        use_exclusions=False)
    reports = O.oracle_metrics_from_files(raw, data_dir, "valid", oracle=oracle)
    assert set(reports) == set(plain) == {"feed", "search"}
    for name, (users, ts, rows, cands, w), task in (("feed", feed, F.Task.FEED),
                                                    ("search", search, F.Task.SEARCH)):
        p = oracle.probabilities(users, task, ts, rows, cands)
        assert plain[name] == O.oracle_metrics(cands, p, w), name
        # No history in these rows and first_seen_ts = 0: only unknown items are excluded.
        unknown = ~np.isin(cands, ids)
        assert reports[name] == O.oracle_metrics(cands, p, w, excluded=unknown), name
        assert reports[name].set_realised == plain[name].set_realised
    assert O.oracle_metrics_from_files(raw, data_dir, "test", oracle=oracle) == {}


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(PIPELINE), reason="pipelines/preprocess.py not written yet")
def test_oracle_beats_popularity_on_pipeline_files(tmp_path):
    from jsr_tf.pipelines import preprocess

    raw, out = str(tmp_path / "raw"), str(tmp_path / "data")
    simulator.generate(simulator.get_preset("tiny"), 1, raw)
    preprocess.run(["--input_dir", raw, "--output_dir", out, "--runner=FnApiRunner"])
    oracle = O.Oracle.load(raw)
    for split in ("valid", "test"):
        reports = O.oracle_metrics_from_files(raw, out, split, oracle=oracle)
        assert set(reports) == {"feed", "search"}
        for task, report in reports.items():
            assert report.rows >= 50, (split, task)
            assert report.positive_zero_probability_fraction == 0.0, (split, task)
            pop = report.popularity_realised["NDCG@5"]
            assert report.set_realised["NDCG@5"] > pop + 0.2, (split, task)
            assert report.set_expected["NDCG@5"] >= report.preference_expected["NDCG@5"]
