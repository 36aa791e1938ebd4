"""Command-line tools (console scripts in ``setup.py``).

Importing this package quiets TensorFlow before any tool imports it (``jsr_tf.cli.quiet``);
``--verbosity=1`` shows TensorFlow's log lines again.
"""

import sys

from jsr_tf.cli import quiet as _quiet

_quiet.configure_environment(sys.argv)
