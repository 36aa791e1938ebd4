"""``jsr-export``: a trained run → ``<export_base>/<model_name>/<version>/`` for TF Serving.

Usage::

    jsr-export --model_dir runs/unisar --export_base serving/ [--model_name jsr] [--version N] \\
        [--retrieval_dir runs/two_tower] [--data_dir data/] [--top_k 100] [--overwrite] \
        [--nocache_item_vectors] [--jit_compile] [--max_rows 1024] [--max_candidates 10000] \
        [--max_scores 262144]

``--retrieval_dir`` (a ``jsr-train --model two_tower`` run on the same data) adds the
``retrieve`` signature. ``--data_dir`` defaults to the data dir recorded in the run's
``metrics.json``. See ``export/serving.py`` for the signatures and request limits and README
"Serve with TF Serving". The ranker's weights are checked against its config and the data dir's
vocabulary (``jsr_tf.models.factory.load_trained``); errors print one line.
"""

from __future__ import annotations

from typing import Sequence

from absl import app, flags

from jsr_tf.cli import errors  # first: quiets TensorFlow before it loads

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "jsr-train run directory of the ranker.")
flags.DEFINE_string("export_base", None, "TF Serving base path (model_base_path's parent).")
flags.DEFINE_string("model_name", "jsr", "TF Serving model name.")
flags.DEFINE_integer("version", None, "Version number (default: the next free one).")
flags.DEFINE_string("retrieval_dir", None, "jsr-train --model two_tower run: adds `retrieve`.")
flags.DEFINE_string("data_dir", None, "Pipeline output the run used (default: from metrics.json).")
flags.DEFINE_integer("top_k", 100, "Results per `retrieve` row.")
flags.DEFINE_bool("overwrite", False, "Replace an existing version directory.")
flags.DEFINE_bool("cache_item_vectors", True, "Ship every item's encoder output as a table "
                  "(faster requests, larger SavedModel).")
flags.DEFINE_bool("jit_compile", False, "XLA-compile the ranker inside the signatures (about 2x "
                  "faster on CPU; TF Serving needs --xla_cpu_compilation_enabled=true).")
flags.DEFINE_integer("max_rows", 1024, "Largest request: rows B.", lower_bound=1)
flags.DEFINE_integer("max_candidates", 10_000, "Largest request: candidates N per row.",
                     lower_bound=1)
flags.DEFINE_integer("max_scores", 262_144, "Largest request: B x N scores (about 7 KB of "
                     "memory each for UniSAR).", lower_bound=1)
flags.mark_flags_as_required(["model_dir", "export_base"])


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    from jsr_tf.export import exporter  # deferred: TensorFlow loads after flag parsing
    from jsr_tf.export import serving

    limits = serving.RequestLimits(FLAGS.max_rows, FLAGS.max_candidates, FLAGS.max_scores)
    path = exporter.export_run(FLAGS.model_dir, FLAGS.export_base, FLAGS.model_name,
                               FLAGS.version, FLAGS.data_dir, FLAGS.retrieval_dir, FLAGS.top_k,
                               FLAGS.overwrite, FLAGS.cache_item_vectors, FLAGS.jit_compile,
                               limits)
    print(f"exported {path}")


def run() -> None:
    """Console-script entry point."""
    app.run(errors.guard(main, "jsr-export", lambda: [FLAGS.data_dir]))


if __name__ == "__main__":
    run()
