"""The neighbour pipeline (pipelines/neighbours.py) on a hand-made KuaiSAR fixture.

Fixture (times in minutes after T0 = 2023-05-23 00:00 Beijing; default snapshots T_0 = 1440,
T_1 = 2880: events in [0, 1440) feed snapshot 0, everything feeds snapshot 1):

  search (words / clicked items):
    11 s101@100 [1,2] click 100 (102 shown, not clicked)      -> {w:1, w:2, i:100}
    12 s201@110 [1,3] click 100                                -> {w:1, w:3, i:100}
    13 s301@120 [2] click 101; s302@2000 [1,3] click 100       -> {w:2, i:101}, at k=1 also
                                                                  w:1 w:3 i:100
    14 s401@130 [9] no click (fallback 100 is not a click)     -> {w:9}
    16 s601@1440 = T_0 exactly [1,2] click 100                 -> only in snapshot 1
    31..36 (hub) one session each @200 [77], no click          -> {w:77}: six identical sets
  feed (clicked items; c2 = second-level category from item_features):
    11 500, 502; 12 501 (+ 502@1500, day 1); 13 503; 14 500 impression only, 504 (c2 0 = none);
    15 500, 502, 505 (no features), 506, 507 — 15's last two feed targets 506 (valid) and 507
    (test) are held out: the train table sees neither, the test table sees 506.
  items: 500 c2 10, 501 c2 10 (a second, conflicting 501 row with c2 99 is dropped),
    502 c2 20, 503 c2 20, 504 c2 0, 506 c2 30, 507 c2 30.
  rec_inter.csv also has one garbage line (dead-lettered).

All Jaccard values below are computed by hand from these sets. Runs use ``--k_feed 2
--min_jaccard 0.17`` (so 1/6 pairs drop and a 0.2/0.2 tie is cut to the smaller id).
"""

import glob
import json
import os

import numpy as np
import pytest

from jsr_tf import filenames as FN
from jsr_tf.neighbours import (NeighbourConfig, NeighbourRow, beijing_midnight, default_snapshots,
                               first_snapshot_seeing, parse_snapshot, resolve_layout,
                               snapshot_index)
from jsr_tf.neighbours import minhash as mh
from jsr_tf.pipelines import neighbours as nb
from tests.testing import (MULTI_PROCESS, T0_MS, item_row, output_digest, rec_row, src_row, ts,
                           user_row, write_kuaisar)

HUB = tuple(range(31, 37))
USERS = (11, 12, 13, 14, 15, 16) + HUB
COMMON = ["--k_feed", "2", "--min_jaccard", "0.17", "--runner=FnApiRunner"]
# The bucket join of issue 6 (every pair of a bucket, buckets above max_bucket skipped).
LSH = ["--mode", "lsh", "--bands", "128", "--rows", "1", "--max_bucket", "5",
       "--candidate_join", "bucket"]
# The window join (the default): window 4 pairs every bucket of up to 5 users completely (all
# of the fixture's but the hub's), and cuts the hub's six identical users to their ±4 in id order.
WINDOW = ["--mode", "lsh", "--candidate_join", "window", "--window", "4", "--window_depth", "4"]


def _rec():
    return [rec_row(11, 500, 10), rec_row(11, 502, 20),
            rec_row(12, 501, 30), rec_row(12, 502, 1500),
            rec_row(13, 503, 40),
            rec_row(14, 500, 50, click=0), rec_row(14, 504, 60),
            rec_row(15, 500, 10), rec_row(15, 502, 20), rec_row(15, 505, 30),
            rec_row(15, 506, 40), rec_row(15, 507, 50)]


def _src():
    return ([src_row(11, 101, 100, [1, 2], 100, 1), src_row(11, 101, 100, [1, 2], 102, 0),
             src_row(12, 201, 110, [1, 3], 100, 1),
             src_row(13, 301, 120, [2], 101, 1),
             src_row(14, 401, 130, [9], 100, 0),
             src_row(16, 601, 1440, [1, 2], 100, 1),
             src_row(13, 302, 2000, [1, 3], 100, 1)]
            + [src_row(u, 700 + u, 200, [77], 900, 0) for u in HUB])


