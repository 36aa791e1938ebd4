"""``jsr-compare``: trains and evaluates models × seeds on one data dir and tabulates the results.

Usage::

    jsr-compare --data_dir data/ --output_dir compare/ [--models unisar,sasrec,popularity] \\
        [--seeds 3] [--epochs N] [--override train.steps_per_epoch=100 ...] \\
        [--protocol sampled,sampled_fair,full,impressions] [--full_max_rows N]

Writes ``results.md``, ``results.csv`` and ``results.png`` in ``--output_dir`` (see
``jsr_tf.experiments.compare``). Rerunning the same command skips finished runs.
"""

from __future__ import annotations

from typing import Sequence

from absl import app, flags

from jsr_tf import filenames as FN
from jsr_tf.cli import errors

FLAGS = flags.FLAGS
DEFAULT_MODELS = ("unisar,sasrec,search_baseline,mixed_sequence,sesrec,uditsr,popularity,"
                  "random")
flags.DEFINE_string("data_dir", None, "Pipeline output directory (jsr-preprocess --output_dir).")
flags.DEFINE_string("output_dir", None, "Grid directory: runs/, results.md/.csv/.png.")
flags.DEFINE_list("models", DEFAULT_MODELS.split(","),
                  "Presets (jsr_tf.config) and/or the scorers popularity, random.")
flags.DEFINE_integer("seeds", 3, "Seeds per model: 1..N (train.seed).")
flags.DEFINE_integer("first_seed", 1, "First seed of the range.")
flags.DEFINE_integer("epochs", None, "Maximum epochs of every trained model (train.epochs).")
flags.DEFINE_multi_string("override", [], "`section.field=value` for every trained model.")
flags.DEFINE_list("protocol", None,
                  "Candidate protocols of the test evaluation: sampled, sampled_fair, full, "
                  "impressions; default: every protocol the data supports.")
flags.DEFINE_integer("full_max_rows", 2000,
                     "`full` protocol: score about this many test rows per task, a fixed "
                     "hash-chosen subset of users, the same for every model (0 = every row).",
                     lower_bound=0)
flags.mark_flags_as_required(["data_dir", "output_dir"])


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    if FLAGS.seeds <= 0:
        raise app.UsageError(f"--seeds should be positive. Received: {FLAGS.seeds}")
    import os

    # deferred: TensorFlow loads after flag parsing
    from jsr_tf.evaluation import evaluator, protocols
    from jsr_tf.experiments import compare

    try:
        protocol_list = protocols.resolve_protocols(FLAGS.protocol, FLAGS.data_dir)
    except ValueError as error:
        raise app.UsageError(f"--protocol: {error}") from None
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    seeds = list(range(FLAGS.first_seed, FLAGS.first_seed + FLAGS.seeds))
    records = compare.run_grid(FLAGS.data_dir, FLAGS.output_dir, FLAGS.models, seeds,
                               epochs=FLAGS.epochs, overrides=FLAGS.override,
                               log=lambda line: print(line, flush=True),
                               protocol_list=protocol_list,
                               full=evaluator.FullOptions(max_rows=FLAGS.full_max_rows or None))
    rows = compare.summarise(records)
    print(compare.write_table(rows, FLAGS.output_dir))
    for line in compare.warnings(rows):
        print(line)
    path = compare.plot(rows, FLAGS.output_dir)
    print(f"table: {os.path.join(FLAGS.output_dir, FN.RESULTS_MD)} (and .csv); plot: {path}")


def run() -> None:
    """Console-script entry point."""
    app.run(errors.guard(main, "jsr-compare", lambda: [FLAGS.data_dir]))


if __name__ == "__main__":
    run()
