"""Quiet by default: the command-line tools hide TensorFlow's own log lines and warnings.

TensorFlow's C++ runtime reads ``TF_CPP_MIN_LOG_LEVEL`` once, before its first log line (some are
printed while ``import tensorflow`` runs), so ``configure_environment`` must run before TensorFlow
is imported: ``jsr_tf/cli/__init__.py`` calls it, and every ``jsr_tf.cli`` module is imported
through that package. It reads absl's ``--verbosity`` / ``-v`` flag straight from ``sys.argv``
(the flags are parsed later, by ``app.run``):

- verbosity below 1 (the default 0): ``TF_CPP_MIN_LOG_LEVEL=3`` unless the environment already
  sets it, and, once the command runs (``configure_python``), the ``tensorflow`` Python logger at
  ERROR and the warnings that TensorFlow, tf_keras and TFRS emit ignored. The tools' own progress
  and results (``print`` and absl ``logging.info``) stay visible.
- ``--verbosity=1`` or more: ``TF_CPP_MIN_LOG_LEVEL=0`` and TensorFlow's Python warnings shown;
  the CLI error guard (``jsr_tf.cli.errors``) then also shows tracebacks.
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Optional, Sequence

ENV = "TF_CPP_MIN_LOG_LEVEL"
QUIET_LEVEL = "3"  # C++ FATAL only: hides e.g. "failed call to cuInit" (ERROR) on CPU machines
VERBOSE_LEVEL = "0"
_NOISY_MODULES = r"(tensorflow|tf_keras|keras|tensorflow_recommenders|google\.protobuf)(\.|$)"


def requested_verbosity(argv: Sequence[str]) -> int:
    """absl's ``--verbosity`` / ``-v`` value in ``argv`` (the last one wins), else 0."""
    value: Optional[str] = None
    for i, arg in enumerate(argv):
        for name in ("--verbosity", "-v"):
            if arg == name and i + 1 < len(argv):
                value = argv[i + 1]
            elif arg.startswith(name + "="):
                value = arg.split("=", 1)[1]
    try:
        return int(value) if value is not None else 0
    except ValueError:
        return 0  # absl reports the bad value when it parses the flags


def configure_environment(argv: Sequence[str]) -> None:
    """Sets ``TF_CPP_MIN_LOG_LEVEL`` from ``argv``'s verbosity; call before TensorFlow loads."""
    if requested_verbosity(argv) >= 1:
        os.environ[ENV] = VERBOSE_LEVEL
    else:
        os.environ.setdefault(ENV, QUIET_LEVEL)


def configure_python(verbosity: int) -> None:
    """Hides TensorFlow's Python-side warnings (its logger, ``warnings``) below verbosity 1."""
    if verbosity >= 1:
        return
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=_NOISY_MODULES)
