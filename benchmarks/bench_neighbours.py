"""Neighbour retrieval cost, recall and payload cost per simulator preset.

Simulates each preset if its CSVs are missing, then runs the neighbour job as a child process
(default settings: the window join, 128 × 1 bands, 5 + 5 neighbours, daily snapshots, train and
test tables) and records, per run: wall time, the child's CPU time (user + sys, its children
included), the peak RSS of its process tree (sampled at 5 Hz) and the load average at start
(the machine may be shared: judge growth on CPU time when wall time is distorted). Reports users,
events, the neighbour table's size, the candidate and window pairs, and how time and memory grow
between the first and the last preset.

    .venv/bin/python benchmarks/bench_neighbours.py --presets small,medium,kuaisar_small \\
        --recall_preset small --payload_preset medium --work_dir bench_output \\
        --output bench_output/neighbours.json

``--recall_preset P`` also builds P's table in ``exact`` mode and the issue-6 bucket join
(``--candidate_join bucket``) and reports, per side of the ``train`` table, the share of the
exact top-k that each LSH table finds. ``--payload_preset P`` runs ``jsr-neighbour-features`` on
P's default table (``jsr-preprocess`` first if ``<work_dir>/P/data`` is missing).
Extra arguments after ``--`` go to every ``jsr-neighbours`` run (e.g. ``--visibility train``).
"""

from __future__ import annotations

import argparse
import datetime
import glob
import hashlib
import json
import math
import os
import re
import sys
from typing import Dict, List, Optional, Sequence

import jsr_tf  # noqa: F401  (sets the Keras mode before machine_info imports TensorFlow)
from benchmarks import bench_pipeline
from benchmarks.bench_pipeline import _rows, simulate_if_missing
from benchmarks.machine import machine_info
from jsr_tf import filenames as FN
from jsr_tf.neighbours import NeighbourRow


_LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) INFO (\S+?):")


def stage_peaks(log_path: str, trace_path: str) -> List[Dict]:
    """Peak RSS between one logged step and the next, from a run's log and RSS trace.

    Args:
        log_path: The job's log (``2026-12-07 11:49:50,371 INFO neighbours/histories: ...``).
        trace_path: ``bench_pipeline.run_measured``'s trace (``<unix time> <RSS MiB>``).

    Returns:
        ``[{"after": label, "seconds", "peak_rss_mib"}]`` in log order: ``label`` is the logger
        prefix of the last line logged (e.g. ``neighbours/histories``, ``neighbours/lsh``;
        ``start`` before the first), consecutive lines of one label merged, spans without a
        sample left out. What runs after a line is the next stage of the graph, so read a row
        as "while the job was past this step".
    """
    marks = [(0.0, "start")]
    with open(log_path) as f:
        for line in f:
            found = _LOG_LINE.match(line)
            if found and found[3] != marks[-1][1]:
                when = datetime.datetime.strptime(found[1], "%Y-%m-%d %H:%M:%S").timestamp()
                marks.append((when + int(found[2]) / 1000, found[3]))
    with open(trace_path) as f:
        samples = [tuple(float(v) for v in line.split()) for line in f if line.strip()]
    stages = []
    for i, (begin, label) in enumerate(marks):
        end = marks[i + 1][0] if i + 1 < len(marks) else math.inf
        inside = [(t, rss) for t, rss in samples if begin <= t < end]
        if inside:
            stages.append({"after": label, "seconds": round(inside[-1][0] - inside[0][0], 1),
                           "peak_rss_mib": round(max(rss for _, rss in inside))})
    return stages


def run_measured(args: Sequence[str], log_path: str,
                 max_rss_mib: Optional[float] = None) -> Dict:
    """``bench_pipeline.run_measured``, rounded: wall s, CPU s, peak RSS MiB, load at start,
    whether it was killed at ``max_rss_mib``, and the peak RSS per logged step
    (``stage_peaks``; the trace is kept next to the log, ``<log>.rss``)."""
    trace_path = log_path + ".rss"
    loads = [round(load, 2) for load in os.getloadavg()]
    m = bench_pipeline.run_measured(list(args), log_path, max_rss_mib, trace_path)
    return {"wall_s": round(m["seconds"], 1), "cpu_s": round(m["cpu_s"], 1),
            "peak_rss_mib": round(m["peak_rss_mib"]), "load_at_start": round(m["load_at_start"], 2),
            "load_1_5_15_at_start": loads, "killed": m["killed"],
            "rss_by_stage": stage_peaks(log_path, trace_path)}


