"""The per-user neighbour serving table: ``jsr-neighbour-serving-table``.

Fixture: the one of ``tests/test_neighbour_features.py`` (times in minutes after T0; default
snapshots T_0 = 1440, T_1 = 2880, T_2 = 4320), with a table of visibility ``all`` (every event,
held-out targets included), exact mode:

  user 1 (A) feed 100@10 101@20 102@1500 103@1600 104@3000 105@3100
             search s11@5 [1,2]→200, s12@1550 [1,3]→201, s13@3050 [2,44]→202, s14@3200 [55]→203
  user 2 (B) feed 100@30 101@40 110@1450 111@1600 900@2900 901@2950
  user 3 (C) search s31@50 [1,2]→200, s36@100 [6] no click (fallback 220),
             s32@1460 [1,3]→201,202,204, s33@2000 [1..10]→210, s34@2950 [88]→211,
             s35@3000 [99]→212
  user 9 (filler) feed 300..309, 310; search [60+i]→400+i: no overlap with anyone.

Hand-computed lists:
  snapshot 2 (newest, every event): feed A↔B J = |{100,101}| / 10 = 0.2; search A↔C:
    A = {w1,w2,w3,w44,w55,i200..i203} (9), C = {w1..w10,w88,w99,i200,i201,i202,i204,i210,
    i211,i212} (19), shared {w1,w2,w3,i200,i201,i202} → J = 6 / 22 = 3/11.
  snapshot 1 (events before 2880): feed 2/6 = 1/3, search 5/15 = 1/3.
Default as_of = A's s14@3200 + 1 ms: every event is in the payloads. The middle cut
as_of = 2950 uses snapshot 1 and drops 901@2950 (B) and s34@2950 (C), which sit exactly at it.
"""

import glob
import json
import os
import shutil

import numpy as np
import pytest

from jsr_tf import features as F
from jsr_tf import filenames as FN
from jsr_tf.features import NeighbourSide
from jsr_tf.neighbours import payload as pl
from jsr_tf.pipelines import neighbour_serving_table as st
from jsr_tf.pipelines import neighbours as nb
from jsr_tf.pipelines import tfrecord_io
from tests.dataflow import BUCKET, DRY_RUN, assert_dry_run, requires_gcp
from tests.test_neighbour_features import expect, pad, write_raw
from tests.testing import MULTI_PROCESS, output_digest, ts

SHAPE = F.DataShape()  # the reference shape of the fixtures' data

A, B, C, FILLER = 1, 2, 3, 9
K = SHAPE.neighbour_slots
Lf, Lq, Wn, Kn = SHAPE.nbr_feed_items, SHAPE.nbr_search_sessions, SHAPE.nbr_query_words, SHAPE.nbr_session_clicks
FEED_SIDE, SEARCH_SIDE = NeighbourSide.FEED, NeighbourSide.SEARCH
MIDDLE = ts(2950)

# Every event of A / B / C (default cut), and before the middle cut.
A_ALL = dict(rec=[100, 101, 102, 103, 104, 105],
             sessions=[([1, 2], [200]), ([1, 3], [201]), ([2, 44], [202]), ([55], [203])])
A_MIDDLE = dict(rec=[100, 101, 102, 103], sessions=[([1, 2], [200]), ([1, 3], [201])])
C_MIDDLE = [([1, 2], [200]), ([6], [220]), ([1, 3], [201, 202]), (list(range(1, 11)), [210])]
C_ALL = C_MIDDLE + [([88], [211]), ([99], [212])]


# --------------------------------------------------------------------------- helpers


def run_table(raw, nbdir, out, *extra):
    return st.run(["--input_dir", raw, "--neighbours_dir", nbdir, "--output_dir", out,
                   "--runner=FnApiRunner", *extra])


def read_rows(out):
    """JSON rows by user (asserting each user appears once)."""
    rows = {}
    for path in sorted(glob.glob(os.path.join(out, "serving_table-*.jsonl"))):
        for line in open(path):
            row = json.loads(line)
            assert row["user_id"] not in rows
            rows[row["user_id"]] = row
    return rows


def read_examples(out):
    from tensorflow.core.example import example_pb2

    return [example_pb2.Example.FromString(d)
            for path in sorted(glob.glob(os.path.join(out, "serving_table-*.tfrecord.gz")))
            for d in tfrecord_io.read_gzip_tfrecords(path)]


def slots_of(row):
    """A JSON row's real slots as the dicts of ``tests/test_neighbour_features.expect``."""
    return [{"side": row["nbr_side"][i], "sim": row["nbr_sim"][i], "user": row["nbr_users"][i],
             "last_ts": row["nbr_last_ts"][i], "rec": row["nbr_rec_items"][i],
             "words": row["nbr_src_words"][i], "clicks": row["nbr_src_clicks"][i]}
            for i in range(row["num_slots"])]


