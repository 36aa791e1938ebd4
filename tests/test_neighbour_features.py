"""Neighbour payloads on examples: ``jsr_tf/neighbours/payload.py`` and ``jsr-neighbour-features``.

Fixture: ``tests/neighbour_fixture.py`` (users A, B, C and a filler; times in minutes after
T0 = 2023-05-23 00:00 Beijing; default snapshots T_0 = 1440, T_1 = 2880, T_2 = 4320).

Hand-computed lists (train = test table before T_2, held-out events come later):
  snapshot 0: feed A↔B J = |{100,101}| / 2 = 1; search A↔C J = |{w1,w2,i200}| / 4 = 3/4.
  snapshot 1: feed A↔B J = 2/6 = 1/3; search A↔C J = |{w1,w2,w3,i200,i201}| / 15 = 1/3.
The held-out targets 900/901 (B) and s34/s35 (C) are unique, so a payload that ignored the
visibility rules would show them.
"""

import glob
import json
import os
import shutil

import numpy as np
import pytest

from jsr_tf import features as F
from jsr_tf import filenames as FN
from jsr_tf.data.timeline import Event
from jsr_tf.features import EventKind, NeighbourSide
from jsr_tf.neighbours import NeighbourRow
from jsr_tf.neighbours import payload as pl
from jsr_tf.pipelines import neighbour_features as nf
from jsr_tf.pipelines import payload_passes as passes
from jsr_tf.pipelines import neighbours as nb
from jsr_tf.pipelines import tfrecord_io
from jsr_tf.pipelines.stats import ReconciliationError
from tests.dataflow import BUCKET, DRY_RUN, assert_dry_run, requires_gcp
from tests.neighbour_fixture import (A, B, C, FILLER, future_poisoned_raw, preprocess_fixture,
                                     write_raw)
from tests.testing import MULTI_PROCESS, output_digest, ts

SHAPE = F.DataShape()  # the reference shape of the fixtures' data
LAG_MS = 1445 * 60_000
TAU = ts(3000)
Lf, Lq, Wn, Kn = SHAPE.nbr_feed_items, SHAPE.nbr_search_sessions, SHAPE.nbr_query_words, SHAPE.nbr_session_clicks


# --------------------------------------------------------------------------- helpers


def build_all(root, raw):
    """preprocess → jsr-neighbours (exact, same preprocess config) → directories."""
    data = preprocess_fixture(root, raw)
    nbdir = os.path.join(root, "nb")
    nb.run(["--input_dir", raw, "--output_dir", nbdir, "--mode", "exact", "--preprocess_config",
            os.path.join(data, "preprocess_config.json"), "--runner=FnApiRunner"])
    return data, nbdir


def run_features(raw, data, nbdir, out, *extra):
    return nf.run(["--input_dir", raw, "--examples_dir", data, "--neighbours_dir", nbdir,
                   "--output_dir", out, "--runner=FnApiRunner", *extra])


def read_protos(data_dir, split, task):
    from tensorflow.core.example import example_pb2

    out = []
    for path in sorted(glob.glob(os.path.join(data_dir, F.file_pattern(split, task)))):
        out.extend(example_pb2.Example.FromString(d)
                   for d in tfrecord_io.read_gzip_tfrecords(path))
    return out


def nbr_dict(example):
    """The neighbour fields of a proto as Python lists, plus the key fields."""
    fm = example.features.feature
    out = {name: list(fm[name].int64_list.value) for name in F.NEIGHBOUR_FEATURES
           if name != F.NBR_SIM}
    out[F.NBR_SIM] = list(fm[F.NBR_SIM].float_list.value)
    for name in (F.USER_ID, F.TASK, F.TARGET_TS, F.TARGET_ROW, F.TARGET_ITEM):
        out[name] = fm[name].int64_list.value[0]
    return out


def all_examples(data_dir):
    """``(split, nbr_dict)`` of every example."""
    return [(s.value, nbr_dict(e)) for s in F.Split for t in F.Task
            for e in read_protos(data_dir, s.value, t)]


def find(data_dir, user, task, target_minutes):
    hits = [d for _, d in all_examples(data_dir)
            if (d[F.USER_ID], d[F.TASK], d[F.TARGET_TS]) == (user, task, ts(target_minutes))]
    assert len(hits) == 1, (user, task, target_minutes)
    return hits[0]


