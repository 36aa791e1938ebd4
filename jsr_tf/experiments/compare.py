"""A comparison grid: models × seeds on one data dir, resumable, summarised as a table and a plot.

Layout under ``output_dir``::

    runs/<model>/seed_<seed>/      one jsr-train run (config.json, metrics.json, weights, logs)
    results.md, results.csv        mean ± std over seeds per protocol, model, task and metric,
                                   with the training-free floors; cells a floor beats marked †
    results.png                    NDCG@10 with error bars (std over seeds), one panel per
                                   protocol

A run whose ``metrics.json`` already holds test metrics is skipped, so rerunning the same command
after an interruption trains only what is missing (a run killed mid-training resumes from its own
backup, see ``jsr_tf.training.trainer``). ``popularity`` and ``random`` are scorers, not trained
models: their runs hold only a ``metrics.json``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf

from jsr_tf import config as config_lib
from jsr_tf import features as F
from jsr_tf import filenames as FN
from jsr_tf.data.vocab import load_vocab
from jsr_tf.evaluation import evaluator, protocols, report, scorers

SCORERS = ("popularity", "random")
METRICS = ("NDCG@5", "NDCG@10", "HR@10", "MRR")
PLOT_METRIC = "NDCG@10"
TEST = F.Split.TEST.value


def run_dir(output_dir: str, model: str, seed: int) -> str:
    return os.path.join(output_dir, FN.RUNS_DIR, model, f"seed_{seed}")


def read_record(path: str) -> Optional[Dict[str, Any]]:
    """A run's ``metrics.json`` if it holds test metrics (the run is finished), else None."""
    metrics = os.path.join(path, FN.METRICS_FILE)
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

    if not tf.io.gfile.exists(os.path.join(path, FN.CONFIG_FILE)):
        return
    from jsr_tf.training import run_dir as run_dir_lib

    changed = run_dir_lib.changed_fields(factory.load_config(path).to_dict(), config.to_dict())
    if changed:
        raise ValueError(f"{path} was run with another config (differs in {changed});"
                         " use another --output_dir or delete that run.")


def score_baseline(model: str, seed: int, data_dir: str, path: str,
                   protocol_list: Sequence[str] = (protocols.SAMPLED,),
                   full: evaluator.FullOptions = evaluator.FullOptions()) -> Dict[str, Any]:
    """Evaluates a scorer baseline (popularity / random) on test under every protocol of
    ``protocol_list`` and writes its record."""
    start = time.time()
    vocab = load_vocab(data_dir)
    scorer = (scorers.PopularityScorer(vocab) if model == "popularity"
              else scorers.RandomScorer(seed))
    ordered = (protocols.SAMPLED, *[p for p in protocol_list if p != protocols.SAMPLED])
    results = evaluator.evaluate_protocols(scorer, data_dir, TEST, ordered, full=full)
    for result in results.values():
        result["floors"][report.QUERY_BLIND] = None
    sampled = results[protocols.SAMPLED]
    oracle = evaluator.oracle_reports(evaluator.resolve_raw_dir(data_dir), data_dir, TEST)
    entry = report.split_record(TEST, sampled["metrics"],
                                popularity=sampled["floors"][report.POPULARITY],
                                random=sampled["floors"][report.RANDOM], oracle=oracle,
                                wall_time_s=time.time() - start, protocol_results=results)
    config = config_lib.ExperimentConfig(preset=model,
                                         model=config_lib.ModelConfig(name=model),
                                         train=config_lib.TrainConfig(seed=seed))
    record = report.results_record(model=model, preset=model, config=config, data_dir=data_dir,
                                   seed=seed, splits={TEST: entry}, params=0,
                                   train_wall_time_s=0.0)
    tf.io.gfile.makedirs(path)
    metrics_path = os.path.join(path, FN.METRICS_FILE)
    if tf.io.gfile.exists(metrics_path):  # evaluated again: keep the other protocols
        with tf.io.gfile.GFile(metrics_path) as f:
            record = report.merge_records(json.load(f), record)
    with tf.io.gfile.GFile(metrics_path, "w") as f:
        json.dump(record, f, indent=2, sort_keys=True)
    return record