def _items():
    return [item_row(500, cat2=10), item_row(501, cat2=10), item_row(501, cat2=99),
            item_row(502, cat2=20), item_row(503, cat2=20), item_row(504, cat2=0),
            item_row(506, cat2=30), item_row(507, cat2=30)]


def write_fixture(directory, rec=(), src=()):
    return write_kuaisar(directory, _rec() + list(rec), _src() + list(src), _items(),
                         [user_row(u) for u in USERS],
                         extra_lines={"rec_inter.csv": [b"garbage"]})


def run(raw, out, *flags):
    return nb.run(["--input_dir", raw, "--output_dir", out, *COMMON, *flags])


def read_table(out):
    rows = {}
    for path in sorted(glob.glob(os.path.join(out, "neighbours-*.jsonl"))):
        with open(path) as f:
            for line in f:
                row = NeighbourRow.from_json(line)
                key = (row.visibility, row.snapshot, row.side, row.user)
                assert key not in rows, key
                rows[key] = row
    return rows


def lists(rows, visibility, snapshot, side):
    return {r.user: list(zip(r.neighbours, r.jaccards)) for (v, k, s, _), r in rows.items()
            if (v, k, s) == (visibility, snapshot, side)}


# Hand-computed lists (see the module docstring for the sets).
SEARCH = {
    0: {11: [(12, 2 / 4), (13, 1 / 4)], 12: [(11, 2 / 4)], 13: [(11, 1 / 4)], 14: []},
    1: {11: [(16, 1.0), (13, 3 / 5), (12, 2 / 4)],
        12: [(13, 3 / 5), (11, 2 / 4), (16, 2 / 4)],
        13: [(11, 3 / 5), (12, 3 / 5), (16, 3 / 5)],
        14: [],
        16: [(11, 1.0), (13, 3 / 5), (12, 2 / 4)]},
}
FEED = {
    ("train", 0): {11: [(15, 4 / 5), (12, 1 / 5)], 12: [(11, 1 / 5)], 13: [(11, 1 / 5)], 14: [],
                   15: [(11, 4 / 5)]},
    ("test", 0): {11: [(15, 4 / 7), (12, 1 / 5)], 12: [(11, 1 / 5)], 13: [(11, 1 / 5)], 14: [],
                  15: [(11, 4 / 7)]},
    ("train", 1): {11: [(15, 4 / 5), (12, 3 / 5)], 12: [(11, 3 / 5), (15, 3 / 6)],
                   13: [(11, 1 / 5), (12, 1 / 5)], 14: [], 15: [(11, 4 / 5), (12, 3 / 6)]},
    ("test", 1): {11: [(12, 3 / 5), (15, 4 / 7)], 12: [(11, 3 / 5), (15, 3 / 8)],
                  13: [(11, 1 / 5), (12, 1 / 5)], 14: [], 15: [(11, 4 / 7), (12, 3 / 8)]},
}


def expected_search(snapshot, hub_found, window=None):
    out = dict(SEARCH[snapshot])
    for u in HUB:  # identical sets: J = 1 with the five others (k_s = 5); LSH skips their buckets
        out[u] = [(v, 1.0) for v in HUB if v != u] if hub_found else []
        if window:  # the window join: identical sort keys, so the hub is ordered by user id
            out[u] = [(v, j) for v, j in out[u] if abs(v - u) <= window]
    return out


def _run_fixture(tmp_path_factory, name, *flags):
    root = tmp_path_factory.mktemp(name)
    raw = write_fixture(str(root / "raw"))
    out = str(root / "out")
    return out, run(raw, out, *flags)


