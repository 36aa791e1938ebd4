"""jsr-evaluate end to end, the results record (jsr_tf.evaluation.report), and the oracle ratios.

The model dir is written by hand: a TinyModel registered under a unique family name, its
config.json and best/weights. The slow test simulates the `tiny` preset and compares the floors
with the simulator oracle.
"""

import hashlib
import json
import os
import subprocess
import sys
import uuid

import numpy as np
import pytest

import jsr_tf  # noqa: F401
from absl import flags

from jsr_tf import features as F
from jsr_tf import filenames as FN
from jsr_tf.cli import evaluate as cli
from jsr_tf.config import ExperimentConfig, ModelConfig
from jsr_tf.data import reader
from jsr_tf.evaluation import evaluator, metrics, report, scorers
from jsr_tf.models import factory
from tests import golden_fixture as G
from tests.doubles import TinyModel
from tests.testing import run_preprocess

CONFIG = {"num_train_negatives": 1, "num_eval_negatives": 3}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_evaluate")
    return G.preprocessed(root, CONFIG, out="data")


@pytest.fixture(scope="module")
def family():
    """A model family registered for this module only."""
    name = f"tiny_test_{uuid.uuid4().hex[:8]}"
    factory.register_model(name)(lambda config, vocab: TinyModel())
    yield name
    factory._BUILDERS.pop(name, None)


def _write_model_dir(model_dir, data_dir, family):
    """Writes config.json + best/weights of a freshly built TinyModel; returns (model, config)."""
    config = ExperimentConfig(preset="custom", model=ModelConfig(name=family))
    factory.save_config(config, model_dir)
    model = TinyModel()
    for task in F.Task:  # builds both embedding tables
        model.score(next(iter(reader.make_dataset(data_dir, "test", task, 2))), task)
    model.save_weights(os.path.join(model_dir, FN.BEST_WEIGHTS))
    return model, config


@pytest.fixture
def model_dir(tmp_path, data_dir, family):
    path = str(tmp_path / "run")
    model, config = _write_model_dir(path, data_dir, family)
    return path, model, config


def _read(path):
    with open(path) as f:
        return json.load(f)


# -- the CLI in-process -------------------------------------------------------------------------
def test_cli_writes_record_and_prints_table(model_dir, data_dir, family, capsys):
    path, model, config = model_dir
    cli.main(["jsr-evaluate", "--data_dir", data_dir, "--model_dir", path])
    record = _read(os.path.join(path, FN.METRICS_FILE))

    assert record["model"] == family
    assert record["preset"] == "custom"
    assert record["seed"] == config.train.seed
    assert record["config_sha256"] == hashlib.sha256(config.to_json().encode()).hexdigest()
    manifest = _read(os.path.join(data_dir, FN.MANIFEST_FILE))
    assert record["data"]["files"] == {k: v["sha256"] for k, v in manifest["files"].items()}
    assert record["data"]["examples"]["test"] == {"feed": 2, "search": 2}
    assert record["data"]["importer"]["rec_inter.csv"]["dropped_duplicate"] == 1
    assert record["device"].startswith(("CPU", "GPU"))

    test = record["test"]
    assert test["split"] == "test"
    assert test["wall_time_s"] > 0
    # The restored weights score exactly like the model that was saved.
    expected = evaluator.evaluate_model(model, data_dir, "test")
    for task in ("feed", "search"):
        got = test["metrics"][task]
        assert got["rows"] == 2
        for name in metrics.metric_names() + ("tie_fraction",):
            assert got[name] == pytest.approx(expected[task][name]), (task, name)
        # Golden fixture, popularity: every positive ties or loses -> rank 4 = C on all rows.
        assert test["floors"]["popularity"][task]["MRR"] == pytest.approx(0.25)
        assert test["floors"]["random"][task]["rows"] == 2
    # Query-blind floor: search rows scored by the feed head, exactly the model's feed scores.
    blind = test["floors"]["query-blind"]
    assert set(blind) == {"search"} and blind["search"]["rows"] == 2
    feed_head = evaluator.evaluate_model(scorers.QueryBlindScorer(model), data_dir, "test",
                                         tasks=(F.Task.SEARCH,))
    assert blind["search"]["MRR"] == pytest.approx(feed_head["search"]["MRR"])
    # The golden raw dir has no simulator ground truth: no oracle, ratios are "n/a".
    assert test["oracle"] is None
    assert test["ratio_to_oracle"] == test["gap_closed"] == "n/a"

    # Every protocol the data supports, each with the training-free floors.
    assert set(test["protocols"]) == {"sampled", "sampled_fair", "full", "impressions"}
    for name, entry in test["protocols"].items():
        assert set(entry["floors"]) >= {"popularity", "random", "-count (same task)",
                                        "-count (other task)"}, name
    assert test["protocols"]["sampled"]["metrics"] == test["metrics"]
    assert test["protocols"]["full"]["metrics"]["feed"]["rows"] == 2
    assert test["protocols"]["full"]["options"]["chunk"] == 4096
    # The golden sessions show nothing but their click: no impressions row to rank.
    impressions = test["protocols"]["impressions"]["metrics"]
    assert set(impressions) == {"search"} and impressions["search"]["rows"] == 0
    assert impressions["search"]["rows_skipped"] == 2
    out = capsys.readouterr().out
    assert "test · sampled · feed" in out and "test · sampled · search" in out
    assert "test · full · feed" in out and "Recall@100" in out
    assert "test · impressions · search" in out and "-count (other task)" in out
    header = next(line for line in out.splitlines() if "HR@1" in line)
    assert header.split() == list(metrics.metric_names()) + ["rows", "ties"]
    for label in (family, "popularity", "random", "ratio to oracle", "gap closed"):
        assert label in out
    ratio_line = next(line for line in out.splitlines() if line.startswith("ratio to oracle"))
    assert ratio_line.split()[3:] == ["n/a"] * len(metrics.metric_names())
    model_line = next(line for line in out.splitlines() if line.startswith(family))
    assert float(model_line.split()[-3]) == pytest.approx(expected["feed"]["MRR"], abs=1e-4)


