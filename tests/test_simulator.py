"""The KuaiSAR-format simulator: format, determinism, dirty mode and planted dynamics.

Everything is measured on the written CSVs (plus ``oracle/`` ground truth where a test is about
it), on the ``tiny`` preset.
"""

import csv
import dataclasses
import datetime
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from jsr_tf import simulator
from jsr_tf.simulator import clock, events, groundtruth, state
from tests.testing import tree_digest

BEIJING = datetime.timezone(datetime.timedelta(hours=8))
PERIOD_START = int(datetime.datetime(2023, 5, 22, 14, 50, tzinfo=BEIJING).timestamp() * 1000)
PERIOD_END = int(datetime.datetime(2023, 5, 31, 14, 50, tzinfo=BEIJING).timestamp() * 1000)
FILES = ("rec_inter.csv", "src_inter.csv", "item_features.csv", "user_features.csv",
         "social_network.csv")
HEADERS = {
    "rec_inter.csv": ["user_id", "item_id", "playing_time", "duration_ms", "time", "timestamp",
                      "click", "forward", "like", "follow", "search", "search_item_related"],
    "src_inter.csv": ["user_id", "search_session_id", "search_session_time",
                      "search_session_timestamp", "keyword", "search_source", "item_id",
                      "click_cnt", "item_type"],
    "item_features.csv": ["item_id", "caption", "author_id", "item_type", "upload_time",
                          "upload_type",
                          "first_level_category_id", "first_level_category_name",
                          "first_level_category_name_en",
                          "second_level_category_id", "second_level_category_name",
                          "second_level_category_name_en",
                          "third_level_category_id", "third_level_category_name",
                          "third_level_category_name_en",
                          "fourth_level_category_id", "fourth_level_category_name",
                          "fourth_level_category_name_en"],
    "user_features.csv": ["user_id", "search_active_level", "rec_active_level", "onehot_feat1",
                          "onehot_feat2"],
    "social_network.csv": ["user_id", "user_follow_id"],
}
LIST_RE = re.compile(r"\[\]|\[(0|[1-9][0-9]*)(, (0|[1-9][0-9]*))*\]")
FLOAT_MS_RE = re.compile(r"[1-9][0-9]{12}\.0")


def read_csv(directory, name):
    """Header and rows (lists of strings) of one file."""
    with open(os.path.join(directory, name), encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, strict=True))
    return rows[0], rows[1:]


def beijing(ms):
    return datetime.datetime.fromtimestamp(ms // 1000, BEIJING).strftime("%Y-%m-%d %H:%M:%S")


digest = tree_digest  # SHA-256 of every file under a directory


class Data:
    """Parsed tiny dataset: numpy columns of the five files."""

    def __init__(self, directory):
        self.dir = directory
        _, rec = read_csv(directory, "rec_inter.csv")
        r = np.array([[row[0], row[1], row[5][:-2], row[6], row[10], row[11]] for row in rec],
                     dtype=np.int64)
        self.rec_user, self.rec_item, self.rec_ts, self.click, self.search, self.related = r.T
        self.rec_time = [row[4] for row in rec]
        _, src = read_csv(directory, "src_inter.csv")
        self.src = src
        self.src_user = np.array([int(row[0]) for row in src])
        self.src_sid = np.array([int(row[1]) for row in src])
        self.src_ts = np.array([int(row[3][:-2]) for row in src])
        self.src_item = np.array([int(row[6]) for row in src])
        self.src_click = np.array([int(row[7]) for row in src])
        self.src_type = np.array([row[8] for row in src])
        self.keyword = [row[4] for row in src]
        _, items = read_csv(directory, "item_features.csv")
        self.items = items
        self.item_cat2 = {int(row[0]): int(row[9]) for row in items}
        self.caption = {int(row[0]): row[1] for row in items}
        _, users = read_csv(directory, "user_features.csv")
        self.user_ids = np.array([int(row[0]) for row in users])
        _, social = read_csv(directory, "social_network.csv")
        self.social = np.array([[int(a), int(b)] for a, b in social]).reshape(-1, 2)
        # Sessions keyed by (user, session id), first row order.
        key = list(zip(self.src_user.tolist(), self.src_sid.tolist()))
        self.sessions = {}
        for i, k in enumerate(key):
            self.sessions.setdefault(k, []).append(i)

    def session_table(self):
        """Per session: user, ts, first clicked item (or -1), query words."""
        out = []
        for (user, _), rows in self.sessions.items():
            clicked = [self.src_item[i] for i in rows if self.src_click[i] > 0]
            words = [int(w) for w in self.keyword[rows[0]][1:-1].split(", ") if w]
            out.append((user, int(self.src_ts[rows[0]]), clicked[0] if clicked else -1, words))
        return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("tiny") / "raw")
    config = simulator.get_preset("tiny")
    sim = simulator.simulate(config, 1)
    summary = simulator.generate(config, 1, out, simulation=sim)
    return Data(out), sim, summary