def missing_protocols(record: Mapping[str, Any], protocol_list: Sequence[str],
                      full: evaluator.FullOptions = evaluator.FullOptions()) -> List[str]:
    """The protocols of ``protocol_list`` a finished run's test entry has no results for (a
    ``full`` result made with other ``FullOptions``, e.g. another row subset, counts as missing)."""
    have = (record.get(TEST) or {}).get("protocols") or {}
    missing = []
    for protocol in protocol_list:
        entry = have.get(protocol)
        if entry is None or (protocol == protocols.FULL
                             and entry.get("options") != dataclasses.asdict(full)):
            missing.append(protocol)
    return missing


def run_grid(data_dir: str, output_dir: str, models: Sequence[str], seeds: Sequence[int],
             epochs: Optional[int] = None, overrides: Sequence[str] = (),
             log: Callable[[str], None] = print,
             protocol_list: Sequence[str] = (protocols.SAMPLED,),
             full: evaluator.FullOptions = evaluator.FullOptions()
             ) -> Dict[str, Dict[int, Dict[str, Any]]]:
    """Trains and evaluates every (model, seed) not finished yet; returns all records.

    Args:
        data_dir: Pipeline output directory.
        output_dir: The grid's directory (created).
        models: Preset names (``jsr_tf.config``) or ``popularity`` / ``random``.
        seeds: Training seeds (``train.seed``).
        epochs: Overrides ``train.epochs`` of every preset.
        overrides: ``section.field=value`` applied to every trained preset.
        log: Progress sink (one line per run start and end).
        protocol_list: Evaluation protocols of the test split (``jsr_tf.evaluation.protocols``).
            A finished run without some of them is evaluated again, not retrained.
        full: Settings of the ``full`` protocol.
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
        missing = missing_protocols(record, protocol_list, full) if record is not None else []
        if record is not None and missing:
            log(f"[{index}/{len(grid)}] {model} seed {seed}: finished earlier; evaluating "
                f"{', '.join(missing)}")
            if model in SCORERS:
                score_baseline(model, seed, data_dir, path, missing, full)
            else:
                evaluator.evaluate_run(path, data_dir, TEST, protocol_list=missing, full=full)
            record = read_record(path)
        elif record is not None:
            log(f"[{index}/{len(grid)}] {model} seed {seed}: finished earlier, skipped")
        else:
            log(f"[{index}/{len(grid)}] {model} seed {seed}: running in {path}")
            run_start = time.time()
            if model in SCORERS:
                score_baseline(model, seed, data_dir, path, protocol_list, full)
            else:
                trainer.train(run_config(model, seed, epochs, overrides), data_dir, path,
                              verbose=0, protocol_list=protocol_list, full=full)
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
    std = float(array.std(ddof=1)) if array.size > 1 else math.nan
    return {"mean": float(array.mean()), "std": std, "n": int(array.size)}


def protocol_entry(record: Mapping[str, Any], protocol: str) -> Optional[Mapping[str, Any]]:
    """``{"metrics", "floors"}`` of a record's test split under a protocol (records written
    before the protocols existed hold ``sampled`` only, at the top level)."""
    test = record.get(TEST) or {}
    entry = (test.get("protocols") or {}).get(protocol)
    if entry is None and protocol == protocols.SAMPLED:
        entry = {"metrics": test.get("metrics") or {}, "floors": test.get("floors") or {}}
    return entry


def record_protocols(records: Mapping[str, Mapping[int, Mapping[str, Any]]]) -> List[str]:
    """Protocols present in any record, in ``protocols.PROTOCOLS`` order."""
    found = {protocols.SAMPLED}
    for by_seed in records.values():
        for record in by_seed.values():
            found.update(((record.get(TEST) or {}).get("protocols") or {}))
    return [p for p in protocols.PROTOCOLS if p in found]


def _oracle_ratio(record: Mapping[str, Any], task: str, metric: str) -> Optional[float]:
    ratios = (record.get(TEST) or {}).get("ratio_to_oracle")
    if not isinstance(ratios, Mapping):  # "n/a" on data without an oracle
        return None
    value = (ratios.get(task) or {})
    return value.get(metric) if isinstance(value, Mapping) else None


def summarise(records: Dict[str, Dict[int, Dict[str, Any]]],
              metrics: Optional[Sequence[str]] = None) -> List[Dict[str, Any]]:
    """One row per (protocol, model, task): mean/std over seeds of each metric (and, under
    ``sampled``, of its oracle ratio), then the training-free floors that no model of the grid
    is (``floor: <name>`` rows, from the first record that has them); ``beaten_by`` lists the
    floors whose mean NDCG@10 is above a trained model's."""
    rows: List[Dict[str, Any]] = []
    for protocol in record_protocols(records):
        names = list(metrics or protocol_metrics(protocol))
        floor_source: Optional[Mapping[str, Any]] = None
        start = len(rows)
        for model, by_seed in records.items():
            seeds = sorted(by_seed)
            entries = {s: protocol_entry(by_seed[s], protocol) for s in seeds}
            entries = {s: e for s, e in entries.items() if e and e.get("metrics")}
            if not entries:
                continue
            if floor_source is None and model not in SCORERS:
                floor_source = next(iter(entries.values()))
            tasks = sorted({t for e in entries.values() for t in e["metrics"]})
            for task in tasks:
                row: Dict[str, Any] = {"protocol": protocol, "model": model, "task": task,
                                       "seeds": sorted(entries), "kind": (
                                           "scorer" if model in SCORERS else "trained")}
                for metric in names:
                    row[metric] = _mean_std([entries[s]["metrics"].get(task, {}).get(metric)
                                             for s in entries])
                    row[f"{metric}/oracle"] = _mean_std(
                        [_oracle_ratio(by_seed[s], task, metric) for s in entries]
                        if protocol == protocols.SAMPLED else [])
                row["params"] = by_seed[seeds[0]].get("params")
                row["train_time_s"] = _mean_std([by_seed[s].get("train_wall_time_s")
                                                 for s in entries])
                rows.append(row)
        if floor_source is None:  # only scorers: their own records' floors
            for by_seed in records.values():
                for record in by_seed.values():
                    floor_source = floor_source or protocol_entry(record, protocol)
        floors = (floor_source or {}).get("floors") or {}
        for label in report.TRAINING_FREE:
            if label in records or not floors.get(label):
                continue
            for task, values in sorted(floors[label].items()):
                row = {"protocol": protocol, "model": f"floor: {label}", "task": task,
                       "seeds": [], "kind": "floor", "params": None,
                       "train_time_s": _mean_std([])}
                for metric in names:
                    row[metric] = _mean_std([values.get(metric)])
                    row[f"{metric}/oracle"] = _mean_std([])
                rows.append(row)
        block = rows[start:]
        for row in block:
            row["beaten_by"] = []
            if row["kind"] != "trained" or PLOT_METRIC not in row:
                continue
            mine = row[PLOT_METRIC]["mean"]
            for other in block:
                label = other["model"].replace("floor: ", "")
                if (other["task"] == row["task"] and label in report.TRAINING_FREE
                        and other[PLOT_METRIC]["n"] and math.isfinite(mine)
                        and other[PLOT_METRIC]["mean"] > mine):
                    row["beaten_by"].append(label)
    return rows