def slots_of(d):
    """Unflattens one example's payload into per-slot dicts."""
    out = []
    for i in range(len(d[F.NBR_SIDE])):
        words = d[F.NBR_SRC_WORDS][i * Lq * Wn:(i + 1) * Lq * Wn]
        clicks = d[F.NBR_SRC_CLICKS][i * Lq * Kn:(i + 1) * Lq * Kn]
        out.append({"side": d[F.NBR_SIDE][i], "sim": d[F.NBR_SIM][i],
                    "user": d[F.NBR_USERS][i], "last_ts": d[F.NBR_LAST_TS][i],
                    "rec": d[F.NBR_REC_ITEMS][i * Lf:(i + 1) * Lf],
                    "words": [words[j * Wn:(j + 1) * Wn] for j in range(Lq)],
                    "clicks": [clicks[j * Kn:(j + 1) * Kn] for j in range(Lq)]})
    return out


def pad(values, size, value=F.RAW_PAD_ID):
    """``values`` padded to ``size``: ids with ``RAW_PAD_ID`` (default), side and sim with 0."""
    return list(values) + [value] * (size - len(values))


def expect(user, side, sim, last_minutes, rec=(), sessions=()):
    """An expected slot: ``sessions`` = [(words, clicks), ...] oldest first."""
    return {"side": int(side), "sim": pytest.approx(sim, rel=1e-6), "user": user,
            "last_ts": ts(last_minutes) if last_minutes is not None else 0,
            "rec": pad(rec, Lf),
            "words": [pad(w[:Wn], Wn) for w, _ in sessions] + [[F.RAW_PAD_ID] * Wn] * (
                Lq - len(sessions)),
            "clicks": [pad(c[:Kn], Kn) for _, c in sessions] + [[F.RAW_PAD_ID] * Kn] * (
                Lq - len(sessions))}


FEED_SIDE, SEARCH_SIDE = NeighbourSide.FEED, NeighbourSide.SEARCH
FEED_T, SEARCH_T = int(F.Task.FEED), int(F.Task.SEARCH)
A_EARLY = dict(rec=[100, 101], sessions=[([1, 2], [200])])            # A's events before 1440
C_TRAIN = [([1, 2], [200]), ([6], [220]), ([1, 3], [201, 202])]        # C's sessions before 1500


# --------------------------------------------------------------------------- module fixtures


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("nbf"))
    raw = write_raw(os.path.join(root, "raw"))
    data, nbdir = build_all(root, raw)
    out = os.path.join(root, "out")
    stats = run_features(raw, data, nbdir, out)
    return {"root": root, "raw": raw, "data": data, "nb": nbdir, "out": out, "stats": stats}


@pytest.fixture(scope="module")
def lagged(built):
    out = os.path.join(built["root"], "out_lag")
    stats = run_features(built["raw"], built["data"], built["nb"], out,
                         "--payload_lag_ms", str(LAG_MS))
    return out, stats


# --------------------------------------------------------------------------- pure module


def _feed(ts_, item):
    return Event(ts_, EventKind.FEED, ts_, item, (), (), (item,), 1)


def _session(ts_, words, clicks):
    return Event(ts_, EventKind.SEARCH, ts_, clicks[0] if clicks else 0, tuple(words),
                 tuple(clicks), tuple(clicks), 1)