def table_digests(out_dir: str) -> Dict[str, str]:
    """sha256 of each table shard (to compare tables across commits byte for byte)."""
    digests = {}
    for path in sorted(glob.glob(os.path.join(out_dir, "neighbours-*" + FN.JSONL_SUFFIX))):
        with open(path, "rb") as f:
            digests[os.path.basename(path)] = hashlib.file_digest(f, "sha256").hexdigest()
    return digests


def read_table(out_dir: str) -> List[NeighbourRow]:
    rows = []
    for path in sorted(glob.glob(os.path.join(out_dir, "neighbours-*" + FN.JSONL_SUFFIX))):
        with open(path) as f:
            rows += [NeighbourRow.from_json(line) for line in f]
    return rows


def table_recall(truth_dir: str, found_dir: str, visibility: str = "train") -> Dict[str, float]:
    """Per side: neighbours of the exact table's lists that the other table lists too, over all
    (snapshot, user) rows of ``visibility``, divided by the exact table's neighbours."""
    found = {(r.snapshot, r.side, r.user): set(r.neighbours) for r in read_table(found_dir)
             if r.visibility == visibility}
    hits: Dict[str, int] = {}
    total: Dict[str, int] = {}
    for row in read_table(truth_dir):
        if row.visibility != visibility:
            continue
        got = found.get((row.snapshot, row.side, row.user), set())
        hits[row.side] = hits.get(row.side, 0) + len(got & set(row.neighbours))
        total[row.side] = total.get(row.side, 0) + len(row.neighbours)
    return {side: round(hits[side] / total[side], 4) for side in sorted(total)}


def neighbours_run(bin_dir: str, raw: str, out: str, flags: Sequence[str],
                   max_rss_mib: Optional[float] = None) -> Dict:
    """One ``jsr-neighbours`` run, measured, with the totals of its stats (if killed at
    ``max_rss_mib``: how many (visibility, side, snapshot) populations its log reports done)."""
    log_path = out.rstrip("/") + ".log"
    row = run_measured([os.path.join(bin_dir, "jsr-neighbours"), "--input_dir", raw,
                        "--output_dir", out, *flags], log_path, max_rss_mib)
    if row["killed"]:
        with open(log_path) as f:
            row["populations_done"] = sum("neighbours/lsh:" in line for line in f)
        return row
    with open(os.path.join(out, FN.NEIGHBOUR_STATS_FILE)) as f:
        stats = json.load(f)
    totals = [table["totals"] for sides in stats["tables"].values() for table in sides.values()]
    row.update({"snapshots": len(stats["snapshots"]), "table_rows": len(read_table(out)),
                "users_indexed": sum(t["users_indexed"] for t in totals),
                "pairs_emitted": sum(t["pairs_emitted"] for t in totals),
                "window_pairs": sum(t.get("window_pairs", 0) for t in totals),
                "candidate_pairs": sum(t.get("candidate_pairs", 0) for t in totals),
                "buckets_skipped": sum(t.get("buckets_skipped", 0) for t in totals),
                "reconciled": stats["reconciled"], "flags": list(flags),
                "table_sha256": table_digests(out)})
    row["candidate_pairs_per_user_row"] = round(row["candidate_pairs"]
                                                / max(row["users_indexed"], 1), 1)
    return row


def recall_runs(bin_dir: str, raw: str, work: str, extra: Sequence[str],
                max_rss_mib: Optional[float] = None) -> Dict:
    """The exact table, the bucket join's, and the recall of both LSH tables against exact
    (no recall if a run was killed at ``max_rss_mib``)."""
    default = os.path.join(work, "neighbours")
    exact = os.path.join(work, "neighbours_exact")
    bucket = os.path.join(work, "neighbours_bucket")
    runs = {"exact": neighbours_run(bin_dir, raw, exact, ["--mode", "exact", *extra],
                                    max_rss_mib),
            "bucket": neighbours_run(bin_dir, raw, bucket,
                                     ["--candidate_join", "bucket", *extra], max_rss_mib)}
    if any(run["killed"] for run in runs.values()):
        return {"runs": runs}
    recall = {"window (default)": table_recall(exact, default),
              "bucket (issue 6)": table_recall(exact, bucket)}
    return {"runs": runs, "recall_train_table": recall}


