"""``jsr-evaluate``: a trained run on the shared candidate files, with floors and the oracle.

Usage::

    jsr-evaluate --data_dir data/ --model_dir runs/unisar-1 [--split test] [--raw_dir raw/] \\
        [--batch_size 512] [--protocol sampled,sampled_fair,full,impressions] \\
        [--full_max_rows N]

Restores ``<model_dir>`` (``config.json`` + ``best/weights``, refused in one line when the weights
do not fit the config or ``--data_dir`` has another vocabulary than the run's: see
``jsr_tf.models.factory.load_trained``), scores both tasks of the split
under each candidate protocol (``jsr_tf.evaluation.protocols``; default: every one the data
supports), scores the training-free floors (popularity, random, the two count scorers) and the
query-blind search floor on the same candidates, says in one line when a training-free floor
beats the model and, when the data came from the
simulator (``--raw_dir``, else ``input_dir`` in ``<data_dir>/stats.json``, holding ``oracle/``),
the oracle ceiling. Merges the results record into ``<model_dir>/metrics.json`` under the split's
key and prints the table.

The flags live in this module's own ``FlagValues``, so importing several CLIs into one process
(tests) cannot collide; ``run()`` exposes them on ``absl.flags.FLAGS`` for ``app.run``.
"""

from __future__ import annotations

from typing import Sequence

import jsr_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TF loads)
from absl import app, flags

from jsr_tf import filenames as FN
from jsr_tf.cli import errors

FLAGS = flags.FlagValues()
flags.DEFINE_string("data_dir", None, "Pipeline output directory (jsr-preprocess).",
                    flag_values=FLAGS)
flags.DEFINE_string("model_dir", None, "Trained run directory (config.json + best/weights).",
                    flag_values=FLAGS)
flags.DEFINE_enum("split", "test", ["valid", "test"], "Split to evaluate.", flag_values=FLAGS)
flags.DEFINE_string("raw_dir", None,
                    "Raw KuaiSAR directory, for the simulator oracle; default: `input_dir` of "
                    "<data_dir>/stats.json. Real KuaiSAR has no oracle (tables say n/a).",
                    flag_values=FLAGS)
flags.DEFINE_integer("batch_size", 512, "Rows per evaluation batch.", lower_bound=1,
                     flag_values=FLAGS)
flags.DEFINE_list("protocol", None,
                  "Candidate protocols: sampled, sampled_fair, full, impressions (README, "
                  "'Evaluation protocols'); default: every protocol the data supports.",
                  flag_values=FLAGS)
flags.DEFINE_integer("full_max_rows", 2000,
                     "`full` protocol: score about this many rows per task, a fixed hash-chosen "
                     "subset of users, the same for every model (0 = every row).", lower_bound=0,
                     flag_values=FLAGS)
flags.DEFINE_integer("full_batch_size", 32, "`full` protocol: rows per scoring call.",
                     lower_bound=1, flag_values=FLAGS)
flags.DEFINE_integer("full_chunk", 4096, "`full` protocol: catalogue items per scoring call.",
                     lower_bound=1, flag_values=FLAGS)
flags.mark_flags_as_required(["data_dir", "model_dir"], flag_values=FLAGS)


def main(argv: Sequence[str]) -> None:
    """Evaluates and prints the table.

    Args:
        argv: Under ``app.run``, the arguments left after flag parsing (program name only). Called
            in-process (tests), the full command line, e.g. ``["jsr-evaluate", "--data_dir", …]``.
    """
    if len(argv) > 1:
        FLAGS.unparse_flags()
        argv = FLAGS(list(argv))
    elif not FLAGS.is_parsed():
        FLAGS.mark_as_parsed()  # parsed through absl.flags.FLAGS by run()
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {list(argv[1:])}")

    from jsr_tf.evaluation import evaluator, protocols, report

    try:
        protocol_list = protocols.resolve_protocols(FLAGS.protocol, FLAGS.data_dir)
    except ValueError as error:
        raise app.UsageError(f"--protocol: {error}") from None
    full = evaluator.FullOptions(max_rows=FLAGS.full_max_rows or None,
                                 batch_size=FLAGS.full_batch_size,
                                 chunk=FLAGS.full_chunk)
    record = evaluator.evaluate_run(FLAGS.model_dir, FLAGS.data_dir, FLAGS.split,
                                    raw_dir=FLAGS.raw_dir, batch_size=FLAGS.batch_size,
                                    protocol_list=protocol_list, full=full,
                                    log=lambda line: print(line, flush=True))
    print(report.split_table(record, FLAGS.split))
    print(f"\nwrote {FLAGS.model_dir}/{FN.METRICS_FILE}")


def run() -> None:
    """Console entry point (``jsr-evaluate``)."""
    flags.FLAGS.append_flag_values(FLAGS)
    app.run(errors.guard(main, "jsr-evaluate", lambda: [FLAGS.data_dir]))


if __name__ == "__main__":
    run()