def test_cutter_caps_pads_and_cuts_strictly():
    events = sorted([_feed(10 * i, 1000 + i) for i in range(1, 18)]
                    + [_session(10 * i + 5, range(100 * i, 100 * i + 10), [i, i + 1, i + 2])
                       for i in range(1, 13)], key=lambda e: e.key)
    cutter = pl.PayloadCutter(events, SHAPE)
    full = cutter.cut(10_000)
    assert full.rec_items == tuple(1000 + i for i in range(3, 18))  # the last Lf = 15
    assert (full.num_feed, full.num_search, full.last_ts) == (15, 10, 170)
    words = np.reshape(full.src_words, [Lq, Wn])
    clicks = np.reshape(full.src_clicks, [Lq, Kn])
    for row, i in enumerate(range(3, 13)):  # the last Lq = 10 sessions, oldest first
        assert list(words[row]) == list(range(100 * i, 100 * i + Wn))  # first Wn words
        assert list(clicks[row]) == [i, i + 1]                        # first Kn clicks
    early = cutter.cut(25)
    assert early.rec_items == tuple(pad([1001, 1002], Lf)) and early.last_ts == 20
    assert early.src_words == tuple(pad(range(100, 108), Lq * Wn))
    assert early.src_clicks == tuple(pad([1, 2], Lq * Kn))
    # Strict: an event at exactly the cut is excluded.
    assert cutter.cut(15).num_search == 0 and cutter.cut(16).num_search == 1
    assert cutter.cut(20).num_feed == 1 and cutter.cut(20).last_ts == 15
    assert cutter.cut(10) == pl.empty_payload(SHAPE) and pl.empty_payload(SHAPE).is_empty


def test_visibility_and_cut_time():
    assert [pl.example_visibility(s) for s in ("train", "valid", "test")] == [
        "train", "train", "test"]
    with pytest.raises(ValueError, match="`split` should be one of"):
        pl.example_visibility("dev")
    assert pl.cut_time(1000, 0) == 1000 and pl.cut_time(1000, 10) == 990
    with pytest.raises(ValueError, match="`payload_lag_ms` should be a non-negative"):
        pl.cut_time(1000, -1)


def _row(vis, k, side, user, nbrs):
    return NeighbourRow(vis, k, 0, side, user, 3, tuple(v for v, _ in nbrs),
                        tuple(j for _, j in nbrs))


def test_slots_feed_side_first_missing_rows_and_no_self():
    rows = pl.index_rows([_row("train", 0, "search", 1, [(5, 0.5), (6, 0.25)]),
                          _row("train", 0, "feed", 1, [(7, 0.75)]),
                          _row("test", 0, "feed", 1, [])])
    assert pl.example_slots(1, rows, "valid", 5, [0, 10]) == (
        "train", 0, [pl.Slot(1, 0.75, 7), pl.Slot(2, 0.5, 5), pl.Slot(2, 0.25, 6)], 2)
    assert pl.example_slots(1, rows, "test", 5, [0, 10]) == ("test", 0, [], 1)
    assert pl.example_slots(1, rows, "train", 10, [0, 10]) == ("train", 1, [], 0)
    assert pl.example_slots(1, rows, "train", -1, [0, 10]) == ("train", -1, [], 0)
    with pytest.raises(ValueError, match="never hold its own user"):
        pl.assemble_slots(1, pl.index_rows([_row("train", 0, "feed", 1, [(1, 1.0)])]),
                          "train", 0)
    with pytest.raises(ValueError, match="one row per"):
        pl.index_rows([_row("train", 0, "feed", 1, []), _row("train", 0, "feed", 1, [])])


def test_values_and_example_proto():
    from tensorflow.core.example import example_pb2

    payload = pl.PayloadCutter([_feed(5, 42), _session(6, [3, 4], [8])], SHAPE).cut(100)
    values = pl.neighbour_values([pl.Slot(2, 0.5, 77)], [payload])
    assert values[F.NBR_SIDE] == [2] and values[F.NBR_USERS] == [77]
    assert values[F.NBR_LAST_TS] == [6] and values[F.NBR_REC_ITEMS] == pad([42], Lf)
    assert {n: len(v) for n, v in values.items()} == SHAPE.slot_sizes()
    with pytest.raises(ValueError, match="one entry per slot"):
        pl.neighbour_values([pl.Slot(2, 0.5, 77)], [])
    base = example_pb2.Example()
    base.features.feature[F.USER_ID].int64_list.value.append(3)
    data = pl.add_neighbour_features(base.SerializeToString(), values)
    parsed = example_pb2.Example.FromString(data).features.feature
    assert list(parsed[F.NBR_SIM].float_list.value) == [0.5]
    assert list(parsed[F.NBR_SRC_CLICKS].int64_list.value) == pad([8], Lq * Kn)
    empty = example_pb2.Example.FromString(pl.add_neighbour_features(
        base.SerializeToString(), None)).features.feature
    assert all(empty[n].WhichOneof("kind") for n in F.NEIGHBOUR_FEATURES)
    with pytest.raises(ValueError, match="should not carry neighbour fields"):
        pl.add_neighbour_features(data, values)