@pytest.fixture(scope="module")
def exact(tmp_path_factory):
    return _run_fixture(tmp_path_factory, "nb_exact", "--mode", "exact")


@pytest.fixture(scope="module")
def lsh(tmp_path_factory):
    return _run_fixture(tmp_path_factory, "nb_lsh", *LSH)  # grouped layout (in-memory runner)


@pytest.fixture(scope="module")
def lsh_keyed(tmp_path_factory):
    return _run_fixture(tmp_path_factory, "nb_lsh_keyed", *LSH, "--lsh_layout", "keyed")


@pytest.fixture(scope="module")
def window(tmp_path_factory):
    return _run_fixture(tmp_path_factory, "nb_window", *WINDOW)  # "auto": grouped here


@pytest.fixture(scope="module")
def window_keyed(tmp_path_factory):
    return _run_fixture(tmp_path_factory, "nb_window_keyed", *WINDOW, "--lsh_layout", "keyed")


def test_default_snapshots_are_beijing_midnights(exact):
    _, stats = exact
    assert [s["snapshot_ts"] for s in stats["snapshots"]] == [ts(1440), ts(2880)]
    assert [s["time"] for s in stats["snapshots"]] == ["2023-05-24 00:00:00",
                                                       "2023-05-25 00:00:00"]


@pytest.mark.parametrize("mode", ["exact", "lsh", "lsh_keyed", "window", "window_keyed"])
@pytest.mark.parametrize("visibility", ["train", "test"])
@pytest.mark.parametrize("snapshot", [0, 1])
def test_lists_match_hand_computed(mode, visibility, snapshot, request):
    out, _ = request.getfixturevalue(mode)
    rows = read_table(out)
    assert lists(rows, visibility, snapshot, "search") == expected_search(
        snapshot, mode != "lsh" and mode != "lsh_keyed", 4 if "window" in mode else None)
    assert lists(rows, visibility, snapshot, "feed") == FEED[(visibility, snapshot)]
    expected_ts = T0_MS + (1 + snapshot) * 86_400_000
    assert {r.snapshot_ts for r in rows.values() if r.snapshot == snapshot} == {expected_ts}


def test_token_counts(exact):
    rows = read_table(exact[0])
    # 11 search: w:1 w:2 i:100 (102 shown but not clicked); 13 grows at snapshot 1.
    assert rows[("train", 0, "search", 11)].num_tokens == 3
    assert rows[("train", 0, "search", 13)].num_tokens == 2
    assert rows[("train", 1, "search", 13)].num_tokens == 5
    assert rows[("train", 0, "search", 14)].num_tokens == 1  # fallback item is not a token
    # 14 feed: i:504 only (impression of 500 is no positive; category 0 is no token).
    assert rows[("train", 0, "feed", 14)].num_tokens == 1
    # 15 feed: i:500 c2:10 i:502 c2:20 i:505 (no features) [+ i:506 c2:30 in the test table].
    assert rows[("train", 1, "feed", 15)].num_tokens == 5
    assert rows[("test", 1, "feed", 15)].num_tokens == 7


def test_lsh_layouts_write_the_same_table(lsh, lsh_keyed, window, window_keyed):
    assert read_table(lsh[0]) == read_table(lsh_keyed[0])
    assert read_table(window[0]) == read_table(window_keyed[0])
    assert window[1]["tables"] == window_keyed[1]["tables"]


@pytest.mark.parametrize("layout, present, absent", [
    ("grouped", {"Retrieve/Histories", "Retrieve/GroupSides", "Retrieve/LshInMemory"},
     {"Signatures", "Retrieve/BandKeys"}),
    ("keyed", {"Signatures", "Retrieve/BandKeys"}, {"Retrieve/Histories"})])
