"""Writes the five KuaiSAR CSVs exactly as spec/kuaisar_format.md §2–§3 describes them.

Conventions: header row, ``,`` separator, ``\\n`` line ends, UTF-8; float unix-ms timestamps written
as ``1684742000000.0``; Beijing-time strings; list strings ``[a, b, c]`` quoted only when they
contain a comma (like ``csv.QUOTE_MINIMAL``); ``0``/``空``/``empty`` for absent category levels and
``1970-01-01`` for an unknown upload day. Rows are formatted in chunks with ``%`` templates, which
is several times faster than the ``csv`` module on millions of rows.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np

from jsr_tf.filenames import ITEM_FEATURES, REC_INTER, SOCIAL_NETWORK, SRC_INTER, USER_FEATURES
from jsr_tf.simulator import clock
from jsr_tf.simulator.events import SEARCH_SOURCES, EventLog
from jsr_tf.simulator.world import SEARCH_ITEM_TYPES, UPLOAD_TYPES, World

FILES = (REC_INTER, SRC_INTER, ITEM_FEATURES, USER_FEATURES, SOCIAL_NETWORK)

_LEVELS = ("first", "second", "third", "fourth")
COLUMNS: Dict[str, Tuple[str, ...]] = {
    REC_INTER: ("user_id", "item_id", "playing_time", "duration_ms", "time", "timestamp", "click",
                "forward", "like", "follow", "search", "search_item_related"),
    SRC_INTER: ("user_id", "search_session_id", "search_session_time", "search_session_timestamp",
                "keyword", "search_source", "item_id", "click_cnt", "item_type"),
    ITEM_FEATURES: ("item_id", "caption", "author_id", "item_type", "upload_time", "upload_type")
    + tuple(f"{level}_level_category_{part}" for level in _LEVELS
            for part in ("id", "name", "name_en")),
    USER_FEATURES: ("user_id", "search_active_level", "rec_active_level", "onehot_feat1",
                    "onehot_feat2"),
    SOCIAL_NETWORK: ("user_id", "user_follow_id"),
}
"""File name -> column order written (the documented order)."""

ABSENT_CATEGORY = ("0", "空", "empty")
UNKNOWN_DAY = "1970-01-01"
ITEM_FEATURE_TYPE = "NORMAL"
_CHUNK = 250_000


def csv_field(text: str) -> str:
    """Quotes a field the way ``csv.QUOTE_MINIMAL`` does."""
    if "," in text or '"' in text or "\n" in text or "\r" in text:
        return '"' + text.replace('"', '""') + '"'
    return text


def list_string(values: Sequence[int]) -> str:
    """``[a, b, c]`` (``[]`` when empty)."""
    return "[" + ", ".join(map(str, values)) + "]"


@dataclasses.dataclass
class Table:
    """Lazily formatted rows of one file.

    Attributes:
        name: File name.
        num_rows: Data rows.
        lines: ``(start, stop) -> list of lines`` (each ending in ``\\n``).
        fields: ``row -> list of unquoted fields`` (for dirty-mode copies).
    """

    name: str
    num_rows: int
    lines: Callable[[int, int], List[str]]
    fields: Callable[[int], List[str]]

    @property
    def header(self) -> str:
        """The header line."""
        return ",".join(COLUMNS[self.name]) + "\n"


def join_fields(fields: Sequence[str]) -> str:
    """One CSV line from unquoted fields."""
    return ",".join(csv_field(f) for f in fields) + "\n"


def rec_table(world: World, log: EventLog) -> Table:
    """``rec_inter.csv``: one row per delivered feed item."""
    f = log.feed
    uid, iid = world.users.user_id, world.items.item_id
    template = "%d,%d,%d.0,%d.0,%s,%d.0,%d,%d,%d,%d,%d,%d\n"

    def lines(a: int, b: int) -> List[str]:
        cols = [uid[f.user[a:b]], iid[f.item[a:b]], f.playing_ms[a:b], f.duration_ms[a:b]]
        rest = [f.ts[a:b], f.click[a:b], f.forward[a:b], f.like[a:b], f.follow[a:b],
                f.search[a:b], f.related[a:b]]
        rows = zip(*[c.tolist() for c in cols], clock.beijing_strings(f.ts[a:b]),
                   *[c.tolist() for c in rest])
        return [template % row for row in rows]

    def fields(i: int) -> List[str]:
        return lines(i, i + 1)[0].rstrip("\n").split(",")

    return Table(REC_INTER, len(f.user), lines, fields)


def src_table(world: World, log: EventLog) -> Table:
    """``src_inter.csv``: one row per item shown in a search session."""
    s = log.search
    uid, iid, wid = world.users.user_id, world.items.item_id, world.vocabulary.word_id
    words = wid[s.words].tolist()
    off = s.word_offsets.tolist()
    keywords = [list_string(words[off[k]:off[k + 1]]) for k in range(len(s.user))]
    times = clock.beijing_strings(s.ts)
    prefix_fields = [[str(u), str(sid), tm, f"{t}.0", kw, SEARCH_SOURCES[src]]
                     for u, sid, tm, t, kw, src in zip(uid[s.user].tolist(),
                                                       s.session_id.tolist(), times,
                                                       s.ts.tolist(), keywords,
                                                       s.source.tolist())]
    prefixes = [",".join(csv_field(x) for x in p) + "," for p in prefix_fields]
    row_session = np.repeat(np.arange(len(s.user)), np.diff(s.row_offsets))
    kinds = np.array(SEARCH_ITEM_TYPES)

    def lines(a: int, b: int) -> List[str]:
        sess = row_session[a:b].tolist()
        rows = zip([prefixes[k] for k in sess], iid[s.row_item[a:b]].tolist(),
                   s.row_click_cnt[a:b].tolist(), kinds[world.items.kind[s.row_item[a:b]]].tolist())
        return ["%s%d,%d,%s\n" % row for row in rows]

    def fields(i: int) -> List[str]:
        k = int(row_session[i])
        item = int(s.row_item[i])
        return prefix_fields[k] + [str(iid[item]), str(int(s.row_click_cnt[i])),
                                   SEARCH_ITEM_TYPES[world.items.kind[item]]]

    return Table(SRC_INTER, len(s.row_item), lines, fields)


def item_table(world: World, order: np.ndarray) -> Table:
    """``item_features.csv``: feed items in ``order``."""
    items, cats, vocab = world.items, world.categories, world.vocabulary
    n = items.num_feed
    wid = vocab.word_id[items.caption].tolist()
    off = items.caption_offsets.tolist()
    upload = clock.date_strings(items.upload_day)

    def row_fields(i: int) -> List[str]:
        if items.caption_state[i]:
            caption = ""
        else:
            caption = list_string(wid[off[i]:off[i + 1]])
        c2 = int(items.cat2[i])
        c1 = int(cats.cat2_parent[c2])
        levels = [(str(cats.cat1_id[c1]), cats.cat1_name[c1], cats.cat1_name_en[c1]),
                  (str(cats.cat2_id[c2]), cats.cat2_name[c2], cats.cat2_name_en[c2])]
        c3, c4 = int(items.cat3[i]), int(items.cat4[i])
        levels.append((str(cats.cat3_id[c3]), cats.cat3_name[c3], cats.cat3_name_en[c3])
                      if c3 >= 0 else ABSENT_CATEGORY)
        levels.append((str(cats.cat4_id[c4]), cats.cat4_name[c4], cats.cat4_name_en[c4])
                      if c4 >= 0 else ABSENT_CATEGORY)
        if items.hide_categories[i]:
            levels = [ABSENT_CATEGORY] * 4
        return ([str(items.item_id[i]), caption, str(items.author_id[i]), ITEM_FEATURE_TYPE,
                 upload[i], UPLOAD_TYPES[items.upload_type[i]]]
                + [x for level in levels for x in level])

    def lines(a: int, b: int) -> List[str]:
        return [join_fields(row_fields(int(i))) for i in order[a:b]]

    def fields(r: int) -> List[str]:
        return row_fields(int(order[r]))

    assert len(order) == n
    return Table(ITEM_FEATURES, n, lines, fields)


def user_table(world: World) -> Table:
    """``user_features.csv``: every user, in index order."""
    users = world.users
    rows = np.concatenate([users.user_id[:, None], users.features], axis=1)

    def lines(a: int, b: int) -> List[str]:
        return ["%d,%d,%d,%d,%d\n" % tuple(r) for r in rows[a:b].tolist()]

    def fields(i: int) -> List[str]:
        return [str(x) for x in rows[i].tolist()]

    return Table(USER_FEATURES, len(rows), lines, fields)


def social_table(world: World) -> Table:
    """``social_network.csv``: directed follow edges (raw ids), sorted."""
    uid = world.users.user_id
    edges = uid[world.follows]
    edges = edges[np.lexsort((edges[:, 1], edges[:, 0]))]

    def lines(a: int, b: int) -> List[str]:
        return ["%d,%d\n" % tuple(r) for r in edges[a:b].tolist()]

    def fields(i: int) -> List[str]:
        return [str(x) for x in edges[i].tolist()]

    return Table(SOCIAL_NETWORK, len(edges), lines, fields)


@dataclasses.dataclass(frozen=True)
class Insertions:
    """Extra lines of one file: ``lines[k]`` goes right before clean row ``positions[k]``.

    ``positions`` is sorted; a position equal to the number of clean rows appends at the end.
    """

    positions: np.ndarray
    lines: Tuple[bytes, ...]

    @staticmethod
    def none() -> "Insertions":
        """No insertions."""
        return Insertions(np.zeros(0, np.int64), ())

    def final_rows(self, clean_rows: np.ndarray) -> np.ndarray:
        """Row index in the written file of each clean row index."""
        clean_rows = np.asarray(clean_rows, np.int64)
        return clean_rows + np.searchsorted(self.positions, clean_rows, side="right")


def write_table(table: Table, directory: str, insertions: Insertions) -> int:
    """Writes one file; returns the number of data lines written."""
    path = os.path.join(directory, table.name)
    pos = insertions.positions
    k = 0
    with open(path, "wb") as out:
        out.write(table.header.encode("utf-8"))
        for a in range(0, table.num_rows, _CHUNK):
            b = min(table.num_rows, a + _CHUNK)
            lines = table.lines(a, b)
            cur = a
            parts = []
            while k < len(pos) and pos[k] < b:
                p = int(pos[k])
                parts.append("".join(lines[cur - a:p - a]).encode("utf-8"))
                parts.append(insertions.lines[k])
                cur = p
                k += 1
            parts.append("".join(lines[cur - a:]).encode("utf-8"))
            out.write(b"".join(parts))
        while k < len(pos):
            out.write(insertions.lines[k])
            k += 1
    return table.num_rows + len(pos)
