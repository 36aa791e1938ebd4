"""Dense neighbour retrieval: ``jsr_tf/neighbours/dense.py`` and ``jsr-dense-neighbours``.

Fast tests check the cosine top-k (hand-made vectors, numpy brute force), the pooling and the
input checks. The slow tests train the tiny UniSAR for one epoch on a small fixture
(``tests/neighbour_fixture.py``, shared with ``tests/test_neighbour_features.py``; times in
minutes after T0 = 2023-05-23 00:00 Beijing; snapshots T_0 = 1440, T_1 = 2880, T_2 = 4320,
given explicitly so every run has the same ones) and run the command on it:

  user 1 (A) feed 100@10 101@20 102@1500 103@1600 | 104@3000 (valid) 105@3100 (test)
             search [1,2]@5, [1,3]@1550 | [2,44]@3050 (valid), [55]@3200 (test)
  user 2 (B) feed 100@30 101@40 110@1450 111@1600 | 900@2900 (valid) 901@2950 (test)
  user 3 (C) search [1,2]@50, [6]@100 no click, [1,3]@1460, [1..10]@2000 | [88]@2950 (valid),
             [99]@3000 (test)
  user 9 (filler) feed 300..309 @200..290, 310@1700 (test); search [60+i]@300+10i.

Checks: rows parse as ``NeighbourRow``, no self, sims in [-1, 1] descending, counts reconcile,
the table is exactly the cosine top-k of the model's own vectors, ``jsr-neighbour-features``
accepts the directory, future poisoning (events appended after τ = 3000 leave the rows of
snapshots 0 and 1 unchanged) and held-out poisoning (changing every valid/test target leaves
the train table unchanged, while the test table, which may see valid targets, changes).
"""

import glob
import json
import os

import numpy as np
import pytest

import jsr_tf  # noqa: F401
import tensorflow as tf

from jsr_tf import config as C
from jsr_tf.data.config import PreprocessConfig
from jsr_tf.data.timeline import Event
from jsr_tf.features import RAW_PAD_ID, EventKind
from jsr_tf.neighbours import NeighbourConfig, NeighbourRow, VIS_TEST, VIS_TRAIN
from jsr_tf.models.base import JsrModel
from jsr_tf.neighbours import dense
from jsr_tf.pipelines import dense_neighbours as dn
from jsr_tf.pipelines import neighbour_features as nf
from jsr_tf.pipelines.preprocess import resolve_inputs
from tests import training_doubles as T
from tests.neighbour_fixture import (A, B, FILLER, PRE_CONFIG, future_poisoned_raw,
                                     preprocess_fixture, rec_rows, src_rows, write_raw)
from tests.neighbour_fixture import C as CC  # C is jsr_tf.config here
from tests.testing import ts
SNAPSHOTS = [ts(1440), ts(2880), ts(4320)]
TAU = ts(3000)

# --------------------------------------------------------------------------- cosine top-k


def brute_force(vectors, ids, k):
    """numpy reference: cosine, self removed, (sim desc, id asc)."""
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    sims = unit @ unit.T
    out = []
    for i in range(len(ids)):
        order = sorted((j for j in range(len(ids)) if j != i), key=lambda j: (-sims[i, j], ids[j]))
        out.append([ids[j] for j in order[:k]])
    return out, sims


def test_top_k_hand_made_exact_no_self_and_ties():
    v = np.array([[1, 0], [1, 0], [0, 1], [1, 1], [-1, 0]], np.float32)
    ids = [50, 10, 30, 20, 40]
    found, sims = dense.cosine_top_k(v, ids, 3)
    r = float(np.float32(np.sqrt(0.5)))
    assert found == [[10, 20, 30], [50, 20, 30], [20, 10, 40], [10, 30, 50], [30, 20, 10]]
    # 50 and 10 are identical: each is the other's best (sim 1), never itself.
    np.testing.assert_allclose(sims[0], [1.0, r, 0.0], atol=1e-6)
    # 30 = (0, 1): 20 first, then a three-way tie at 0 (10, 40, 50) cut to the smaller ids.
    np.testing.assert_allclose(sims[2], [r, 0.0, 0.0], atol=1e-6)
    # 20 = (1, 1): 10, 30, 50 tie at 1/sqrt 2.
    np.testing.assert_allclose(sims[3], [r, r, r], atol=1e-6)
    np.testing.assert_allclose(sims[4], [0.0, -r, -1.0], atol=1e-6)
    for i, user in enumerate(ids):
        assert user not in found[i]
        assert all(-1.0 <= s <= 1.0 for s in sims[i])
        assert sims[i] == sorted(sims[i], reverse=True)