def protocol_metrics(protocol: str) -> Sequence[str]:
    """Table columns of a protocol."""
    return protocols.metric_names(protocol) if protocol == protocols.FULL else METRICS


def _fmt(cell: Dict[str, float], digits: int = 4) -> str:
    if cell["n"] == 0:
        return "n/a"
    if cell["n"] == 1 or not math.isfinite(cell["std"]):
        return f"{cell['mean']:.{digits}f} ± –"
    return f"{cell['mean']:.{digits}f} ± {cell['std']:.{digits}f}"


MARK = "†"


def warnings(rows: List[Dict[str, Any]]) -> List[str]:
    """One line per trained model, task and protocol that a training-free floor beats."""
    return [f"WARNING: {', '.join(r['beaten_by'])} (training-free) beat{'s' if len(r['beaten_by']) == 1 else ''} "
            f"{r['model']} on {r['task']} under {r['protocol']} ({PLOT_METRIC})"
            for r in rows if r.get("beaten_by")]


def write_table(rows: List[Dict[str, Any]], output_dir: str,
                metrics: Optional[Sequence[str]] = None) -> str:
    """Writes ``results.md`` and ``results.csv`` (a protocol column); returns the markdown.

    One markdown table per protocol; a trained model's NDCG@10 cell that a training-free floor
    beats is marked with ``†``.
    """
    blocks = []
    for protocol in dict.fromkeys(r["protocol"] for r in rows):
        names = list(metrics or protocol_metrics(protocol))
        oracle_cols = [f"{PLOT_METRIC}/oracle"] if protocol == protocols.SAMPLED else []
        header = ["protocol", "model", "task", "seeds", *names, *oracle_cols, "params",
                  "train time (s)"]
        lines = [f"### {protocol}", "", "| " + " | ".join(header) + " |",
                 "|" + "---|" * len(header)]
        for row in (r for r in rows if r["protocol"] == protocol):
            cells = []
            for m in names:
                text = _fmt(row[m])
                if m == PLOT_METRIC and row.get("beaten_by"):
                    text += f" {MARK}"
                cells.append(text)
            lines.append("| " + " | ".join([
                protocol, row["model"], row["task"], str(len(row["seeds"])) if row["seeds"]
                else "-", *cells, *[_fmt(row[c], 3) for c in oracle_cols],
                "-" if row["params"] is None else f"{row['params']:,}",
                _fmt(row["train_time_s"], 0)]) + " |")
        blocks.append("\n".join(lines))
    text = "\n\n".join(blocks) + "\n"
    notes = warnings(rows)
    if notes:
        text += f"\n{MARK} a training-free floor scores above this model (NDCG@10):\n\n" + "\n".join(
            f"- {n}" for n in notes) + "\n"
    with open(os.path.join(output_dir, FN.RESULTS_MD), "w", encoding="utf-8") as f:
        f.write("Mean ± sample std over seeds (test split; – with one seed). Oracle ratio: "
                "model / set oracle (simulated data, sampled protocol only). Protocols: see "
                "README, \"Evaluation protocols\".\n\n" + text)
    all_metrics: List[str] = []
    for protocol in dict.fromkeys(r["protocol"] for r in rows):
        for m in (metrics or protocol_metrics(protocol)):
            if m not in all_metrics:
                all_metrics.append(m)
    with open(os.path.join(output_dir, FN.RESULTS_CSV), "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        columns = [*all_metrics, *[f"{m}/oracle" for m in all_metrics], "train_time_s"]
        writer.writerow(["protocol", "model", "task", "seeds", "params",
                         *[f"{c}_{s}" for c in columns for s in ("mean", "std")], "beaten_by"])
        empty = {"mean": "", "std": ""}
        for row in rows:
            writer.writerow([row["protocol"], row["model"], row["task"],
                             " ".join(map(str, row["seeds"])), row["params"],
                             *[(row.get(c) or empty)[s] for c in columns for s in ("mean", "std")],
                             " ".join(row.get("beaten_by") or [])])
    return text


def plot(rows: List[Dict[str, Any]], output_dir: str, metric: str = PLOT_METRIC) -> str:
    """Bar chart of ``metric`` (mean, std error bars) per model, one group per task, one panel
    per protocol."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    protocol_names = list(dict.fromkeys(r["protocol"] for r in rows)) or [protocols.SAMPLED]
    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, axes = plt.subplots(len(protocol_names), 1, squeeze=False,
                             figsize=(max(6, 1.2 * len(models)), 3.6 * len(protocol_names)))
    for ax, protocol in zip(axes[:, 0], protocol_names):
        block = [r for r in rows if r["protocol"] == protocol]
        tasks = sorted({r["task"] for r in block})
        by_key = {(r["model"], r["task"]): r.get(metric) for r in block}
        width = 0.8 / max(len(tasks), 1)
        for i, task in enumerate(tasks):
            cells = [by_key.get((m, task)) or {"mean": math.nan, "std": 0.0} for m in models]
            xs = np.arange(len(models)) + (i - (len(tasks) - 1) / 2) * width
            ax.bar(xs, [c["mean"] for c in cells], width,
                   yerr=[0.0 if not math.isfinite(c["std"]) else c["std"] for c in cells],
                   capsize=3, label=task)
        ax.set_xticks(np.arange(len(models)), models, rotation=20, fontsize=8)
        ax.set_ylabel(f"test {metric}")
        ax.legend(title="task", fontsize=8)
        ax.set_title(f"{protocol}: {metric}, mean ± std over seeds")
    fig.tight_layout()
    path = os.path.join(output_dir, FN.RESULTS_PNG)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
