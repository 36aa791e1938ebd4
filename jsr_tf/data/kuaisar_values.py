"""Value parsers for KuaiSAR CSV fields: ids, numbers, list strings and times.

Pure Python, no TensorFlow, no Beam: these run once per field on ~20 M rows, so each parser has a
cheap fast path for the form the files are written in and a strict slow path for everything else.
Every parser raises ``ValueError`` on bad input and never evaluates the text
(``spec/kuaisar_format.md`` §3.2: no ``eval``/``literal_eval``).

Grammar accepted (after stripping surrounding ASCII whitespace):

- integers (ids, counts, categories): ASCII digits, optionally with a zero fraction (``42`` or
  ``42.0``, the form pandas writes for an int column that went through float). No sign, no
  exponent, no ``_``; at most ``INT64_MAX``.
- floats (durations, timestamps): ``[+-]digits[.digits][e[+-]digits]``; ``nan``/``inf`` and values
  that overflow to infinity are rejected.
- list strings: ``[`` non-negative integers separated by ``,`` ``]`` with any ASCII whitespace
  around the tokens; ``[]`` is the empty list.
- time strings: ``YYYY-MM-DD HH:MM:SS`` in Beijing time (UTC+8); for cross-checks only.
"""

from __future__ import annotations

import datetime
import functools
import math
import re
from typing import NamedTuple, Tuple

INT64_MAX = 2**63 - 1
"""Largest id any KuaiSAR column may hold (ids are int64, spec §3.1)."""

BEIJING = datetime.timezone(datetime.timedelta(hours=8))
"""The fixed UTC+8 offset of every KuaiSAR time string (China has no daylight saving time)."""

_BEIJING_OFFSET_S = 8 * 3600
_DAY_S = 86400
_EPOCH_DATE = datetime.date(1970, 1, 1)

_INT_RE = re.compile(r"([0-9]+)(?:\.0+)?", re.ASCII)
_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
_LIST_RE = re.compile(r"\[\s*(?:[0-9]+(?:\s*,\s*[0-9]+)*)?\s*\]", re.ASCII)
_TIME_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[ T]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.[0-9]*)?", re.ASCII)
_ASCII_SPACE = " \t\n\r\f\v"


class Period(NamedTuple):
    """A half-open range ``[start_ms, end_ms)`` of valid unix-millisecond timestamps."""

    start_ms: int
    end_ms: int


def _beijing_ms(year: int, month: int, day: int) -> int:
    """Returns the unix ms of midnight Beijing time on the given date."""
    moment = datetime.datetime(year, month, day, tzinfo=BEIJING)
    return int(moment.timestamp()) * 1000


KUAISAR_PERIOD = Period(_beijing_ms(2023, 5, 21), _beijing_ms(2023, 6, 11))
"""2023-05-21 00:00 → 2023-06-11 00:00 Beijing time: both releases (spec §1) plus about a day of
slack on each side."""


OPEN_PERIOD = Period(1, int(datetime.datetime(2100, 1, 1, tzinfo=datetime.timezone.utc).timestamp())
                     * 1000)
"""Every positive unix-ms timestamp before 2100-01-01 UTC: the importer's default, so a log keeps its
own span whatever its dates (the span is recorded in ``stats.json``). 0 stays invalid: it marks an
empty history slot in the example contract; 2100 and later are corrupt values."""


class TimestampOutOfPeriodError(ValueError):
    """A well-formed, non-negative timestamp that lies outside the accepted ``Period``.

    Attributes:
        ts_ms: the rounded timestamp.
        period: the period it missed.
    """

    def __init__(self, ts_ms: int, period: Period):
        super().__init__(f"timestamp {ts_ms} ms is outside [{period.start_ms}, {period.end_ms})")
        self.ts_ms = ts_ms
        self.period = period


def parse_id(text: str) -> int:
    """Parses a non-negative int64 (an id, a count or a category).

    Args:
        text: the field, e.g. ``"103656000000"``; ``"42.0"`` and surrounding whitespace are
            accepted.

    Returns:
        The integer, ``0 <= value <= INT64_MAX``.

    Raises:
        ValueError: anything else (sign, exponent, non-zero fraction, non-ASCII digits, overflow).
    """
    if text.isdigit() and text.isascii() and len(text) < 19:  # < 10**18 <= INT64_MAX.
        return int(text)
    match = _INT_RE.fullmatch(text.strip(_ASCII_SPACE))
    if match is None:
        raise ValueError(f"not a non-negative integer: {text!r}")
    digits = match.group(1).lstrip("0") or "0"
    if len(digits) > 19:  # Also keeps int() far from its 4300-digit limit.
        raise ValueError(f"integer above int64 range: {text[:80]!r}")
    value = int(digits)
    if value > INT64_MAX:
        raise ValueError(f"integer above int64 range: {text!r}")
    return value