def assert_padding(row):
    """Slots past ``num_slots`` are padding (side and sim 0, ids ``RAW_PAD_ID``)."""
    n = row["num_slots"]
    for name in F.NEIGHBOUR_INPUTS:
        pad_value = 0 if name in (F.NBR_SIDE, F.NBR_SIM) else F.RAW_PAD_ID
        assert (np.asarray(row[name])[n:] == pad_value).all(), name
    assert len(row["nbr_users"]) == len(row["nbr_last_ts"]) == n


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("nbst"))
    raw = write_raw(os.path.join(root, "raw"))
    nbdir = os.path.join(root, "nb")
    nb.run(["--input_dir", raw, "--output_dir", nbdir, "--mode", "exact", "--visibility", "all",
            "--runner=FnApiRunner"])
    out = os.path.join(root, "out")
    stats = run_table(raw, nbdir, out)
    return {"root": root, "raw": raw, "nb": nbdir, "out": out, "stats": stats}


@pytest.fixture(scope="module")
def middle(built):
    out = os.path.join(built["root"], "out_middle")
    stats = run_table(built["raw"], built["nb"], out, "--as_of_ms", str(MIDDLE),
                      "--num_shards", "4")
    return out, stats


# --------------------------------------------------------------------------- pure functions


def _payload(items, ts_):
    rec = tuple(pad(items, Lf))
    empty = (F.RAW_PAD_ID,)
    return pl.Payload(rec, empty * (Lq * Wn), empty * (Lq * Kn), ts_, len(items), 0)


def test_serving_row_layout_padding_and_cut_at_k():
    slots = [pl.Slot(1, 0.5, 7), pl.Slot(2, 0.25, 8)]
    words = tuple(pad(range(1, 9), Lq * Wn))
    clicks = tuple(pad([5, 6, 7], Lq * Kn))
    payloads = [_payload([3, 4], 40), pl.Payload((F.RAW_PAD_ID,) * Lf, words, clicks, 50, 0, 2)]
    row = st.serving_row(11, slots, payloads, 1, 1000, 2000, SHAPE)
    assert (row["user_id"], row["snapshot"], row["snapshot_ts"], row["as_of_ms"],
            row["num_slots"]) == (11, 1, 1000, 2000, 2)
    assert row["nbr_side"] == pad([1, 2], K, 0) and row["nbr_sim"] == pad([0.5, 0.25], K, 0)
    assert row["nbr_users"] == [7, 8] and row["nbr_last_ts"] == [40, 50]
    assert np.asarray(row["nbr_rec_items"]).shape == (K, Lf)
    assert np.asarray(row["nbr_src_words"]).shape == (K, Lq, Wn)
    assert np.asarray(row["nbr_src_clicks"]).shape == (K, Lq, Kn)
    assert row["nbr_rec_items"][0] == pad([3, 4], Lf)
    assert row["nbr_src_words"][1][0] == list(range(1, 9))
    assert row["nbr_src_clicks"][1][:2] == [[5, 6], [7, F.RAW_PAD_ID]]
    assert_padding(row)
    json.dumps(row)  # plain JSON types only
    # No slots: the all-padding row a missing user also gets.
    empty = st.serving_row(11, [], [], 1, 1000, 2000, SHAPE)
    assert empty["num_slots"] == 0
    assert_padding(empty)
    # More than K slots: the JSON row keeps the first K (the TFRecord keeps them all).
    many = [pl.Slot(1, 1.0 / (i + 1), 100 + i) for i in range(K + 3)]
    cut = st.serving_row(11, many, [_payload([i + 1], i + 1) for i in range(K + 3)], 0, 1, 2,
                         SHAPE)
    assert cut["num_slots"] == K and cut["nbr_users"] == [100 + i for i in range(K)]
    with pytest.raises(ValueError, match="one entry per slot"):
        st.serving_row(11, slots, payloads[:1], 1, 1000, 2000, SHAPE)


