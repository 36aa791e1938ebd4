"""``jsr-compare``: the summary math (fast) and the whole command on the ``tiny`` preset (slow)."""

import csv
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from jsr_tf import filenames as FN
from jsr_tf.experiments import compare

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
    rows = {(r["protocol"], r["model"], r["task"]): r for r in compare.summarise(records)}
    assert set(rows) == {("sampled", "a", "feed"), ("sampled", "a", "search"),
                         ("sampled", "b", "feed")}
    rows = {key[1:]: row for key, row in rows.items()}
    assert rows["a", "feed"]["NDCG@10"] == pytest.approx(
        {"mean": 0.3, "std": math.sqrt(0.02), "n": 2})
    assert rows["a", "feed"]["NDCG@10/oracle"]["mean"] == pytest.approx(0.6)
    assert rows["a", "search"]["NDCG@10/oracle"]["n"] == 0  # no oracle ratio recorded
    single = rows["b", "feed"]["NDCG@10"]
    assert single["mean"] == 0.3 and single["n"] == 1 and math.isnan(single["std"])
    assert rows["a", "feed"]["params"] == 10


def test_table_and_csv_carry_the_summary(tmp_path):
    rows = compare.summarise({"a": {1: _record(0.2), 2: _record(0.4)}, "b": {1: _record(0.25)}})
    text = compare.write_table(rows, str(tmp_path))
    assert "| sampled | a | feed | 2 | 0.3000 ± 0.1414 |" in text
    assert "| sampled | b | feed | 1 | 0.2500 ± – |" in text  # one seed: no spread to show
    with open(tmp_path / FN.RESULTS_CSV) as f:
        row = list(csv.DictReader(f))[0]
    assert row["protocol"] == "sampled" and row["model"] == "a"
    assert float(row["NDCG@10_mean"]) == pytest.approx(0.3)
    assert float(row["NDCG@10_std"]) == pytest.approx(math.sqrt(0.02))
    assert compare.plot(rows, str(tmp_path)).endswith(FN.RESULTS_PNG)
    assert (tmp_path / FN.RESULTS_PNG).read_bytes()[:4] == b"\x89PNG"


def _protocol_record(model_ndcg, floors, protocol="full"):
    """A record whose test entry holds ``protocol`` with the model's and the floors' NDCG@10."""
    names = ("Recall@10", "NDCG@10", "MRR") if protocol == "full" else ("NDCG@10",)
    metrics = {"feed": {m: model_ndcg for m in names}}
    sampled = {"feed": {"NDCG@5": 0.1, "NDCG@10": 0.1, "HR@10": 0.1, "MRR": 0.1}}
    return {"test": {"metrics": sampled, "ratio_to_oracle": "n/a",  # data without an oracle
                     "protocols": {
                         "sampled": {"metrics": sampled, "floors": {}},
                         protocol: {"metrics": metrics, "floors": {
                             label: {"feed": {m: value for m in names}}
                             for label, value in floors.items()}}}},
            "params": 5, "train_wall_time_s": 1.0}


def test_protocols_floors_and_marks_in_the_summary(tmp_path):
    floors = {"popularity": 0.30, "random": 0.01, "-count (same task)": 0.05,
              "-count (other task)": 0.02, "query-blind": 0.9}
    records = {"unisar": {1: _protocol_record(0.2, floors), 2: _protocol_record(0.22, floors)},
               "sasrec": {1: _protocol_record(0.4, floors)}}
    rows = compare.summarise(records)
    full = {r["model"]: r for r in rows if r["protocol"] == "full"}
    # The floors that no grid model is come as rows of their own; query-blind is not a
    # training-free floor and gets no row.
    assert set(full) == {"unisar", "sasrec", "floor: popularity", "floor: random",
                         "floor: -count (same task)", "floor: -count (other task)"}
    assert full["floor: popularity"]["NDCG@10"]["mean"] == 0.30
    assert full["unisar"]["beaten_by"] == ["popularity"]  # 0.21 < 0.30
    assert full["sasrec"]["beaten_by"] == []
    assert full["unisar"]["Recall@10"]["mean"] == pytest.approx(0.21)
    text = compare.write_table(rows, str(tmp_path))
    assert "### full" in text and "### sampled" in text
    assert "| full | unisar | feed | 2 | 0.2100 ± 0.0141 |" in text
    assert "0.2100 ± 0.0141 †" in text  # the NDCG@10 cell, marked
    assert compare.warnings(rows) == [
        "WARNING: popularity (training-free) beats unisar on feed under full (NDCG@10)"]
    with open(tmp_path / FN.RESULTS_CSV) as f:
        by_key = {(r["protocol"], r["model"]): r for r in csv.DictReader(f)}
    assert by_key["full", "unisar"]["beaten_by"] == "popularity"
    assert by_key["full", "unisar"]["Recall@10_mean"] != ""
    assert by_key["sampled", "unisar"]["Recall@10_mean"] == ""
    assert compare.plot(rows, str(tmp_path)).endswith(FN.RESULTS_PNG)