# -- format ---------------------------------------------------------------------------------------
def test_headers_and_column_order(tiny):
    data, _, summary = tiny
    for name in FILES:
        header, rows = read_csv(data.dir, name)
        assert header == HEADERS[name], name
        assert all(len(row) == len(header) for row in rows), name
        assert summary.rows[name] == len(rows)
    with open(os.path.join(data.dir, "rec_inter.csv"), "rb") as f:
        assert f.readline() == (",".join(HEADERS["rec_inter.csv"]) + "\n").encode()


def test_list_strings_are_strict_and_quoted(tiny):
    data, _, _ = tiny
    assert all(LIST_RE.fullmatch(k) and k != "[]" for k in data.keyword)
    captions = [c for c in data.caption.values() if c]
    assert all(LIST_RE.fullmatch(c) for c in captions)
    assert "[]" in captions  # empty caption
    assert "" in data.caption.values()  # missing caption
    with open(os.path.join(data.dir, "src_inter.csv"), encoding="utf-8") as f:
        raw = f.read()
    assert re.search(r',"\[\d+, \d+[^"]*\]",', raw)  # multi-word keywords are quoted
    lengths = [len(k.split(",")) for k in data.keyword]
    assert max(lengths) > 50  # a few over-long queries exercise truncation


def test_timestamps_and_beijing_strings(tiny):
    data, _, _ = tiny
    _, rec = read_csv(data.dir, "rec_inter.csv")
    assert all(FLOAT_MS_RE.fullmatch(row[5]) for row in rec)
    assert all(FLOAT_MS_RE.fullmatch(row[3]) for row in data.src)
    for ts in (data.rec_ts, data.src_ts):
        assert ts.min() >= PERIOD_START and ts.max() < PERIOD_END
    for i in range(0, len(rec), 97):
        assert data.rec_time[i] == beijing(int(data.rec_ts[i]))
    for i in range(0, len(data.src), 89):
        assert data.src[i][2] == beijing(int(data.src_ts[i]))


def test_ids(tiny):
    data, _, _ = tiny
    all_items = np.concatenate([data.rec_item, data.src_item, list(data.item_cat2)])
    assert (all_items > 2**31).any() and (all_items < 2**31).any()
    assert (data.user_ids > 2**31).any()
    ids = np.unique(np.array(list(data.item_cat2)))
    assert len(ids) == len(data.item_cat2)  # unique rows
    assert np.any(np.diff(ids) > 1)  # not contiguous
    assert set(data.rec_user.tolist()) <= set(data.user_ids.tolist())


def test_feed_noise(tiny):
    data, _, _ = tiny
    assert 0.35 < data.click.mean() < 0.65  # clicks ~ 1:1 with exposures
    key = data.rec_user * (1 << 42) + data.rec_ts
    _, counts = np.unique(key, return_counts=True)
    assert (counts > 1).mean() > 0.3  # deliveries share a timestamp
    assert np.all(data.click[data.search == 1] == 1)
    assert np.all(data.search[data.related == 1] == 1)
    assert 0 < data.related.sum() < data.search.sum()


def test_users_without_searches_or_clicks(tiny):
    data, _, _ = tiny
    users = set(data.user_ids.tolist())
    searchers = set(data.src_user.tolist())
    clickers = set(data.rec_user[data.click == 1].tolist())
    assert users - searchers
    assert users - clickers
    assert set(data.rec_user.tolist()) == users  # everyone has feed rows