def test_record_merges_with_training_keys_and_other_splits(model_dir, data_dir):
    path, _, _ = model_dir
    with open(os.path.join(path, FN.METRICS_FILE), "w") as f:
        json.dump({"best_epoch": 3, "epochs_run": 8, "history": [0.1, 0.2]}, f)
    cli.main(["jsr-evaluate", "--data_dir", data_dir, "--model_dir", path, "--split", "valid"])
    record = evaluator.evaluate_run(path, data_dir, "test", batch_size=1)
    on_disk = _read(os.path.join(path, FN.METRICS_FILE))
    assert on_disk == record
    assert (record["best_epoch"], record["epochs_run"], record["history"]) == (3, 8, [0.1, 0.2])
    assert record["valid"]["split"] == "valid" and record["test"]["split"] == "test"
    assert record["valid"]["metrics"]["feed"]["rows"] == 2


def test_record_refuses_to_merge_other_data(model_dir, data_dir):
    path, _, _ = model_dir
    with open(os.path.join(path, FN.METRICS_FILE), "w") as f:
        json.dump({"data": {"digest": "0" * 64}}, f)
    with pytest.raises(ValueError, match="other data"):
        evaluator.evaluate_run(path, data_dir, "test")


def test_raw_dir_without_ground_truth_gives_no_oracle(model_dir, data_dir, tmp_path):
    path, _, _ = model_dir
    record = evaluator.evaluate_run(path, data_dir, "test", raw_dir=str(tmp_path))
    assert record["test"]["oracle"] is None
    assert record["test"]["ratio_to_oracle"] == "n/a"


def test_cli_rejects_missing_flags_and_arguments(data_dir):
    with pytest.raises(flags.Error, match="model_dir"):
        cli.main(["jsr-evaluate", "--data_dir", data_dir])
    with pytest.raises(flags.Error, match="split"):
        cli.main(["jsr-evaluate", "--data_dir", data_dir, "--model_dir", "x", "--split", "dev"])


def test_console_entry_point_parses_flags(data_dir, tmp_path):
    """`run()` goes through absl's app.run: the flags reach main (here: no config.json)."""
    missing = str(tmp_path / "no_run")
    code = ("import sys; from jsr_tf.cli import evaluate; "
            f"sys.argv = ['jsr-evaluate', '--data_dir', {data_dir!r}, '--model_dir', {missing!r}]; "
            "evaluate.run()")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode != 0
    assert "config.json" in proc.stderr and missing in proc.stderr


# -- report -------------------------------------------------------------------------------------
def test_ratio_and_gap_closed_by_hand():
    model = {"HR@1": 0.3, "MRR": 0.4}
    random = {"HR@1": 0.01, "MRR": 0.05}
    oracle = {"HR@1": 0.5, "MRR": 0.05}
    ratio = report.ratio_to_oracle(model, oracle, names=("HR@1", "MRR"))
    gap = report.gap_closed(model, random, oracle, names=("HR@1", "MRR"))
    assert ratio == {"HR@1": pytest.approx(0.6), "MRR": pytest.approx(8.0)}
    assert gap["HR@1"] == pytest.approx((0.3 - 0.01) / (0.5 - 0.01))
    assert gap["MRR"] is None  # oracle = random: undefined, shown as n/a