# --------------------------------------------------------------------------- the Beam job


@pytest.mark.slow
def test_hand_computed_payloads(built):
    out = built["out"]
    # A's train feed target at 1600 (snapshot 0): B (feed, J 1) then C (search, J 3/4).
    # B's 111@1600 is at the cut itself: excluded.
    assert slots_of(find(out, A, FEED_T, 1600)) == [
        expect(B, FEED_SIDE, 1.0, 1450, rec=[100, 101, 110]),
        expect(C, SEARCH_SIDE, 0.75, 1460, sessions=C_TRAIN)]
    # A's valid target at 3000 (snapshot 1, train visibility): no held-out event of B or C;
    # C's 10-word session keeps its first Wn = 8 words.
    c_valid = C_TRAIN + [(list(range(1, 11)), [210])]
    assert slots_of(find(out, A, FEED_T, 3000)) == [
        expect(B, FEED_SIDE, 1 / 3, 1600, rec=[100, 101, 110, 111]),
        expect(C, SEARCH_SIDE, 1 / 3, 2000, sessions=c_valid)]
    # A's test target at 3100 (test visibility): valid targets 900 (B) and s34 (C) are visible,
    # test targets 901 and s35 are not.
    assert slots_of(find(out, A, FEED_T, 3100)) == [
        expect(B, FEED_SIDE, 1 / 3, 2900, rec=[100, 101, 110, 111, 900]),
        expect(C, SEARCH_SIDE, 1 / 3, 2950, sessions=c_valid + [([88], [211])])]
    # B (no search row) and C (no feed row) get one side only.
    assert slots_of(find(out, B, FEED_T, 1450)) == [expect(A, FEED_SIDE, 1.0, 20, **A_EARLY)]
    assert slots_of(find(out, C, SEARCH_T, 1460)) == [
        expect(A, SEARCH_SIDE, 0.75, 20, **A_EARLY)]
    # Before T_0: no slots, every field present and empty.
    early = find(out, B, FEED_T, 40)
    assert all(early[name] == [] for name in F.NEIGHBOUR_FEATURES)
    # The filler's test target (1700) has a (test, 0, feed) row without neighbours.
    assert find(out, FILLER, FEED_T, 1700)[F.NBR_SIDE] == []


@pytest.mark.slow
def test_no_leakage_for_any_example_and_slot(built, lagged):
    # Held-out target items and words that occur nowhere else in the fixture.
    forbidden_train = {"items": {900, 901, 104, 105, 203, 211, 212, 309, 310, 408, 409},
                       "words": {44, 55, 88, 99, 68, 69}}
    forbidden_test = {"items": {901, 105, 203, 212, 310, 409}, "words": {55, 99, 69}}
    seen_valid_target = False
    for out, lag in ((built["out"], 0), (lagged[0], LAG_MS)):
        for split, d in all_examples(out):
            forbidden = forbidden_test if split == "test" else forbidden_train
            items = set(d[F.NBR_REC_ITEMS]) | set(d[F.NBR_SRC_CLICKS])
            assert not items & forbidden["items"], (split, d)
            assert not set(d[F.NBR_SRC_WORDS]) & forbidden["words"], (split, d)
            assert d[F.USER_ID] not in d[F.NBR_USERS]
            for last in d[F.NBR_LAST_TS]:
                assert last < d[F.TARGET_TS] - lag or last == 0
            seen_valid_target |= 900 in d[F.NBR_REC_ITEMS]
    assert seen_valid_target  # test examples do see valid targets, so the check has teeth


@pytest.mark.slow
def test_lag_cuts_earlier_and_keeps_empty_slots(built, lagged):
    out, stats = lagged
    # B's target at 1450 with a 1445-minute lag: A has nothing before minute 5 (s11@5 is at the
    # cut), but the slot stays, empty.
    assert slots_of(find(out, B, FEED_T, 1450)) == [expect(A, FEED_SIDE, 1.0, None)]
    assert slots_of(find(out, C, SEARCH_T, 1460)) == [
        expect(A, SEARCH_SIDE, 0.75, 10, rec=[100], sessions=[([1, 2], [200])])]
    assert stats["slots"]["empty_payload"] >= 1 and stats["reconciled"]
    assert json.load(open(os.path.join(out, FN.MANIFEST_FILE)))["neighbours"][
        "payload_lag_ms"] == LAG_MS