def test_sessions(tiny):
    data, _, _ = tiny
    sessions = data.session_table()
    no_click = np.mean([s[2] < 0 for s in sessions])
    assert no_click == pytest.approx(0.4, abs=0.1)
    clicks = [sum(data.src_click[i] > 0 for i in rows) for rows in data.sessions.values()]
    assert max(clicks) > 1  # multi-click sessions
    assert set(data.src_click.tolist()) >= {0, 1, 2}  # click_cnt > 1 occurs
    # Keys are (user, session id): some ids are shared across users, never inside one.
    for rows in data.sessions.values():
        assert len({(data.src_ts[i], data.keyword[i]) for i in rows}) == 1
    per_id = {}
    for user, sid in data.sessions:
        per_id.setdefault(sid, set()).add(user)
    assert any(len(users) > 1 for users in per_id.values())


def test_search_only_items(tiny):
    data, _, _ = tiny
    non_video = ~np.isin(data.src_type, ["VIDEO", "IMAGE_ATLAS"])
    assert non_video.any()
    assert not np.isin(data.src_item[non_video], list(data.item_cat2)).any()
    assert not np.isin(data.src_item[non_video], data.rec_item).any()
    assert set(data.src_type.tolist()) <= {"VIDEO", "USER", "IMAGE_ATLAS", "LIVE", "COMMODITY",
                                           "MUSIC", "ADVERT"}


def test_item_and_user_features(tiny):
    data, _, _ = tiny
    levels = np.array([row[6:] for row in data.items])
    assert (levels[:, 6:9] == ["0", "空", "empty"]).all(axis=1).mean() > 0.8
    assert (levels[:, 9:12] == ["0", "空", "empty"]).all(axis=1).mean() > 0.95
    assert (levels[:, 6] != "0").any()  # a few third levels
    assert any(row[4] == "1970-01-01" for row in data.items)
    assert all(re.fullmatch(r"\d{4}-\d{2}-\d{2}", row[4]) for row in data.items)
    _, users = read_csv(data.dir, "user_features.csv")
    feats = np.array(users, dtype=np.int64)[:, 1:]
    assert feats.min() >= 0 and feats[:, 2].max() <= 2 and feats[:, 3].max() <= 7
    assert len(data.social) > 0
    assert np.isin(data.social, data.user_ids).all()
    assert (data.social[:, 0] != data.social[:, 1]).all()
    assert len(np.unique(data.social[:, 0])) < 0.05 * len(data.user_ids) + 3


def test_repository_parser_accepts_every_clean_line(tiny):
    kuaisar = pytest.importorskip("jsr_tf.data.kuaisar")
    data, _, _ = tiny
    for name in FILES:
        with open(os.path.join(data.dir, name), "rb") as f:
            parser = kuaisar.RowParser(name, kuaisar.read_header(f, name))
            rejected = [r.rejection for row, line, raw in kuaisar.iter_lines(f)
                        for r in [parser.parse(row, line, raw)] if r.rejection]
        assert not rejected, (name, rejected[:3])


# -- determinism ----------------------------------------------------------------------------------
def test_same_seed_byte_identical_and_other_seed_differs(tiny, tmp_path):
    data, _, _ = tiny
    config = simulator.get_preset("tiny")
    simulator.generate(config, 1, str(tmp_path / "again"))
    simulator.generate(config, 2, str(tmp_path / "other"))
    first, again, other = digest(data.dir), digest(str(tmp_path / "again")), digest(
        str(tmp_path / "other"))
    assert first == again
    assert len(first) >= 5 + 5
    for name in FILES[:3]:
        assert first[name] != other[name], name


def test_derived_seeds_are_stable():
    from jsr_tf.simulator.seeding import derive_seed
    assert derive_seed(1, "a") == derive_seed(1, "a")
    assert len({derive_seed(1, "a"), derive_seed(2, "a"), derive_seed(1, "b"),
                derive_seed(1, "a", "b")}) == 4


