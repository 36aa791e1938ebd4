"""Serving cost of the neighbour inputs: ``feed`` of a UniSAR export vs ``feed_nbr`` of a
``unisar_nbr`` export, measured in-process on CPU in one run.

Both rankers are built untrained for a pipeline output (latency does not depend on the weight
values; ``benchmarks/bench_serving.py`` does the same), exported with
``jsr_tf.export.exporter.export_run`` (default settings: cached item vectors, no XLA, no retrieval
head) and loaded with ``tf.saved_model.load``. Requests are real valid rows with their 100
candidates; the ``*_nbr`` requests carry a synthetic **full** neighbour payload (10 slots, 15
items and 10 sessions of 4 words and 2 clicks each, ids drawn from the vocabulary), the most
expensive case. The cases are timed in interleaved rounds (round-robin, ``--rounds``) so that
load changes on a shared machine hit every case alike; the table gives the percentiles over all
rounds and the ratio of each case's p50 / p99 to the plain UniSAR export's ``feed`` / ``search``
(same task, same rows).

    .venv/bin/python benchmarks/bench_serving_neighbours.py --data_dir bench_output/medium/data \\
        --output bench_output/serving_neighbours.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from typing import Dict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import jsr_tf  # noqa: F401,E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks.bench_serving import machine, numpy_outputs  # noqa: E402


def build_run(name: str, data_dir: str, work_dir: str, batch_size: int = 32) -> str:
    """An untrained run dir (config.json + best weights) of preset ``name``."""
    import tf_keras as keras

    from jsr_tf import features as F
    from jsr_tf.config import preset
    from jsr_tf.data import reader
    from jsr_tf.data.vocab import load_vocab
    from jsr_tf.filenames import BEST_WEIGHTS
    from jsr_tf.keys import Inputs
    from jsr_tf.models.factory import build_model, save_config

    keras.utils.set_random_seed(1)
    config = preset(name)
    model = build_model(config, load_vocab(data_dir))
    batches = {key: next(iter(reader.make_dataset(
        data_dir, "train", task, batch_size, shuffle_buffer=0,
        neighbours=config.model.uses_neighbours)))
        for key, task in ((Inputs.FEED, F.Task.FEED), (Inputs.SEARCH, F.Task.SEARCH))}
    model.compute_loss(batches)  # creates the variables (the fusion runs on empty slots too)
    run_dir = os.path.join(work_dir, name)
    if os.path.exists(run_dir):
        shutil.rmtree(run_dir)
    model.save_weights(os.path.join(run_dir, BEST_WEIGHTS))
    save_config(config, run_dir)
    return run_dir


def full_payload(data_dir: str, rows: int, seed: int = 0) -> Dict[str, np.ndarray]:
    """Every slot filled (5 feed-side, 5 search-side), ids from the vocabulary."""
    from jsr_tf import features as F
    from jsr_tf.data.vocab import load_vocab

    vocab = load_vocab(data_dir)
    rng = np.random.default_rng(seed)
    shape = vocab.shape
    k, lf, lq = shape.neighbour_slots, shape.nbr_feed_items, shape.nbr_search_sessions
    words = rng.choice(vocab.word_ids, size=(rows, k, lq, shape.nbr_query_words))
    words[..., 4:] = F.RAW_PAD_ID
    return {F.NBR_SIDE: np.tile(np.repeat([1, 2], k // 2), (rows, 1)).astype(np.int64),
            F.NBR_SIM: rng.uniform(0.02, 0.5, (rows, k)).astype(np.float32),
            F.NBR_REC_ITEMS: rng.choice(vocab.item_ids, size=(rows, k, lf)).astype(np.int64),
            F.NBR_SRC_WORDS: words.astype(np.int64),
            F.NBR_SRC_CLICKS: rng.choice(
                vocab.item_ids, size=(rows, k, lq, shape.nbr_session_clicks)).astype(np.int64)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", default="bench_output/medium/data")
    parser.add_argument("--work_dir", default="bench_output/serving_neighbours")
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls_1", type=int, default=60, help="Calls per round, 1 row.")
    parser.add_argument("--calls_batch", type=int, default=10, help="Calls per round, batched.")
    parser.add_argument("--output", default="bench_output/serving_neighbours.json")
    args = parser.parse_args()

    from jsr_tf.export import signatures as SG
    from jsr_tf.export import warmup
    from jsr_tf.export.exporter import export_run

    os.makedirs(args.work_dir, exist_ok=True)
    loaded = {}
    for name in ("unisar", "unisar_nbr"):
        run_dir = build_run(name, args.data_dir, args.work_dir)
        path = export_run(run_dir, os.path.join(args.work_dir, "export_" + name),
                          data_dir=args.data_dir, version=1, overwrite=True)
        loaded[name] = tf.saved_model.load(path)
    requests = warmup.sample_requests(args.data_dir, rows=args.rows, neighbours=True)
    payload = full_payload(args.data_dir, args.rows)
    for sig in (SG.FEED_NBR_SIGNATURE, SG.SEARCH_NBR_SIGNATURE):
        requests[sig].update(payload)

    cases = []  # (label, export, signature, rows)
    for rows in (1, args.rows):
        cases += [(f"unisar export: feed, {rows} × 100", "unisar", SG.FEED_SIGNATURE, rows),
                  (f"unisar_nbr export: feed (no neighbours), {rows} × 100", "unisar_nbr",
                   SG.FEED_SIGNATURE, rows),
                  (f"unisar_nbr export: feed_nbr (10 full slots), {rows} × 100", "unisar_nbr",
                   SG.FEED_NBR_SIGNATURE, rows)]
    cases += [("unisar export: search, 1 × 100", "unisar", SG.SEARCH_SIGNATURE, 1),
              ("unisar_nbr export: search_nbr (10 full slots), 1 × 100", "unisar_nbr",
               SG.SEARCH_NBR_SIGNATURE, 1)]
    calls = {}
    for label, export, sig, rows in cases:
        inputs = {k: tf.constant(v[:rows]) for k, v in requests[sig].items()}
        calls[label] = numpy_outputs(loaded[export].signatures[sig], inputs)
        for _ in range(args.warmup):
            calls[label]()
    times: Dict[str, list] = {label: [] for label in calls}
    for round_ in range(args.rounds):
        for label, _, _, rows in cases:
            n = args.calls_1 if rows == 1 else args.calls_batch
            for _ in range(n):
                start = time.perf_counter()
                calls[label]()
                times[label].append(time.perf_counter() - start)
        print(f"round {round_ + 1}/{args.rounds} done", flush=True)

    results = []
    for label, export, sig, rows in cases:
        ms = np.array(times[label]) * 1e3
        results.append({"case": label, "export": export, "signature": sig, "rows": rows,
                        "calls": len(ms), "p50_ms": round(float(np.percentile(ms, 50)), 3),
                        "p99_ms": round(float(np.percentile(ms, 99)), 3),
                        "mean_ms": round(float(ms.mean()), 3),
                        "rows_per_s": round(float(rows * len(ms) / ms.sum() * 1e3), 1)})
    base_of = {SG.FEED_SIGNATURE: SG.FEED_SIGNATURE, SG.FEED_NBR_SIGNATURE: SG.FEED_SIGNATURE,
               SG.SEARCH_SIGNATURE: SG.SEARCH_SIGNATURE,
               SG.SEARCH_NBR_SIGNATURE: SG.SEARCH_SIGNATURE}
    for row in results:  # ratios to the plain UniSAR export's signature of the same task
        base = next(r for r in results if r["export"] == "unisar"
                    and r["signature"] == base_of[row["signature"]] and r["rows"] == row["rows"])
        row["p50_ratio"] = round(row["p50_ms"] / base["p50_ms"], 2)
        row["p99_ratio"] = round(row["p99_ms"] / base["p99_ms"], 2)
    print("| case | calls | p50 ms | p99 ms | rows/s | p50 ratio | p99 ratio |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['case']} | {r['calls']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
              f"{r['rows_per_s']:.0f} | {r['p50_ratio']:.2f} | {r['p99_ratio']:.2f} |")
    report = {"results": results, "machine": machine(), "data_dir": args.data_dir,
              "rounds": args.rounds}
    print(json.dumps(report["machine"]))
    if args.output:
        with open(args.output, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
