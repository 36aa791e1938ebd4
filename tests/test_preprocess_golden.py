"""Golden tests: the hand-written fixture gives exactly the expected examples.

Fixture (tests/golden_fixture.py), times in minutes after T0:
  U1 feed clicks 501@10 503@20 504@40(row 3) BIG@40(row 4) 506@60, impression 502@10;
     sessions s7@15 [11,12] clicks 602,603; s8@30 [13] no click (shown 604, 605);
     s9@50 [14,15] click 606; s10@70 [16] click 607.
  U2 feed clicks 501@5 508@100 509@110 510@120 511@130; sessions s20@10 s21@20 s22@30.
  U3 feed clicks 501@10 502@20 503@30 (+ an exact duplicate of row 13): too few targets.
"""

import json
import os

import pytest

from jsr_tf import features as F
from tests import golden_fixture as G
from tests.testing import read_examples, run_preprocess, sessions_of, ts

CONFIG = {"num_train_negatives": 1, "num_eval_negatives": 3}


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    root = tmp_path_factory.mktemp("golden")
    raw = G.write(str(root / "raw"))
    config = root / "config.json"
    config.write_text(json.dumps(CONFIG))
    out = str(root / "out")
    stats = run_preprocess(raw, out, "--config", str(config))
    return out, stats


def _by_row(examples):
    return {(int(e[F.USER_ID]), int(e[F.TARGET_ROW])): e for e in examples}


def test_targets_and_splits(golden):
    out, _ = golden
    feed = {s: sorted(_by_row(read_examples(out, s, F.Task.FEED))) for s in ("train", "valid", "test")}
    assert feed == {
        "train": [(G.U1, 2), (G.U1, 3), (G.U2, 7), (G.U2, 8)],
        "valid": [(G.U1, 4), (G.U2, 9)],
        "test": [(G.U1, 5), (G.U2, 10)],
    }
    search = {s: sorted(_by_row(read_examples(out, s, F.Task.SEARCH)))
              for s in ("train", "valid", "test")}
    # U2's train session s20@10 has no item first seen before it -> dropped for negatives.
    assert search == {
        "train": [(G.U1, 0)],
        "valid": [(G.U1, 5), (G.U2, 8)],
        "test": [(G.U1, 6), (G.U2, 9)],
    }


def test_feed_histories_order_caps_and_same_ts(golden):
    out, _ = golden
    train = _by_row(read_examples(out, "train", F.Task.FEED))
    e = train[(G.U1, 3)]  # 504@40: strictly earlier events only
    assert list(e[F.FEED_ITEMS]) == [501, 503]
    assert list(e[F.FEED_TS]) == [ts(10), ts(20)]
    assert list(e[F.FEED_ROWS]) == [0, 2]
    assert sessions_of(e) == [
        {"ts": ts(15), "row": 0, "words": [11, 12], "clicks": [602, 603], "has_click": 1},
        {"ts": ts(30), "row": 3, "words": [13], "clicks": [604], "has_click": 0},  # fallback
    ]
    assert int(e[F.TARGET_ITEM]) == 504 and int(e[F.TASK]) == F.Task.FEED
    assert list(e[F.QUERY_WORDS]) == []

    valid = _by_row(read_examples(out, "valid", F.Task.FEED))
    v = valid[(G.U1, 4)]  # BIG@40 shares its ts with 504: 504 is not history (strict_same_ts)
    assert int(v[F.TARGET_ITEM]) == G.BIG_ITEM
    assert list(v[F.FEED_ITEMS]) == [501, 503]
    test = _by_row(read_examples(out, "test", F.Task.FEED))
    t = test[(G.U1, 5)]  # test rows keep held-out events of the other task (s9) in history
    assert list(t[F.FEED_ITEMS]) == [501, 503, 504, G.BIG_ITEM]
    assert [s["row"] for s in sessions_of(t)] == [0, 3, 5]


def test_train_history_masks_heldout_targets(golden):
    out, _ = golden
    train = _by_row(read_examples(out, "train", F.Task.FEED))
    e = train[(G.U2, 7)]  # 508@100: U2's sessions s21, s22 are search valid/test targets
    assert [s["row"] for s in sessions_of(e)] == [7]
    assert list(e[F.FEED_ITEMS]) == [501]
    valid = _by_row(read_examples(out, "valid", F.Task.FEED))
    v = valid[(G.U2, 9)]  # valid rows keep everything earlier
    assert [s["row"] for s in sessions_of(v)] == [7, 8, 9]
    assert list(v[F.FEED_ITEMS]) == [501, 508, 509]


