"""Console-entry plumbing shared by the ``pipelines`` jobs.

``console_main`` is the ``main()`` of ``jsr-preprocess``, ``jsr-neighbours``,
``jsr-neighbour-features``, ``jsr-neighbour-serving-table`` and ``jsr-dense-neighbours``: log at
INFO, run, turn an ``InputError`` (or a failed count reconciliation) into exit code 2 with one
logged line and no traceback (a ``JobFailed`` also prints the job's summary table), print the
summary table. ``pipeline_options`` gives the Beam jobs the in-memory ``FnApiRunner`` unless
``--runner`` is passed; ``bounded_int``, ``fraction`` and ``time_ms`` are ``argparse`` types.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import re
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


class JobFailed(kuaisar.InputError):
    """The job ran but its output is refused (e.g. too many rejected rows, a task without
    examples); ``stats`` is its summary, printed before the one-line error."""

    def __init__(self, message: str, stats: Dict) -> None:
        super().__init__(message)
        self.stats = stats


def fraction(name: str) -> Callable[[str], float]:
    """An ``argparse`` type: a float in ``[0, 1]``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not 0.0 <= value <= 1.0:
            raise argparse.ArgumentTypeError(
                f"`{name}` should be a number in [0, 1]. Received: `{name}={text}`")
        return value

    return parse


_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def parse_time_ms(text: str) -> int:
    """Unix ms from ``text``: an integer (epoch milliseconds) or an ISO 8601 date or date-time
    (``1997-09-01``, ``2023-05-22T14:30:00+08:00``; without an offset, UTC).

    Raises:
        ValueError: anything else.
    """
    text = text.strip()
    if re.fullmatch(r"-?[0-9]+", text):
        return int(text)
    moment = datetime.datetime.fromisoformat(text)  # ValueError if not ISO 8601
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return (moment - _EPOCH) // datetime.timedelta(milliseconds=1)


def time_ms(name: str) -> Callable[[str], int]:
    """An ``argparse`` type: ``parse_time_ms`` with the house error message."""

    def parse(text: str) -> int:
        try:
            return parse_time_ms(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"`{name}` should be an ISO date (e.g. 1997-09-01 or 2023-05-22T14:30:00+08:00, "
                f"UTC without an offset) or unix milliseconds. Received: `{name}={text}`") from None

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

    Exits with status 2 (the error logged as one line) on ``InputError`` (``JobFailed`` prints
    its stats table first) and on a failed count reconciliation. A run that executed nothing (a
    Dataflow dry run or template, ``jsr_tf.pipelines.launch``) prints its graph summary instead.
    """
    from jsr_tf.pipelines import launch  # pylint: disable=g-import-not-at-top
    from jsr_tf.pipelines.stats import ReconciliationError  # pylint: disable=g-import-not-at-top

    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, force=force_logging)
    try:
        stats = run(sys.argv[1:] if argv is None else argv)
    except (kuaisar.InputError, ReconciliationError) as err:
        if getattr(err, "stats", None):
            print(format_table(err.stats))
        logging.error("%s", err)
        sys.exit(2)
    print(launch.format_summary(stats) if launch.GRAPH_ONLY in stats else format_table(stats))
