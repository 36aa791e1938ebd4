"""Per-user merge: canonical events, search sessions, targets and the leave-one-out split.

Pure Python (no TF, no Beam), so the Beam pipeline, the TFDS builder and the tests share it.
Event order everywhere is the canonical key ``(ts, kind, row)`` of ``kuaisar_format.md`` §3.3,
with feed (kind 0) before search (kind 1) on equal timestamps.
"""

from __future__ import annotations

import collections
from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

from jsr_tf import filenames as FN
from jsr_tf.data.config import (FALLBACK_FIRST_SHOWN, HISTORY_ANY, HISTORY_BOTH, PreprocessConfig)
from jsr_tf.data.records import FeedEvent, SearchRow, SearchSession
from jsr_tf.features import RAW_PAD_ID, EventKind, Split, Task

Counters = Dict[str, int]


class Event(NamedTuple):
    """A feed positive or a search session on the user's canonical timeline.

    Attributes:
        ts: Unix ms.
        kind: ``EventKind.FEED`` or ``EventKind.SEARCH``.
        row: Row index in its source file (first row of a session).
        item: Feed: the clicked item. Search: the target positive (first clicked item), or the
            fallback item, or ``RAW_PAD_ID``.
        words: Search query words (already capped); empty for feed.
        clicks: Search: items as they enter histories (clicked items capped, or the fallback);
            empty for feed.
        all_clicked: Search: every clicked item in file order (for negative exclusion).
        has_click: 1 if a feed positive or a clicked session.
        shown: Search: every shown item in file order (the session's impressions); empty for
            feed.
    """

    ts: int
    kind: int
    row: int
    item: int
    words: Tuple[int, ...]
    clicks: Tuple[int, ...]
    all_clicked: Tuple[int, ...]
    has_click: int
    shown: Tuple[int, ...] = ()

    @property
    def key(self) -> Tuple[int, int, int]:
        return (self.ts, self.kind, self.row)


class Target(NamedTuple):
    """A prediction target: index into ``UserTimeline.events`` plus its task and split."""

    index: int
    task: int
    split: str


class UserTimeline(NamedTuple):
    """Everything the example builder needs about one user.

    Attributes:
        user_id: Raw user id.
        events: Feed positives and search sessions in canonical order.
        targets: Eligible targets that survived the per-task user filter, with their split.
        heldout: Indices into ``events`` of every valid/test target (both tasks).
        exposures: ``(item, ts)`` of every feed delivery (clicked or not) and every shown search
            item, for item first-seen times and vocabularies; held-out events excluded.
    """

    user_id: int
    events: Tuple[Event, ...]
    targets: Tuple[Target, ...]
    heldout: frozenset
    exposures: Tuple[Tuple[int, int], ...]


def _bump(counters: Counters, key: str, n: int = 1) -> None:
    counters[key] = counters.get(key, 0) + n


def dedupe_rows(rows: Sequence, file_name: str, counters: Counters) -> List:
    """Drops exact duplicate rows (identical in every field but the row index), keeping the first.

    Args:
        rows: ``FeedEvent`` or ``SearchRow`` records of one user.
        file_name: Source file, for the counter name.
        counters: Updated with ``<file>/dropped_duplicate``.

    Returns:
        The rows without duplicates, in row order.
    """
    seen = set()
    out = []
    for record in sorted(rows, key=lambda r: r.row):
        content = record._replace(row=-1)
        if content in seen:
            _bump(counters, f"{file_name}/dropped_duplicate")
            continue
        seen.add(content)
        out.append(record)
    return out


def assemble_sessions(rows: Sequence[SearchRow], counters: Counters) -> List[SearchSession]:
    """Groups one user's ``src_inter`` rows into sessions keyed by ``search_session_id``.

    Rows of a session that disagree with its first row on timestamp, keyword or source are
    repaired to the first row's values and counted (``sessions/rows_repaired``).

    Args:
        rows: One user's rows (deduplicated), any order.
        counters: Updated in place.

    Returns:
        Sessions ordered by their first row.
    """
    by_session: Dict[int, List[SearchRow]] = collections.defaultdict(list)
    for record in rows:
        by_session[record.session_id].append(record)
    sessions = []
    for session_id, members in by_session.items():
        members.sort(key=lambda r: r.row)
        first = members[0]
        for other in members[1:]:
            if (other.ts, other.words, other.source) != (first.ts, first.words, first.source):
                _bump(counters, "sessions/rows_repaired")
        clicked = tuple(dict.fromkeys(r.item_id for r in members if r.clicked))
        shown = tuple(r.item_id for r in members)
        sessions.append(SearchSession(
            user_id=first.user_id, session_id=session_id, ts=first.ts, row=first.row,
            words=first.words, source=first.source, clicked=clicked, shown=shown,
            has_click=int(bool(clicked))))
    sessions.sort(key=lambda s: s.row)
    return sessions