# -- dirty mode -----------------------------------------------------------------------------------
def test_dirty_mode_counts_and_clean_rows_intact(tiny, tmp_path):
    data, _, _ = tiny
    out = str(tmp_path / "dirty")
    summary = simulator.generate(simulator.get_preset("tiny"), 1, out, dirty=True)
    report = json.load(open(os.path.join(out, "oracle", "dirty_faults.json")))
    assert report["dirty"] is True
    for name in FILES:
        entry = report["files"][name]
        with open(os.path.join(out, name), "rb") as f:
            lines = f.read().split(b"\n")[1:-1]
        with open(os.path.join(data.dir, name), "rb") as f:
            clean = f.read().split(b"\n")[1:-1]
        assert len(lines) == entry["rows"] == summary.rows[name]
        assert sum(entry["injected"].values()) == len(lines) - len(clean)
        assert all(v >= 2 for v in entry["injected"].values())
        # Non-UTF-8 lines and exact duplicates, counted independently.
        bad_utf8 = 0
        for line in lines:
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                bad_utf8 += 1
        assert bad_utf8 == entry["injected"].get("non_utf8", 0), name
        assert len(lines) - len(set(lines)) == entry["expected_duplicates_dropped"], name
        # The clean file is a subsequence of the dirty one: no clean row was touched.
        k = 0
        for line in lines:
            if k < len(clean) and line == clean[k]:
                k += 1
        assert k == len(clean), name


def test_dirty_counts_match_repository_parser(tmp_path):
    kuaisar = pytest.importorskip("jsr_tf.data.kuaisar")
    out = str(tmp_path / "dirty")
    simulator.generate(simulator.get_preset("tiny"), 3, out, dirty=True)
    report = json.load(open(os.path.join(out, "oracle", "dirty_faults.json")))["files"]
    for name in FILES:
        reasons, notes = {}, {}
        with open(os.path.join(out, name), "rb") as f:
            parser = kuaisar.RowParser(name, kuaisar.read_header(f, name))
            for row, line, raw in kuaisar.iter_lines(f):
                result = parser.parse(row, line, raw)
                if result.rejection:
                    reasons[result.rejection.reason] = reasons.get(result.rejection.reason, 0) + 1
                for note in result.notes:
                    notes[note] = notes.get(note, 0) + 1
        assert reasons == report[name]["expected_dead_letter"], name
        for note, count in report[name]["expected_notes"].items():
            assert notes.get(note, 0) == count, (name, note)


def test_dirty_oracle_rows_point_at_their_sessions(tmp_path):
    out = str(tmp_path / "dirty")
    simulator.generate(simulator.get_preset("tiny"), 1, out, dirty=True)
    sessions = groundtruth.load_array(os.path.join(out, "oracle", "sessions.npy"))
    users = groundtruth.load_array(os.path.join(out, "oracle", "users.npy"))
    with open(os.path.join(out, "src_inter.csv"), "rb") as f:
        lines = f.read().split(b"\n")[1:]
    for s in sessions[::7]:
        fields = lines[s["first_row"]].decode("utf-8").split(",")
        assert int(fields[0]) == users["user_id"][s["user"]]
        assert int(fields[1]) == s["session_id"]
        assert int(fields[3][:-2]) == s["ts"]


# -- planted dynamics (measured on the CSVs) ------------------------------------------------------
def search_feed_stats(data):
    """Searches not opened from the feed, with feed clicks within 30 min before and after.

    Returns:
        ``(n, next, previous, base)``: share of sessions whose next feed click (after the
        search) / previous feed click (before it) is in the category of the session's first
        clicked item, and the user's overall share of clicks in that category.
    """
    clicks = data.click == 1
    c_user, c_ts = data.rec_user[clicks], data.rec_ts[clicks]
    c_cat = np.array([data.item_cat2.get(i, 0) for i in data.rec_item[clicks]])
    order = np.lexsort((c_ts, c_user))
    c_user, c_ts, c_cat = c_user[order], c_ts[order], c_cat[order]
    opened_u, opened_ts = data.rec_user[data.search == 1], data.rec_ts[data.search == 1]
    nxt, prev, base = [], [], []
    for user, ts, item, _ in data.session_table():
        cat = data.item_cat2.get(int(item), 0)
        if item < 0 or cat == 0:
            continue
        if np.any((opened_u == user) & (opened_ts <= ts) & (opened_ts > ts - 600_000)):
            continue  # opened from a feed item: its previous click is biased by construction
        mine = np.flatnonzero(c_user == user)
        after = mine[(c_ts[mine] > ts) & (c_ts[mine] <= ts + 1_800_000)]
        before = mine[(c_ts[mine] < ts) & (c_ts[mine] >= ts - 1_800_000)]
        if len(after) and len(before):
            nxt.append(c_cat[after[0]] == cat)
            prev.append(c_cat[before[-1]] == cat)
            base.append(np.mean(c_cat[mine] == cat))
    return len(nxt), np.mean(nxt), np.mean(prev), np.mean(base)