def payload_run(bin_dir: str, raw: str, work: str, extra: Sequence[str],
                max_rss_mib: Optional[float] = None) -> Dict:
    """``jsr-neighbour-features`` on the preset's default table (preprocess first if needed),
    killed past ``max_rss_mib`` like the retrieval runs."""
    data = os.path.join(work, "data")
    if not os.path.exists(os.path.join(data, FN.MANIFEST_FILE)):
        run_measured([os.path.join(bin_dir, "jsr-preprocess"), "--input_dir", raw,
                      "--output_dir", data], data + ".log")
    out = os.path.join(work, "data_nbr")
    row = run_measured([os.path.join(bin_dir, "jsr-neighbour-features"), "--input_dir", raw,
                        "--examples_dir", data, "--neighbours_dir",
                        os.path.join(work, "neighbours"), "--output_dir", out, *extra],
                       out + ".log", max_rss_mib)
    if row["killed"]:
        return row
    with open(os.path.join(out, FN.NEIGHBOUR_FEATURE_STATS_FILE)) as f:
        stats = json.load(f)
    row.update({"examples": stats["examples"]["read"],
                "examples_with_slots": stats["examples"]["with_slots"],
                "passes": stats.get("passes"), "reconciled": stats["reconciled"]})
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default="small,medium,kuaisar_small")
    parser.add_argument("--recall_preset", default="", help="Preset of the recall table.")
    parser.add_argument("--payload_preset", default="", help="Preset of the payload run.")
    parser.add_argument("--payload_args", default="",
                        help="Space-separated extra arguments of jsr-neighbour-features.")
    parser.add_argument("--max_rss_mib", type=float, default=None,
                        help="Kill a run (retrieval, recall or payload) whose RSS exceeds this "
                             "(a shared machine).")
    parser.add_argument("--work_dir", default="bench_output")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--output", default=None, help="JSON results file.")
    args, extra = parser.parse_known_args()
    extra = [a for a in extra if a != "--"]
    bin_dir = os.path.dirname(sys.executable)
    results: Dict = {"machine": machine_info(), "retrieval": []}

    def write() -> None:
        if args.output:
            with open(args.output, "w") as f:
                json.dump(results, f, indent=2)

    for preset in [p for p in args.presets.split(",") if p]:
        raw = os.path.join(args.work_dir, preset, "raw")
        events = simulate_if_missing(bin_dir, raw, preset, args.seed)
        row = {"preset": preset, "users": _rows(os.path.join(raw, FN.USER_FEATURES)),
               "events": events}
        row.update(neighbours_run(bin_dir, raw, os.path.join(args.work_dir, preset, "neighbours"),
                                  extra, args.max_rss_mib))
        results["retrieval"].append(row)
        print(json.dumps(row), flush=True)
        write()
    rows = [r for r in results["retrieval"] if not r["killed"]]
    if len(rows) > 1:
        for b in rows[1:]:
            a = rows[0]
            growth = {"from": a["preset"], "to": b["preset"],
                      "user_ratio": round(b["users"] / a["users"], 2),
                      "event_ratio": round(b["events"] / a["events"], 2),
                      "wall_ratio": round(b["wall_s"] / a["wall_s"], 2),
                      "cpu_ratio": round(b["cpu_s"] / a["cpu_s"], 2),
                      "memory_ratio": round(b["peak_rss_mib"] / a["peak_rss_mib"], 2),
                      "candidate_pair_ratio": round(
                          b["candidate_pairs"] / max(a["candidate_pairs"], 1), 2)}
            results.setdefault("growth", []).append(growth)
            print(json.dumps(growth), flush=True)
    if args.recall_preset:
        work = os.path.join(args.work_dir, args.recall_preset)
        results["recall"] = dict(preset=args.recall_preset,
                                 **recall_runs(bin_dir, os.path.join(work, "raw"), work, extra,
                                             args.max_rss_mib))
        print(json.dumps(results["recall"]), flush=True)
        write()
    if args.payload_preset:
        work = os.path.join(args.work_dir, args.payload_preset)
        results["payload"] = dict(preset=args.payload_preset,
                                  **payload_run(bin_dir, os.path.join(work, "raw"), work,
                                                args.payload_args.split(), args.max_rss_mib))
        print(json.dumps(results["payload"]), flush=True)
    print(json.dumps(results["machine"]))
    write()


if __name__ == "__main__":
    main()