def _session_event(session: SearchSession, config: PreprocessConfig) -> Event:
    if session.clicked:
        clicks = session.clicked[:config.max_session_clicks]
        item = session.clicked[0]
    elif config.no_click_fallback == FALLBACK_FIRST_SHOWN and session.shown:
        clicks = (session.shown[0],)
        item = session.shown[0]
    else:
        clicks = ()
        item = RAW_PAD_ID
    return Event(ts=session.ts, kind=EventKind.SEARCH, row=session.row, item=item,
                 words=session.words[:config.max_query_words], clicks=clicks,
                 all_clicked=session.clicked, has_click=session.has_click,
                 shown=session.shown)


def history_ends(events: Sequence[Event], strict_same_ts: bool) -> List[int]:
    """For every event, how many leading events may be its history (one O(n) pass).

    Events are in canonical order, so a history is a prefix ``events[:end]``: ``end = i`` for
    event ``i``, or, with ``strict_same_ts``, the first index of the run of events sharing its
    timestamp (so no event at the target's timestamp is history).
    """
    ends = []
    run_start = 0
    for i, event in enumerate(events):
        if i and event.ts != events[i - 1].ts:
            run_start = i
        ends.append(run_start if strict_same_ts else i)
    return ends


def build_timeline(user_id: int, feed_rows: Iterable[FeedEvent], search_rows: Iterable[SearchRow],
                   config: PreprocessConfig, counters: Optional[Counters] = None) -> UserTimeline:
    """Merges one user's feed and search rows and assigns targets to splits.

    Args:
        user_id: Raw user id.
        feed_rows: The user's canonical ``rec_inter`` rows (any order, duplicates allowed).
        search_rows: The user's canonical ``src_inter`` rows.
        config: Preprocessing settings.
        counters: Updated in place with named counts (see ``pipelines/preprocess.py``).

    Returns:
        The user's timeline.
    """
    counters = {} if counters is None else counters
    feed = dedupe_rows(list(feed_rows), FN.REC_INTER, counters)
    search = dedupe_rows(list(search_rows), FN.SRC_INTER, counters)
    sessions = assemble_sessions(search, counters)
    _bump(counters, f"{FN.REC_INTER}/canonical", len(feed))
    _bump(counters, f"{FN.SRC_INTER}/canonical", len(search))
    _bump(counters, "feed/events", len(feed))
    _bump(counters, "search/sessions", len(sessions))

    events: List[Event] = []
    for record in feed:
        if record.click:
            events.append(Event(ts=record.ts, kind=EventKind.FEED, row=record.row,
                                item=record.item_id, words=(), clicks=(), all_clicked=(),
                                has_click=1))
    for session in sessions:
        events.append(_session_event(session, config))
    events.sort(key=lambda e: e.key)
    _bump(counters, "feed/positives", sum(1 for e in events if e.kind == EventKind.FEED))
    _bump(counters, "search/sessions_with_click",
          sum(1 for e in events if e.kind == EventKind.SEARCH and e.has_click))

    # Eligibility (on the full history; the split cannot depend on masking, which depends on it).
    eligible: Dict[int, List[int]] = {int(Task.FEED): [], int(Task.SEARCH): []}
    ends = history_ends(events, config.strict_same_ts)
    feed_prefix = [0]  # feed_prefix[k] = feed events among events[:k]
    for event in events:
        feed_prefix.append(feed_prefix[-1] + (event.kind == EventKind.FEED))
    for i, event in enumerate(events):
        if not event.has_click:
            continue  # Sessions without a click are history only, never targets.
        task = Task.FEED if event.kind == EventKind.FEED else Task.SEARCH
        name = task.name.lower()
        end = ends[i]
        n_feed = feed_prefix[end]
        n_search = end - n_feed
        ok = {HISTORY_BOTH: n_feed > 0 and n_search > 0,
              HISTORY_ANY: end > 0}.get(config.history_requirement, True)
        _bump(counters, f"{name}/targets")
        if ok:
            eligible[int(task)].append(i)
        else:
            _bump(counters, f"{name}/dropped_history_requirement")

    targets: List[Target] = []
    heldout = set()
    for task, indices in eligible.items():
        name = Task(task).name.lower()
        if len(indices) < config.min_targets_per_task:
            if indices:
                _bump(counters, f"{name}/dropped_few_targets", len(indices))
                _bump(counters, f"{name}/users_dropped_few_targets")
            continue
        _bump(counters, f"{name}/users")
        for index in indices[:-2]:
            targets.append(Target(index, int(task), Split.TRAIN.value))
        targets.append(Target(indices[-2], int(task), Split.VALID.value))
        targets.append(Target(indices[-1], int(task), Split.TEST.value))
        heldout.update(indices[-2:])
    targets.sort(key=lambda t: t.index)

    heldout_keys = {(events[i].kind, events[i].row) for i in heldout}
    exposures = [(r.item_id, r.ts) for r in feed
                 if not (r.click and (EventKind.FEED, r.row) in heldout_keys)]
    for session in sessions:
        if (EventKind.SEARCH, session.row) not in heldout_keys:
            exposures.extend((item, session.ts) for item in session.shown)
    return UserTimeline(user_id=user_id, events=tuple(events), targets=tuple(targets),
                        heldout=frozenset(heldout), exposures=tuple(exposures))
