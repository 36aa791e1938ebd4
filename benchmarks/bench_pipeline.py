"""Pipeline throughput and peak memory: simulate a preset, then time jsr-preprocess on it.

Each preprocess run is a child process whose RSS (with its children) is sampled for the peak.
Reports events/s (rows of rec_inter + src_inter per second) and how time grows between presets.

    .venv/bin/python benchmarks/bench_pipeline.py --presets small,medium --work_dir bench_output
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from typing import Dict, Optional

import psutil

from benchmarks.machine import cpu
from jsr_tf import filenames as FN


def _rows(path: str) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f) - 1


def _run_child(args) -> tuple:
    """Runs a command; returns (seconds, peak RSS in MiB of its process tree, sampled at 5 Hz)."""
    measured = run_measured(args)
    return measured["seconds"], measured["peak_rss_mib"]


def run_measured(args, log_path: Optional[str] = None, max_rss_mib: Optional[float] = None,
                 trace_path: Optional[str] = None) -> Dict[str, float]:
    """Runs a command (output to ``log_path``, else discarded).

    Args:
        args: The command.
        log_path: Where its stdout and stderr go.
        max_rss_mib: If its process tree's RSS exceeds this, the tree is killed and the result
            has ``killed: True`` (the figures then cover the run until the kill).
        trace_path: If set, one line ``<unix time> <RSS MiB>`` per second of the run goes there
            (the tree's RSS, to be set against the timestamps of the command's log).

    Returns:
        ``seconds`` (wall), ``cpu_s`` (user + sys of the child and the children it waited for),
        ``peak_rss_mib`` (its process tree, sampled at 5 Hz), ``load_at_start`` (1-minute
        load average when it started) and ``killed``.
    """
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with open(log_path or os.devnull, "w") as log, open(trace_path or os.devnull, "w") as trace:
        child = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        proc = psutil.Process(child.pid)
        peak = 0
        killed = False
        samples = 0
        while child.poll() is None:
            try:
                rss = proc.memory_info().rss + sum(c.memory_info().rss
                                                   for c in proc.children(recursive=True))
                peak = max(peak, rss)
                samples += 1
                if samples % 5 == 1:
                    trace.write(f"{time.time():.1f} {rss / 2**20:.0f}\n")
                    trace.flush()
                if max_rss_mib and rss > max_rss_mib * 2**20 and not killed:
                    killed = True
                    for process in proc.children(recursive=True) + [proc]:
                        process.kill()
            except psutil.Error:
                pass
            time.sleep(0.2)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if child.returncode and not killed:
        raise subprocess.CalledProcessError(child.returncode, args)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"seconds": seconds, "cpu_s": cpu, "peak_rss_mib": peak / 2**20,
            "load_at_start": load, "killed": killed}


def simulate_if_missing(bin_dir: str, raw: str, preset: str, seed: int) -> int:
    """Runs ``jsr-simulate`` into ``raw`` unless its CSVs are there; returns the event count
    (rows of rec_inter + src_inter)."""
    if not os.path.exists(os.path.join(raw, FN.REC_INTER)):
        subprocess.run([os.path.join(bin_dir, "jsr-simulate"), "--preset", preset, "--seed",
                        str(seed), "--output_dir", raw], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return _rows(os.path.join(raw, FN.REC_INTER)) + _rows(os.path.join(raw, FN.SRC_INTER))


def write_results(results: list, output) -> None:
    """Prints the machine description; writes ``{"results", "machine"}`` to ``output`` if set."""
    machine = {"machine": platform.platform(), **cpu(), "cpus": os.cpu_count(),
               "python": platform.python_version()}
    print(json.dumps(machine))
    if output:
        with open(output, "w") as f:
            json.dump({"results": results, "machine": machine}, f, indent=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default="small,medium")
    parser.add_argument("--work_dir", default="bench_output")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--output", default=None, help="JSON results file.")
    args = parser.parse_args()
    bin_dir = os.path.dirname(sys.executable)
    results = []
    for preset in args.presets.split(","):
        raw = os.path.join(args.work_dir, preset, "raw")
        out = os.path.join(args.work_dir, preset, "data")
        events = simulate_if_missing(bin_dir, raw, preset, args.seed)
        seconds, peak_mib = _run_child([os.path.join(bin_dir, "jsr-preprocess"), "--input_dir", raw,
                                        "--output_dir", out])
        with open(os.path.join(out, FN.STATS_FILE)) as f:
            stats = json.load(f)
        examples = sum(n for split in stats["examples"].values() for n in split.values())
        row = {"preset": preset, "events": events, "examples": examples,
               "seconds": round(seconds, 1), "events_per_s": round(events / seconds),
               "peak_rss_mib": round(peak_mib)}
        results.append(row)
        print(json.dumps(row), flush=True)
    if len(results) > 1:
        a, b = results[0], results[-1]
        growth = {"event_ratio": round(b["events"] / a["events"], 2),
                  "time_ratio": round(b["seconds"] / a["seconds"], 2)}
        print(json.dumps(growth))
        results.append(growth)
    write_results(results, args.output)


if __name__ == "__main__":
    main()