def test_missing_protocols_of_a_finished_run():
    from jsr_tf.evaluation import evaluator, report

    record = _protocol_record(0.2, {})
    record["test"]["protocols"]["full"]["options"] = {"max_rows": 500, "batch_size": 32,
                                                      "chunk": 4096}
    full = evaluator.FullOptions(max_rows=500)
    assert compare.missing_protocols(record, ["sampled", "full"], full) == []
    assert compare.missing_protocols(record, ["sampled", "impressions"], full) == ["impressions"]
    # Another row subset is another evaluation: full is evaluated again.
    assert compare.missing_protocols(record, ["full"], evaluator.FullOptions()) == ["full"]
    # A split evaluated again under one protocol keeps the others.
    again = {"test": {"metrics": {}, "protocols": {"sampled_fair": {"metrics": {"feed": {}}}}}}
    merged = report.merge_records(record, again)
    assert set(merged["test"]["protocols"]) == {"sampled", "full", "sampled_fair"}


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
def test_jsr_compare_on_tiny_four_models_and_a_second_seed(tmp_path):
    """The joint systems and SASRec on the same files (1 seed each), then a second SASRec seed
    in the same grid: the mean and sample std over the two seeds come from the runs' records,
    and a rerun skips every finished run."""
    raw, data, out = tmp_path / "raw", tmp_path / "data", tmp_path / "compare"
    models = ("unisar", "sesrec", "uditsr", "sasrec")

    def run(*args):
        done = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=1200)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    def results():
        with open(out / FN.RESULTS_CSV) as f:
            return list(csv.DictReader(f))

    def metric(model, seed, task):
        with open(out / "runs" / model / f"seed_{seed}" / "metrics.json") as f:
            record = json.load(f)
        assert record["seed"] == seed
        return record["test"]["metrics"][task]["NDCG@10"]

    run("jsr_tf.cli.simulate", "--preset", "tiny", "--seed", "3", "--output_dir", str(raw))
    run("jsr_tf.pipelines.preprocess", "--input_dir", str(raw), "--output_dir", str(data))
    common = ("jsr_tf.cli.compare", "--data_dir", str(data), "--output_dir", str(out),
              "--epochs", "1", "--override", "train.steps_per_epoch=2", "--override",
              "train.batch_size=32", "--override", "model.num_qi_negatives=16",
              "--full_max_rows", "60")
    first = run(*common, "--models", ",".join(models), "--seeds", "1")
    assert first.count("running in") == 4 and "skipped" not in first
    all_rows = results()
    # Every protocol, with the training-free floors as rows of their own.
    assert {r["protocol"] for r in all_rows} == {"sampled", "sampled_fair", "full",
                                                 "impressions"}
    assert {r["model"] for r in all_rows if r["protocol"] == "full"} >= {
        "floor: popularity", "floor: random", "floor: -count (same task)",
        "floor: -count (other task)"}
    rows = {(r["model"], r["task"]): r for r in all_rows
            if r["protocol"] == "sampled" and not r["model"].startswith("floor: ")}
    # SASRec trains on feed only; its search row is its query-blind score (a floor).
    assert set(rows) == {(m, t) for m in models for t in ("feed", "search")}
    for (model, task), row in rows.items():  # one seed: the mean is the run's, no spread
        assert float(row["NDCG@10_mean"]) == pytest.approx(metric(model, 1, task), abs=1e-12)
        assert math.isnan(float(row["NDCG@10_std"]))
        assert int(row["params"]) > 0
    for model in models:
        with open(out / "runs" / model / "seed_1" / "metrics.json") as f:
            record = json.load(f)
        full = record["test"]["protocols"]["full"]["metrics"]["feed"]
        assert 0 <= full["Recall@10"] <= full["Recall@100"] <= 1 and full["rows"] > 0
        assert set(record["test"]["protocols"]["impressions"]["metrics"]) == {"search"}
    assert (out / FN.RESULTS_PNG).exists()

    args = (*common, "--models", "sasrec", "--seeds", "2")
    second = run(*args)  # seed 1 is reused, seed 2 trained
    assert second.count("finished earlier, skipped") == 1 and second.count("running in") == 1
    rows = {r["task"]: r for r in results() if r["protocol"] == "sampled"
            and r["model"] == "sasrec"}
    for task, row in rows.items():
        values = [metric("sasrec", seed, task) for seed in (1, 2)]
        assert float(row["NDCG@10_mean"]) == pytest.approx(np.mean(values), abs=1e-12)
        assert float(row["NDCG@10_std"]) == pytest.approx(np.std(values, ddof=1), abs=1e-12)
    table = (out / FN.RESULTS_MD).read_text()
    assert f"{np.mean(values):.4f}" in table
    mtimes = {p: p.stat().st_mtime for p in (out / "runs").rglob("metrics.json")}
    assert len(mtimes) == 5
    third = run(*args)
    assert third.count("finished earlier, skipped") == 2 and "running in" not in third
    assert {p: p.stat().st_mtime for p in (out / "runs").rglob("metrics.json")} == mtimes
    assert (out / FN.RESULTS_MD).read_text() == table
