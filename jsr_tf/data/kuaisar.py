"""KuaiSAR row parser and validator: one raw CSV line in, one canonical record or rejection out.

Pure Python (no TensorFlow, no Beam) so that Beam DoFns and the TFDS builder share it. Follows
``spec/kuaisar_format.md`` §2–§3. Typical use, one sequential reader per file (row indices matter
for the canonical event order, §3.3)::

    header = read_header(fileobj, "rec_inter.csv")
    parser = RowParser("rec_inter.csv", header)
    for row, line, raw in iter_lines(fileobj):
        result = parser.parse(row, line, raw)   # exactly one of result.record / result.rejection

Columns are read by header name; rows are split with the ``csv`` module (list fields such as
``"[20, 34, 3]"`` are quoted). Each field is stripped of surrounding ASCII whitespace; the value
grammar is in ``kuaisar_values``. Fields are checked in documented column order and the first
failure names the rejection reason. ``parse`` never raises on any input.

Rejection reasons (``Rejection.reason``; stable names, used as dead-letter counters):

==========================  ==================================================================
``non_utf8``                the line is not valid UTF-8 (``Rejection.line`` backslash-escapes it)
``bad_csv``                 broken quoting (``"a"b``, an unclosed quote) or a stray CR inside a line
``wrong_field_count``       field count differs from the header's (includes a blank line)
``bad_id``                  a user/item/session/author id is not a non-negative int64
``bad_number``              ``playing_time``/``duration_ms`` not a finite float >= 0, or
                            ``click_cnt`` not an integer >= 0
``bad_flag``                a 0/1 column of ``rec_inter`` holds anything but 0, 1, 0.0 or 1.0
``bad_timestamp``           a timestamp that is unparseable, NaN, infinite or negative
``timestamp_out_of_period`` a valid timestamp outside the parser's ``Period`` (e.g. far future)
``bad_keyword``             ``keyword`` is not a well-formed list string
``empty_keyword``           ``keyword`` is empty (blank field or ``[]``): a query with no words
``empty_string``            ``search_source`` or ``src_inter.item_type`` is blank
``bad_category``            an item category id is not an integer (a negative one is the "missing"
                            sentinel, see the notes), or a user feature is not an integer >= 0
==========================  ==================================================================

Notes (``ParseResult.notes``; non-fatal, the record is still produced; count them):

=====================================  =========================================================
``caption_missing``                    blank caption field: the item gets an empty caption
``caption_malformed``                  caption is not a list string: the item gets an empty caption
``caption_truncated``                  caption longer than ``max_words``: first words kept
``keyword_truncated``                  keyword longer than ``max_words``: first words kept
``time_string_mismatch``               ``time``/``search_session_time`` names another second than
                                       the numeric timestamp (the numeric value wins)
``time_string_unparseable``            that string is not a ``YYYY-MM-DD HH:MM:SS`` time
``search_item_related_without_search`` ``search_item_related == 1`` while ``search == 0`` (kept)
``category_missing``                   an item category id is negative (e.g. ``-1``): the usual
                                       "missing" sentinel, read as 0 (the format's absent level)
=====================================  =========================================================
"""

from __future__ import annotations

import csv
import dataclasses
import math
import re
import types
from typing import (BinaryIO, Callable, Dict, Iterator, List, Mapping, NamedTuple, Optional,
                    Sequence, Tuple, Union)

from jsr_tf.data.kuaisar_values import (INT64_MAX, KUAISAR_PERIOD, Period,
                                        TimestampOutOfPeriodError, beijing_time_string,
                                        parse_beijing_time_s, parse_float,
                                        parse_id, parse_int_list, parse_non_negative_float,
                                        parse_timestamp_ms)
from jsr_tf.data.records import (FeedEvent, FollowEdge, ItemRecord, Rejection, SearchRow,
                                 UserRecord)
from jsr_tf.filenames import (ITEM_FEATURES, REC_INTER, SOCIAL_NETWORK, SRC_INTER,
                              USER_FEATURES)