def parse_float(text: str) -> float:
    """Parses a finite decimal float (``1.5``, ``-2``, ``1.68e12``).

    Args:
        text: the field; surrounding whitespace is accepted.

    Returns:
        The finite float value.

    Raises:
        ValueError: unparseable text, ``_`` digit separators, non-ASCII digits, NaN or infinity
            (including decimal values that overflow to infinity, such as ``1e999``).
    """
    if text.isascii() and "_" not in text:  # What float() accepts beyond the documented grammar.
        try:
            value = float(text)
        except ValueError:
            pass
        else:
            if -math.inf < value < math.inf:  # False for NaN too.
                return value
            if _FLOAT_RE.fullmatch(text.strip(_ASCII_SPACE)):
                raise ValueError(f"number overflows to infinity: {text!r}")
    raise ValueError(f"not a finite decimal number: {text[:80]!r}")


def parse_non_negative_float(text: str) -> float:
    """Like ``parse_float`` but also rejects negative values; ``-0.0`` becomes ``0.0``.

    Args:
        text: the field.

    Returns:
        A finite float ``>= 0``.

    Raises:
        ValueError: as ``parse_float``, or the value is negative.
    """
    if text.isascii() and "_" not in text:
        try:
            value = float(text)
        except ValueError:
            pass
        else:
            if 0.0 <= value < math.inf:
                return value + 0.0
    raise ValueError(f"not a finite decimal number >= 0: {text[:80]!r}")


def parse_int_list(text: str) -> Tuple[int, ...]:
    """Parses a list string such as ``"[20, 34, 3]"`` with a strict tokenizer (never ``eval``).

    Args:
        text: the field. Any ASCII whitespace may surround the brackets, commas and numbers.

    Returns:
        The integers in order; ``()`` for ``"[]"``.

    Raises:
        ValueError: missing brackets, empty or doubled commas, a trailing comma, signs, non-integer
            tokens, or a value above ``INT64_MAX``.
    """
    text = text.strip(_ASCII_SPACE)
    if _LIST_RE.fullmatch(text) is None:
        raise ValueError(f"not a list of non-negative integers: {text[:80]!r}")
    inner = text[1:-1]
    if not inner.strip(_ASCII_SPACE):
        return ()
    values = tuple(map(int, inner.split(",")))  # The regex admits only digits and ASCII spaces.
    if max(values) > INT64_MAX:
        raise ValueError(f"list value above int64 range: {text[:80]!r}")
    return values


def parse_timestamp_ms(text: str, period: Period) -> int:
    """Parses a unix-ms timestamp written as a float (``1684742000000.0``, ``1.684742e12``).

    Args:
        text: the field.
        period: the accepted range ``[start_ms, end_ms)``.

    Returns:
        The timestamp rounded to int ms (half to even, like ``numpy.rint``).

    Raises:
        TimestampOutOfPeriodError: a valid number outside ``period`` (a ``ValueError`` subclass,
            so catch it first).
        ValueError: unparseable text, NaN, infinity or a negative value.
    """
    value = parse_float(text)
    if value < 0.0:
        raise ValueError(f"negative timestamp: {text[:80]!r}")
    ts = round(value)
    if not period.start_ms <= ts < period.end_ms:
        raise TimestampOutOfPeriodError(ts, period)
    return ts


@functools.lru_cache(maxsize=4096)
def _date_string(days_since_epoch: int) -> str:
    return (_EPOCH_DATE + datetime.timedelta(days=days_since_epoch)).isoformat() + " "


_CLOCK_MINUTES = tuple(f"{minute // 60:02d}:{minute % 60:02d}:" for minute in range(1440))
_CLOCK_SECONDS = tuple(f"{second:02d}" for second in range(60))


def beijing_time_string(ts_ms: int) -> str:
    """Formats a unix-ms timestamp as Beijing local time, floored to the second.

    Args:
        ts_ms: unix milliseconds (any int whose date falls in years 1..9999).

    Returns:
        ``'YYYY-MM-DD HH:MM:SS'`` in UTC+8, e.g. ``'2023-05-22 14:30:00'``.

    Raises:
        OverflowError: the date falls outside years 1..9999.
    """
    days, seconds = divmod(ts_ms // 1000 + _BEIJING_OFFSET_S, _DAY_S)
    minutes, seconds = divmod(seconds, 60)
    return _date_string(days) + _CLOCK_MINUTES[minutes] + _CLOCK_SECONDS[seconds]


def parse_beijing_time_s(text: str) -> int:
    """Parses a Beijing-time string into unix seconds (any fraction of a second is dropped).

    Args:
        text: ``'YYYY-MM-DD HH:MM:SS'``; a ``T`` separator and a ``.fff`` fraction are accepted.

    Returns:
        Unix seconds of that Beijing local time.

    Raises:
        ValueError: the text does not have that form or names an impossible date or time.
    """
    match = _TIME_RE.fullmatch(text.strip(_ASCII_SPACE))
    if match is None:
        raise ValueError(f"not a 'YYYY-MM-DD HH:MM:SS' time: {text[:80]!r}")
    year, month, day, hour, minute, second = map(int, match.groups())
    moment = datetime.datetime(year, month, day, hour, minute, second, tzinfo=BEIJING)
    return math.floor(moment.timestamp())