@pytest.mark.slow
def test_counts_manifest_and_unchanged_features(built):
    data, out, stats = built["data"], built["out"], built["stats"]
    assert stats["reconciled"]
    manifest_in = json.load(open(os.path.join(data, FN.MANIFEST_FILE)))
    manifest = json.load(open(os.path.join(out, FN.MANIFEST_FILE)))
    assert {n: f["rows"] for n, f in manifest["files"].items()} == {
        n: f["rows"] for n, f in manifest_in["files"].items()}
    for name, info in manifest["files"].items():
        path = os.path.join(out, name)
        assert info["sha256"] == tfrecord_io.sha256_of(path)
        assert info["records_sha256"] == tfrecord_io.records_sha256(path)
        assert stats["files"][name]["read"] == stats["files"][name]["written"] == info["rows"]
    section = manifest["neighbours"]
    assert section["config"]["mode"] == "exact" and section["payload_lag_ms"] == 0
    assert section["caps"]["feed_items"] == Lf
    # Slots: A has 4 examples at snapshot ≥ 0 with two slots ... all counted per side.
    slots = [d[F.NBR_SIDE] for _, d in all_examples(out)]
    written = {side.name.lower(): sum(s.count(int(side)) for s in slots)
               for side in (FEED_SIDE, SEARCH_SIDE)}
    assert stats["slots"]["planned"] == written and stats["slots"]["empty_payload"] == 0
    assert stats["examples"]["with_slots"] == sum(1 for s in slots if s)
    for name in ("stats.json", "preprocess_config.json", "vocab/items.tsv"):
        assert open(os.path.join(out, name), "rb").read() == open(
            os.path.join(data, name), "rb").read()
    schema, before_schema = (json.load(open(os.path.join(d, "schema.json"))) for d in (out, data))
    assert sorted(schema.pop("neighbour_features")) == sorted(F.NEIGHBOUR_FEATURES)
    assert schema.pop("neighbour_caps")["feed_items"] == Lf
    assert schema == before_schema
    # Every non-neighbour field is byte-identical.
    for split in F.Split:
        for task in F.Task:
            before = read_protos(data, split.value, task)
            after = read_protos(out, split.value, task)
            assert len(before) == len(after)
            for x, y in zip(before, after):
                y_fm = y.features.feature
                assert set(y_fm) == set(x.features.feature) | set(F.NEIGHBOUR_FEATURES)
                for name, feature in x.features.feature.items():
                    assert y_fm[name].SerializeToString() == feature.SerializeToString()


@pytest.mark.slow
def test_reader_parses_the_payload(built):
    from jsr_tf.data import reader

    out = built["out"]
    for split in F.Split:
        for task in F.Task:
            stored = [nbr_dict(e) for e in read_protos(out, split.value, task)]
            batches = list(reader.make_dataset(out, split.value, task, 4, neighbours=True,
                                               shuffle_buffer=0)
                           .as_numpy_iterator())
            rows = [{k: v[i] for k, v in b.items()} for b in batches
                    for i in range(len(b[F.USER_ID]))]
            assert len(rows) == len(stored)
            for row, d in zip(rows, stored):
                n = len(d[F.NBR_SIDE])
                K = SHAPE.neighbour_slots
                assert row[F.NBR_SIDE].shape == (K,)
                assert list(row[F.NBR_SIDE]) == pad(d[F.NBR_SIDE], K, 0)
                np.testing.assert_allclose(row[F.NBR_SIM], pad(d[F.NBR_SIM], K, 0))
                assert row[F.NBR_REC_ITEMS].shape == (K, Lf)
                assert list(row[F.NBR_REC_ITEMS].ravel()) == pad(d[F.NBR_REC_ITEMS], K * Lf)
                assert row[F.NBR_SRC_WORDS].shape == (K, Lq, Wn)
                assert list(row[F.NBR_SRC_WORDS].ravel()) == pad(d[F.NBR_SRC_WORDS], K * Lq * Wn)
                assert row[F.NBR_SRC_CLICKS].shape == (K, Lq, Kn)
                assert list(row[F.NBR_SRC_CLICKS].ravel()) == pad(d[F.NBR_SRC_CLICKS],
                                                                  K * Lq * Kn)
                assert not row[F.NBR_SIDE][n:].any()