__all__ = [
    "FILE_COLUMNS", "REASONS", "NOTES", "InputError", "Period", "KUAISAR_PERIOD",
    "TimestampOutOfPeriodError", "INT64_MAX", "parse_id", "parse_float", "parse_int_list",
    "parse_non_negative_float", "parse_timestamp_ms", "beijing_time_string", "iter_lines",
    "read_header", "HeaderInfo", "check_header", "ParseResult", "RowParser", "Record",
]

_LEVELS = ("first", "second", "third", "fourth")
_CATEGORY_IDS = tuple(f"{level}_level_category_id" for level in _LEVELS)
_CATEGORY_NAMES = tuple(f"{level}_level_category_name{suffix}"
                        for level in _LEVELS for suffix in ("", "_en"))

FILE_COLUMNS: Mapping[str, Tuple[str, ...]] = types.MappingProxyType({
    REC_INTER: ("user_id", "item_id", "playing_time", "duration_ms", "time", "timestamp", "click",
                "forward", "like", "follow", "search", "search_item_related"),
    SRC_INTER: ("user_id", "search_session_id", "search_session_time", "search_session_timestamp",
                "keyword", "search_source", "item_id", "click_cnt", "item_type"),
    ITEM_FEATURES: ("item_id", "caption", "author_id", "item_type", "upload_time", "upload_type")
    + tuple(name for level in _LEVELS for name in (f"{level}_level_category_id",
                                                   f"{level}_level_category_name",
                                                   f"{level}_level_category_name_en")),
    USER_FEATURES: ("user_id", "search_active_level", "rec_active_level", "onehot_feat1",
                    "onehot_feat2"),
    SOCIAL_NETWORK: ("user_id", "user_follow_id"),
})
"""File name -> documented column order (spec §2); the simulator writes exactly this order."""

OPTIONAL_COLUMNS: Mapping[str, Tuple[str, ...]] = types.MappingProxyType({
    REC_INTER: ("time",), SRC_INTER: ("search_session_time",), ITEM_FEATURES: _CATEGORY_NAMES,
    USER_FEATURES: (), SOCIAL_NETWORK: (),
})
"""Documented columns the parser can do without: informational time strings (cross-checked when
present) and category names (never read). Every other documented column is required."""

NON_UTF8 = "non_utf8"
BAD_CSV = "bad_csv"
WRONG_FIELD_COUNT = "wrong_field_count"
BAD_ID = "bad_id"
BAD_NUMBER = "bad_number"
BAD_FLAG = "bad_flag"
BAD_TIMESTAMP = "bad_timestamp"
TIMESTAMP_OUT_OF_PERIOD = "timestamp_out_of_period"
BAD_KEYWORD = "bad_keyword"
EMPTY_KEYWORD = "empty_keyword"
EMPTY_STRING = "empty_string"
BAD_CATEGORY = "bad_category"
REASONS = (NON_UTF8, BAD_CSV, WRONG_FIELD_COUNT, BAD_ID, BAD_NUMBER, BAD_FLAG, BAD_TIMESTAMP,
           TIMESTAMP_OUT_OF_PERIOD, BAD_KEYWORD, EMPTY_KEYWORD, EMPTY_STRING, BAD_CATEGORY)
"""Every ``Rejection.reason`` this module emits (see the module docstring)."""

CAPTION_MISSING = "caption_missing"
CAPTION_MALFORMED = "caption_malformed"
CAPTION_TRUNCATED = "caption_truncated"
KEYWORD_TRUNCATED = "keyword_truncated"
TIME_STRING_MISMATCH = "time_string_mismatch"
TIME_STRING_UNPARSEABLE = "time_string_unparseable"
RELATED_WITHOUT_SEARCH = "search_item_related_without_search"
CATEGORY_MISSING = "category_missing"
NOTES = (CAPTION_MISSING, CAPTION_MALFORMED, CAPTION_TRUNCATED, KEYWORD_TRUNCATED,
         TIME_STRING_MISMATCH, TIME_STRING_UNPARSEABLE, RELATED_WITHOUT_SEARCH, CATEGORY_MISSING)
