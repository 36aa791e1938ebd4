"""``jsr-preprocess`` on the in-memory runner vs Beam's multi-process runner, in one run.

The variants alternate (in-memory, multi-process, in-memory, ...) so that a machine shared with
other work slows both alike. Each run is a child process; its wall time and its CPU time (user +
system of the child and every process it waited for, i.e. the SDK worker processes, from
``RUSAGE_CHILDREN``) are recorded, with the load average when the benchmark started and the
machine record. The outputs of every run are compared by their manifest checksums.

    .venv/bin/python benchmarks/bench_runners.py --preset medium --rounds 2 \\
        --work_dir bench_output --output bench_output/runners_medium.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import jsr_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before machine_info imports TF)
from benchmarks.bench_pipeline import simulate_if_missing
from benchmarks.machine import machine_info
from jsr_tf import filenames as FN

VARIANTS = {
    "in_memory": [],
    "multi_process_2": ["--direct_running_mode=multi_processing", "--direct_num_workers=2"],
}


def run_child(args) -> dict:
    """Runs ``args``; returns wall seconds and CPU seconds of the child and its waited-for
    descendants."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="medium")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--work_dir", default="bench_output")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--output", default=None, help="JSON results file.")
    args = parser.parse_args()
    bin_dir = os.path.dirname(sys.executable)
    raw = os.path.join(args.work_dir, args.preset, "raw")
    events = simulate_if_missing(bin_dir, raw, args.preset, args.seed)
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps({"preset": args.preset, "events": events, "load_at_start": load_at_start}),
          flush=True)
    runs, manifests = [], {}
    for round_ in range(args.rounds):
        for variant, flags in VARIANTS.items():
            out = os.path.join(args.work_dir, args.preset, f"runners_{variant}")
            row = {"round": round_, "variant": variant,
                   "load_1min_before": round(os.getloadavg()[0], 2),
                   **run_child([os.path.join(bin_dir, "jsr-preprocess"), "--input_dir", raw,
                                "--output_dir", out, *flags])}
            with open(os.path.join(out, FN.MANIFEST_FILE)) as f:
                manifests.setdefault(variant, []).append(json.load(f)["files"])
            runs.append(row)
            print(json.dumps(row), flush=True)
    mean = {v: {k: round(sum(r[k] for r in runs if r["variant"] == v) / args.rounds, 1)
                for k in ("wall_s", "cpu_s")} for v in VARIANTS}
    summary = {"mean": mean,
               "wall_ratio": round(mean["multi_process_2"]["wall_s"]
                                   / mean["in_memory"]["wall_s"], 2),
               "cpu_ratio": round(mean["multi_process_2"]["cpu_s"]
                                  / mean["in_memory"]["cpu_s"], 2),
               "same_manifest_checksums": all(m == manifests["in_memory"][0]
                                              for ms in manifests.values() for m in ms)}
    print(json.dumps(summary), flush=True)
    machine = machine_info()
    print(json.dumps(machine))
    if args.output:
        with open(args.output, "w") as f:
            json.dump({"preset": args.preset, "events": events, "rounds": args.rounds,
                       "load_at_start": load_at_start, "runs": runs, "summary": summary,
                       "machine": machine}, f, indent=2)


if __name__ == "__main__":
    main()
