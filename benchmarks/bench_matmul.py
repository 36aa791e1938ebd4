"""float32 matmul rates on this CPU for the shapes of a UniSAR training step (the floor of
BENCHMARKS §3): a square GEMM, the query–item InfoNCE's logits and the attention's batched
matmuls. Each is a ``tf.matmul`` in a ``tf.function``, timed after one warm-up call.

    .venv/bin/python benchmarks/bench_matmul.py --output bench_output/matmul.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import jsr_tf  # noqa: E402,F401
import tensorflow as tf  # noqa: E402

from benchmarks.machine import machine_info  # noqa: E402

# name -> (left shape, right shape)
SHAPES = {
    "square 2048 x 2048 x 2048": ([2048, 2048], [2048, 2048]),
    "InfoNCE logits 41,000 x 64 x 1,024": ([41_000, 64], [64, 1024]),
    "attention scores 2,048 x (60 x 32 x 60)": ([2048, 60, 32], [2048, 32, 60]),
}


def gflops(left: list, right: list, repeats: int) -> float:
    a, b = tf.random.normal(left), tf.random.normal(right)
    run = tf.function(lambda: tf.matmul(a, b))
    run().numpy()
    start = time.perf_counter()
    for _ in range(repeats):
        run().numpy()
    seconds = (time.perf_counter() - start) / repeats
    flops = 2 * left[-2] * left[-1] * right[-1] * (left[0] if len(left) == 3 else 1)
    return flops / seconds / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    rates = {name: round(gflops(*shapes, args.repeats), 1) for name, shapes in SHAPES.items()}
    report = {"gflop_per_s": rates, "machine": machine_info()}
    print(json.dumps(report, indent=1))
    if args.output:
        with open(args.output, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