"""Every ``ParseResult.notes`` entry this module emits (see the module docstring)."""

Record = Union[FeedEvent, SearchRow, ItemRecord, UserRecord, FollowEdge]

_FLAGS = {"0": 0, "1": 1, "0.0": 0, "1.0": 1}
_SPACE = " \t\n\r\f\v"


class InputError(ValueError):
    """Unusable input as a whole: unknown file name, empty file, missing or ambiguous header."""


class ParseResult(NamedTuple):
    """What ``RowParser.parse`` returns: exactly one of ``record`` and ``rejection`` is set.

    Attributes:
        record: the canonical record of the row, or None if it was rejected.
        rejection: why the row goes to dead-letter, or None.
        notes: non-fatal counter names (``NOTES``); always ``()`` for a rejection.
    """

    record: Optional[Record]
    rejection: Optional[Rejection]
    notes: Tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class HeaderInfo:
    """Where each documented column sits in a file's header.

    Attributes:
        file_name: the KuaiSAR file name, e.g. ``'rec_inter.csv'``.
        width: number of header columns = fields every data row must have.
        index: documented column name -> position, for every documented column present.
        extra: unknown columns in header order (tolerated and ignored; log them once).
        missing_optional: documented but optional columns the header lacks.
    """

    file_name: str
    width: int
    index: Mapping[str, int]
    extra: Tuple[str, ...]
    missing_optional: Tuple[str, ...]


def _known_file(file_name: str) -> Tuple[str, ...]:
    if file_name not in FILE_COLUMNS:
        raise InputError(f"Unknown KuaiSAR file name {file_name!r}; expected one of "
                         f"{sorted(FILE_COLUMNS)}.")
    return FILE_COLUMNS[file_name]


def check_header(file_name: str, header: Sequence[str]) -> HeaderInfo:
    """Locates the documented columns in a header by name (any order, extra columns allowed).

    Args:
        file_name: one of the ``FILE_COLUMNS`` keys.
        header: the header's column names (surrounding whitespace is ignored).

    Returns:
        The ``HeaderInfo``.

    Raises:
        InputError: unknown file name, a required column missing, or a documented column repeated.
    """
    documented = _known_file(file_name)
    names = [name.strip(_SPACE) for name in header]
    index: Dict[str, int] = {}
    extra = []
    for position, name in enumerate(names):
        if name not in documented:
            extra.append(name)
        elif name in index:
            raise InputError(f"{file_name}: column {name!r} appears twice in header {names}.")
        else:
            index[name] = position
    optional = OPTIONAL_COLUMNS[file_name]
    missing = [name for name in documented if name not in index and name not in optional]
    if missing:
        raise InputError(f"{file_name}: missing required column(s) {', '.join(map(repr, missing))}"
                         f"; header is {names}.")
    return HeaderInfo(file_name=file_name, width=len(names), index=index,
                      extra=tuple(extra),
                      missing_optional=tuple(name for name in optional if name not in index))


def read_header(fileobj_binary: BinaryIO, file_name: str) -> List[str]:
    """Reads and splits the header line (a UTF-8 byte-order mark is dropped).

    Args:
        fileobj_binary: a file opened in binary mode, positioned at its start.
        file_name: for error messages.

    Returns:
        The column names, as written.

    Raises:
        InputError: the file is empty or its header is not UTF-8.
    """
    raw = fileobj_binary.readline()
    if not isinstance(raw, bytes):
        raise TypeError(f"{file_name}: read_header needs a binary file object.")
    if not raw.strip():
        raise InputError(f"{file_name} is empty: no header line.")
    try:
        text = raw.decode("utf-8-sig").rstrip("\r\n")
    except UnicodeDecodeError as error:
        raise InputError(f"{file_name}: header is not UTF-8 ({error}).") from None
    return next(csv.reader((text,)))


