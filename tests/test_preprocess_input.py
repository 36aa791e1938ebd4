"""Bad input through the whole pipeline: dead letters with reasons, clear errors, reconciled counts."""

import glob
import json
import os
import shutil

import pytest

from jsr_tf.data import kuaisar
from tests import golden_fixture as G
from tests.testing import ITEM_HEADER, csv_text, item_row, run_preprocess

CONFIG = {"num_train_negatives": 1, "num_eval_negatives": 3}

DIRTY_REC = [
    b"1001,501,1000.0,2000.0,2023-05-23 00:10:00,1684771800000.0,1,0,0,0,0",     # missing column
    b"abc,501,1000.0,2000.0,2023-05-23 00:10:00,1684771800000.0,1,0,0,0,0,0",    # non-numeric id
    b"1001,501,1000.0,2000.0,2023-05-23 00:10:00,-5.0,1,0,0,0,0,0",              # negative ts
    b"1001,501,1000.0,2000.0,2023-05-23 00:10:00,4102444800000.0,1,0,0,0,0,0",   # year 2100
    b"1001,501,1000.0,2000.0,2023-05-23 00:10:00,nan,1,0,0,0,0,0",               # NaN ts
    b"1001,5\xff01,1000.0,2000.0,2023-05-23 00:10:00,1684771800000.0,1,0,0,0,0,0",  # non-UTF-8
    b"",                                                                           # blank line
]
DIRTY_SRC = [
    b'1001,7,2023-05-23 00:15:00,1684772100000.0,"[11,,12]",USER_INPUT,601,0,VIDEO',  # garbled
    b'1001,7,2023-05-23 00:15:00,1684772100000.0,"[]",USER_INPUT,601,0,VIDEO',        # empty
    b'1001,7,2023-05-23 00:15:00,1684772100000.0,"[1 2]",USER_INPUT,601,0,VIDEO',     # garbled
    b'1001,7,2023-05-23 00:15:00,1684772100000.0,,USER_INPUT,601,0,VIDEO',            # missing
    b'1001,x7,2023-05-23 00:15:00,1684772100000.0,"[1]",USER_INPUT,601,0,VIDEO',      # bad id
]


def _item_line(item, **kwargs) -> bytes:
    return csv_text(ITEM_HEADER, [item_row(item, **kwargs)]).splitlines()[1].encode("utf-8")


DIRTY_ITEMS = [
    _item_line(501, caption=(501 % 7 + 1, 40)),  # exact duplicate of item 501's row
    _item_line(502, caption=(9, 9, 9)),           # item 502 again with other content
]


@pytest.fixture(scope="module")
def dirty(tmp_path_factory):
    root = tmp_path_factory.mktemp("dirty")
    raw = G.write(str(root / "raw"), extra_lines={"rec_inter.csv": DIRTY_REC,
                                                  "src_inter.csv": DIRTY_SRC,
                                                  "item_features.csv": DIRTY_ITEMS})
    config = root / "config.json"
    config.write_text(json.dumps(CONFIG))
    clean_out = str(root / "clean")
    clean = run_preprocess(G.write(str(root / "clean_raw")), clean_out, "--config", str(config))
    out = str(root / "out")
    stats = run_preprocess(raw, out, "--config", str(config), "--max_rejected_fraction", "1")
    return out, stats, clean_out, clean


def test_every_bad_row_is_dead_lettered_with_its_reason(dirty):
    out, stats, _, _ = dirty
    rec = stats["files"]["rec_inter.csv"]["rejected"]
    assert rec == {"wrong_field_count": 2, "bad_id": 1, "bad_timestamp": 2,
                   "timestamp_out_of_period": 1, "non_utf8": 1}
    src = stats["files"]["src_inter.csv"]["rejected"]
    assert src == {"bad_keyword": 2, "empty_keyword": 2, "bad_id": 1}
    lines = []
    for path in glob.glob(os.path.join(out, "dead_letter", "*.jsonl")):
        with open(path) as f:
            lines += [json.loads(line) for line in f]
    assert len(lines) == 12
    assert {(d["file"], d["row"]) for d in lines} == (
        {("rec_inter.csv", 15 + i) for i in range(7)} | {("src_inter.csv", 10 + i) for i in range(5)})
    assert all(d["reason"] for d in lines)


