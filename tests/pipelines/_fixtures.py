"""Shared inputs and matchers of the Beam transform unit tests (``tests/pipelines``).

Every test builds a ``TestPipeline`` on the in-memory ``FnApiRunner`` (the runner the jobs use
without ``--runner``; Prism needs a download), feeds in-memory ``beam.Create`` inputs and checks
the outputs with ``assert_that``.

The one user of ``world_rows`` / ``timeline`` ("the world"), times in minutes after
``testing.T0_MS``; canonical event indices in brackets::

    feed    [0] 10@1  [2] 11@2  [4] 12@3  [6] 13@4  [8] 14@5     (+ item 20@1 not clicked)
    search  [1] s1@1.5 [7,8] → 30
            [3] s2@2.5 [8] → 31
            [5] s3@3.5 [9] → 32 clicked, 33 shown only
            [7] s4@4.5 [9,6] → 34

With ``PreprocessConfig()`` (history ``any``, strict same-ts): event [0] has no history
(ineligible); feed targets [2] [4] train, [6] valid, [8] test; search targets [1] [3] train,
[5] valid, [7] test; held out: {5, 6, 7, 8}.
"""

from __future__ import annotations

from typing import Callable, Dict, Iterable, List, Mapping, Sequence, Tuple

from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import BeamAssertException

from jsr_tf import features as F
from jsr_tf.data.config import PreprocessConfig
from jsr_tf.data.records import FeedEvent, SearchRow
from jsr_tf.data.timeline import UserTimeline, build_timeline
from jsr_tf.neighbours import NeighbourRow
from jsr_tf.neighbours import payload as pl
from jsr_tf.pipelines.transforms import merge_counters
from tests import testing as T

SHAPE = F.DataShape()  # the reference shape: the payload block sizes
EMPTY = pl.empty_payload(SHAPE)

RUNNER = "FnApiRunner"

# (item, minute, click), in file order.
FEED = ((10, 1, 1), (11, 2, 1), (12, 3, 1), (13, 4, 1), (14, 5, 1), (20, 1, 0))
# (session, minute, words, ((item, clicked), ...)), in file order (one row per shown item).
SEARCH = ((1, 1.5, (7, 8), ((30, 1),)), (2, 2.5, (8,), ((31, 1),)),
          (3, 3.5, (9,), ((32, 1), (33, 0))), (4, 4.5, (9, 6), ((34, 1),)))


def pipeline() -> TestPipeline:
    """A ``TestPipeline`` on the in-memory runner (use as a context manager)."""
    return TestPipeline(runner=RUNNER)


def ts(minutes: float) -> int:
    """Fixture time ``T0 + minutes`` in unix ms (``tests.testing.ts``)."""
    return T.ts(minutes)


def feed_event(user: int, item: int, minutes: float, row: int, click: int = 1) -> FeedEvent:
    """The ``FeedEvent`` that the parser makes of ``testing.rec_row(user, item, minutes, click)``
    at data line ``row``."""
    return FeedEvent(user_id=user, item_id=item, ts=ts(minutes), row=row, click=click, like=0,
                     follow=0, forward=0, search=0, search_item_related=0, playing_time=1000.0,
                     duration_ms=2000.0)


def search_row(user: int, session: int, minutes: float, words: Sequence[int], item: int,
               clicked: int, row: int) -> SearchRow:
    """The ``SearchRow`` that the parser makes of ``testing.src_row(...)`` at data line ``row``."""
    return SearchRow(user_id=user, session_id=session, ts=ts(minutes), row=row,
                     words=tuple(words), source="USER_INPUT", item_id=item, clicked=clicked,
                     item_type="VIDEO")


def world_records(user: int, shift: float = 0.0, first_row: int = 0
                  ) -> Tuple[List[FeedEvent], List[SearchRow]]:
    """The world's feed and search records for ``user``.

    Args:
        user: User id.
        shift: Minutes added to every time (a second user with the same recipe, later).
        first_row: Data-line index of the user's first row in each file.

    Returns:
        ``(feed records, search records)`` in file order.
    """
    feed = [feed_event(user, item, minute + shift, first_row + i, click)
            for i, (item, minute, click) in enumerate(FEED)]
    search = []
    for session, minute, words, shown in SEARCH:
        for item, clicked in shown:
            search.append(search_row(user, session, minute + shift, words, item, clicked,
                                     first_row + len(search)))
    return feed, search