def test_serving_example_has_the_training_flattening():
    from tensorflow.core.example import example_pb2

    slots = [pl.Slot(2, 0.5, 77)]
    payloads = [_payload([42], 6)]
    fm = example_pb2.Example.FromString(st.serving_example(5, slots, payloads, 100, 200)
                                        ).features.feature
    assert [fm[n].int64_list.value[0] for n in ("user_id", "snapshot_ts", "as_of_ms")] == [
        5, 100, 200]
    values = pl.neighbour_values(slots, payloads)
    for name in F.NEIGHBOUR_FEATURES:
        stored = fm[name].float_list.value if name == F.NBR_SIM else fm[name].int64_list.value
        assert list(stored) == values[name], name
    empty = example_pb2.Example.FromString(st.serving_example(5, [], [], 100, 200))
    assert all(not getattr(empty.features.feature[n], empty.features.feature[n].WhichOneof(
        "kind")).value for n in F.NEIGHBOUR_FEATURES)


def test_snapshot_choice_and_as_of():
    snaps = [100, 200, 300]
    assert st.choose_snapshot(snaps, None) == 2
    assert [st.choose_snapshot(snaps, t) for t in (100, 199, 200, 10_000)] == [0, 0, 1, 2]
    with pytest.raises(st.kuaisar.InputError, match="no snapshot at or before"):
        st.choose_snapshot(snaps, 99)
    with pytest.raises(st.kuaisar.InputError, match="no snapshot"):
        st.choose_snapshot([], None)
    assert st.resolve_as_of((5, 70), None)["as_of_ms"] == 71
    assert st.resolve_as_of((5, 70), 30) == {"as_of_ms": 30, "source": "--as_of_ms",
                                             "newest_event_ts": 70}
    with pytest.raises(ValueError, match="no canonical event"):
        st.resolve_as_of(None, None)


# --------------------------------------------------------------------------- the Beam job


@pytest.mark.slow
def test_hand_computed_rows_at_the_newest_snapshot(built):
    rows = read_rows(built["out"])
    assert sorted(rows) == [A, B, C, FILLER]  # user 4 has no event, hence no row
    as_of = ts(3200) + 1
    for row in rows.values():
        assert (row["snapshot"], row["snapshot_ts"], row["as_of_ms"]) == (2, ts(4320), as_of)
        assert_padding(row)
    # A: feed side first (B, J 0.2), then search (C, J 3/11); every event, held-out included.
    assert slots_of(rows[A]) == [
        expect(B, FEED_SIDE, 0.2, 2950, rec=[100, 101, 110, 111, 900, 901]),
        expect(C, SEARCH_SIDE, 3 / 11, 3000, sessions=C_ALL)]
    # B has no search row, C no feed row: one slot each, A's whole payload.
    assert slots_of(rows[B]) == [expect(A, FEED_SIDE, 0.2, 3200, **A_ALL)]
    assert slots_of(rows[C]) == [expect(A, SEARCH_SIDE, 3 / 11, 3200, **A_ALL)]
    # The filler has rows without neighbours: an all-zero row (= a missing row).
    assert rows[FILLER]["num_slots"] == 0 and rows[FILLER]["nbr_side"] == [0] * K


@pytest.mark.slow
def test_middle_as_of_uses_its_snapshot_and_cuts_strictly(middle):
    out, stats = middle
    rows = read_rows(out)
    assert sorted(rows) == [A, B, C, FILLER]
    for row in rows.values():
        assert (row["snapshot"], row["snapshot_ts"], row["as_of_ms"]) == (1, ts(2880), MIDDLE)
    # Snapshot 1 sims; B's 901@2950 and C's s34@2950 sit at the cut: excluded.
    assert slots_of(rows[A]) == [
        expect(B, FEED_SIDE, 1 / 3, 2900, rec=[100, 101, 110, 111, 900]),
        expect(C, SEARCH_SIDE, 1 / 3, 2000, sessions=C_MIDDLE)]
    assert slots_of(rows[B]) == [expect(A, FEED_SIDE, 1 / 3, 1600, **A_MIDDLE)]
    assert slots_of(rows[C]) == [expect(A, SEARCH_SIDE, 1 / 3, 1600, **A_MIDDLE)]
    # Nothing at or after the cut anywhere: those events' items and words occur nowhere earlier.
    later_items, later_words = {104, 105, 901, 203, 211, 212}, {44, 55, 88, 99}
    for user, row in rows.items():
        assert user not in row["nbr_users"]
        assert all(0 < t < MIDDLE for t in row["nbr_last_ts"])
        items = set(np.ravel(row["nbr_rec_items"])) | set(np.ravel(row["nbr_src_clicks"]))
        assert not items & later_items and not set(np.ravel(row["nbr_src_words"])) & later_words
    # Four shards, users by id % 4 (shard 0 is empty but written), users ascending.
    names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(out, "serving_table-*")))
    assert names == [f"serving_table-{s:05d}-of-00004{x}" for s in range(4)
                     for x in (".jsonl", ".tfrecord.gz")]
    shard1 = [json.loads(line)["user_id"] for line in open(
        os.path.join(out, "serving_table-00001-of-00004.jsonl"))]
    assert shard1 == [A, FILLER]
    assert stats["reconciled"] and stats["payload"]["at_or_after_as_of"] == 0