def test_search_drives_the_next_feed_click(tiny, tmp_path):
    data, _, _ = tiny
    n, nxt, prev, base = search_feed_stats(data)
    assert n > 150
    assert nxt >= 1.5 * base, (nxt, base)
    assert nxt >= 1.25 * prev, (nxt, prev)
    # Control: the same world without the search -> feed drift shows no before/after change,
    # so the statistic above measures the planted transition.
    config = simulator.get_preset("tiny")
    control = config.replace(dynamics=dataclasses.replace(config.dynamics, feed_drift=0.0))
    simulator.generate(control, 1, str(tmp_path / "control"))
    _, c_next, c_prev, _ = search_feed_stats(Data(str(tmp_path / "control")))
    assert c_next < 1.15 * c_prev, (c_next, c_prev)
    assert nxt / prev > c_next / c_prev + 0.3


def test_related_feed_rows_trigger_on_topic_queries(tiny):
    data, _, _ = tiny
    # Category vocabularies from captions: words mostly used by one second-level category.
    owner_counts = {}
    for item, caption in data.caption.items():
        cat = data.item_cat2[item]
        if caption in ("", "[]") or cat == 0:
            continue
        for w in caption[1:-1].split(", "):
            owner_counts.setdefault(int(w), {}).setdefault(cat, 0)
            owner_counts[int(w)][cat] += 1
    vocab = {}
    for w, per_cat in owner_counts.items():
        cat, top = max(per_cat.items(), key=lambda kv: kv[1])
        if top >= 3 and top >= 0.5 * sum(per_cat.values()):
            vocab.setdefault(cat, set()).add(w)
    cats = sorted(vocab)
    sessions = sorted(data.session_table(), key=lambda s: (s[0], s[1]))
    s_user = np.array([s[0] for s in sessions])
    s_ts = np.array([s[1] for s in sessions])
    rng = np.random.default_rng(0)
    overlap = {0: [], 1: []}
    chance = []
    for i in np.flatnonzero(data.search == 1):
        cat = data.item_cat2.get(int(data.rec_item[i]), 0)
        if cat not in vocab:
            continue
        nxt = np.flatnonzero((s_user == data.rec_user[i]) & (s_ts > data.rec_ts[i]))
        if not len(nxt):
            continue
        words = sessions[nxt[0]][3]
        overlap[int(data.related[i])].append(np.mean([w in vocab[cat] for w in words]))
        other = cats[rng.integers(len(cats))]
        chance.append(np.mean([w in vocab[other] for w in words]))
    assert len(overlap[1]) > 100 and len(overlap[0]) > 30
    related, unrelated = np.mean(overlap[1]), np.mean(overlap[0])
    assert related > 3 * np.mean(chance), (related, np.mean(chance))
    assert related > 2 * unrelated, (related, unrelated)


def test_community_episodes_are_synchronised(tiny):
    _, sim, _ = tiny
    control = simulator.simulate(simulator.get_preset("tiny").replace(community_sync=False), 1)

    def lift(s):
        sched, users, log = s.world.schedule, s.world.users, s.log.search
        cat = log.topic // s.config.topics_per_cat2
        member_hits, other_hits = [], []
        for c, t, k in zip(sched.community_episode_community, sched.community_episode_time,
                           sched.community_episode_cat2):
            window = (log.ts > t - 12 * clock.HOUR_MS) & (log.ts < t + 12 * clock.HOUR_MS)
            member = users.community[log.user] == c
            member_hits.append(np.sum(window & member & (cat == k)) / max(1, np.sum(member)))
            other_hits.append(np.sum(window & ~member & (cat == k)) / max(1, np.sum(~member)))
        return np.mean(member_hits) / max(np.mean(other_hits), 1e-9)

    synced = lift(sim)
    assert synced > 3.0
    assert synced > 1.5 * lift(control)


