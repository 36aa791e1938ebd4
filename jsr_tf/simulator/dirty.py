"""Dirty mode: faulty lines injected into the CSVs (spec/kuaisar_format.md §3.5).

Faults are *extra* lines, so the clean rows, and the oracle that refers to them, stay intact; only
their row indices shift (``writer.Insertions.final_rows``). Each fault kind is named after the
importer's rejection reason (``jsr_tf.data.kuaisar``) or counter it must trigger:

- ``non_utf8``: invalid UTF-8 bytes in the first (id) field;
- ``wrong_field_count``: a field dropped or an extra one appended;
- ``bad_id``: a non-numeric / negative / fractional first id;
- ``bad_timestamp``: an unparseable, NaN, infinite or negative timestamp;
- ``timestamp_out_of_period``: a well-formed timestamp far outside the period;
- ``bad_keyword``: a malformed keyword list string;
- ``duplicate_row``: an exact copy right after its original (never a session's first row);
- ``caption_malformed``: a malformed caption on an otherwise valid item (the row is kept with an
  empty caption; it uses an id that occurs nowhere else).

Search faults other than duplicates use session ids that occur nowhere else, so they cannot mix
with real sessions. Counts go to ``oracle/dirty_faults.json``.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np

from jsr_tf.filenames import ITEM_FEATURES, REC_INTER, SOCIAL_NETWORK, SRC_INTER, USER_FEATURES
from jsr_tf.simulator.writer import COLUMNS, Insertions, Table, join_fields

NON_UTF8 = "non_utf8"
WRONG_FIELD_COUNT = "wrong_field_count"
BAD_ID = "bad_id"
BAD_TIMESTAMP = "bad_timestamp"
TIMESTAMP_OUT_OF_PERIOD = "timestamp_out_of_period"
BAD_KEYWORD = "bad_keyword"
DUPLICATE_ROW = "duplicate_row"
CAPTION_MALFORMED = "caption_malformed"

DEAD_LETTER_KINDS = (NON_UTF8, WRONG_FIELD_COUNT, BAD_ID, BAD_TIMESTAMP, TIMESTAMP_OUT_OF_PERIOD,
                     BAD_KEYWORD)
"""Kinds whose lines the importer must send to dead-letter (reason = kind)."""

FAULTS: Dict[str, Tuple[str, ...]] = {
    REC_INTER: (NON_UTF8, WRONG_FIELD_COUNT, BAD_ID, BAD_TIMESTAMP, TIMESTAMP_OUT_OF_PERIOD,
                DUPLICATE_ROW),
    SRC_INTER: (NON_UTF8, WRONG_FIELD_COUNT, BAD_ID, BAD_TIMESTAMP, TIMESTAMP_OUT_OF_PERIOD,
                BAD_KEYWORD, DUPLICATE_ROW),
    ITEM_FEATURES: (NON_UTF8, WRONG_FIELD_COUNT, BAD_ID, CAPTION_MALFORMED, DUPLICATE_ROW),
    USER_FEATURES: (NON_UTF8, WRONG_FIELD_COUNT, BAD_ID, DUPLICATE_ROW),
    SOCIAL_NETWORK: (WRONG_FIELD_COUNT, BAD_ID, DUPLICATE_ROW),
}
"""Fault kinds injected per file."""

_BAD_IDS = ("{}x", "u{}", "", "-{}", "{}.5", "1e5")
_BAD_TIMESTAMPS = ("not_a_time", "nan", "-{}.0", "", "inf")
_OUT_OF_PERIOD = ("4102444800000.0", "1000000000000.0", "1.6e12")
_BAD_KEYWORDS = ("[1, 2", "1, 2]", "[1; 2]", "[a, b]", "[1,, 2]", "[[3]]", "[-1, 2]")
_FRESH_SESSION_ID = 9_000_000_000


def _timestamp_column(name: str) -> int:
    column = {REC_INTER: "timestamp", SRC_INTER: "search_session_timestamp"}[name]
    return COLUMNS[name].index(column)


def plan_faults(table: Table, rng: np.random.Generator, rate: float,
                session_first_rows: np.ndarray, spare_item_ids: np.ndarray
                ) -> Tuple[Insertions, Dict[str, int]]:
    """Chooses and formats the faulty lines of one file.

    Args:
        table: The clean file.
        rng: Random stream of this file's faults.
        rate: Per fault kind, the share of rows (at least 2 lines per kind).
        session_first_rows: For ``src_inter.csv``, the first clean row of every session.
        spare_item_ids: Item ids used nowhere else (for ``caption_malformed``).

    Returns:
        The insertions and the count per fault kind.
    """
    n = table.num_rows
    counts: Dict[str, int] = {}
    positions: List[int] = []
    lines: List[bytes] = []
    if n == 0:
        return Insertions.none(), {kind: 0 for kind in FAULTS[table.name]}
    fresh_session = _FRESH_SESSION_ID
    spare = iter(spare_item_ids.tolist())
    for kind in FAULTS[table.name]:
        count = max(2, int(round(rate * n)))
        made = 0
        for j in range(count):
            src = int(rng.integers(n))
            fields = table.fields(src)
            if kind == DUPLICATE_ROW:
                if table.name == SRC_INTER:
                    candidates = np.setdiff1d(rng.integers(0, n, 64), session_first_rows)
                    if not len(candidates):
                        continue
                    src = int(candidates[0])
                positions.append(src + 1)
                lines.append(table.lines(src, src + 1)[0].encode("utf-8"))
                made += 1
                continue
            if table.name == SRC_INTER:
                fields[1] = str(fresh_session)
                fresh_session += 1
            if kind == NON_UTF8:
                line = b"\xff\xfe" + join_fields(fields).encode("utf-8")
            else:
                if kind == WRONG_FIELD_COUNT:
                    fields = fields[:-1] if j % 2 == 0 else fields + ["0"]
                elif kind == BAD_ID:
                    fields[0] = _BAD_IDS[j % len(_BAD_IDS)].format(fields[0])
                elif kind == BAD_TIMESTAMP:
                    col = _timestamp_column(table.name)
                    fields[col] = _BAD_TIMESTAMPS[j % len(_BAD_TIMESTAMPS)].format(
                        fields[col].split(".")[0])
                elif kind == TIMESTAMP_OUT_OF_PERIOD:
                    fields[_timestamp_column(table.name)] = _OUT_OF_PERIOD[j % len(_OUT_OF_PERIOD)]
                elif kind == BAD_KEYWORD:
                    fields[COLUMNS[SRC_INTER].index("keyword")] = _BAD_KEYWORDS[
                        j % len(_BAD_KEYWORDS)]
                elif kind == CAPTION_MALFORMED:
                    fields[0] = str(next(spare))
                    fields[1] = _BAD_KEYWORDS[j % len(_BAD_KEYWORDS)]
                line = join_fields(fields).encode("utf-8")
            positions.append(int(rng.integers(n + 1)))
            lines.append(line)
            made += 1
        counts[kind] = made
    order = np.argsort(np.asarray(positions, np.int64), kind="stable")
    return (Insertions(np.asarray(positions, np.int64)[order], tuple(lines[k] for k in order)),
            counts)