def test_grouped_layout_builds_no_per_snapshot_records(tmp_path, layout, present, absent):
    """Issue 17: the in-memory runner holds a stage's records at once, so the grouped layout
    keeps one history per (visibility, side, user) and never the ``Indexed`` record of every
    snapshot (``Signatures``), which outgrew memory at ``kuaisar_small``."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from jsr_tf.data.config import PreprocessConfig
    from jsr_tf.pipelines.preprocess import resolve_inputs

    raw = write_fixture(str(tmp_path / "raw"))
    pipeline = beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"]))
    nb.build_pipeline(pipeline, resolve_inputs(raw), str(tmp_path / "out"),
                      NeighbourConfig(lsh_layout=layout).validate(), PreprocessConfig())
    labels = {t.unique_name for t in pipeline.to_runner_api().components.transforms.values()}
    assert present <= labels and not absent & labels


def test_no_self_neighbours_and_sorted_lists(exact, lsh):
    for out, _ in (exact, lsh):
        for (_, _, _, user), row in read_table(out).items():
            assert user not in row.neighbours
            assert len(set(row.neighbours)) == len(row.neighbours)
            order = [(-j, v) for v, j in zip(row.neighbours, row.jaccards)]
            assert order == sorted(order)
            assert all(j >= 0.17 for j in row.jaccards)


def test_event_at_snapshot_boundary_and_later_events_are_not_seen(exact):
    rows = read_table(exact[0])
    # 16's only session is at exactly T_0: not indexed at snapshot 0, nobody lists it there.
    assert ("train", 0, "search", 16) not in rows and ("train", 1, "search", 16) in rows
    assert all(16 not in r.neighbours for (_, k, _, _), r in rows.items() if k == 0)
    # 13's day-1 session would make it 11's best search neighbour (0.6 > 0.5) and 12's day-1
    # feed click would give 11-12 a feed Jaccard of 0.6: neither reaches snapshot 0.
    assert rows[("train", 0, "search", 11)].neighbours == (12, 13)
    assert rows[("train", 1, "search", 11)].neighbours == (16, 13, 12)
    assert rows[("train", 0, "feed", 11)].jaccards == (0.8, 0.2)
    assert rows[("train", 1, "feed", 11)].jaccards == (0.8, 0.6)


def test_future_poisoning_leaves_snapshot_zero_unchanged(tmp_path, exact):
    """Add events at and after T_0 that would change snapshot-0 lists if they leaked (14 copies
    11's search and feed, 13 clicks 500, a new user 17 copies 11), rebuild, compare."""
    raw = write_fixture(str(tmp_path / "raw"),
                        rec=[rec_row(14, 500, 1440), rec_row(14, 502, 1441),
                             rec_row(13, 500, 2500), rec_row(17, 500, 1500)],
                        src=[src_row(14, 402, 1440, [1, 2], 100, 1),
                             src_row(17, 1701, 1600, [1, 2], 100, 1)])
    out = str(tmp_path / "out")
    stats = run(raw, out, "--mode", "exact")
    assert stats["reconciled"]
    poisoned, clean = read_table(out), read_table(exact[0])
    snap0 = lambda rows: {key: row for key, row in rows.items() if key[1] == 0}  # noqa: E731
    assert snap0(poisoned) == snap0(clean)
    # The same events do change snapshot 1 (so the comparison above is not vacuous).
    assert poisoned[("train", 1, "search", 14)].neighbours != ()
    assert poisoned[("train", 1, "search", 11)].neighbours[:3] == (16, 17, 14)


def test_counters_reconcile_with_the_table(exact, lsh, lsh_keyed, window, window_keyed):
    for (out, stats), mode in ((exact, "exact"), (lsh, "lsh"), (lsh_keyed, "lsh"),
                               (window, "lsh"), (window_keyed, "lsh")):
        assert stats["reconciled"] and stats["mode"] == mode
        rows = read_table(out)
        for visibility in ("train", "test"):
            for side, k_side in (("search", 5), ("feed", 2)):
                table = stats["tables"][visibility][side]
                assert table["k"] == k_side
                for snap in table["per_snapshot"]:
                    k = snap["snapshot"]
                    mine = [r for (v, kk, s, _), r in rows.items()
                            if (v, kk, s) == (visibility, k, side)]
                    assert snap["rows_written"] == snap["users_indexed"] == len(mine)
                    assert snap["pairs_emitted"] == sum(len(r.neighbours) for r in mine)
                    assert snap["users_below_k"] == sum(len(r.neighbours) < k_side for r in mine)
                    assert snap["users_without_neighbours"] == sum(not r.neighbours for r in mine)
                total = table["totals"]
                assert total["pairs_emitted"] == sum(
                    len(r.neighbours) for (v, _, s, _), r in rows.items()
                    if (v, s) == (visibility, side))


def test_counters_golden(exact, lsh, lsh_keyed):
    _, stats = exact
    search = stats["tables"]["train"]["search"]["per_snapshot"]
    feed = stats["tables"]["train"]["feed"]["per_snapshot"]
    # Known before T_0: 11-15 and the hub (11 users); 16 joins at snapshot 1.
    assert [s["users_known"] for s in search] == [11, 12]
    assert [(s["users_indexed"], s["users_empty"]) for s in search] == [(10, 1), (11, 1)]
    assert [(s["users_indexed"], s["users_empty"]) for s in feed] == [(5, 6), (5, 7)]
    # Exact: pairs = hub 6x5 + hand lists; 1/6 feed pairs (12-15, 13-15) fall below 0.17.
    assert [s["pairs_emitted"] for s in search] == [30 + 4, 30 + 12]
    assert [s["below_min_jaccard"] for s in feed] == [4, 2]
    files = stats["files"]
    assert (files["rec_inter.csv"]["rows_read"], files["rec_inter.csv"]["canonical"],
            files["rec_inter.csv"]["rejected"]) == (13, 12, {"wrong_field_count": 1})
    assert (files["item_features.csv"]["rows_read"], files["item_features.csv"]["canonical"],
            files["item_features.csv"]["dropped_conflicting_id"]) == (8, 7, 1)
    assert stats["items"] == {"positive_items_without_features": 1,   # 505
                              "positive_items_without_category": 1}   # 504

    for _, lstats in (lsh, lsh_keyed):
        for visibility in ("train", "test"):
            lsearch = lstats["tables"][visibility]["search"]
            # The hub's six identical signatures share all 128 bands: 128 buckets of 6 > 5.
            assert [s["buckets_skipped"] for s in lsearch["per_snapshot"]] == [128, 128]
            assert [s["bucket_users_skipped"] for s in lsearch["per_snapshot"]] == [768, 768]
            assert lstats["tables"][visibility]["feed"]["totals"]["buckets_skipped"] == 0
            assert [s["users_below_k"] for s in lsearch["per_snapshot"]] == [10, 11]
            # Ordered candidate pairs (no cut at M = 200): snapshot 0 = 11-12, 11-13 both ways;
            # snapshot 1 = all pairs among 11, 12, 13, 16 (shared w:1 / i:100) = 12.
            assert [s["candidate_pairs"] for s in lsearch["per_snapshot"]] == [4, 12]
            assert lsearch["totals"]["candidates_scored"] == lsearch["totals"]["candidate_pairs"]
            assert lsearch["totals"]["window_pairs"] == 0
    assert lsh[1]["tables"] == lsh_keyed[1]["tables"]


def test_window_join_counters_golden(window, window_keyed):
    """Window 4: nothing skipped; the hub's six users meet their ±4 in every band: 14 of its 15
    pairs (31-36 never), 28 ordered pairs per band; the other users' buckets are paired
    completely, as the bucket join pairs them (4 and 12 ordered candidate pairs)."""
    for _, stats in (window, window_keyed):
        assert stats["reconciled"]
        for visibility in ("train", "test"):
            search = stats["tables"][visibility]["search"]["per_snapshot"]
            assert [s["buckets_skipped"] for s in search] == [0, 0]
            assert [s["candidate_pairs"] for s in search] == [28 + 4, 28 + 12]
            assert all(s["window_pairs"] >= 28 * 128 for s in search)
            assert all(s["users_candidates_truncated"] == 0 for s in search)


def test_outputs_written(exact):
    out, _ = exact
    dead = []
    for path in glob.glob(os.path.join(out, "dead_letter", "*.jsonl")):
        with open(path) as f:
            dead += [json.loads(line) for line in f]
    assert [(d["file"], d["row"], d["reason"]) for d in dead] == [
        ("rec_inter.csv", 12, "wrong_field_count")]
    with open(os.path.join(out, FN.NEIGHBOUR_CONFIG_FILE)) as f:
        config = json.load(f)
    assert config["neighbours"]["mode"] == "exact" and config["neighbours"]["k_feed"] == 2
    assert config["preprocess"]["min_targets_per_task"] == 3
    assert os.path.exists(os.path.join(out, FN.NEIGHBOUR_STATS_FILE))
    assert not glob.glob(os.path.join(out, "_*"))  # temporary files removed


@pytest.mark.slow
def test_multi_process_runner_writes_the_same_bytes(lsh, tmp_path):
    # Two worker processes (issue 13): the same table, dead letters and counters as in memory.
    out, stats = lsh
    again = str(tmp_path / "again")
    assert run(os.path.join(os.path.dirname(out), "raw"), again, *LSH, *MULTI_PROCESS)[
        "tables"] == stats["tables"]
    digest = output_digest(out)
    assert digest == output_digest(again)
    assert {"neighbours-00000-of-00001.jsonl", "dead_letter/rejected-00000-of-00001.jsonl",
            FN.NEIGHBOUR_STATS_FILE} <= set(digest)


def test_explicit_snapshots_and_visibility_all(tmp_path):
    raw = write_fixture(str(tmp_path / "raw"))
    out = str(tmp_path / "out")
    stats = run(raw, out, "--mode", "exact", "--visibility", "all",
                "--snapshots", "2023-05-23 01:00," + str(ts(1440)))
    rows = read_table(out)
    assert [s["snapshot_ts"] for s in stats["snapshots"]] == [ts(60), ts(1440)]
    assert {k[0] for k in rows} == {"all"}
    # Before 01:00: feed clicks of 11-13 and all five of 15's (held-out ones included), no search.
    # 15 = {i:500 c2:10 i:502 c2:20 i:505 i:506 c2:30 i:507}; 12-15 and 13-15 are 1/9.
    assert lists(rows, "all", 0, "feed") == {11: [(15, 4 / 8), (12, 1 / 5)], 12: [(11, 1 / 5)],
                                             13: [(11, 1 / 5)], 15: [(11, 4 / 8)]}
    assert lists(rows, "all", 0, "search") == {}
    # "all" sees 15's held-out 506 and 507: {i:500 c2:10 i:502 c2:20 i:505 i:506 c2:30 i:507}.
    assert rows[("all", 1, "feed", 15)].num_tokens == 8
    assert lists(rows, "all", 1, "feed")[11] == [(15, 4 / 8), (12, 1 / 5)]


def test_bucket_members_skips_and_counts_large_buckets():
    key = ("train", "search", 3, 17, 123456)
    out = list(nb.bucket_members((key, [5, 3, 5, 9]), max_bucket=3))
    assert out == [(("train", "search", 3, 3), (5, 9)), (("train", "search", 3, 5), (3, 9)),
                   (("train", "search", 3, 9), (3, 5))]
    (skipped,) = list(nb.bucket_members((key, [5, 3, 9, 1]), max_bucket=3))
    assert skipped.tag == "stats"
    assert skipped.value == {"train/3/search/buckets_skipped": 1,
                             "train/3/search/bucket_users_skipped": 4}
    assert list(nb.bucket_members((key, [5, 5]), max_bucket=3)) == []  # one distinct user


@pytest.mark.parametrize("layout", ["grouped", "keyed"])
def test_lsh_candidates_are_capped_at_m(tmp_path, layout):
    """``--max_candidates 1``: each user re-ranks only its most-colliding candidate, so every
    list has at most one entry and it is that user's exact top neighbour or nothing."""
    raw = write_fixture(str(tmp_path / "raw"))
    out = str(tmp_path / "out")
    stats = run(raw, out, *LSH, "--max_candidates", "1", "--visibility", "train",
                "--lsh_layout", layout)
    assert stats["reconciled"]
    rows = read_table(out)
    for (visibility, k, side, user), row in rows.items():
        assert len(row.neighbours) <= 1
    table = stats["tables"]["train"]["search"]["totals"]
    assert table["candidate_pairs"] == table["candidates_scored"]
    assert table["users_candidates_truncated"] > 0
    # 11 and 16 have identical search sets at snapshot 1: all 128 bands collide, nothing beats it.
    assert rows[("train", 1, "search", 11)].neighbours == (16,)


def test_missing_file_fails_with_clear_message(tmp_path):
    from jsr_tf.data import kuaisar

    raw = write_fixture(str(tmp_path / "raw"))
    os.remove(os.path.join(raw, "src_inter.csv"))
    with pytest.raises(kuaisar.InputError, match="src_inter.csv not found"):
        run(raw, str(tmp_path / "out"))


def test_cli_exit_codes(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        nb.main(["--input_dir", str(tmp_path / "nowhere"), "--output_dir", str(tmp_path / "o")])
    assert exit_info.value.code == 2
    raw = write_fixture(str(tmp_path / "raw"))
    with pytest.raises(SystemExit) as exit_info:  # b * r != P
        nb.main(["--input_dir", raw, "--output_dir", str(tmp_path / "o"), "--bands", "60"])
    assert exit_info.value.code == 2


def test_hub_signatures_collide_in_every_band():
    """Why the LSH run skips exactly 128 buckets per search snapshot: identical sets, identical
    signatures, one shared key per band; 11's set shares none of them."""
    h = mh.MinHasher(128, seed=1)
    hub = mh.band_keys(h.signature_of_tokens({"w:77"}, "search"), 128, 1)
    other = mh.band_keys(h.signature_of_tokens({"w:1", "w:2", "i:100"}, "search"), 128, 1)
    assert not set(hub.tolist()) & set(other.tolist())


def test_cumulative_signatures_merge_partials_per_snapshot():
    """Snapshot k = union of intervals <= k; its signature (elementwise min of the partial ones)
    equals the signature of that union computed directly."""
    config = NeighbourConfig(num_perm=16, bands=16, rows=1)
    fn = nb.CumulativeSignatures(config)
    fn.setup()
    parts = [(1, ("w:1", "w:2")), (3, ("i:5",)), (1, ("w:3",)), (3, ("w:1",))]
    out = list(fn.process((("train", "search", 7), parts), snapshots=[10, 20, 30, 40]))
    indexed = [o for o in out if isinstance(o, nb.Indexed)]
    assert [(r.snapshot, r.tokens) for r in indexed] == [
        (1, ("w:1", "w:2", "w:3")), (2, ("w:1", "w:2", "w:3")), (3, ("i:5", "w:1", "w:2", "w:3"))]
    hasher = mh.MinHasher(16, seed=config.hash_seed)
    for r in indexed:
        assert r.key == ("train", "search", r.snapshot, 7)
        assert np.array_equal(r.signature, hasher.signature_of_tokens(r.tokens, "search"))
    (stats,) = [o.value for o in out if not isinstance(o, nb.Indexed)]
    assert stats == {f"train/{k}/search/users_indexed": 1 for k in (1, 2, 3)}


def test_config_defaults_and_round_trip():
    config = NeighbourConfig()
    assert (config.num_perm, config.bands, config.rows) == (128, 128, 1)  # measured, not 64 x 2
    assert (config.k_search, config.k_feed, config.min_jaccard) == (5, 5, 0.02)
    assert (config.max_bucket, config.max_candidates, config.snapshot_hours) == (500, 200, 24)
    assert config.mode == "lsh" and config.visibilities == ("train", "test")
    # Issue 17: the window join (W 8, D 4) by default; the bucket join stays a flag value.
    assert (config.candidate_join, config.window, config.window_depth) == ("window", 8, 4)
    assert config.lsh_layout == "auto"
    assert resolve_layout(config, "FnApiRunner").lsh_layout == "grouped"
    assert resolve_layout(config, "DirectRunner").lsh_layout == "grouped"
    assert resolve_layout(config, "DataflowRunner").lsh_layout == "keyed"
    assert resolve_layout(config, "FlinkRunner").lsh_layout == "keyed"
    keyed = NeighbourConfig(lsh_layout="keyed")
    assert resolve_layout(keyed, "FnApiRunner") is keyed
    other = NeighbourConfig.from_dict(dict(config.to_dict(), snapshots=[5, 9], k_feed=3))
    assert other.snapshots == (5, 9) and other.k("feed") == 3 and other.k("search") == 5
    assert NeighbourConfig.from_dict(json.loads(other.to_json())) == other


@pytest.mark.parametrize("values,match", [
    ({"bands": 60}, "`bands \\* rows` should equal `num_perm`"),
    ({"mode": "ann"}, "`mode` should be one of"),
    ({"lsh_layout": "sharded"}, "`lsh_layout` should be one of"),
    ({"k_search": 0}, "`k_search` should be a positive integer"),
    ({"min_jaccard": 1.5}, "`min_jaccard` should be a number in \\[0, 1\\]"),
    ({"snapshots": [5, 5]}, "`snapshots` should be strictly increasing"),
    ({"visibilities": ["valid"]}, "`visibilities` should be distinct values"),
    ({"max_bucket": 1.5}, "`max_bucket` should be a positive integer"),
    ({"candidate_join": "all"}, "`candidate_join` should be one of"),
    ({"window": 0}, "`window` should be a positive integer"),
    ({"window_depth": 129}, "`window_depth` should be at most `bands`"),
    ({"num_perms": 64}, "Unknown NeighbourConfig fields"),
])
def test_config_rejects_bad_values(values, match):
    with pytest.raises(ValueError, match=match):
        NeighbourConfig.from_dict(values)


def test_snapshot_helpers():
    day = 86_400_000
    # Earliest event at 00:10 day 0, latest at 09:20 day 1 -> midnights of day 1 and day 2.
    assert default_snapshots(ts(10), ts(2000)) == [ts(1440), ts(2880)]
    # An event at exactly midnight is not before that midnight: the first boundary is the next.
    assert default_snapshots(ts(1440), ts(1440)) == [ts(2880)]
    # 6-hour spacing from Beijing midnight, first boundary after the earliest event.
    assert default_snapshots(ts(400), ts(800), 6 * 3_600_000) == [ts(720), ts(1080)]
    assert default_snapshots(ts(400), ts(700), 6 * 3_600_000) == [ts(720)]
    assert beijing_midnight(ts(1439)) == T0_MS and beijing_midnight(ts(1440)) == T0_MS + day
    snaps = [ts(1440), ts(2880)]
    assert [snapshot_index(t, snaps) for t in (ts(0), ts(1439), ts(1440), ts(5000))] == [
        -1, -1, 0, 1]
    assert [first_snapshot_seeing(t, snaps) for t in (ts(0), ts(1440), ts(2880))] == [0, 1, 2]
    assert parse_snapshot("2023-05-24") == ts(1440)
    assert parse_snapshot("2023-05-23 01:00") == ts(60)
    assert parse_snapshot(str(ts(60))) == ts(60)
    with pytest.raises(ValueError, match="A snapshot should be unix ms"):
        parse_snapshot("yesterday")