def test_search_rows_carry_query_and_first_click(golden):
    out, _ = golden
    train = _by_row(read_examples(out, "train", F.Task.SEARCH))
    e = train[(G.U1, 0)]
    assert list(e[F.QUERY_WORDS]) == [11, 12]
    assert int(e[F.TARGET_ITEM]) == 602  # first clicked item in file order
    assert list(e[F.FEED_ITEMS]) == [501]
    assert sessions_of(e) == []
    assert int(e[F.TARGET_TS]) == ts(15)


def test_negatives_counts_and_exclusions(golden):
    out, _ = golden
    for split, n in (("train", 1), ("valid", 3), ("test", 3)):
        for task in F.Task:
            for e in read_examples(out, split, task):
                negs = [int(x) for x in e[F.NEGATIVES]]
                assert len(negs) == n == len(set(negs))
                prior = set(int(x) for x in e[F.FEED_ITEMS])
                assert int(e[F.TARGET_ITEM]) not in negs
                assert not prior & set(negs)


def test_counts_reconcile(golden):
    _, stats = golden
    assert stats["reconciled"]
    rec = stats["files"]["rec_inter.csv"]
    assert (rec["rows_read"], rec["canonical"], rec["dropped_duplicate"], rec["rejected_total"]) == (
        15, 14, 1, 0)
    feed = stats["targets"]["feed"]
    assert (feed["targets"], feed["dropped_history_requirement"], feed["dropped_few_targets"],
            feed["users"], feed["users_dropped_few_targets"]) == (13, 3, 2, 2, 1)
    search = stats["targets"]["search"]
    assert (search["targets"], search["dropped_insufficient_negatives"], search["users"]) == (6, 1, 2)
    assert stats["examples"] == {"train": {"feed": 4, "search": 1}, "valid": {"feed": 2, "search": 2},
                                 "test": {"feed": 2, "search": 2}}
    assert stats["search_sessions"] == {"total": 7, "with_click": 6, "rows_repaired": 0}
    assert (stats["queries"]["vocab"], stats["items"]["vocab"], stats["words"]["vocab"]) == (
        3, 12, 11)
    assert stats["users"] == {"vocab": 3, "with_events": 3, "without_events": 0}


def test_vocab_and_outputs(golden):
    out, _ = golden
    with open(os.path.join(out, "vocab", "items.tsv")) as f:
        rows = [line.rstrip("\n").split("\t") for line in f]
    assert rows[0][:4] == ["item_id", "feed_count", "search_count", "first_seen_ts"]
    by_id = {int(r[0]): r for r in rows[1:]}
    # Held-out targets (506, BIG, 510, 511, 606, 607, 621, 622) are not train-visible.
    assert sorted(by_id) == [501, 502, 503, 504, 508, 509, 601, 602, 603, 604, 605, 620]
    assert by_id[503][1:4] == ["1", "0", str(ts(20))]
    assert by_id[602][1:4] == ["0", "1", str(ts(15))]
    assert by_id[605][4:] == ["0", "0", "0", "0", "0", ""]  # shown-only item without features
    with open(os.path.join(out, "vocab", "queries.tsv")) as f:
        # Train-visible sessions only: s9, s10, s21, s22 are held-out targets.
        assert f.read().splitlines() == ["query_words\tcount", "11 12\t1", "13\t1", "21\t1"]
    manifest = json.load(open(os.path.join(out, "manifest.json")))
    assert manifest["files"]["valid-feed-00000-of-00001.tfrecord.gz"]["rows"] == 2
    assert len(manifest["files"]["valid-feed-00000-of-00001.tfrecord.gz"]["sha256"]) == 64
    assert len(manifest["files"]["valid-feed-00000-of-00001.tfrecord.gz"]["records_sha256"]) == 64
    schema = json.load(open(os.path.join(out, "schema.json")))
    assert set(schema["features"]) == set(F.ALL_FEATURES)