def iter_lines(fileobj_binary: BinaryIO,
               skip_header: Optional[bool] = None) -> Iterator[Tuple[int, Optional[str], bytes]]:
    """Enumerates the data lines of a file: every line after the header, none skipped silently.

    Args:
        fileobj_binary: a file opened in binary mode (anything with ``readline``).
        skip_header: whether to read and drop the first line. ``None`` (default) drops it only if
            the file is at offset 0, so both ``read_header(f); iter_lines(f)`` and a bare
            ``iter_lines(f)`` on a fresh file start at the first data line. A stream without
            ``tell()`` is taken as already past its header.

    Yields:
        ``(row_index, line, raw)``: the 0-based data-line number; the line decoded as strict
        UTF-8 with its ``\\n`` / ``\\r\\n`` ending removed, or None if it is not UTF-8; the raw
        bytes without the ending. Blank lines are yielded too.
    """
    if skip_header is None:
        try:
            skip_header = fileobj_binary.tell() == 0
        except (AttributeError, OSError, ValueError):
            skip_header = False
    if skip_header:
        fileobj_binary.readline()
    # readline() rather than iteration: Beam's CompressedFile has no __iter__.
    for row, raw in enumerate(iter(fileobj_binary.readline, b"")):
        if raw[-1:] == b"\n":
            raw = raw[:-2] if raw[-2:-1] == b"\r" else raw[:-1]
        try:
            line: Optional[str] = raw.decode("utf-8")
        except UnicodeDecodeError:
            line = None
        except AttributeError:
            raise TypeError("iter_lines needs a binary file object.") from None
        yield row, line, raw