def test_top_k_matches_numpy_in_blocks():
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(37, 6)).astype(np.float32) * rng.uniform(0.1, 5, (37, 1))
    ids = list(rng.permutation(1000)[:37])
    want, want_sims = brute_force(vectors.astype(np.float64), ids, 5)
    for block in (4096, 7, 1):
        found, sims = dense.cosine_top_k(vectors, ids, 5, block_size=block)
        assert found == want
        for i, row in enumerate(found):
            expected = [want_sims[i, ids.index(v)] for v in row]
            np.testing.assert_allclose(sims[i], expected, atol=1e-5)


def test_top_k_small_populations_and_bad_input():
    v = np.eye(3, dtype=np.float32)
    found, sims = dense.cosine_top_k(v, [3, 1, 2], 10)  # k > n - 1: everyone else
    assert found == [[1, 2], [2, 3], [1, 3]] and sims[0] == [0.0, 0.0]
    assert dense.cosine_top_k(v[:1], [7], 5) == ([[]], [[]])
    assert dense.cosine_top_k(np.zeros([0, 3], np.float32), [], 5) == ([], [])
    with pytest.raises(ValueError, match="distinct"):
        dense.cosine_top_k(v, [1, 1, 2], 2)
    with pytest.raises(ValueError, match="`k`"):
        dense.cosine_top_k(v, [1, 2, 3], 0)
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        dense.cosine_top_k(v, [1, 2], 1)


def test_pooled_user_vectors_masked_means():
    f_r = tf.constant([[[3.0, 4.0], [100.0, 100.0]], [[1.0, 0.0], [0.0, 1.0]]])
    f_s = tf.constant([[[0.0, 2.0], [0.0, 0.0]], [[9.0, 9.0], [9.0, 9.0]]])
    side = {"F_r": f_r, "F_s": f_s, "feed_valid": tf.constant([[True, False], [True, True]]),
            "search_valid": tf.constant([[True, False], [False, False]]),
            "user": tf.constant([[0.0, 0.0], [2.0, 0.0]])}
    out = {k: v.numpy() for k, v in dense.pooled_user_vectors(side).items()}
    np.testing.assert_allclose(out["feed"], [[0.6, 0.8], [np.sqrt(0.5)] * 2], atol=1e-6)
    np.testing.assert_allclose(out["search"], [[0.0, 1.0], [0.0, 0.0]], atol=1e-6)  # no session
    joint = np.array([[3, 4, 0, 2, 0, 0], [0.5, 0.5, 0, 0, 2, 0]], np.float64)
    np.testing.assert_allclose(out["joint"], joint / np.linalg.norm(joint, axis=1,
                                                                   keepdims=True), atol=1e-6)
    assert list(out["feed_count"]) == [1, 2] and list(out["search_count"]) == [1, 0]


def test_history_batch_caps_and_layout():
    config = PreprocessConfig()
    feed = [Event(ts(i), EventKind.FEED, i, 1000 + i, (), (), (), 1) for i in range(40)]
    search = [Event(ts(100 + i), EventKind.SEARCH, i, 0, (5, 6 + i), (2000 + i,), (2000 + i,), 1)
              for i in range(3)]
    batch = dense.history_batch([(7, ts(500), feed + search), (8, ts(500), [])], config)
    assert list(batch["user_id"].numpy()) == [7, 8]
    assert list(batch["feed_items"].numpy()[0]) == list(range(1010, 1040))  # last 30
    assert batch["feed_items"].shape == (2, 30)
    assert (batch["feed_items"].numpy()[1] == RAW_PAD_ID).all()  # no history: all padding
    assert list(batch["search_words"].numpy()[0, 2, :3]) == [5, 8, RAW_PAD_ID]
    assert list(batch["search_clicks"].numpy()[0, :3, 0]) == [2000, 2001, 2002]