def assert_same_example_files(out, expected):
    """The same example files, byte for byte, and the same manifest ``files`` section."""
    names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(expected, "*.gz")))
    assert names == sorted(os.path.basename(p) for p in glob.glob(os.path.join(out, "*.gz")))
    for name in names:
        assert open(os.path.join(out, name), "rb").read() == open(
            os.path.join(expected, name), "rb").read()
    assert json.load(open(os.path.join(out, FN.MANIFEST_FILE)))["files"] == json.load(
        open(os.path.join(expected, FN.MANIFEST_FILE)))["files"]


@pytest.mark.slow
def test_deterministic_on_the_multi_process_runner(built):
    # The rerun runs in 2 worker processes (issue 13): the same bytes as the in-memory run.
    out2 = os.path.join(built["root"], "out_again")
    run_features(built["raw"], built["data"], built["nb"], out2, *MULTI_PROCESS)
    assert output_digest(out2) == output_digest(built["out"])
    assert_same_example_files(out2, built["out"])
    # A rerun into the same dir cleans and rewrites it.
    run_features(built["raw"], built["data"], built["nb"], out2)
    assert sorted(os.listdir(out2)) == sorted(os.listdir(built["out"]))


@requires_gcp
def test_dataflow_graph(built):
    # The offline Dataflow check of issue 13 (tests/dataflow.py): the job graph, nothing run.
    summary = nf.run(["--input_dir", built["raw"], "--examples_dir", built["data"],
                      "--neighbours_dir", built["nb"], "--output_dir", f"{BUCKET}/nbf",
                      *DRY_RUN])
    assert_dry_run(summary, ["ReadExamples", "ReadTable", "PlanSlots", "CutPayloads",
                             "AddNeighbours", "GroupFiles", "WriteFiles", "WriteFileCounts",
                             "WriteRawStats"])


@pytest.mark.slow
def test_future_poisoning(built, tmp_path):
    root = str(tmp_path)
    raw = future_poisoned_raw(os.path.join(root, "raw"))
    data, nbdir = build_all(root, raw)
    out = os.path.join(root, "out")
    run_features(raw, data, nbdir, out)

    def by_key(directory):
        return {(d[F.USER_ID], d[F.TASK], d[F.TARGET_ROW]): d for _, d in all_examples(directory)}

    before, after = by_key(built["out"]), by_key(out)
    early = {k for k, d in before.items() if d[F.TARGET_TS] <= TAU}
    assert early == {k for k, d in after.items() if d[F.TARGET_TS] <= TAU}
    assert len(early) > 10
    for key in early:
        for name in F.NEIGHBOUR_FEATURES:
            assert before[key][name] == after[key][name], (key, name)
    # The appended events do reach later examples (C's no-click session @3010 for A @3100).
    assert any(before[k][F.NBR_SRC_WORDS] != after[k][F.NBR_SRC_WORDS]
               for k in before if k not in early and k in after)