class _RowError(Exception):
    """Internal: aborts the parse of one row with a rejection reason."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _split(line: str) -> List[str]:
    """Splits one physical CSV line like ``csv.reader(strict=True)`` does.

    Fast paths: no quote at all (``rec_inter``), or one quoted field without inner quotes (a list
    string of ``src_inter`` or ``item_features``). Everything else goes through ``csv``.

    Raises:
        csv.Error: broken quoting, or a CR/LF inside an unquoted field.
    """
    if "\r" not in line and "\n" not in line:
        if '"' not in line:
            return line.split(",") if line else []
        before, quote, rest = line.partition('"')
        inner, closing, after = rest.partition('"')
        if (closing and (not before or before[-1] == ",") and (not after or after[0] == ",")
                and '"' not in after):
            fields = before[:-1].split(",") if before else []
            fields.append(inner)
            if after:
                fields.extend(after[1:].split(","))
            return fields
    return next(csv.reader((line,), strict=True), [])


def _id(text: str, reason: str = BAD_ID) -> int:
    """``parse_id`` with an inlined fast path; raises ``_RowError(reason)`` on bad input."""
    if text.isdigit() and text.isascii() and len(text) < 19:
        return int(text)
    try:
        return parse_id(text)
    except ValueError:
        raise _RowError(reason) from None


_NEGATIVE_INT_RE = re.compile(r"-[0-9]+(?:\.0+)?", re.ASCII)


def _category(text: str) -> int:
    """An item category id; a negative integer (the "missing" sentinel) gives -1."""
    if text.isdigit() and text.isascii() and len(text) < 19:
        return int(text)
    try:
        return parse_id(text)
    except ValueError:
        if _NEGATIVE_INT_RE.fullmatch(text.strip(_SPACE)):
            return -1
        raise _RowError(BAD_CATEGORY) from None


def _number(text: str) -> float:
    try:
        return parse_non_negative_float(text)
    except ValueError:
        raise _RowError(BAD_NUMBER) from None


def _flag(text: str) -> int:
    value = _FLAGS.get(text)
    if value is None:
        value = _FLAGS.get(text.strip(_SPACE))
        if value is None:
            raise _RowError(BAD_FLAG)
    return value


def _non_empty(text: str) -> str:
    text = text.strip(_SPACE)
    if not text:
        raise _RowError(EMPTY_STRING)
    return text


class RowParser:
    """Parses the data lines of one KuaiSAR file into records or rejections.

    Not thread-safe (one parser per reader); picklable.

    Args:
        file_name: one of the ``FILE_COLUMNS`` keys.
        header: that file's header (as ``read_header`` returns it).
        period: the accepted timestamp range; rows outside are rejected.
        max_words: longest kept keyword and caption; longer lists keep their first words.
        check_time_strings: cross-check the informational time strings against the timestamps.

    Raises:
        InputError: unknown file name or unusable header.
        ValueError: an invalid ``period`` or ``max_words``.
    """

    def __init__(self, file_name: str, header: Sequence[str], period: Period = KUAISAR_PERIOD,
                 max_words: int = 50, check_time_strings: bool = True):
        if isinstance(max_words, bool) or not isinstance(max_words, int) or max_words < 1:
            raise ValueError(f"`max_words` should be a positive integer. "
                             f"Received: `max_words={max_words!r}`")
        if not period[0] < period[1]:
            raise ValueError(f"`period` should satisfy start_ms < end_ms. Received: "
                             f"`period={period!r}`")
        self.file_name = file_name
        self.header = tuple(header)
        self.period = Period(*period)
        self.max_words = max_words
        self.check_time_strings = bool(check_time_strings)
        self.header_info = check_header(file_name, self.header)
        index = self.header_info.index
        # Position of every documented column in documented order; -1 for an absent optional one.
        self._cols = tuple(index.get(name, -1) for name in FILE_COLUMNS[file_name])
        if file_name == ITEM_FEATURES:
            self._cols = self._cols[:6] + tuple(index[name] for name in _CATEGORY_IDS)
        time_column = {REC_INTER: "time", SRC_INTER: "search_session_time"}.get(file_name, "")
        self._time_col = index.get(time_column, -1) if self.check_time_strings else -1
        self._parse_fields: Callable[[int, List[str]], ParseResult] = {
            REC_INTER: self._parse_rec, SRC_INTER: self._parse_src,
            ITEM_FEATURES: self._parse_item, USER_FEATURES: self._parse_user,
            SOCIAL_NETWORK: self._parse_social,
        }[file_name]

    def __reduce__(self):
        return (RowParser, (self.file_name, self.header, self.period, self.max_words,
                            self.check_time_strings))

    def parse(self, row: int, line: Optional[str], raw: bytes = b"") -> ParseResult:
        """Parses one physical line.

        Args:
            row: 0-based data-line number in the file (``iter_lines``' first value).
            line: the decoded line without its line ending, or None if it was not UTF-8.
            raw: the raw bytes, only used to report a non-UTF-8 line.

        Returns:
            A ``ParseResult`` with exactly one of ``record`` / ``rejection`` set.
        """
        if line is None:
            return self._reject(row, NON_UTF8, raw.decode("utf-8", "backslashreplace"))
        try:
            fields = _split(line)
        except csv.Error:
            return self._reject(row, BAD_CSV, line)
        if len(fields) != self.header_info.width:
            return self._reject(row, WRONG_FIELD_COUNT, line)
        try:
            return self._parse_fields(row, fields)
        except _RowError as error:
            return self._reject(row, error.reason, line)

    def _reject(self, row: int, reason: str, line: str) -> ParseResult:
        return ParseResult(None, Rejection(self.file_name, row, reason, line), ())

    def _timestamp(self, text: str) -> int:
        """``parse_timestamp_ms`` with an inlined fast path; raises ``_RowError``."""
        if text.isascii() and "_" not in text:
            try:
                value = float(text)
            except ValueError:
                raise _RowError(BAD_TIMESTAMP) from None
            if 0.0 <= value < math.inf:
                ts = round(value)
                if self.period.start_ms <= ts < self.period.end_ms:
                    return ts
                raise _RowError(TIMESTAMP_OUT_OF_PERIOD)
        raise _RowError(BAD_TIMESTAMP)

    def _time_note(self, text: str, ts: int) -> Tuple[str, ...]:
        """Cross-checks a Beijing time string against ``ts``; returns ``()`` or one note."""
        if text == beijing_time_string(ts):
            return ()
        try:
            seconds = parse_beijing_time_s(text)
        except (ValueError, OverflowError):
            return (TIME_STRING_UNPARSEABLE,)
        return () if seconds == ts // 1000 else (TIME_STRING_MISMATCH,)

    def _words(self, text: str) -> Tuple[int, ...]:
        """The keyword list; raises ``_RowError`` if it is malformed or empty."""
        try:
            words = parse_int_list(text)
        except ValueError:
            raise _RowError(BAD_KEYWORD if text.strip(_SPACE) else EMPTY_KEYWORD) from None
        if not words:
            raise _RowError(EMPTY_KEYWORD)
        return words

    def _parse_rec(self, row: int, f: List[str]) -> ParseResult:
        (user, item, playing, duration, _, ts_col, click, forward, like, follow, search,
         related) = self._cols
        # Checked in column order, so the first bad column names the reason.
        user_id, item_id = _id(f[user]), _id(f[item])
        playing_time, duration_ms = _number(f[playing]), _number(f[duration])
        ts = self._timestamp(f[ts_col])
        clicked, forwarded, liked, followed = (_flag(f[click]), _flag(f[forward]),
                                               _flag(f[like]), _flag(f[follow]))
        searched, search_related = _flag(f[search]), _flag(f[related])
        notes = self._time_note(f[self._time_col], ts) if self._time_col >= 0 else ()
        if search_related and not searched:
            notes += (RELATED_WITHOUT_SEARCH,)
        return ParseResult(FeedEvent(user_id, item_id, ts, row, clicked, liked, followed,
                                     forwarded, searched, search_related, playing_time,
                                     duration_ms), None, notes)

    def _parse_src(self, row: int, f: List[str]) -> ParseResult:
        user, session, _, ts_col, keyword, source, item, clicks, item_type = self._cols
        user_id, session_id = _id(f[user]), _id(f[session])
        ts = self._timestamp(f[ts_col])
        words = self._words(f[keyword])
        record = SearchRow(user_id, session_id, ts, row, words[:self.max_words],
                           _non_empty(f[source]), _id(f[item]), int(_id(f[clicks], BAD_NUMBER) > 0),
                           _non_empty(f[item_type]))
        notes: Tuple[str, ...] = (KEYWORD_TRUNCATED,) if len(words) > self.max_words else ()
        if self._time_col >= 0:
            notes += self._time_note(f[self._time_col], ts)
        return ParseResult(record, None, notes)

    def _parse_item(self, row: int, f: List[str]) -> ParseResult:
        item, caption_col, author, item_type, upload_time, upload_type = self._cols[:6]
        item_id = _id(f[item])
        text = f[caption_col]
        notes: Tuple[str, ...] = ()
        try:
            caption = parse_int_list(text)
        except ValueError:
            caption = ()
            notes = (CAPTION_MALFORMED if text.strip(_SPACE) else CAPTION_MISSING,)
        if len(caption) > self.max_words:
            caption = caption[:self.max_words]
            notes = (CAPTION_TRUNCATED,)
        author_id = _id(f[author])
        categories = tuple(_category(f[col]) for col in self._cols[6:])
        if min(categories, default=0) < 0:  # "missing" sentinels: the absent-level id 0
            categories = tuple(max(c, 0) for c in categories)
            notes += (CATEGORY_MISSING,)
        return ParseResult(ItemRecord(item_id, caption, author_id, f[item_type].strip(_SPACE),
                                      f[upload_time].strip(_SPACE), f[upload_type].strip(_SPACE),
                                      categories), None, notes)

    def _parse_user(self, row: int, f: List[str]) -> ParseResult:
        user, search_level, rec_level, feat1, feat2 = self._cols
        return ParseResult(UserRecord(_id(f[user]), _id(f[search_level], BAD_CATEGORY),
                                      _id(f[rec_level], BAD_CATEGORY), _id(f[feat1], BAD_CATEGORY),
                                      _id(f[feat2], BAD_CATEGORY)), None, ())

    def _parse_social(self, row: int, f: List[str]) -> ParseResult:
        user, followed = self._cols
        return ParseResult(FollowEdge(_id(f[user]), _id(f[followed])), None, ())
