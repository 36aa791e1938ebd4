"""Console-entry plumbing shared by the ``pipelines`` jobs.

``console_main`` is the ``main()`` of ``jsr-preprocess``, ``jsr-neighbours``,
``jsr-neighbour-features``, ``jsr-neighbour-serving-table`` and ``jsr-dense-neighbours``: log at
INFO, run, turn an ``InputError`` into exit code 2 (the message logged), print the summary table.
``pipeline_options`` gives the Beam jobs the in-memory ``FnApiRunner`` unless ``--runner`` is
passed; ``bounded_int`` is an ``argparse`` type for integer flags with a lower bound.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, Dict, Optional, Sequence

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from jsr_tf.data import kuaisar

DEFAULT_RUNNER = "FnApiRunner"
LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"


def pipeline_options(beam_args: Sequence[str], save_main_session: bool = False
                     ) -> PipelineOptions:
    """Beam options from the arguments the job's parser left; ``DEFAULT_RUNNER`` if none given."""
    options = PipelineOptions(beam_args, save_main_session=save_main_session)
    if not options.view_as(StandardOptions).runner:
        options.view_as(StandardOptions).runner = DEFAULT_RUNNER
    return options


def bounded_int(name: str, minimum: int, requirement: str) -> Callable[[str], int]:
    """An ``argparse`` type: an int ``>= minimum``, else "`name` should be <requirement>."."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"`{name}` should be {requirement}. Received: `{name}={text}`") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(
                f"`{name}` should be {requirement}. Received: `{name}={value}`")
        return value

    return parse


def console_main(run: Callable[[Sequence[str]], Dict], format_table: Callable[[Dict], str],
                 argv: Optional[Sequence[str]] = None, force_logging: bool = True) -> None:
    """Runs ``run(argv)`` (default ``sys.argv[1:]``) and prints ``format_table`` of its stats.

    Args:
        run: The job's ``run``; returns its stats dict.
        format_table: The job's plain-text summary of those stats.
        argv: Command-line arguments; ``None`` reads ``sys.argv``.
        force_logging: Passed to ``logging.basicConfig(force=...)``: importing Beam may already
            have configured the root logger at WARNING.

    Exits with status 2 (the error logged) on ``InputError``.
    """
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, force=force_logging)
    try:
        stats = run(sys.argv[1:] if argv is None else argv)
    except kuaisar.InputError as err:
        logging.error("%s", err)
        sys.exit(2)
    print(format_table(stats))