@pytest.mark.slow
def test_no_self_and_every_payload_event_before_as_of(built):
    for row in read_rows(built["out"]).values():
        assert row["user_id"] not in row["nbr_users"]
        assert all(t < row["as_of_ms"] for t in row["nbr_last_ts"])


@pytest.mark.slow
def test_counts_reconcile_and_info(built, middle):
    for out, stats in ((built["out"], built["stats"]), middle):
        assert stats["reconciled"], [c for c in stats["checks"] if not c["ok"]]
        on_disk = json.load(open(os.path.join(out, FN.SERVING_TABLE_STATS_FILE)))
        assert on_disk["checks"] == stats["checks"]
        users = stats["users"]
        assert users["in_table"] == users["written_jsonl"] == users["written_tfrecord"] == 4
        assert (users["with_slots"], users["without_slots"]) == (3, 1)
        assert stats["slots"]["planned"] == stats["slots"]["written"] == {"feed": 2, "search": 2}
        assert stats["slots"]["empty_payload"] == 0
        # Rows read = the table's own rows of that snapshot: feed A, B, filler; search A, C,
        # filler.
        assert {s: t["rows_read"] for s, t in stats["table"].items()} == {"feed": 3, "search": 3}
        assert all(t["rows_read"] == t["table_stats_rows_written"]
                   for t in stats["table"].values())
        assert not glob.glob(os.path.join(out, "_*"))  # temporaries removed
    # Payload events at the newest cut: slots B (6 feed), C (6 sessions), A twice (6 + 4).
    assert built["stats"]["payload"] == {"feed_events": 18, "search_sessions": 14,
                                         "at_or_after_as_of": 0}
    info = json.load(open(os.path.join(built["out"], FN.SERVING_TABLE_INFO_FILE)))
    assert info["table"]["visibility"] == "all" and info["table"]["snapshot"] == 2
    assert info["table"]["snapshot_ts"] == ts(4320) and info["table"]["mode"] == "exact"
    assert (info["as_of_ms"], info["newest_event_ts"]) == (ts(3200) + 1, ts(3200))
    assert info["as_of_source"] == "newest event + 1 ms"
    assert info["caps"] == {"max_neighbours": K, "feed_items": Lf, "search_sessions": Lq,
                            "query_words": Wn, "session_clicks": Kn}
    assert info["row_layout"]["nbr_src_words"] == [K, Lq, Wn]
    assert info["neighbours_dir"] == built["nb"]
    for name, f in info["files"].items():
        assert f["rows"] == 4 and f["sha256"] == tfrecord_io.sha256_of(
            os.path.join(built["out"], name))
    middle_info = json.load(open(os.path.join(middle[0], FN.SERVING_TABLE_INFO_FILE)))
    assert (middle_info["as_of_ms"], middle_info["as_of_source"]) == (MIDDLE, "--as_of_ms")
    assert middle_info["table"]["snapshot"] == 1


@pytest.mark.slow
def test_rows_fit_the_signatures_and_match_the_tfrecords(built):
    import tensorflow as tf

    from jsr_tf.export.serving import fit_neighbours

    rows = read_rows(built["out"])
    users = sorted(rows)
    # Rows stack into a batch in exactly the feed_nbr / search_nbr request layout.
    batch = {name: np.asarray([rows[u][name] for u in users]) for name in F.NEIGHBOUR_INPUTS}
    assert batch["nbr_side"].shape == (4, K) and batch["nbr_sim"].shape == (4, K)
    assert batch["nbr_rec_items"].shape == (4, K, Lf)
    assert batch["nbr_src_words"].shape == (4, K, Lq, Wn)
    assert batch["nbr_src_clicks"].shape == (4, K, Lq, Kn)
    tensors = {n: tf.constant(v, tf.float32 if n == F.NBR_SIM else tf.int64)
               for n, v in batch.items()}
    fitted = fit_neighbours(tensors, SHAPE)  # the signatures' own fitting leaves a row unchanged
    for name in F.NEIGHBOUR_INPUTS:
        np.testing.assert_array_equal(fitted[name].numpy(), tensors[name].numpy())
    # The TFRecords hold the same users in the training flattening; the reader's unflattening
    # gives the JSON rows.
    examples = read_examples(built["out"])
    assert [e.features.feature["user_id"].int64_list.value[0] for e in examples] == users
    for e in examples:
        fm = e.features.feature
        row = rows[fm["user_id"].int64_list.value[0]]
        assert fm["snapshot_ts"].int64_list.value[0] == row["snapshot_ts"]
        assert fm["as_of_ms"].int64_list.value[0] == row["as_of_ms"]
        assert list(fm[F.NBR_USERS].int64_list.value) == row["nbr_users"]
        assert list(fm[F.NBR_LAST_TS].int64_list.value) == row["nbr_last_ts"]
    spec = {name: tf.io.RaggedFeature(tf.float32 if name == F.NBR_SIM else tf.int64)
            for name in F.NEIGHBOUR_INPUTS}
    parsed = tf.io.parse_example([e.SerializeToString() for e in examples], spec)
    unflattened = F.neighbour_blocks(parsed, SHAPE)
    for name in F.NEIGHBOUR_INPUTS:
        np.testing.assert_allclose(unflattened[name].numpy(), batch[name], rtol=1e-6)


