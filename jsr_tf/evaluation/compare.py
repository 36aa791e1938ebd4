"""A comparison grid: models × seeds on one data dir, resumable, summarised as a table and a plot.

Layout under ``output_dir``::

    runs/<model>/seed_<seed>/      one jsr-train run (config.json, metrics.json, weights, logs)
    results.md, results.csv        mean ± std over seeds per model, task and metric
    results.png                    NDCG@10 with error bars (std over seeds), per model and task

A run whose ``metrics.json`` already holds test metrics is skipped, so rerunning the same command
after an interruption trains only what is missing (a run killed mid-training resumes from its own
backup, see ``jsr_tf.training.trainer``). ``popularity`` and ``random`` are scorers, not trained
models: their runs hold only a ``metrics.json``.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf

from jsr_tf import config as config_lib
from jsr_tf import features as F
from jsr_tf.data.vocab import load_vocab
from jsr_tf.evaluation import evaluator, report, scorers

SCORERS = ("popularity", "random")
METRICS = ("NDCG@5", "NDCG@10", "HR@10", "MRR")
PLOT_METRIC = "NDCG@10"
RESULTS_MD, RESULTS_CSV, RESULTS_PNG = "results.md", "results.csv", "results.png"
TEST = F.Split.TEST.value


def run_dir(output_dir: str, model: str, seed: int) -> str:
    return os.path.join(output_dir, "runs", model, f"seed_{seed}")


def read_record(path: str) -> Optional[Dict[str, Any]]:
    """A run's ``metrics.json`` if it holds test metrics (the run is finished), else None."""
    metrics = os.path.join(path, evaluator.METRICS_FILE)
    if not tf.io.gfile.exists(metrics):
        return None
    with tf.io.gfile.GFile(metrics) as f:
        record = json.load(f)
    return record if (record.get(TEST) or {}).get("metrics") else None


def run_config(model: str, seed: int, epochs: Optional[int],
               overrides: Sequence[str]) -> config_lib.ExperimentConfig:
    """The preset ``model`` with the grid's seed, epochs and overrides."""
    assignments = [f"train.seed={seed}"]
    if epochs is not None:
        assignments.append(f"train.epochs={epochs}")
    return config_lib.preset(model).override([*assignments, *overrides])


def check_config(path: str, config: config_lib.ExperimentConfig) -> None:
    """Refuses to resume or reuse a run directory trained with another config.

    Raises:
        ValueError: ``<path>/config.json`` exists and differs from ``config``.
    """
    from jsr_tf.models import factory

    if not tf.io.gfile.exists(os.path.join(path, factory.CONFIG_FILE)):
        return
    existing = factory.load_config(path)
    if existing.to_dict() != config.to_dict():
        old, new = existing.to_dict(), config.to_dict()
        changed = sorted(f"{section}.{key}" for section in ("model", "train")
                         for key in new[section] if old[section].get(key) != new[section][key])
        raise ValueError(f"{path} was run with another config (differs in {changed or 'preset'});"
                         " use another --output_dir or delete that run.")


def score_baseline(model: str, seed: int, data_dir: str, path: str) -> Dict[str, Any]:
    """Evaluates a scorer baseline (popularity / random) on test and writes its record."""
    start = time.time()
    vocab = load_vocab(data_dir)
    popularity = evaluator.evaluate_model(scorers.PopularityScorer(vocab), data_dir, TEST)
    random = evaluator.evaluate_model(scorers.RandomScorer(evaluator.RANDOM_FLOOR_SEED),
                                      data_dir, TEST)
    if model == "popularity":
        metrics = popularity
    elif seed == evaluator.RANDOM_FLOOR_SEED:
        metrics = random
    else:
        metrics = evaluator.evaluate_model(scorers.RandomScorer(seed), data_dir, TEST)
    oracle = evaluator.oracle_reports(evaluator.resolve_raw_dir(data_dir), data_dir, TEST)
    entry = report.split_record(TEST, metrics, popularity=popularity, random=random,
                                oracle=oracle, wall_time_s=time.time() - start)
    config = config_lib.ExperimentConfig(preset=model,
                                         model=config_lib.ModelConfig(name=model),
                                         train=config_lib.TrainConfig(seed=seed))
    record = report.results_record(model=model, preset=model, config=config, data_dir=data_dir,
                                   seed=seed, splits={TEST: entry}, params=0,
                                   train_wall_time_s=0.0)
    tf.io.gfile.makedirs(path)
    with tf.io.gfile.GFile(os.path.join(path, evaluator.METRICS_FILE), "w") as f:
        json.dump(record, f, indent=2, sort_keys=True)
    return record