def test_search_time_topic_of_triggers(tiny):
    _, sim, _ = tiny
    log, items = sim.log, sim.world.items
    related = log.search.origin == events.TRIGGER_RELATED
    rows = log.search.parent[related]
    assert np.all(log.feed.search[rows] == 1) and np.all(log.feed.related[rows] == 1)
    np.testing.assert_array_equal(items.topic[log.feed.item[rows]], log.search.topic[related])
    assert np.all(log.search.ts[related] > log.feed.ts[rows])


def test_in_loop_state_equals_timeline_state(tiny):
    _, sim, _ = tiny
    feed, search = sim.log.feed, sim.log.search
    tp = sim.config.topics_per_cat2
    timeline = state.SessionTimeline(search.user, search.ts, search.topic // tp)
    cat, ts = timeline.last_before(feed.request_user, feed.request_ts)
    np.testing.assert_array_equal(cat, feed.request_drift_cat)
    np.testing.assert_array_equal(ts, feed.request_drift_ts)
    assert (cat >= 0).mean() > 0.5


# -- configuration and CLI ------------------------------------------------------------------------
def test_presets_and_validation():
    assert list(simulator.PRESETS) == ["tiny", "small", "medium", "kuaisar_small"]
    for name in simulator.PRESETS:
        simulator.get_preset(name).validate()
    with pytest.raises(ValueError, match="preset"):
        simulator.get_preset("huge")
    with pytest.raises(ValueError, match="num_items"):
        simulator.get_preset("tiny").replace(num_items=10)
    with pytest.raises(ValueError, match="session_click_rate"):
        simulator.get_preset("tiny").replace(session_click_rate=1.5)


def test_tiny_has_enough_active_users(tiny):
    data, _, _ = tiny
    feed = np.bincount(np.unique(data.rec_user[data.click == 1], return_inverse=True)[1])
    clicked_sessions = {}
    for (user, _), rows in data.sessions.items():
        if any(data.src_click[i] > 0 for i in rows):
            clicked_sessions[user] = clicked_sessions.get(user, 0) + 1
    both = [u for u in set(data.rec_user[data.click == 1].tolist())
            if clicked_sessions.get(u, 0) >= 3 and np.sum(
                (data.rec_user == u) & (data.click == 1)) >= 3]
    assert len(both) >= 100
    assert (feed >= 3).sum() >= 100
    assert len(data.item_cat2) >= 1000


def test_cli_writes_files(tmp_path):
    out = str(tmp_path / "cli")
    result = subprocess.run([sys.executable, "-m", "jsr_tf.cli.simulate", "--preset", "tiny",
                             "--seed", "5", "--output_dir", out], capture_output=True, text=True,
                            check=False, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "rec_inter.csv" in result.stdout and "took" in result.stdout
    for name in FILES:
        assert os.path.getsize(os.path.join(out, name)) > 0
    params = json.load(open(os.path.join(out, "oracle", "params.json")))
    assert params["preset"] == "tiny" and params["seed"] == 5 and params["dirty"] is False
    assert params["community_sync"] is True
    control = str(tmp_path / "control")
    result = subprocess.run([sys.executable, "-m", "jsr_tf.cli.simulate", "--preset", "tiny",
                             "--seed", "5", "--nocommunity_sync", "--output_dir", control],
                            capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 0, result.stderr
    params = json.load(open(os.path.join(control, "oracle", "params.json")))
    assert params["community_sync"] is False
    bad = subprocess.run([sys.executable, "-m", "jsr_tf.cli.simulate", "--preset", "huge",
                          "--output_dir", out], capture_output=True, text=True, check=False,
                         timeout=120)
    assert bad.returncode != 0


def test_simulator_does_not_import_tensorflow():
    code = ("import sys; from jsr_tf import simulator; "
            "simulator.simulate(simulator.get_preset('tiny'), 1); "
            "print('tensorflow' in sys.modules, 'apache_beam' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    assert out.strip() == "False False"


def test_beijing_strings_match_datetime():
    ts = np.array([PERIOD_START, PERIOD_END - 1, 1684742000999, 0, 1_000_000_000_000])
    assert clock.beijing_strings(ts) == [beijing(int(t)) for t in ts]
    assert clock.PERIOD_START_MS == PERIOD_START and clock.PERIOD_END_MS == PERIOD_END