class _TensorEncoder(JsrModel):
    """Claims ``encodes_user_sides``, but like SASRec ``encode_user`` returns one tensor."""

    encodes_user_sides = True

    def encode_user(self, batch, training=False):
        return tf.zeros([tf.shape(batch["user_id"])[0], 4])


class _TaskEncoder(JsrModel):
    """Claims ``encodes_user_sides``, but like the search baseline ``encode_user`` needs a task."""

    encodes_user_sides = True

    def encode_user(self, batch, task, training=False):
        raise AssertionError("not reached")


def test_encoder_refuses_a_model_without_a_suitable_encode_user():
    for model in (object(), JsrModel()):  # not a model; a model without the per-side vectors
        with pytest.raises(ValueError, match="encode_user"):
            dense.UserVectorEncoder(model, PreprocessConfig())
    history = [(1, ts(10), [Event(ts(1), EventKind.FEED, 0, 5, (), (), (), 1)])]
    for model, message in ((_TensorEncoder(), "lacks"), (_TaskEncoder(), "cannot be called")):
        with pytest.raises(ValueError, match=message):
            dense.UserVectorEncoder(model, PreprocessConfig())(history)


def test_config_json_is_read_by_neighbour_config():
    cfg = dense.DenseConfig(model_dir="m", data_dir="d", k_feed=3).validate()
    table = dn.table_config(cfg, NeighbourConfig(mode="exact", k_feed=3, min_jaccard=0.0),
                            PreprocessConfig(), "unisar")
    assert NeighbourConfig.from_dict(json.loads(json.dumps(table["neighbours"]))).k_feed == 3
    assert table["retrieval"] == "dense" and table["dense"]["retrieval"] == "dense"
    assert table["dense"]["model_dir"] == "m" and table["dense"]["model"] == "unisar"
    with pytest.raises(ValueError, match="visibilities"):
        dense.DenseConfig(visibilities=("train", "nope")).validate()


# --------------------------------------------------------------------------- fixture data


def heldout_poisoned_raw(directory, preprocess):
    """Every valid and test target changed (feed: item 950; search: words [77, 78]); the
    timelines' targets and splits stay the same (same users, times and clicks)."""
    paths = resolve_inputs(write_raw(directory + "_clean"))
    timelines, _, _ = dn.read_timelines(paths, preprocess)
    rec, src = rec_rows(), src_rows()
    changed = 0
    for timeline in timelines:
        for i in timeline.heldout:
            event = timeline.events[i]
            if event.kind == EventKind.FEED:
                rec[event.row][1] = "950"
            else:
                session = src[event.row][1]
                for row in src:
                    if row[0] == str(timeline.user_id) and row[1] == session:
                        row[4] = "[77, 78]"
            changed += 1
    assert changed >= 8
    return write_raw(directory, rec, src)


# --------------------------------------------------------------------------- slow: the command


def run_dense(raw, data, model, out, *extra):
    return dn.run(["--input_dir", raw, "--data_dir", data, "--model_dir", model,
                   "--output_dir", out, "--snapshots", ",".join(str(t) for t in SNAPSHOTS),
                   *extra])


def read_rows(directory):
    rows = []
    for path in sorted(glob.glob(os.path.join(directory, "neighbours-*.jsonl"))):
        with open(path) as f:
            rows.extend(NeighbourRow.from_json(line) for line in f if line.strip())
    return rows


def by_key(rows):
    return {(r.visibility, r.snapshot, r.side, r.user): r for r in rows}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("dense_nb"))
    raw = write_raw(os.path.join(root, "raw"))
    data = preprocess_fixture(root, raw)
    model = os.path.join(root, "unisar")
    from jsr_tf.training import trainer

    trainer.train(C.preset(T.UNISAR).override(["train.epochs=1"]), data, model, verbose=0)
    out = os.path.join(root, "nb_dense")
    stats = run_dense(raw, data, model, out)
    return {"root": root, "raw": raw, "data": data, "model": model, "out": out,
            "stats": stats, "rows": read_rows(out)}


