"""Results records and metric tables (spec/evaluation.md §5 "Results record", §7).

A *results record* is the JSON a run leaves in ``<model_dir>/metrics.json``; tables are generated
from records only. Layout::

    {
      "model": "unisar", "preset": "unisar", "config_sha256": "…", "seed": 20230601,
      "device": "CPU (x86_64, 16 cores)",
      "data": {"digest": "…", "files": {name: sha256}, "rows": {name: n}, "sampler": {…},
               "examples": {split: {task: n}}, "importer": {csv: {rows_read, …}}},
      "<split>": {                                    # one entry per evaluated split
        "split": "test", "permutation_seed": 0, "wall_time_s": 1.2,
        "metrics": {task: {"HR@1": …, …, "MRR": …, "rows": N, "tie_fraction": x}},
        "floors": {"popularity": {task: {…}}, "random": {task: {…}}},
        "oracle": {task: OracleReport dict} | null,   # null on real KuaiSAR
        "ratio_to_oracle": {task: {metric: x}} | "n/a",
        "gap_closed": {task: {metric: x}} | "n/a",
        "protocols": {protocol: {                     # jsr_tf/evaluation/protocols.py
            "metrics": {task: {…}}, "floors": {label: {task: {…}}},
            "floor_beats": [{task, floor, model, value}], "wall_time_s": s,
            "options": {…}}}                           # full only: FullOptions
      },
      … keys written by training (best_epoch, epochs_run, …) are kept …
    }

Ratios use the **set oracle** (sort by p / w), the ceiling of spec §7:
``ratio = model / oracle`` and ``gap closed = (model − random) / (oracle − random)``, with the
realised random floor on the same files. A ratio whose denominator is 0 is ``None`` ("n/a").
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
from typing import Any, Dict, Mapping, Optional, Sequence, Union

import jsr_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TF loads)
import numpy as np
import tensorflow as tf

from jsr_tf import features as F
from jsr_tf import filenames as FN
from jsr_tf.evaluation import metrics as M

NA = "n/a"
METRICS = M.metric_names()  # HR@1 … HR@50, NDCG@5 … NDCG@50, MRR
TASK_NAMES = tuple(F.task_name(t) for t in F.Task)
MODEL, POPULARITY, RANDOM = "model", "popularity", "random"
ORACLE_SET, ORACLE_PREFERENCE = "oracle (set)", "oracle (preference)"
QUERY_BLIND = "query-blind"
COUNT_SAME, COUNT_OTHER = "-count (same task)", "-count (other task)"
# Floors that use no training at all: a trained model that loses to one of them is flagged.
TRAINING_FREE = (POPULARITY, RANDOM, COUNT_SAME, COUNT_OTHER)
FLOOR_METRIC = "NDCG@10"

TaskMetrics = Mapping[str, Mapping[str, Any]]  # {task: {metric: value}}


# -- oracle comparisons --------------------------------------------------------------------------
def _ratio(num: float, den: float) -> Optional[float]:
    if num is None or den is None or not math.isfinite(num) or not math.isfinite(den) or den == 0:
        return None
    return float(num / den)


def ratio_to_oracle(model: Mapping[str, float], oracle: Mapping[str, float],
                    names: Sequence[str] = METRICS) -> Dict[str, Optional[float]]:
    """``model / oracle`` per metric (None where the oracle is 0 or a value is missing)."""
    return {m: _ratio(model.get(m), oracle.get(m)) for m in names}


def gap_closed(model: Mapping[str, float], random: Mapping[str, float],
               oracle: Mapping[str, float],
               names: Sequence[str] = METRICS) -> Dict[str, Optional[float]]:
    """``(model − random) / (oracle − random)`` per metric (None where oracle = random)."""
    out = {}
    for m in names:
        values = (model.get(m), random.get(m), oracle.get(m))
        if any(v is None for v in values):
            out[m] = None
        else:
            out[m] = _ratio(values[0] - values[1], values[2] - values[1])
    return out


def oracle_comparison(model: TaskMetrics, random: TaskMetrics,
                      oracle: Optional[TaskMetrics]) -> Dict[str, Any]:
    """``{"ratio_to_oracle": {task: …}, "gap_closed": {task: …}}``, or "n/a" without an oracle.

    Args:
        model: ``{task: metrics}`` of the model.
        random: ``{task: metrics}`` of the random floor on the same files.
        oracle: ``{task: metrics}`` of the set oracle, or None (real KuaiSAR).
    """
    if oracle is None:
        return {"ratio_to_oracle": NA, "gap_closed": NA}
    tasks = [t for t in model if t in oracle]
    return {"ratio_to_oracle": {t: ratio_to_oracle(model[t], oracle[t]) for t in tasks},
            "gap_closed": {t: gap_closed(model[t], random.get(t, {}), oracle[t]) for t in tasks}}


# -- fingerprints --------------------------------------------------------------------------------
def _canonical_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True)


def config_hash(config: Union[str, Mapping[str, Any], Any]) -> str:
    """SHA-256 (hex) of a resolved config's JSON.

    Args:
        config: An ``ExperimentConfig`` (hashes its ``to_json()``), a dict (hashed as
            ``json.dumps(d, indent=2, sort_keys=True)``, the same text ``to_json`` writes) or a
            JSON string (hashed as is).
    """
    if hasattr(config, "to_json"):
        text = config.to_json()
    elif isinstance(config, str):
        text = config
    else:
        text = _canonical_json(config)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _read_json(path: str) -> Optional[Dict[str, Any]]:
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def data_fingerprint(data_dir: str) -> Dict[str, Any]:
    """Identity of a pipeline output: manifest hashes and importer counts (spec §3, §5).

    Returns:
        ``{"digest", "files", "rows", "sampler", "examples", "importer"}``. ``digest`` is the
        SHA-256 of the file hashes and sampler settings: runs are comparable only if it matches.

    Raises:
        FileNotFoundError: ``<data_dir>/manifest.json`` is missing.
    """
    manifest = _read_json(os.path.join(data_dir, FN.MANIFEST_FILE))
    if manifest is None:
        raise FileNotFoundError(f"No {FN.MANIFEST_FILE} in {data_dir!r}: run jsr-preprocess.")
    stats = _read_json(os.path.join(data_dir, FN.STATS_FILE)) or {}
    files = {name: info["sha256"] for name, info in sorted(manifest.get("files", {}).items())}
    rows = {name: info.get("rows") for name, info in sorted(manifest.get("files", {}).items())}
    sampler = manifest.get("sampler", {})
    importer = {name: {k: info.get(k) for k in ("rows_read", "canonical", "dropped_duplicate",
                                                "rejected_total")}
                for name, info in sorted(stats.get("files", {}).items())}
    digest = hashlib.sha256(_canonical_json({"files": files, "sampler": sampler})
                            .encode("utf-8")).hexdigest()
    return {"digest": digest, "files": files, "rows": rows, "sampler": sampler,
            "examples": stats.get("examples"), "importer": importer}


def device_description() -> str:
    """"GPU: <name>" (with the count if several) or "CPU (<machine>, <n> cores)"."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        try:
            name = tf.config.experimental.get_device_details(gpus[0]).get("device_name")
        except (ValueError, RuntimeError):
            name = None
        name = name or gpus[0].name
        return f"GPU: {name}" + (f" x{len(gpus)}" if len(gpus) > 1 else "")
    return f"CPU ({platform.machine()}, {os.cpu_count()} cores)"


