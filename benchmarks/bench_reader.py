"""tf.data input throughput over the pipeline's train TFRecords.

Compares, in the same run, the full reader (batch → parse_example → pad) against a baseline that
only reads and batches the raw records, and against the per-batch negative resampling option.

    .venv/bin/python benchmarks/bench_reader.py --data_dir bench_output/medium/data
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jsr_tf  # noqa: F401
import tensorflow as tf

from jsr_tf import features as F
from jsr_tf.data import reader


def _rate(ds: tf.data.Dataset, batches: int, batch_size: int, warmup: int = 5) -> float:
    it = iter(ds)
    for _ in range(warmup):
        next(it)
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--batch_size", type=int, default=1024)
    parser.add_argument("--batches", type=int, default=100)
    args = parser.parse_args()
    files = tf.io.gfile.glob(os.path.join(args.data_dir, F.file_pattern("train", F.Task.FEED)))
    raw = (tf.data.TFRecordDataset(files, compression_type="GZIP").repeat()
           .batch(args.batch_size).prefetch(tf.data.AUTOTUNE))
    common = dict(batch_size=args.batch_size, repeat=True, drop_remainder=True)
    full = reader.make_dataset(args.data_dir, "train", F.Task.FEED, **common)
    resampled = reader.make_dataset(args.data_dir, "train", F.Task.FEED, resample_negatives=True,
                                    **common)
    rates = {
        "read_only_examples_per_s": _rate(raw, args.batches, args.batch_size),
        "reader_examples_per_s": _rate(full, args.batches, args.batch_size),
        "reader_resample_examples_per_s": _rate(resampled, args.batches, args.batch_size),
    }
    rates = {k: round(v) for k, v in rates.items()}
    rates["reader_vs_read_only"] = round(rates["reader_examples_per_s"]
                                         / rates["read_only_examples_per_s"], 3)
    rates["batch_size"] = args.batch_size
    rates["cpus"] = os.cpu_count()
    print(json.dumps(rates))


if __name__ == "__main__":
    main()