def test_table_with_oracle_shows_ratios():
    names = metrics.metric_names()
    m = {n: 0.2 for n in names} | {"rows": 10, "tie_fraction": 0.0}
    r = {n: 0.1 for n in names} | {"rows": 10, "tie_fraction": 0.0}
    o = {n: 0.4 for n in names} | {"rows": 10, "tie_fraction": 0.5}
    text = report.format_table({"unisar": {"feed": m}, "random": {"feed": r},
                                report.ORACLE_SET: {"feed": o}}, split="valid", model="unisar")
    lines = text.splitlines()
    assert lines[0] == "valid · feed"
    ratio = next(line for line in lines if line.startswith("ratio to oracle"))
    gap = next(line for line in lines if line.startswith("gap closed"))
    assert [float(x) for x in ratio.split()[3:]] == [0.5] * len(names)
    assert [float(x) for x in gap.split()[2:]] == pytest.approx([1 / 3] * len(names), abs=1e-3)
    oracle_line = next(line for line in lines if line.startswith(report.ORACLE_SET))
    assert oracle_line.split()[-2:] == ["10", "0.50"]


def test_config_hash_matches_json_forms():
    config = ExperimentConfig()
    digest = report.config_hash(config)
    assert digest == report.config_hash(config.to_dict()) == report.config_hash(config.to_json())
    assert digest != report.config_hash(config.override(["train.seed=2"]))


def test_jsonable_is_strict_json():
    value = report.jsonable({"a": np.float32(0.5), "b": float("nan"), "c": np.arange(2),
                             "d": (np.int64(3), np.bool_(True))})
    assert value == {"a": 0.5, "b": None, "c": [0, 1], "d": [3, True]}
    json.dumps(value, allow_nan=False)


def test_data_fingerprint_requires_a_manifest(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        report.data_fingerprint(str(tmp_path))


# -- the simulator oracle -----------------------------------------------------------------------
@pytest.mark.slow
def test_floors_and_oracle_on_tiny_simulation(tmp_path, family):
    from jsr_tf import simulator
    from jsr_tf.data.vocab import load_vocab
    from jsr_tf.evaluation import scorers
    from jsr_tf.simulator import oracle as oracle_lib

    raw, data = str(tmp_path / "raw"), str(tmp_path / "data")
    simulator.generate(simulator.get_preset("tiny"), seed=1, output_dir=raw)
    run_preprocess(raw, data)
    assert evaluator.expected_num_candidates(data, "test") == 100

    popularity = evaluator.evaluate_model(scorers.PopularityScorer(load_vocab(data)), data,
                                          "test")
    # One random draw has std ~0.03 on HR@10 with ~140 rows: average a few seeds.
    randoms = [evaluator.evaluate_model(scorers.RandomScorer(s), data, "test",
                                        permutation_seed=s) for s in range(8)]
    oracle = oracle_lib.oracle_metrics_from_files(raw, data, "test")

    random_ndcg = np.mean([r["feed"]["NDCG@10"] for r in randoms])
    random_hr = np.mean([r["feed"]["HR@10"] for r in randoms])
    assert random_hr == pytest.approx(0.10, abs=0.05)
    assert oracle["feed"].set_realised["NDCG@10"] > popularity["feed"]["NDCG@10"] > random_ndcg
    assert oracle["feed"].set_realised["NDCG@10"] >= oracle["feed"].preference_realised["NDCG@10"]
    # The evaluator's popularity floor (permuted, in TF) equals the oracle module's sort by w.
    for task in ("feed", "search"):
        for name in metrics.metric_names() + ("tie_fraction", "rows"):
            assert popularity[task][name] == pytest.approx(
                oracle[task].popularity_realised[name]), (task, name)

    # A whole run: the oracle is found through stats.json's input_dir or --raw_dir.
    run_dir = str(tmp_path / "run")
    _write_model_dir(run_dir, data, family)
    stats = _read(os.path.join(data, FN.STATS_FILE))
    record = evaluator.evaluate_run(run_dir, data, "test",
                                    raw_dir=None if stats.get("input_dir") else raw)
    test = record["test"]
    set_feed = test["oracle"]["feed"]["set_realised"]
    assert set_feed["NDCG@10"] == pytest.approx(oracle["feed"].set_realised["NDCG@10"])
    for name in ("NDCG@10", "MRR"):
        model_value = test["metrics"]["feed"][name]
        random_value = test["floors"]["random"]["feed"][name]
        assert test["ratio_to_oracle"]["feed"][name] == pytest.approx(
            model_value / set_feed[name])
        assert test["gap_closed"]["feed"][name] == pytest.approx(
            (model_value - random_value) / (set_feed[name] - random_value))
    table = report.split_table(record, "test")
    assert report.ORACLE_SET in table and report.ORACLE_PREFERENCE in table
    ratio_line = next(line for line in table.splitlines() if line.startswith("ratio to oracle"))
    assert "n/a" not in ratio_line
