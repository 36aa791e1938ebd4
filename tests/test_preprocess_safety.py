"""jsr-preprocess on data it did not generate (issue #12): any period, missing-category sentinels,
the rejection and empty-task guards, and outputs that a failed run or a rerun never damages."""

import datetime
import json
import logging
import os
import shutil

import pytest

from jsr_tf import features as F
from jsr_tf import filenames as FN
from jsr_tf.pipelines import cli, outputs, preprocess
from jsr_tf.pipelines import stats as stats_lib
from tests import golden_fixture as G
from tests.testing import BEIJING, T0_MS, _time_string, item_row, run_preprocess, user_row
from tests.testing import write_kuaisar

CONFIG = {"num_train_negatives": 1, "num_eval_negatives": 3}
OLD_T0_MS = int(datetime.datetime(1997, 10, 1, tzinfo=BEIJING).timestamp() * 1000)
STRETCH = 3000  # the fixture's 130 minutes become about 9 months: 1997-10 .. 1998-06


def _old(ms: int) -> int:
    return OLD_T0_MS + (ms - T0_MS) * STRETCH


def _write_old_log(directory):
    """The golden fixture dated 1997-98, item 503 with a "missing" (-1) second-level category."""
    rec = []
    for row in G.rec_rows():
        ms = _old(int(float(row[5])))
        rec.append(row[:4] + [_time_string(ms), f"{float(ms)}"] + row[6:])
    src = []
    for row in G.src_rows():
        ms = _old(int(float(row[3])))
        src.append(row[:2] + [_time_string(ms), f"{float(ms)}"] + row[4:])
    items = [item_row(i, caption=(i % 7 + 1, 40), cat2=-1 if i == 503 else 10)
             for i in (501, 502, 503, 504, G.BIG_ITEM, 506, 508, 509, 510, 511, 601, 602, 603,
                       604)]
    return write_kuaisar(directory, rec, src, items, [user_row(u) for u in (G.U1, G.U2, G.U3)])


@pytest.fixture(scope="module")
def old_log(tmp_path_factory):
    root = tmp_path_factory.mktemp("old_log")
    config = root / "config.json"
    config.write_text(json.dumps(CONFIG))
    raw = _write_old_log(str(root / "raw"))
    out = str(root / "out")
    stats = run_preprocess(raw, out, "--config", str(config))
    return {"root": root, "raw": raw, "out": out, "config": str(config), "stats": stats}


def _snapshot(directory):
    out = {}
    for name in outputs.list_files(directory):
        with open(os.path.join(directory, name), "rb") as f:
            out[name] = f.read()
    return out


# -- period and categories -------------------------------------------------------------------
def test_a_log_from_1997_loses_no_rows_and_records_its_span(old_log):
    stats = old_log["stats"]
    assert stats["reconciled"]
    for name, f in stats["files"].items():
        assert f["rejected_total"] == 0, name
    observed = stats["period"]["observed"]
    assert observed["first_utc"].startswith("1997-") and observed["last_utc"].startswith("1998-")
    assert stats["period"]["accepted"]["default"]
    assert all(stats["examples"]["train"][task] > 0 for task in ("feed", "search"))
    with open(os.path.join(old_log["out"], FN.STATS_FILE)) as f:
        assert json.load(f)["period"]["observed"] == observed
    assert "period: data 1997-" in stats_lib.format_table(stats)


def test_a_negative_category_is_missing_not_a_bad_row(old_log):
    items = old_log["stats"]["files"]["item_features.csv"]
    assert items["rejected_total"] == 0 and items["notes"] == {"category_missing": 1}
    with open(os.path.join(old_log["out"], FN.VOCAB_DIR, FN.ITEMS_VOCAB)) as f:
        row = [line.split("\t") for line in f if line.startswith("503\t")][0]
    assert row[5:9] == ["1", "0", "0", "0"]  # cat1..cat4: the missing level reads 0


