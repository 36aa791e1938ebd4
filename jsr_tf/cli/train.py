"""``jsr-train``: trains one model on a preprocessed data dir into a run directory.

Usage::

    jsr-train --data_dir demo_output/data --model_dir runs/unisar_s1 [--model unisar] \\
        [--config my.json] [--epochs 20] [--strategy default|mirrored|multi_worker|tpu] \\
        [--override train.batch_size=256 --override model.dropout=0.2] [--jit_compile] \
        [--precision mixed_bfloat16] [--profile 5,7]

Config order: the preset named by ``--model`` → ``--config`` (JSON in ``ExperimentConfig.to_dict``
layout; only the fields it holds replace the preset's) → ``--epochs`` → each ``--override`` →
``--jit_compile`` → ``--precision``. Rerunning the same command after a crash resumes from ``<model_dir>/backup``.
Nothing is written before the inputs check out; a model dir holding a finished run, or an
unfinished one with another config, is refused unless ``--overwrite``. Errors print one line
(``jsr_tf.cli.errors``); ``--verbosity=1`` shows TensorFlow's logs and tracebacks.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Optional, Sequence

from absl import app, flags, logging

from jsr_tf import config as config_lib
from jsr_tf.cli import errors
from jsr_tf.training import strategy as strategy_lib
from jsr_tf.training import trainer

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "Pipeline output directory (jsr-preprocess --output_dir).")
flags.DEFINE_string("model_dir", None, "Run directory: config, checkpoints, logs, metrics.json.")
flags.DEFINE_string("model", "unisar", "Preset to start from (see jsr_tf.config presets).")
flags.DEFINE_string("config", None, "JSON file in ExperimentConfig layout; overrides the preset.")
flags.DEFINE_integer("epochs", None, "Maximum epochs (overrides train.epochs).")
flags.DEFINE_enum("strategy", "default", list(strategy_lib.STRATEGIES), "tf.distribute strategy.")
flags.DEFINE_multi_string("override", [], "`section.field=value`, e.g. train.batch_size=256.")
flags.DEFINE_list("profile", None, "FIRST,LAST: trace these training steps (e.g. 5,7) with the "
                  "TensorFlow profiler into <model_dir>/profile (TensorBoard's Profile tab).")
flags.register_validator(
    "profile", lambda v: v is None or (len(v) == 2 and all(x.strip().isdigit() for x in v)
                                       and 1 <= int(v[0]) <= int(v[1])),
    message="--profile should be FIRST,LAST with 1 <= FIRST <= LAST, e.g. --profile=5,7")
flags.DEFINE_enum("precision", None, list(config_lib.PRECISIONS),
                  "train.precision: float32 (the reference) or mixed_bfloat16 (bfloat16 "
                  "transformer blocks and InfoNCE matmuls; only where the hardware has bf16).")
flags.DEFINE_bool("jit_compile", None, "Compile the train step with XLA (train.jit_compile).")
flags.DEFINE_integer("verbose", 1, "fit verbosity: 0 silent, 1 progress bar, 2 a line per epoch.")
flags.DEFINE_integer("backup_steps", None, "Back up every N steps besides every epoch end "
                     "(default min(500, steps per epoch); 0 = epoch ends only).")
flags.DEFINE_bool("overwrite", False, "Replace the run in --model_dir (a finished one, or one "
                  "with another config) instead of refusing.")
flags.mark_flags_as_required(["data_dir", "model_dir"])


def _merge(base: Dict[str, Any], update: Dict[str, Any]) -> Dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(
            out.get(key), dict) else value
    return out


def resolve_config(model: str, config_file: Optional[str] = None,
                   epochs: Optional[int] = None, overrides: Sequence[str] = (),
                   jit_compile: Optional[bool] = None,
                   precision: Optional[str] = None) -> config_lib.ExperimentConfig:
    """Applies the override order of the module docstring and validates the result."""
    config = config_lib.preset(model)
    if config_file:
        with open(config_file, encoding="utf-8") as f:
            values = json.load(f)
        config = config_lib.ExperimentConfig.from_dict(
            _merge(config.to_dict(), {"preset": config.preset, **values}))
    assignments = list(overrides)
    if epochs is not None:
        assignments.insert(0, f"train.epochs={epochs}")
    if jit_compile is not None:
        assignments.append(f"train.jit_compile={json.dumps(jit_compile)}")
    if precision is not None:
        assignments.append(f"train.precision={precision}")
    return config.override(assignments) if assignments else config.validate()


def main(argv: Sequence[str]) -> None:
    """Resolves the config, trains and prints the best epoch and the test NDCG@5."""
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    config = resolve_config(FLAGS.model, FLAGS.config, FLAGS.epochs, FLAGS.override,
                            FLAGS.jit_compile, FLAGS.precision)
    logging.info("config:\n%s", config.to_json())
    record = trainer.train(config, FLAGS.data_dir, FLAGS.model_dir,
                           strategy_name=FLAGS.strategy, verbose=FLAGS.verbose,
                           backup_steps=FLAGS.backup_steps, overwrite=FLAGS.overwrite,
                           profile_steps=FLAGS.profile)
    test = {task: metrics.get("NDCG@5")
            for task, metrics in (record.get("test") or {}).get("metrics", {}).items()}
    print(f"best epoch {record.get('best_epoch')} of {record.get('epochs_run')}; "
          f"test NDCG@5 {test}; results in {FLAGS.model_dir}/metrics.json")


def run() -> None:
    """Console-script entry point."""
    app.run(errors.guard(main, "jsr-train", lambda: [FLAGS.data_dir]))


if __name__ == "__main__":
    run()