@pytest.mark.slow
def test_table_rows_and_counts(built):
    rows, stats = built["rows"], built["stats"]
    assert rows and stats["reconciled"]
    assert [s["snapshot_ts"] for s in stats["snapshots"]] == SNAPSHOTS
    assert {r.visibility for r in rows} == {VIS_TRAIN, VIS_TEST}
    keys = [(r.visibility, r.snapshot, r.side, r.user) for r in rows]
    assert len(keys) == len(set(keys))
    for r in rows:
        assert r.user not in r.neighbours and len(set(r.neighbours)) == len(r.neighbours)
        assert len(r.neighbours) == len(r.jaccards) <= 5
        assert all(-1.0 <= s <= 1.0 for s in r.jaccards)
        assert list(r.jaccards) == sorted(r.jaccards, reverse=True)
        assert r.snapshot_ts == SNAPSHOTS[r.snapshot] and 1 <= r.num_tokens <= 30
        # Neighbours are indexed users of the same (visibility, snapshot, side).
        for v in r.neighbours:
            assert (r.visibility, r.snapshot, r.side, v) in set(keys)
    for vis, sides in stats["tables"].items():
        for side, table in sides.items():
            for snap in table["per_snapshot"]:
                n = sum(1 for r in rows if (r.visibility, r.side, r.snapshot)
                        == (vis, side, snap["snapshot"]))
                assert snap["rows_written"] == snap["users_indexed"] == n
    # Hand-checkable populations: feed side at snapshot 0 = A, B, filler; search = A, C, filler.
    k0 = by_key(rows)
    assert {u for (v, k, s, u) in k0 if (v, k, s) == (VIS_TRAIN, 0, "feed")} == {A, B, FILLER}
    assert {u for (v, k, s, u) in k0 if (v, k, s) == (VIS_TRAIN, 0, "search")} == {A, CC, FILLER}
    assert k0[(VIS_TRAIN, 0, "feed", A)].num_tokens == 2  # 100@10, 101@20
    assert k0[(VIS_TRAIN, 1, "search", CC)].num_tokens == 4  # incl. the no-click session
    cfg = json.load(open(os.path.join(built["out"], "neighbour_config.json")))
    assert cfg["retrieval"] == "dense" and cfg["dense"]["model_dir"] == built["model"]
    assert cfg["preprocess"] == json.load(open(os.path.join(built["data"],
                                                             "preprocess_config.json")))
    NeighbourConfig.from_dict(cfg["neighbours"])


@pytest.mark.slow
def test_table_is_the_cosine_top_k_of_the_models_vectors(built):
    """Recompute snapshot 1's train vectors by hand (events before T_1, held-out excluded) and
    check the lists and sims."""
    from jsr_tf.models import factory
    from jsr_tf.neighbours import visible_events

    preprocess = PreprocessConfig.from_dict(json.load(open(os.path.join(
        built["data"], "preprocess_config.json"))))
    timelines, _, _ = dn.read_timelines(resolve_inputs(built["raw"]), preprocess)
    model, _ = factory.load_trained(built["model"], built["data"])
    histories = []
    for t in timelines:
        events = [e for e in visible_events(t, VIS_TRAIN) if e.ts < SNAPSHOTS[1]]
        if events:
            histories.append((t.user_id, SNAPSHOTS[1], events))
    out = dense.UserVectorEncoder(model, preprocess)(histories)
    rows = by_key(built["rows"])
    for side, count in (("feed", "feed_count"), ("search", "search_count")):
        keep = [i for i in range(len(histories)) if out[count][i] > 0]
        ids = [histories[i][0] for i in keep]
        want, sims = brute_force(out[side][keep].astype(np.float64), ids, 5)
        for j, user in enumerate(ids):
            row = rows[(VIS_TRAIN, 1, side, user)]
            assert list(row.neighbours) == want[j]
            np.testing.assert_allclose(row.jaccards, [sims[j, ids.index(v)] for v in want[j]],
                                       atol=1e-5)


@pytest.mark.slow
def test_neighbour_features_accepts_the_dense_table(built):
    out = os.path.join(built["root"], "data_nbr")
    stats = nf.run(["--input_dir", built["raw"], "--examples_dir", built["data"],
                    "--neighbours_dir", built["out"], "--output_dir", out,
                    "--runner=FnApiRunner"])
    assert stats["reconciled"]
    assert stats["examples"]["with_slots"] > 0
    assert stats["slots"]["planned"]["feed"] > 0 and stats["slots"]["planned"]["search"] > 0