def world_rows(user: int) -> Tuple[List[List[str]], List[List[str]]]:
    """The world's ``rec_inter.csv`` and ``src_inter.csv`` rows for ``user`` (file order)."""
    rec = [T.rec_row(user, item, minute, click) for item, minute, click in FEED]
    src = [T.src_row(user, session, minute, words, item, clicked)
           for session, minute, words, shown in SEARCH for item, clicked in shown]
    return rec, src


def timeline(user: int, shift: float = 0.0,
             config: PreprocessConfig = PreprocessConfig()) -> UserTimeline:
    """The world's ``UserTimeline`` for ``user`` (``build_timeline`` of ``world_records``)."""
    feed, search = world_records(user, shift)
    return build_timeline(user, feed, search, config)


def merged_counters_equal(expected: Mapping[str, int]) -> Callable[[Iterable[Dict]], None]:
    """An ``assert_that`` matcher: the counter dicts of a ``stats`` output, merged with
    ``merge_counters``, equal ``expected`` exactly (no counter missing, none extra)."""
    expected = dict(sorted(expected.items()))

    def _match(actual):
        merged = merge_counters(actual)
        if merged != expected:
            missing = {k: v for k, v in expected.items() if merged.get(k) != v}
            extra = {k: v for k, v in merged.items() if expected.get(k) != v}
            raise BeamAssertException(f"Counters differ. Expected (differing): {missing}; "
                                      f"actual (differing): {extra}")
    return _match


def satisfies(check: Callable[[List], None]) -> Callable[[Iterable], None]:
    """An ``assert_that`` matcher that runs ``check(list(actual))``, turning its
    ``AssertionError`` into a ``BeamAssertException`` (the pipeline then fails)."""
    def _match(actual):
        try:
            check(list(actual))
        except AssertionError as error:
            raise BeamAssertException(str(error)) from error
    return _match


# --------------------------------------------------------------------------- neighbour payloads


def _pad(values: Sequence[int], size: int) -> Tuple[int, ...]:
    """``values`` right-padded with -1 to ``size``."""
    return tuple(values) + (-1,) * (size - len(values))


def payload(feed_items: Sequence[int], sessions: Sequence[Tuple[Sequence[int], Sequence[int]]],
            last_ts: int) -> pl.Payload:
    """A payload written out by hand.

    Args:
        feed_items: Feed-positive items, oldest first.
        sessions: ``(words, clicks)`` per search session, oldest first.
        last_ts: Time of the newest event (0 if none).

    Returns:
        The ``Payload`` with every block padded with -1 to the contract's sizes.
    """
    words: List[int] = []
    clicks: List[int] = []
    for session_words, session_clicks in sessions:
        words.extend(_pad(session_words, SHAPE.nbr_query_words))
        clicks.extend(_pad(session_clicks, SHAPE.nbr_session_clicks))
    return pl.Payload(_pad(feed_items, SHAPE.nbr_feed_items),
                      _pad(words, SHAPE.nbr_search_sessions * SHAPE.nbr_query_words),
                      _pad(clicks, SHAPE.nbr_search_sessions * SHAPE.nbr_session_clicks),
                      last_ts, len(feed_items), len(sessions))


# User 1's train-visible events before minute 3: feed 10@1, 11@2; sessions s1@1.5, s2@2.5.
PAYLOAD_BEFORE_3 = payload((10, 11), (((7, 8), (30,)), ((8,), (31,))), ts(2.5))


def table_row(user: int, side: str, neighbours: Sequence[int] = (),
              jaccards: Sequence[float] = (), visibility: str = "train",
              snapshot: int = 0, snapshot_ts: int = 100) -> NeighbourRow:
    """A neighbour-table row (``num_tokens`` 1)."""
    return NeighbourRow(visibility, snapshot, snapshot_ts, side, user, 1, tuple(neighbours),
                        tuple(jaccards))


def example_bytes(user: int, target_ts: int) -> bytes:
    """A serialized example of the contract with ``user_id`` and ``target_ts`` set (every
    other feature empty)."""
    from jsr_tf.data.examples import to_tf_example

    values = {name: [] for name in F.ALL_FEATURES}
    values.update({F.USER_ID: [user], F.TARGET_TS: [target_ts]})
    return to_tf_example(values).SerializeToString(deterministic=True)


def features_of(data: bytes) -> Dict[str, list]:
    """Every feature of a serialized ``tf.train.Example`` as a list (ints or floats)."""
    from tensorflow.core.example import example_pb2

    out = {}
    for name, feature in example_pb2.Example.FromString(data).features.feature.items():
        kind = feature.WhichOneof("kind")
        out[name] = list(getattr(feature, kind).value) if kind else []
    return out