def test_counts_reconcile_and_clean_rows_are_untouched(dirty):
    out, stats, _, clean = dirty
    assert stats["reconciled"]
    items = stats["files"]["item_features.csv"]
    assert (items["rows_read"], items["canonical"], items["dropped_duplicate"],
            items["dropped_conflicting_id"]) == (16, 14, 1, 1)
    with open(os.path.join(out, "vocab", "items.tsv")) as f:
        row_502 = [line for line in f if line.startswith("502\t")][0]
    assert row_502.rstrip("\n").split("\t")[-1] == "6 40"  # the first row wins
    rec = stats["files"]["rec_inter.csv"]
    assert rec["rows_read"] == 15 + 7
    assert rec["rows_read"] == rec["canonical"] + rec["dropped_duplicate"] + rec["rejected_total"]
    # The bad rows change nothing downstream.
    assert stats["examples"] == clean["examples"]


def test_dead_letter_output_exists_when_input_is_clean(dirty):
    _, _, clean_out, clean = dirty
    assert sum(f["rejected_total"] for f in clean["files"].values()) == 0
    files = glob.glob(os.path.join(clean_out, "dead_letter", "*.jsonl"))
    assert len(files) == 1 and os.path.getsize(files[0]) == 0


def test_missing_file_fails_with_clear_message(tmp_path):
    raw = G.write(str(tmp_path / "raw"))
    os.remove(os.path.join(raw, "src_inter.csv"))
    with pytest.raises(kuaisar.InputError, match="src_inter.csv not found"):
        run_preprocess(raw, str(tmp_path / "out"))


def test_empty_file_fails_with_clear_message(tmp_path):
    raw = G.write(str(tmp_path / "raw"))
    open(os.path.join(raw, "rec_inter.csv"), "w").close()
    with pytest.raises(kuaisar.InputError, match="rec_inter.csv is empty"):
        run_preprocess(raw, str(tmp_path / "out"))


def test_header_only_file_fails_with_clear_message(tmp_path):
    raw = G.write(str(tmp_path / "raw"))
    with open(os.path.join(raw, "src_inter.csv")) as f:
        header = f.readline()
    with open(os.path.join(raw, "src_inter.csv"), "w") as f:
        f.write(header)
    with pytest.raises(kuaisar.InputError, match="no data rows"):
        run_preprocess(raw, str(tmp_path / "out"))


def test_missing_column_fails_naming_file_and_column(tmp_path):
    raw = G.write(str(tmp_path / "raw"))
    path = os.path.join(raw, "rec_inter.csv")
    with open(path) as f:
        lines = f.read().splitlines()
    lines[0] = lines[0].replace("timestamp", "tstamp")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    with pytest.raises(kuaisar.InputError, match=r"rec_inter.csv.*'timestamp'"):
        run_preprocess(raw, str(tmp_path / "out"))


def test_rerun_with_other_shard_count_leaves_no_stale_shards(tmp_path):
    raw = G.write(str(tmp_path / "raw"))
    out = str(tmp_path / "out")
    config = tmp_path / "config.json"
    config.write_text(json.dumps(CONFIG))
    run_preprocess(raw, out, "--config", str(config), "--num_shards", "3")
    assert len(glob.glob(os.path.join(out, "train-feed-*"))) == 3
    run_preprocess(raw, out, "--config", str(config), "--num_shards", "2")
    assert sorted(os.path.basename(p) for p in glob.glob(os.path.join(out, "train-feed-*"))) == [
        "train-feed-00000-of-00002.tfrecord.gz", "train-feed-00001-of-00002.tfrecord.gz"]


def test_cli_exits_2_with_message_on_missing_input(tmp_path, capsys):
    from jsr_tf.pipelines import preprocess

    with pytest.raises(SystemExit) as exit_info:
        preprocess.main(["--input_dir", str(tmp_path / "nowhere"), "--output_dir",
                         str(tmp_path / "out")])
    assert exit_info.value.code == 2
    shutil.rmtree(tmp_path, ignore_errors=True)
