"""``jsr-compare``: the summary math (fast) and the whole command on the ``tiny`` preset (slow)."""

import csv
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from jsr_tf.evaluation import compare

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _record(feed, search=None, ratio=None, params=10, seconds=5.0):
    metrics = {"feed": {"NDCG@5": feed, "NDCG@10": feed, "HR@10": feed, "MRR": feed}}
    if search is not None:
        metrics["search"] = {"NDCG@5": search, "NDCG@10": search, "HR@10": search, "MRR": search}
    return {"test": {"metrics": metrics,
                     "ratio_to_oracle": {"feed": {"NDCG@10": ratio}} if ratio else None},
            "params": params, "train_wall_time_s": seconds}


def test_summary_is_mean_and_sample_std_over_seeds():
    records = {"a": {1: _record(0.2, 0.1, ratio=0.5), 2: _record(0.4, 0.3, ratio=0.7)},
               "b": {1: _record(0.3)}}
    rows = {(r["model"], r["task"]): r for r in compare.summarise(records)}
    assert set(rows) == {("a", "feed"), ("a", "search"), ("b", "feed")}
    assert rows["a", "feed"]["NDCG@10"] == pytest.approx(
        {"mean": 0.3, "std": math.sqrt(0.02), "n": 2})
    assert rows["a", "feed"]["NDCG@10/oracle"]["mean"] == pytest.approx(0.6)
    assert rows["a", "search"]["NDCG@10/oracle"]["n"] == 0  # no oracle ratio recorded
    assert rows["b", "feed"]["NDCG@10"] == {"mean": 0.3, "std": 0.0, "n": 1}
    assert rows["a", "feed"]["params"] == 10


def test_table_and_csv_carry_the_summary(tmp_path):
    rows = compare.summarise({"a": {1: _record(0.2), 2: _record(0.4)}})
    text = compare.write_table(rows, str(tmp_path))
    assert "| a | feed | 2 | 0.3000 ± 0.1414 |" in text
    with open(tmp_path / compare.RESULTS_CSV) as f:
        (row,) = list(csv.DictReader(f))
    assert float(row["NDCG@10_mean"]) == pytest.approx(0.3)
    assert float(row["NDCG@10_std"]) == pytest.approx(math.sqrt(0.02))
    assert compare.plot(rows, str(tmp_path)).endswith(compare.RESULTS_PNG)
    assert (tmp_path / compare.RESULTS_PNG).read_bytes()[:4] == b"\x89PNG"


def test_unknown_models_fail_before_any_training(tmp_path):
    with pytest.raises(ValueError, match="Unknown preset `nope`"):
        compare.run_grid(str(tmp_path), str(tmp_path), ["popularity", "nope"], [1])


def test_a_run_dir_with_another_config_is_refused(tmp_path):
    from jsr_tf.models import factory

    path = compare.run_dir(str(tmp_path), "sasrec", 1)
    factory.save_config(compare.run_config("sasrec", 1, 2, []), path)
    compare.check_config(path, compare.run_config("sasrec", 1, 2, []))  # same: accepted
    with pytest.raises(ValueError, match=r"differs in \['train.epochs'\]"):
        compare.check_config(path, compare.run_config("sasrec", 1, 3, []))


@pytest.mark.slow
def test_jsr_compare_on_tiny_two_configs_two_seeds(tmp_path):
    raw, data, out = tmp_path / "raw", tmp_path / "data", tmp_path / "compare"

    def run(*args):
        done = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=1200)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    run("jsr_tf.cli.simulate", "--preset", "tiny", "--seed", "3", "--output_dir", str(raw))
    run("pipelines.preprocess", "--input_dir", str(raw), "--output_dir", str(data))
    args = ("jsr_tf.cli.compare", "--data_dir", str(data), "--output_dir", str(out),
            "--models", "sasrec,unisar", "--seeds", "2", "--epochs", "1",
            "--override", "train.steps_per_epoch=2", "--override", "train.batch_size=32",
            "--override", "model.num_qi_negatives=16")
    first = run(*args)
    assert first.count("running in") == 4 and "skipped" not in first
    with open(out / compare.RESULTS_CSV) as f:
        rows = {(r["model"], r["task"]): r for r in csv.DictReader(f)}
    # SASRec trains on feed only; its search row is its query-blind score (a floor).
    assert set(rows) == {("sasrec", "feed"), ("sasrec", "search"), ("unisar", "feed"),
                         ("unisar", "search")}
    for (model, task), row in rows.items():
        values = []
        for seed in (1, 2):
            with open(out / "runs" / model / f"seed_{seed}" / "metrics.json") as f:
                record = json.load(f)
            assert record["seed"] == seed
            values.append(record["test"]["metrics"][task]["NDCG@10"])
        assert float(row["NDCG@10_mean"]) == pytest.approx(np.mean(values), abs=1e-12)
        assert float(row["NDCG@10_std"]) == pytest.approx(np.std(values, ddof=1), abs=1e-12)
        assert int(row["params"]) > 0
    table = (out / compare.RESULTS_MD).read_text()
    assert f"{np.mean(values):.4f}" in table
    assert (out / compare.RESULTS_PNG).exists()
    mtimes = {p: p.stat().st_mtime for p in (out / "runs").rglob("metrics.json")}
    second = run(*args)
    assert second.count("finished earlier, skipped") == 4 and "running in" not in second
    assert {p: p.stat().st_mtime for p in (out / "runs").rglob("metrics.json")} == mtimes
    assert (out / compare.RESULTS_MD).read_text() == table
