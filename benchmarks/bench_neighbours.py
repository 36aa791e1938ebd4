"""Neighbour retrieval cost: time and peak memory of ``jsr-neighbours`` per simulator preset.

Simulates each preset if its CSVs are missing, then runs the neighbour job as a child process
(default settings: LSH 128 × 1, 5 + 5 neighbours, daily snapshots, train and test tables) and
samples the RSS of its process tree at 5 Hz. Reports users, events, wall time, peak RSS, the
neighbour table's size, and how time and memory grow between the first and the last preset.

    .venv/bin/python benchmarks/bench_neighbours.py --presets medium,kuaisar_small \\
        --work_dir bench_output --output bench_output/neighbours.json

Extra arguments after ``--`` go to ``jsr-neighbours`` (e.g. ``--visibility train`` or Beam
runner options such as ``--direct_num_workers 8 --direct_running_mode multi_processing``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from benchmarks.bench_pipeline import _rows, _run_child, simulate_if_missing, write_results


def _table_rows(out_dir: str) -> int:
    names = [n for n in os.listdir(out_dir) if n.startswith("neighbours-") and n.endswith(".jsonl")]
    return sum(_rows(os.path.join(out_dir, n)) + 1 for n in names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default="medium,kuaisar_small")
    parser.add_argument("--work_dir", default="bench_output")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--output", default=None, help="JSON results file.")
    args, extra = parser.parse_known_args()
    extra = [a for a in extra if a != "--"]
    bin_dir = os.path.dirname(sys.executable)
    results = []
    for preset in args.presets.split(","):
        raw = os.path.join(args.work_dir, preset, "raw")
        out = os.path.join(args.work_dir, preset, "neighbours")
        events = simulate_if_missing(bin_dir, raw, preset, args.seed)
        users = _rows(os.path.join(raw, "user_features.csv"))
        seconds, peak_mib = _run_child([os.path.join(bin_dir, "jsr-neighbours"), "--input_dir", raw,
                                        "--output_dir", out, *extra])
        with open(os.path.join(out, "neighbour_stats.json")) as f:
            stats = json.load(f)
        totals = {f"{vis}/{side}": table["totals"]
                  for vis, sides in stats["tables"].items() for side, table in sides.items()}
        row = {"preset": preset, "users": users, "events": events,
               "snapshots": len(stats["snapshots"]), "seconds": round(seconds, 1),
               "peak_rss_mib": round(peak_mib), "table_rows": _table_rows(out),
               "pairs_emitted": sum(t["pairs_emitted"] for t in totals.values()),
               "candidate_pairs": sum(t.get("candidate_pairs", 0) for t in totals.values()),
               "buckets_skipped": sum(t.get("buckets_skipped", 0) for t in totals.values()),
               "reconciled": stats["reconciled"], "extra_args": extra}
        results.append(row)
        print(json.dumps(row), flush=True)
    if len(results) > 1:
        a, b = results[0], results[-1]
        growth = {"from": a["preset"], "to": b["preset"],
                  "user_ratio": round(b["users"] / a["users"], 2),
                  "event_ratio": round(b["events"] / a["events"], 2),
                  "candidate_pair_ratio": round(b["candidate_pairs"] / max(a["candidate_pairs"], 1), 2),
                  "time_ratio": round(b["seconds"] / a["seconds"], 2),
                  "memory_ratio": round(b["peak_rss_mib"] / a["peak_rss_mib"], 2)}
        print(json.dumps(growth))
        results.append(growth)
    write_results(results, args.output)


if __name__ == "__main__":
    main()