def test_period_flags_parse_dates_and_milliseconds():
    assert cli.parse_time_ms("1997-10-01") == 875664000000
    assert cli.parse_time_ms("1997-10-01T08:00:00+08:00") == 875664000000
    assert cli.parse_time_ms("875664000000") == 875664000000
    with pytest.raises(ValueError):
        cli.parse_time_ms("next tuesday")


def test_bad_flag_values_exit_2_with_one_line(tmp_path, capsys):
    for flag, value in (("--period_start", "soon"), ("--max_rejected_fraction", "2")):
        with pytest.raises(SystemExit) as exit_info:
            preprocess.run(["--input_dir", str(tmp_path), "--output_dir", str(tmp_path / "o"),
                            flag, value])
        assert exit_info.value.code == 2
        assert f"`{flag[2:]}` should be" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{not json")
    for config in (str(tmp_path / "missing.json"), str(tmp_path / "bad.json")):
        with pytest.raises(SystemExit) as exit_info:
            preprocess.main(["--input_dir", str(tmp_path), "--output_dir", str(tmp_path / "o"),
                             "--config", config])
        assert exit_info.value.code == 2


# -- guards and safe outputs -----------------------------------------------------------------
def test_a_rejected_rerun_fails_and_leaves_the_previous_output_untouched(old_log, capsys,
                                                                         caplog):
    """--period_start after the whole log: every row is rejected; the good output survives."""
    before = _snapshot(old_log["out"])
    with caplog.at_level(logging.ERROR), pytest.raises(SystemExit) as exit_info:
        preprocess.main(["--input_dir", old_log["raw"], "--output_dir", old_log["out"],
                         "--config", old_log["config"], "--period_start", "1999-01-01",
                         "--runner=FnApiRunner"])
    assert exit_info.value.code == 2
    assert "rejected: timestamp_out_of_period" in capsys.readouterr().out  # the summary table
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "rec_inter.csv: 15 of 15 rows rejected" in errors[0]
    assert "--max_rejected_fraction=0.01" in errors[0] and "no feed examples" in errors[0]
    assert _snapshot(old_log["out"]) == before
    staging = [p for p in os.listdir(old_log["root"]) if p.startswith("out.tmp-")]
    assert staging and os.listdir(os.path.join(old_log["root"], staging[0], FN.DEAD_LETTER_DIR))


def test_a_rerun_replaces_only_its_own_files(old_log, tmp_path):
    out = str(tmp_path / "out")
    shutil.copytree(old_log["out"], out)
    mine = {"train-feed-notes.txt": b"mine", os.path.join("vocab", "my_words.tsv"): b"w"}
    for name, data in mine.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    old_shards = [n for n in os.listdir(out) if n.startswith("train-feed-")
                  and n.endswith(FN.TFRECORD_SUFFIX)]
    stats = run_preprocess(old_log["raw"], out, "--config", old_log["config"],
                           "--num_shards", "2")
    assert stats["reconciled"]
    names = os.listdir(out)
    assert not set(old_shards) & set(names)  # the previous run's shards, and only those, go
    assert sorted(n for n in names if n.startswith("train-feed-") and n.endswith(".gz")) == [
        "train-feed-00000-of-00002.tfrecord.gz", "train-feed-00001-of-00002.tfrecord.gz"]
    for name, data in mine.items():
        with open(os.path.join(out, name), "rb") as f:
            assert f.read() == data
    with open(os.path.join(out, FN.OWNED_FILE)) as f:
        owned = json.load(f)["files"]
    assert "vocab/items.tsv" in owned and "train-feed-notes.txt" not in owned
    assert not [p for p in os.listdir(tmp_path) if p.startswith("out.tmp-")]


def test_publish_cleans_a_legacy_directory_by_shard_names_only(tmp_path):
    """A directory from before the owned-files list: only the job's own shard names go."""
    out, staging = tmp_path / "out", tmp_path / "staging"
    (out / "dead_letter").mkdir(parents=True)
    for name in ("train-feed-00000-of-00003.tfrecord.gz", "dead_letter/rejected-00000-of-00001.jsonl",
                 "dead_letter/mine.jsonl", "train-feed-notes.txt", "train-feed-0-of-3.tfrecord.gz"):
        (out / name).write_text("x")
    (staging / "vocab").mkdir(parents=True)
    (staging / "vocab" / "items.tsv").write_text("new")
    (staging / "manifest.json").write_text("{}")
    owned = outputs.publish(str(staging), str(out), "test", preprocess.LEGACY_OUTPUTS)
    assert owned == sorted(["manifest.json", "vocab/items.tsv", FN.OWNED_FILE])
    assert outputs.list_files(str(out)) == sorted(
        ["dead_letter/mine.jsonl", "manifest.json", "train-feed-0-of-3.tfrecord.gz",
         "train-feed-notes.txt", "vocab/items.tsv", FN.OWNED_FILE])
    assert not staging.exists()


def test_object_store_listing_descends_into_subdirectories(tmp_path):
    # On gs:// the swap lists files with Beam's match (issue 13), where `*` stops at `/`: the
    # vocabularies and dead letters must be listed too. Beam's local filesystem matches alike.
    for name in ("stats.json", "vocab/items.tsv", "dead_letter/rejected-00000-of-00001.jsonl"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    assert outputs.match_tree(str(tmp_path)) == outputs.list_files(str(tmp_path)) == [
        "dead_letter/rejected-00000-of-00001.jsonl", "stats.json", "vocab/items.tsv"]


def test_examples_lost_before_the_shards_fail_the_reconciliation():
    # What Beam 2.77's multi-process runner did on `medium` (BENCHMARKS.md §1): every example
    # counted, fewer written; the run must not reconcile.
    examples = {s.value: {"feed": 3, "search": 2} for s in F.Split}
    shards = {f"{F.shard_prefix(s.value, t)}-00000-of-00001{FN.TFRECORD_SUFFIX}":
              examples[s.value][F.task_name(t)] for s in F.Split for t in F.Task}
    stats = {"examples": examples, "checks": [], "reconciled": True}
    stats_lib.check_written(stats, shards)
    assert stats["reconciled"] and len(stats["checks"]) == 6
    shards["train-feed-00000-of-00001.tfrecord.gz"] = 2
    stats = {"examples": examples, "checks": [], "reconciled": True}
    stats_lib.check_written(stats, shards)
    assert not stats["reconciled"]
    assert [(c["check"], c["left"], c["right"]) for c in stats["checks"] if not c["ok"]] == [
        ("train/feed: examples written to the shards = examples made", 2, 3)]


def _stats(rows_read, rejected, examples):
    files = {"rec_inter.csv": {"rows_read": rows_read, "rejected_total": rejected,
                               "rejected": {"bad_id": rejected} if rejected else {}}}
    split = {"feed": examples["feed"], "search": examples["search"]}
    return {"files": files, "examples": {s.value: dict(split) for s in F.Split},
            "targets": {t: {"targets": 7} for t in ("feed", "search")}}


def test_guard_thresholds_and_empty_tasks():
    ok = {"feed": 3, "search": 3}
    assert stats_lib.guard_problems(_stats(100, 1, ok), 0.01) == []
    assert stats_lib.guard_problems(_stats(100, 2, ok), 0.01) == [
        "rec_inter.csv: 2 of 100 rows rejected (2.0%, mostly bad_id) > "
        "--max_rejected_fraction=0.01"]
    assert stats_lib.guard_problems(_stats(100, 2, ok), 0.05) == []
    assert stats_lib.guard_problems(_stats(100, 0, {"feed": 3, "search": 0}), 0.01) == [
        "no search examples (targets: 7)"]