@pytest.mark.slow
def test_other_raw_data_does_not_reconcile(built, tmp_path):
    """Raw logs that are not the ones the examples and the table were built from (here: with
    later events appended) would rebuild other held-out sets: the run refuses to reconcile."""
    raw = future_poisoned_raw(str(tmp_path / "raw"))
    with pytest.raises(ReconciliationError, match="the same raw data"):
        run_features(raw, built["data"], built["nb"], str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()  # a failed run leaves the output dir as it was
    (staging,) = tmp_path.glob("out.tmp-*")  # its files stay beside it for inspection
    stats = json.load(open(str(staging / FN.NEIGHBOUR_FEATURE_STATS_FILE)))
    failed = [c["check"] for c in stats["checks"] if not c["ok"]]
    assert failed and all("the same raw data" in name for name in failed)


# --------------------------------------------------------------------------- bad input


def _copy_tree(src, dst):
    shutil.copytree(src, dst)
    return dst


@pytest.mark.slow
def test_bad_inputs_fail_clearly(built, tmp_path):
    raw, data = built["raw"], built["data"]
    out = str(tmp_path / "out")
    with pytest.raises(nf.kuaisar.InputError, match="Neighbours dir not found"):
        run_features(raw, data, str(tmp_path / "missing"), out)
    with pytest.raises(nf.kuaisar.InputError, match="`output_dir` should differ"):
        run_features(raw, data, built["nb"], data)

    mismatched = _copy_tree(built["nb"], str(tmp_path / "nb_mismatch"))
    path = os.path.join(mismatched, FN.NEIGHBOUR_CONFIG_FILE)
    config = json.load(open(path))
    config["preprocess"]["strict_same_ts"] = False
    json.dump(config, open(path, "w"))
    with pytest.raises(nf.kuaisar.InputError, match="strict_same_ts"):
        run_features(raw, data, mismatched, out)

    no_train = _copy_tree(built["nb"], str(tmp_path / "nb_test_only"))
    path = os.path.join(no_train, FN.NEIGHBOUR_CONFIG_FILE)
    config = json.load(open(path))
    config["neighbours"]["visibilities"] = ["test"]
    json.dump(config, open(path, "w"))
    with pytest.raises(nf.kuaisar.InputError, match="visibilities"):
        run_features(raw, data, no_train, out)

    no_table = _copy_tree(built["nb"], str(tmp_path / "nb_no_table"))
    for p in glob.glob(os.path.join(no_table, "neighbours-*.jsonl")):
        os.remove(p)
    with pytest.raises(nf.kuaisar.InputError, match="No neighbour table"):
        run_features(raw, data, no_table, out)

    too_many = _copy_tree(built["nb"], str(tmp_path / "nb_too_many"))
    path = os.path.join(too_many, FN.NEIGHBOUR_CONFIG_FILE)
    config = json.load(open(path))
    config["neighbours"]["k_feed"], config["neighbours"]["k_search"] = 6, 5
    json.dump(config, open(path, "w"))
    with pytest.raises(nf.kuaisar.InputError, match="`k_feed \\+ k_search` should be at most 10"):
        run_features(raw, data, too_many, out)

    with pytest.raises(SystemExit) as exit_info:  # the CLI exits with status 2
        nf.main(["--input_dir", raw, "--examples_dir", data, "--neighbours_dir", mismatched,
                 "--output_dir", out])
    assert exit_info.value.code == 2
    assert not glob.glob(os.path.join(out, "*.gz"))


def test_plan_passes_cuts_files_in_order():
    files = [nf.ExampleFile(n, "train", 0, f"/d/{n}") for n in ("a", "b", "c", "d")]
    plan = passes.plan_passes(files, {"a": 5, "b": 0, "c": 2, "d": 4}, 3)
    assert [[(s.name, s.start, s.stop) for s in p] for p in plan] == [
        [("a", 0, 3)], [("a", 3, 5), ("c", 0, 1)], [("c", 1, 2), ("d", 0, 2)], [("d", 2, 4)]]
    (whole,) = passes.plan_passes(files, {}, 0)
    assert [(s.name, s.start, s.stop) for s in whole] == [(n, 0, None) for n in "abcd"]
    assert passes.plan_passes(files[1:2], {"b": 0}, 3) == [[]]


def test_passes_write_the_same_files(built):
    """Two passes (timelines once, one pipeline per half of the examples, parts concatenated):
    byte-identical files, the same manifest and the same counts as the one-pass run."""
    out = os.path.join(built["root"], "out_passes")
    read = built["stats"]["examples"]["read"]
    stats = run_features(built["raw"], built["data"], built["nb"], out, "--examples_per_pass",
                         str(-(-read // 2)))
    assert stats["reconciled"] and stats["passes"] == 2
    assert built["stats"]["passes"] == 1
    assert_same_example_files(out, built["out"])
    for key in ("files", "examples", "slots", "payload", "raw", "users_with_events"):
        assert stats[key] == built["stats"][key], key
    assert not glob.glob(os.path.join(out, "_*"))  # no timelines, parts or raw counters left