def run_grid(data_dir: str, output_dir: str, models: Sequence[str], seeds: Sequence[int],
             epochs: Optional[int] = None, overrides: Sequence[str] = (),
             log: Callable[[str], None] = print) -> Dict[str, Dict[int, Dict[str, Any]]]:
    """Trains and evaluates every (model, seed) not finished yet; returns all records.

    Args:
        data_dir: Pipeline output directory.
        output_dir: The grid's directory (created).
        models: Preset names (``jsr_tf.config``) or ``popularity`` / ``random``.
        seeds: Training seeds (``train.seed``).
        epochs: Overrides ``train.epochs`` of every preset.
        overrides: ``section.field=value`` applied to every trained preset.
        log: Progress sink (one line per run start and end).
    """
    from jsr_tf.training import trainer  # deferred: the summary side needs no training code

    for model in models:
        if model not in SCORERS:
            config_lib.preset(model)  # fail fast on an unknown name, before hours of training
    grid = [(m, s) for m in models for s in seeds]
    records: Dict[str, Dict[int, Dict[str, Any]]] = {m: {} for m in models}
    start, trained = time.time(), 0
    for index, (model, seed) in enumerate(grid, 1):
        path = run_dir(output_dir, model, seed)
        if model not in SCORERS:
            check_config(path, run_config(model, seed, epochs, overrides))
        record = read_record(path)
        if record is not None:
            log(f"[{index}/{len(grid)}] {model} seed {seed}: finished earlier, skipped")
        else:
            log(f"[{index}/{len(grid)}] {model} seed {seed}: running in {path}")
            run_start = time.time()
            if model in SCORERS:
                score_baseline(model, seed, data_dir, path)
            else:
                trainer.train(run_config(model, seed, epochs, overrides), data_dir, path,
                              verbose=0)
                trained += 1
            record = read_record(path)
            if record is None:
                raise RuntimeError(f"{path} finished without test metrics in metrics.json")
            elapsed = time.time() - start
            left = len(grid) - index
            eta = f", about {elapsed / index * left / 60:.0f} min left" if left else ""
            log(f"[{index}/{len(grid)}] {model} seed {seed}: done in "
                f"{time.time() - run_start:.0f} s{eta}")
        records[model][seed] = record
    return records


def _mean_std(values: List[float]) -> Dict[str, float]:
    array = np.asarray([v for v in values if v is not None and not math.isnan(v)], np.float64)
    if array.size == 0:
        return {"mean": math.nan, "std": math.nan, "n": 0}
    std = float(array.std(ddof=1)) if array.size > 1 else 0.0
    return {"mean": float(array.mean()), "std": std, "n": int(array.size)}


def summarise(records: Dict[str, Dict[int, Dict[str, Any]]],
              metrics: Sequence[str] = METRICS) -> List[Dict[str, Any]]:
    """One row per (model, task): mean/std over seeds of each metric and of its oracle ratio."""
    rows = []
    for model, by_seed in records.items():
        seeds = sorted(by_seed)
        tasks = sorted({t for r in by_seed.values() for t in r[TEST]["metrics"]})
        for task in tasks:
            row: Dict[str, Any] = {"model": model, "task": task, "seeds": seeds}
            for metric in metrics:
                row[metric] = _mean_std([by_seed[s][TEST]["metrics"].get(task, {}).get(metric)
                                         for s in seeds])
                ratios = [((by_seed[s][TEST].get("ratio_to_oracle") or {}).get(task) or {})
                          .get(metric) for s in seeds]
                row[f"{metric}/oracle"] = _mean_std(ratios)
            row["params"] = by_seed[seeds[0]].get("params")
            row["train_time_s"] = _mean_std([by_seed[s].get("train_wall_time_s") for s in seeds])
            rows.append(row)
    return rows


def _fmt(cell: Dict[str, float], digits: int = 4) -> str:
    if cell["n"] == 0:
        return "n/a"
    return f"{cell['mean']:.{digits}f} ± {cell['std']:.{digits}f}"


def write_table(rows: List[Dict[str, Any]], output_dir: str,
                metrics: Sequence[str] = METRICS) -> str:
    """Writes ``results.md`` and ``results.csv``; returns the markdown."""
    header = ["model", "task", "seeds", *metrics, f"{PLOT_METRIC}/oracle", "params",
              "train time (s)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row["model"], row["task"], str(len(row["seeds"])),
                 *[_fmt(row[m]) for m in metrics], _fmt(row[f"{PLOT_METRIC}/oracle"], 3),
                 "-" if row["params"] is None else f"{row['params']:,}",
                 _fmt(row["train_time_s"], 0)]
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(output_dir, RESULTS_MD), "w", encoding="utf-8") as f:
        f.write("Mean ± sample std over seeds (test split). Oracle ratio: model / set oracle "
                "(simulated data only).\n\n" + text)
    with open(os.path.join(output_dir, RESULTS_CSV), "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        columns = [*metrics, *[f"{m}/oracle" for m in metrics], "train_time_s"]
        writer.writerow(["model", "task", "seeds", "params",
                         *[f"{c}_{s}" for c in columns for s in ("mean", "std")]])
        for row in rows:
            writer.writerow([row["model"], row["task"], " ".join(map(str, row["seeds"])),
                             row["params"],
                             *[row[c][s] for c in columns for s in ("mean", "std")]])
    return text


def plot(rows: List[Dict[str, Any]], output_dir: str, metric: str = PLOT_METRIC) -> str:
    """Bar chart of ``metric`` (mean, std error bars) per model, one group per task."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    models = list(dict.fromkeys(r["model"] for r in rows))
    tasks = sorted({r["task"] for r in rows})
    by_key = {(r["model"], r["task"]): r[metric] for r in rows}
    width = 0.8 / max(len(tasks), 1)
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(models)), 4))
    for i, task in enumerate(tasks):
        cells = [by_key.get((m, task), {"mean": math.nan, "std": 0.0}) for m in models]
        xs = np.arange(len(models)) + (i - (len(tasks) - 1) / 2) * width
        ax.bar(xs, [c["mean"] for c in cells], width, yerr=[c["std"] for c in cells],
               capsize=3, label=task)
    ax.set_xticks(np.arange(len(models)), models, rotation=20)
    ax.set_ylabel(f"test {metric} (100 candidates)")
    ax.legend(title="task")
    ax.set_title(f"{metric}: mean ± std over seeds")
    fig.tight_layout()
    path = os.path.join(output_dir, RESULTS_PNG)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