@pytest.mark.slow
def test_deterministic_rerun_on_the_multi_process_runner(built):
    # The rerun runs in 2 worker processes (issue 13): the same bytes as the in-memory run.
    again = os.path.join(built["root"], "out_again")
    run_table(built["raw"], built["nb"], again, *MULTI_PROCESS)
    assert output_digest(again) == output_digest(built["out"])
    names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(built["out"], "serv*")))
    assert names == sorted(os.path.basename(p) for p in glob.glob(os.path.join(again, "serv*")))
    for name in names:
        if name.startswith("serving_table-"):
            assert open(os.path.join(again, name), "rb").read() == open(
                os.path.join(built["out"], name), "rb").read()


@requires_gcp
def test_dataflow_graph(built):
    # The offline Dataflow check of issue 13 (tests/dataflow.py): the job graph, nothing run.
    summary = st.run(["--input_dir", built["raw"], "--neighbours_dir", built["nb"],
                      "--output_dir", f"{BUCKET}/serving", *DRY_RUN])
    assert_dry_run(summary, ["ReadTable", "PlanSlots", "JoinNeighbours", "CutPayloads",
                             "JoinPayloads", "AssembleRows", "GroupShards", "WriteShards",
                             "WriteFileCounts", "WriteAsOf", "WriteRawStats"])


# --------------------------------------------------------------------------- bad input


@pytest.mark.slow
def test_bad_inputs_fail_clearly(built, tmp_path):
    raw, nbdir = built["raw"], built["nb"]
    out = str(tmp_path / "out")
    InputError = st.kuaisar.InputError
    with pytest.raises(InputError, match="Neighbours dir not found"):
        run_table(raw, str(tmp_path / "missing"), out)
    with pytest.raises(InputError, match="Input dir not found"):
        run_table(str(tmp_path / "no_raw"), nbdir, out)
    with pytest.raises(InputError, match="`output_dir` should differ"):
        run_table(raw, nbdir, nbdir)
    # The table was built with visibility all only.
    with pytest.raises(InputError, match=r"no `train` visibility: rebuild it with "
                                         r"`jsr-neighbours --visibility train`"):
        run_table(raw, nbdir, out, "--visibility", "train")
    no_all = shutil.copytree(nbdir, str(tmp_path / "nb_train_only"))
    path = os.path.join(no_all, FN.NEIGHBOUR_CONFIG_FILE)
    config = json.load(open(path))
    config["neighbours"]["visibilities"] = ["train", "test"]
    json.dump(config, open(path, "w"))
    with pytest.raises(InputError, match="jsr-neighbours --visibility all"):
        run_table(raw, no_all, out)
    with pytest.raises(InputError, match="no snapshot at or before"):
        run_table(raw, nbdir, out, "--as_of_ms", str(ts(1000)))
    other = str(tmp_path / "preprocess.json")
    json.dump({"strict_same_ts": False}, open(other, "w"))
    with pytest.raises(InputError, match="strict_same_ts"):
        run_table(raw, nbdir, out, "--preprocess_config", other)
    no_table = shutil.copytree(nbdir, str(tmp_path / "nb_no_table"))
    for p in glob.glob(os.path.join(no_table, "neighbours-*.jsonl")):
        os.remove(p)
    with pytest.raises(InputError, match="No neighbour table"):
        run_table(raw, no_table, out)
    for argv in (["--neighbours_dir", no_all], ["--neighbours_dir", str(tmp_path / "missing")]):
        with pytest.raises(SystemExit) as exit_info:  # the CLI exits with status 2
            st.main(["--input_dir", raw, "--output_dir", out, *argv])
        assert exit_info.value.code == 2
    assert not os.path.exists(out)
