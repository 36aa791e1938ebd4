"""The evaluation protocols on one data dir: the training-free floors under each protocol (the
``sampled_fair`` property: item-only scorers near random) and, with ``--model_dir``, the
full-catalogue scoring speed of a trained model.

Usage::

    python benchmarks/bench_protocols.py --data_dir demo_output/data \\
        [--model_dir demo_output/compare/runs/unisar/seed_1] [--full_max_rows 500] \\
        [--output bench_protocols.json]

Prints one JSON line per (scorer, protocol) and a summary: for every item-only floor and task,
``NDCG@10 - random's NDCG@10`` under ``sampled`` and ``sampled_fair``. Records the CPU model and
flags, TensorFlow version and thread settings.
"""

from __future__ import annotations

import argparse
import json
import time

import jsr_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TF loads)

from benchmarks.machine import machine_info
from jsr_tf.evaluation import evaluator, protocols, report

ITEM_ONLY = (report.POPULARITY, report.COUNT_SAME, report.COUNT_OTHER)


def machine() -> dict:
    """CPU model and flags of interest, TensorFlow version and thread settings."""
    return machine_info()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--model_dir", default=None, help="A trained run: full-catalogue speed.")
    parser.add_argument("--split", default="test")
    parser.add_argument("--full_max_rows", type=int, default=None)
    parser.add_argument("--output", default=None)
    args = parser.parse_args()

    full = evaluator.FullOptions(max_rows=args.full_max_rows)
    names = protocols.available_protocols(args.data_dir)
    results = {}
    for label, scorer in evaluator.training_free_floors(args.data_dir).items():
        for protocol in names:
            start = time.perf_counter()
            metrics = evaluator.evaluate_protocol(scorer, args.data_dir, args.split, protocol,
                                                  full=full)
            row = {"scorer": label, "protocol": protocol,
                   "seconds": round(time.perf_counter() - start, 1),
                   "NDCG@10": {t: round(m["NDCG@10"], 4) for t, m in metrics.items()},
                   "rows": {t: m["rows"] for t, m in metrics.items()}}
            results[(label, protocol)] = row
            print(json.dumps(row), flush=True)
    summary = {}
    for protocol in (protocols.SAMPLED, protocols.SAMPLED_FAIR):
        if (report.RANDOM, protocol) not in results:
            continue
        random = results[(report.RANDOM, protocol)]["NDCG@10"]
        summary[protocol] = {
            label: {t: round(v - random[t], 4)
                    for t, v in results[(label, protocol)]["NDCG@10"].items()}
            for label in ITEM_ONLY}
    out = {"floors": list(results.values()), "minus_random": summary, "machine": machine()}
    if args.model_dir:
        from jsr_tf.models import factory

        model, _ = factory.load_trained(args.model_dir, args.data_dir)
        metrics = evaluator.evaluate_full(model, args.data_dir, args.split, options=full)
        out["full_model"] = {
            "model_dir": args.model_dir,
            "per_task": {t: {k: round(m[k], 1) for k in (protocols.ROWS_PER_S,
                                                         protocols.CANDIDATES_PER_S)}
                         | {"rows": m["rows"], "NDCG@10": round(m["NDCG@10"], 4)}
                         for t, m in metrics.items()}}
        print(json.dumps(out["full_model"]), flush=True)
    print(json.dumps({"minus_random": summary}, indent=1))
    if args.output:
        with open(args.output, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
