"""Where one UniSAR training step spends its time, from a TensorFlow profiler trace.

Same synthetic reference-scale setup as ``bench_train.py`` (batch 1024 feed + 88 search rows,
KuaiSAR-scale vocabularies, the trainer's optimizer). Two warm-up steps, then one traced step;
the kernels' run times in the trace are summed into parts of the model by their op names. Run
with one inter-op thread so that the kernels do not overlap and their times add up to the step:

    .venv/bin/python benchmarks/profile_train_step.py --logdir bench_output/profile

The trace stays in ``--logdir`` (TensorBoard's Profile tab shows it in full).
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import re
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import jsr_tf  # noqa: E402,F401
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks.bench_train import synthetic_batch, synthetic_vocab  # noqa: E402
from benchmarks.machine import machine_info  # noqa: E402
from jsr_tf import features as F  # noqa: E402
from jsr_tf.config import preset  # noqa: E402
from jsr_tf.keys import Inputs  # noqa: E402
from jsr_tf.models.unisar import UniSAR  # noqa: E402
from jsr_tf.training.trainer import make_optimizer  # noqa: E402

# (part, regular expression over "op_name:OpType"), first match wins.
PARTS = (
    ("query-item InfoNCE", r"query_item_infonce|tanh_logsumexp"),
    ("transition alignment", r"_alignment"),
    ("transformer blocks", r"(encoder|decoder)_\d"),
    ("word means (captions, queries)", r"query_encoder"),
    ("item encoder (ids, categories, projection)", r"item_encoder"),
    ("embedding gradients to dense, coupled L2", r"coupled_l2|UnsortedSegmentSum|^concat_\d+|AddN"),
    ("Adam", r"Adam"),
    ("target attention, CGC, heads", r"target_attention|cgc|_head"),
)


def part_times(logdir: str, ops: collections.Counter = None) -> dict:
    """Seconds per part of the kernels in the trace under ``logdir``.

    Args:
        logdir: The profiler's log directory.
        ops: If given, also receives the seconds of each kernel by its ``op_name:OpType``
            (with step-specific digits dropped, so the repeated ops of one layer add up).
    """
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    path = sorted(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True))[-1]
    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    totals = collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if ":" not in name or "::" in name:  # executor, thread-pool events: not kernels
                    continue
                part = next((p for p, pattern in PARTS if re.search(pattern, name)), "other")
                totals[part] += event.duration_ps / 1e12
                if ops is not None:
                    ops[re.sub(r"_\d+", "", name)] += event.duration_ps / 1e12
    return dict(totals)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logdir", default="bench_output/profile")
    parser.add_argument("--output", default=None)
    parser.add_argument("--top", type=int, default=0,
                        help="Also print the N ops with the most kernel time.")
    args = parser.parse_args()
    tf.config.threading.set_inter_op_parallelism_threads(1)
    rng = np.random.default_rng(0)
    vocab = synthetic_vocab(rng)
    feed = synthetic_batch(rng, 1024, 5, F.Task.FEED)
    search = synthetic_batch(rng, 88, 5, F.Task.SEARCH)
    config = preset("unisar")
    model = UniSAR(config.model, vocab, l2=config.train.l2)
    inputs = {Inputs.FEED.value: model.prepare(feed), Inputs.SEARCH.value: model.prepare(search)}
    model.compile(optimizer=make_optimizer(config, model))
    model.loss_prepared(inputs)  # creates the variables
    step = model.make_train_function()
    iterator = iter(tf.data.Dataset.from_tensors(inputs).repeat())
    for _ in range(2):
        float(step(iterator)["loss"])
    tf.profiler.experimental.start(args.logdir)
    start = time.perf_counter()
    float(step(iterator)["loss"])
    seconds = time.perf_counter() - start
    tf.profiler.experimental.stop()
    ops = collections.Counter()
    parts = part_times(args.logdir, ops)
    total = sum(parts.values())
    report = {"traced_step_s": round(seconds, 3), "kernel_time_s": round(total, 3),
              "parts_s": {k: round(v, 3) for k, v in sorted(parts.items(),
                                                              key=lambda kv: -kv[1])},
              "machine": machine_info()}
    for name, value in report["parts_s"].items():
        print(f"{value:7.3f} s  {100 * value / total:5.1f} %  {name}")
    if args.top:
        report["top_ops_s"] = {k: round(v, 4) for k, v in ops.most_common(args.top)}
        for name, value in report["top_ops_s"].items():
            print(f"{value:7.3f} s  {100 * value / total:5.1f} %  {name}")
    print(json.dumps({k: report[k] for k in ("traced_step_s", "kernel_time_s")}))
    if args.output:
        with open(args.output, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
