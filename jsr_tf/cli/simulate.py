"""``jsr-simulate``: writes a simulated KuaiSAR-format dataset and its oracle ground truth.

Usage::

    jsr-simulate --preset small --seed 1 --output_dir demo_output/raw [--dirty]
    jsr-simulate --preset medium --nocommunity_sync --output_dir control/raw   # control world

Writes the five KuaiSAR CSVs to ``--output_dir`` and the ground truth to ``<output_dir>/oracle/``
(see ``jsr_tf.simulator.groundtruth``). The same preset, seed and ``--dirty`` give
byte-identical files.
"""

from __future__ import annotations

from typing import Sequence

from absl import app, flags, logging

from jsr_tf import simulator
from jsr_tf.cli import errors

FLAGS = flags.FLAGS
flags.DEFINE_enum("preset", "small", list(simulator.PRESETS),
                  "World size: tiny (tests), small (demo), medium, kuaisar_small (~10 M rows).")
flags.DEFINE_integer("seed", 1, "Random seed; same seed and preset give identical files.")
flags.DEFINE_string("output_dir", None, "Directory for the five CSVs and oracle/.")
flags.DEFINE_bool("dirty", False, "Inject malformed, duplicate and non-UTF-8 lines (counted in "
                  "oracle/dirty_faults.json).")
flags.DEFINE_bool("community_sync", True, "Community members enter their community's demand "
                  "episodes together (the structure similar-user neighbours can use). "
                  "--nocommunity_sync writes the control world of spec/similar_users.md §6: each "
                  "member's episodes drawn independently, same topic and timing marginals.")
flags.mark_flag_as_required("output_dir")


def main(argv: Sequence[str]) -> None:
    """Simulates, writes and prints a summary."""
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    config = simulator.get_preset(FLAGS.preset)
    if not FLAGS.community_sync:
        config = config.replace(community_sync=False)
    logging.info("simulating preset %s (seed %d) into %s", config.name, FLAGS.seed,
                 FLAGS.output_dir)
    summary = simulator.generate(config, FLAGS.seed, FLAGS.output_dir, dirty=FLAGS.dirty,
                                 progress=config.num_users >= 5000)
    print(summary.format())


def run() -> None:
    """Console-script entry point."""
    app.run(errors.guard(main, "jsr-simulate"))


if __name__ == "__main__":
    run()
