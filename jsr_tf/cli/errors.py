"""One clear line instead of a traceback: the error guard shared by the command-line tools.

``app.run(errors.guard(main, "jsr-train", lambda: [FLAGS.data_dir]))`` runs ``main`` and turns an
expected failure (a ``ValueError``, the library's way to report bad input, a missing or existing
file, or a corrupt TFRecord shard) into ``<program>: error: <one line>`` on stderr and exit status 1. Other
exceptions (bugs) keep their traceback, and ``--verbosity=1`` shows the traceback of every error.
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Any, Callable, Iterable, Optional, Sequence

from absl import logging

from jsr_tf import filenames as FN
from jsr_tf.cli import quiet

EXIT_CODE = 1


def _is_data_loss(error: BaseException) -> bool:
    tf = sys.modules.get("tensorflow")
    return tf is not None and isinstance(error, tf.errors.DataLossError)


def expected(error: BaseException) -> bool:
    """Whether ``error`` is a user-facing failure (printed in one line, no traceback)."""
    return isinstance(error, (ValueError, FileNotFoundError, FileExistsError,
                              NotADirectoryError)) or _is_data_loss(error)


def corrupt_shards(data_dirs: Iterable[Optional[str]]) -> list:
    """The ``*.tfrecord.gz`` shards of ``data_dirs`` that cannot be read to the end (slow: reads
    every shard; used only after a ``DataLossError``, to name the file)."""
    import tensorflow as tf

    bad = []
    for data_dir in data_dirs:
        if not data_dir:
            continue
        for path in sorted(tf.io.gfile.glob(os.path.join(data_dir, "*" + FN.TFRECORD_SUFFIX))):
            try:
                tf.data.TFRecordDataset(path, compression_type="GZIP").reduce(
                    0, lambda count, _: count + 1).numpy()
            except tf.errors.DataLossError:
                bad.append(path)
    return bad


def describe(error: BaseException, data_dirs: Iterable[Optional[str]] = ()) -> str:
    """One line for ``error``; a ``DataLossError`` names the corrupt shards."""
    if _is_data_loss(error):
        bad = corrupt_shards(data_dirs)
        where = (f"corrupt or truncated TFRecord file(s): {', '.join(bad)}" if bad
                 else "a corrupt or truncated TFRecord file")
        return f"{where} ({_one_line(error)}). Rerun jsr-preprocess to rewrite the data."
    text = _one_line(error)
    if isinstance(error, KeyError) or not text:
        text = f"{type(error).__name__}: {text}"
    return text


def _one_line(error: BaseException) -> str:
    text = getattr(error, "message", None) or str(error)
    return " ".join(text.split())


def guard(main: Callable[[Sequence[str]], Any], program: str,
          data_dirs: Callable[[], Sequence[Optional[str]]] = lambda: ()) -> Callable:
    """``main`` wrapped for ``app.run``: quiet TensorFlow, expected errors in one line.

    Args:
        main: The tool's ``main(argv)``.
        program: The tool's name in the message, e.g. ``"jsr-train"``.
        data_dirs: Returns the data directories the tool reads (flags are parsed by then), where
            a corrupt shard is looked for after a ``DataLossError``.
    """

    @functools.wraps(main)
    def wrapper(argv: Sequence[str]) -> Any:
        verbosity = logging.get_verbosity()
        quiet.configure_python(verbosity)
        try:
            return main(argv)
        except Exception as error:  # noqa: BLE001 - re-raised unless expected
            if verbosity >= 1 or not expected(error):
                raise
            print(f"{program}: error: {describe(error, data_dirs())}", file=sys.stderr,
                  flush=True)
            sys.exit(EXIT_CODE)

    return wrapper