# -- records -------------------------------------------------------------------------------------
def jsonable(obj: Any) -> Any:
    """Plain-JSON copy: numpy scalars/arrays to Python, NaN/inf to None (strict JSON)."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [jsonable(v) for v in obj.tolist()]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def floor_beats(metrics: TaskMetrics, floors: Mapping[str, Optional[TaskMetrics]],
                metric: str = FLOOR_METRIC) -> list:
    """Where a training-free floor scores above the model: ``[{task, floor, model, value}]``."""
    out = []
    for task, values in metrics.items():
        mine = values.get(metric)
        if mine is None or not math.isfinite(mine):
            continue
        for label in TRAINING_FREE:
            other = ((floors.get(label) or {}).get(task) or {}).get(metric)
            if other is not None and math.isfinite(other) and other > mine:
                out.append({"task": task, "floor": label, "model": mine, "value": other})
    return out


def split_record(split: str, metrics: TaskMetrics, *, popularity: Optional[TaskMetrics],
                 random: TaskMetrics, query_blind: Optional[TaskMetrics] = None,
                 oracle: Optional[Mapping[str, Mapping[str, Any]]] = None,
                 permutation_seed: Optional[int] = 0,
                 wall_time_s: Optional[float] = None,
                 protocol_results: Optional[Mapping[str, Mapping[str, Any]]] = None
                 ) -> Dict[str, Any]:
    """The record entry of one evaluated split.

    Args:
        split: ``"valid"`` or ``"test"``.
        metrics: ``{task: metrics}`` of the model (``evaluator.evaluate_model``).
        popularity: ``{task: metrics}`` of the popularity floor.
        random: ``{task: metrics}`` of the random floor.
        query_blind: ``{"search": metrics}`` of the model's feed head on search rows, or None.
        oracle: ``{task: OracleReport.to_dict()}`` (``jsr_tf.simulator.oracle``), or None.
        permutation_seed: The evaluator's column-permutation seed.
        wall_time_s: Seconds the model's evaluation took.
        protocol_results: ``{protocol: {"metrics", "floors", "wall_time_s"}}``
            (``evaluator.evaluate_protocols``); stored under ``"protocols"`` with each one's
            ``floor_beats``. Its ``sampled`` floors (count scorers included) become ``floors``.
    """
    set_oracle = None if oracle is None else {t: r["set_realised"] for t, r in oracle.items()}
    floors = {POPULARITY: popularity, RANDOM: random, QUERY_BLIND: query_blind}
    record = {"split": split, "permutation_seed": permutation_seed, "wall_time_s": wall_time_s,
              "metrics": metrics, "floors": floors, "oracle": oracle}
    if protocol_results:
        record["protocols"] = {
            name: {"metrics": entry["metrics"], "floors": dict(entry["floors"]),
                   "wall_time_s": entry.get("wall_time_s"),
                   "floor_beats": floor_beats(entry["metrics"], entry["floors"]),
                   **({"options": entry["options"]} if "options" in entry else {})}
            for name, entry in protocol_results.items()}
        if "sampled" in protocol_results:
            floors.update(protocol_results["sampled"]["floors"])
    record.update(oracle_comparison(metrics, random, set_oracle))
    return jsonable(record)


def results_record(*, model: str, preset: str, config: Any, data_dir: str, seed: Optional[int],
                   splits: Mapping[str, Mapping[str, Any]], device: Optional[str] = None,
                   **extra: Any) -> Dict[str, Any]:
    """A whole results record (see the module docstring).

    Args:
        model: Model family name.
        preset: Preset the config came from.
        config: The resolved config (see ``config_hash``).
        data_dir: Pipeline output directory (for ``data_fingerprint``).
        seed: The model seed.
        splits: ``{split: split_record(...)}``.
        device: Defaults to ``device_description()``.
        **extra: Other fields, e.g. ``best_epoch``, ``epochs_run``.
    """
    record = {"model": model, "preset": preset, "config_sha256": config_hash(config),
              "seed": seed, "device": device or device_description(),
              "data_dir": os.path.abspath(data_dir), "data": data_fingerprint(data_dir),
              **extra}
    record.update(splits)
    return jsonable(record)


def merge_records(existing: Optional[Mapping[str, Any]],
                  new: Mapping[str, Any]) -> Dict[str, Any]:
    """``existing`` updated with ``new``: identity fields and split entries replaced, others kept;
    a split entry's ``protocols`` are merged (a protocol evaluated again replaces its old result).

    Raises:
        ValueError: The two records are of different data (their ``data.digest`` differ).
    """
    merged = dict(existing or {})
    old_digest = (merged.get("data") or {}).get("digest")
    new_digest = (new.get("data") or {}).get("digest")
    if old_digest and new_digest and old_digest != new_digest:
        raise ValueError("The existing record was made on other data (data digest "
                         f"{old_digest[:12]}… vs {new_digest[:12]}…): refusing to merge.")
    for split, entry in new.items():  # a split evaluated again keeps its other protocols
        old_entry = merged.get(split)
        if (isinstance(entry, Mapping) and isinstance(old_entry, Mapping)
                and "protocols" in entry and old_entry.get("protocols")):
            entry = dict(entry)
            entry["protocols"] = {**old_entry["protocols"], **entry["protocols"]}
        merged[split] = entry
    return merged


# -- tables --------------------------------------------------------------------------------------
def _cell(value: Any, width: int, digits: int = 4) -> str:
    if value is None:
        return f"{NA:>{width}}"
    if isinstance(value, (float, np.floating)) and not math.isfinite(value):
        return f"{'nan':>{width}}"
    return f"{value:>{width}.{digits}f}"


def format_table(results: Mapping[str, TaskMetrics], *, split: str = "",
                 model: str = MODEL, random: str = RANDOM, oracle: Optional[str] = ORACLE_SET,
                 oracle_available: Optional[bool] = None,
                 metrics: Sequence[str] = METRICS) -> str:
    """One block per task: a line per scorer, then "ratio to oracle" and "gap closed".

    Args:
        results: ``{label: {task: metrics}}`` in display order (model, floors, oracles).
        split: Shown in each block's title.
        model: Label of the model whose ratios are shown.
        random: Label of the random floor.
        oracle: Label of the oracle the ratios use.
        oracle_available: Whether to show ratio rows with numbers; default: ``oracle in
            results``. Without an oracle those rows read "n/a" (real KuaiSAR). ``oracle=None``
            shows no ratio rows at all.
        metrics: The columns.

    Returns:
        The table text.
    """
    if oracle_available is None:
        oracle_available = oracle in results
    labels = list(results)
    tasks = [t for t in TASK_NAMES if any(t in results[label] for label in labels)]
    width = max([len(label) for label in labels] + [len("ratio to oracle"), 12]) + 2
    width_m = max([9] + [len(m) + 1 for m in metrics])
    header = (f"{'':<{width}}" + "".join(f"{m:>{width_m}}" for m in metrics)
              + f"{'rows':>8}{'ties':>7}")
    blocks = []
    for task in tasks:
        lines = [f"{split + ' · ' if split else ''}{task}", header]
        for label in labels:
            m = results[label].get(task)
            if m is None:
                continue
            rows = m.get("rows")
            rows_text = f"{int(rows):>8d}" if rows is not None else f"{NA:>8}"
            lines.append(f"{label:<{width}}" + "".join(_cell(m.get(k), width_m) for k in metrics)
                         + rows_text + _cell(m.get("tie_fraction"), 7, 2))
        if oracle is not None and model in results and task in results[model]:
            if oracle_available and task in results.get(oracle, {}):
                comparison = oracle_comparison({task: results[model][task]},
                                               {task: results.get(random, {}).get(task, {})},
                                               {task: results[oracle][task]})
                ratio = comparison["ratio_to_oracle"][task]
                gap = comparison["gap_closed"][task]
            else:
                ratio = gap = {k: None for k in metrics}
            lines.append(f"{'ratio to oracle':<{width}}" + "".join(
                _cell(ratio.get(k), width_m, 3) for k in metrics))
            lines.append(f"{'gap closed':<{width}}" + "".join(
                _cell(gap.get(k), width_m, 3) for k in metrics))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def beats_lines(beats: Sequence[Mapping[str, Any]], protocol: str, label: str = "the model"
                ) -> list:
    """One line per floor that beats the model (``floor_beats``)."""
    return [f"WARNING: training-free {b['floor']} beats {label} on {b['task']} under "
            f"{protocol} ({FLOOR_METRIC} {b['value']:.4f} vs {b['model']:.4f})" for b in beats]


def protocol_tables(record: Mapping[str, Any], split: str,
                    model_label: Optional[str] = None) -> str:
    """Tables of every protocol but ``sampled`` (``split_table`` shows that one), each followed by
    its floor warnings; empty if the record has no other protocol."""
    from jsr_tf.evaluation import protocols as P  # pylint: disable=g-import-not-at-top

    entry = record[split]
    label = model_label or record.get("model") or MODEL
    blocks = []
    for name, result in (entry.get("protocols") or {}).items():
        if name == P.SAMPLED:
            continue
        results: Dict[str, TaskMetrics] = {label: result["metrics"]}
        for floor, metrics in (result.get("floors") or {}).items():
            if metrics is not None:
                results[floor] = metrics
        text = format_table(results, split=f"{split} · {name}", model=label, oracle=None,
                            metrics=P.metric_names(name))
        warnings = beats_lines(result.get("floor_beats") or [], name, label)
        blocks.append(text + ("\n" + "\n".join(warnings) if warnings else ""))
    return "\n\n".join(blocks)


def split_table(record: Mapping[str, Any], split: str, model_label: Optional[str] = None) -> str:
    """The table of one split entry of a results record (model, floors, oracles, ratios), then
    the other protocols' tables (``protocol_tables``)."""
    entry = record[split]
    label = model_label or record.get("model") or MODEL
    results: Dict[str, TaskMetrics] = {label: entry["metrics"]}
    for name, metrics in (entry.get("floors") or {}).items():
        if metrics is not None:
            results[name] = metrics
    oracle = entry.get("oracle")
    if oracle:
        results[ORACLE_SET] = {t: r["set_realised"] for t, r in oracle.items()}
        results[ORACLE_PREFERENCE] = {t: r["preference_realised"] for t, r in oracle.items()}
    text = format_table(results, split=f"{split} · sampled" if entry.get("protocols") else split,
                        model=label, random=RANDOM, oracle=ORACLE_SET,
                        oracle_available=bool(oracle))
    sampled = (entry.get("protocols") or {}).get("sampled") or {}
    warnings = beats_lines(sampled.get("floor_beats") or [], "sampled", label)
    if warnings:
        text += "\n" + "\n".join(warnings)
    others = protocol_tables(record, split, model_label)
    return text + ("\n\n" + others if others else "")