@pytest.mark.slow
def test_future_and_heldout_poisoning(built):
    root = built["root"]
    base = by_key(built["rows"])
    # Future: events appended / changed after τ = 3000 leave snapshots with T_k <= τ alone.
    out = os.path.join(root, "nb_future")
    run_dense(future_poisoned_raw(os.path.join(root, "raw_future")), built["data"],
              built["model"], out)
    poisoned = by_key(read_rows(out))
    assert any(key[3] == 4 for key in poisoned)  # the new user enters snapshot 2: not vacuous
    early = {k for k in base if SNAPSHOTS[k[1]] <= TAU}
    assert early and early == {k for k in poisoned if SNAPSHOTS[k[1]] <= TAU}
    for key in early:
        assert base[key].neighbours == poisoned[key].neighbours
        assert base[key].num_tokens == poisoned[key].num_tokens
        np.testing.assert_allclose(base[key].jaccards, poisoned[key].jaccards, atol=1e-6)
    # Held-out: changing every valid and test target leaves the train table alone.
    preprocess = PreprocessConfig.from_dict(json.load(open(os.path.join(
        built["data"], "preprocess_config.json"))))
    out = os.path.join(root, "nb_heldout")
    run_dense(heldout_poisoned_raw(os.path.join(root, "raw_heldout"), preprocess),
              built["data"], built["model"], out)
    poisoned = by_key(read_rows(out))
    assert set(poisoned) == set(base)
    test_changed = False
    for key, row in base.items():
        same = (row.neighbours == poisoned[key].neighbours and np.allclose(
            row.jaccards, poisoned[key].jaccards, atol=1e-6))
        if key[0] == VIS_TRAIN:
            assert same, key
        elif not same:
            test_changed = True
            assert key[1] == 2  # valid targets (>= 2900) enter the test table at T_2 only
    assert test_changed  # the test table does see valid targets: the check above is not vacuous


# --------------------------------------------------------------------------- bad input


def test_bad_inputs_give_clear_errors(tmp_path):
    from jsr_tf.data import kuaisar

    raw = write_raw(str(tmp_path / "raw"))
    data, model = str(tmp_path / "data"), str(tmp_path / "model")
    os.makedirs(data)
    base = ["--input_dir", raw, "--data_dir", data, "--model_dir", model]
    with pytest.raises(kuaisar.InputError, match="preprocess_config.json"):
        dn.run(base + ["--output_dir", str(tmp_path / "out")])
    with pytest.raises(kuaisar.InputError, match="output_dir"):
        dn.run(base + ["--output_dir", raw])
    with pytest.raises(kuaisar.InputError, match="rec_inter.csv"):
        dn.run(["--input_dir", str(tmp_path), "--data_dir", data, "--model_dir", model,
                "--output_dir", str(tmp_path / "out")])
    with open(os.path.join(data, "preprocess_config.json"), "w") as f:
        json.dump(PRE_CONFIG, f)
    with pytest.raises(kuaisar.InputError, match="Vocabulary"):
        dn.run(base + ["--output_dir", str(tmp_path / "out")])
    with pytest.raises(SystemExit) as exit_info:  # bad flag: argparse's status 2
        dn.run(base + ["--output_dir", str(tmp_path / "out"), "--k_feed", "0"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        dn.main(base + ["--output_dir", str(tmp_path / "out"), "--visibility", "train,oops"])
    assert exit_info.value.code == 2


@pytest.mark.slow
def test_missing_model_is_a_clear_error(built, tmp_path):
    from jsr_tf.data import kuaisar

    with pytest.raises(kuaisar.InputError, match="jsr-train model dir"):
        dn.run(["--input_dir", built["raw"], "--data_dir", built["data"], "--model_dir",
                str(tmp_path), "--output_dir", str(tmp_path / "out")])
    with pytest.raises(SystemExit) as exit_info:
        dn.main(["--input_dir", built["raw"], "--data_dir", built["data"], "--model_dir",
                 str(tmp_path), "--output_dir", str(tmp_path / "out")])
    assert exit_info.value.code == 2
