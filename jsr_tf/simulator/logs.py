"""Records of the simulated behaviour, shared by ``feed``, ``search`` and ``events``."""

from __future__ import annotations

import dataclasses

import numpy as np

ORIGINS = ("background", "episode", "demand", "trigger_related", "trigger_unrelated",
           "reformulation")
"""Why a session happened (``SearchLog.origin``)."""
BACKGROUND, EPISODE, DEMAND, TRIGGER_RELATED, TRIGGER_UNRELATED, REFORMULATION = range(6)
SEARCH_SOURCES = ("USER_INPUT", "HISTORY_QUERY", "SUGGEST_QUERY", "RECOMMEND_QUERY")
"""``src_inter.search_source`` values by ``SearchLog.source``."""


@dataclasses.dataclass(frozen=True)
class FeedLog:
    """Feed rows in file order (clean; before dirty-mode insertions) and per-request state.

    Attributes:
        user, item, ts, click, forward, like, follow, search, related, playing_ms, duration_ms:
            ``[R]`` the ``rec_inter.csv`` columns (user and item as indices).
        request: ``[R]`` request of each row.
        request_user, request_ts: ``[Q]`` requests sorted by (user, ts).
        request_drift_cat, request_drift_ts: ``[Q]`` the drift state used for the request's clicks.
        request_trigger_row: ``[Q]`` row of the item on which search was opened, or -1.
    """

    user: np.ndarray
    item: np.ndarray
    ts: np.ndarray
    click: np.ndarray
    forward: np.ndarray
    like: np.ndarray
    follow: np.ndarray
    search: np.ndarray
    related: np.ndarray
    playing_ms: np.ndarray
    duration_ms: np.ndarray
    request: np.ndarray
    request_user: np.ndarray
    request_ts: np.ndarray
    request_drift_cat: np.ndarray
    request_drift_ts: np.ndarray
    request_trigger_row: np.ndarray


@dataclasses.dataclass(frozen=True)
class SearchLog:
    """Search sessions in file order, their query words and shown rows.

    Attributes:
        user, ts, topic, origin, has_click, source, session_id: ``[S]`` per session.
        parent: ``[S]`` trigger: clean rec row of the trigger; reformulation: index of the parent
            session; episode: community episode index; otherwise -1.
        words, word_offsets: ragged word indices of each query.
        row_offsets: ``[S + 1]`` offsets of each session's rows.
        row_item, row_click_cnt: ``[N]`` shown items (indices) and click counts, file order.
    """

    user: np.ndarray
    ts: np.ndarray
    topic: np.ndarray
    origin: np.ndarray
    has_click: np.ndarray
    source: np.ndarray
    session_id: np.ndarray
    parent: np.ndarray
    words: np.ndarray
    word_offsets: np.ndarray
    row_offsets: np.ndarray
    row_item: np.ndarray
    row_click_cnt: np.ndarray


@dataclasses.dataclass(frozen=True)
class EventLog:
    """The simulated behaviour."""

    feed: FeedLog
    search: SearchLog


@dataclasses.dataclass(frozen=True)
class Exogenous:
    """Sessions whose timing does not depend on feed clicks, sorted by (user, ts).

    Attributes:
        user, ts, topic, origin, has_click: ``[E]`` per session.
        parent: ``[E]`` community episode (episode searches), parent session index
            (reformulations) or -1.
    """

    user: np.ndarray
    ts: np.ndarray
    topic: np.ndarray
    origin: np.ndarray
    parent: np.ndarray
    has_click: np.ndarray


@dataclasses.dataclass(frozen=True)
class Plan:
    """Per-request draws that do not depend on the lock-step state (``[Q]`` unless noted).

    Attributes:
        n_deliver, n_click: Items delivered and clicked.
        click_off: ``[Q + 1]`` offsets of each request's clicks in ``LoopResult.click_item``.
        episode_cat, demand_cat: Category of the episode / demand active at the request, or -1.
        exo_cat, exo_ts: Category and time of the last exogenous search before it, or -1.
        trigger, related, abandoned: Search opened on the first click; about its topic; no
            session logged.
        unrelated_topic: Topic of the search if it is not about the item.
        chain_ts, chain_on, chain_click: ``[Q, 3]`` triggered session and up to two
            reformulations: times, whether they happen, whether they get a click.
    """

    n_deliver: np.ndarray
    n_click: np.ndarray
    click_off: np.ndarray
    episode_cat: np.ndarray
    demand_cat: np.ndarray
    exo_cat: np.ndarray
    exo_ts: np.ndarray
    trigger: np.ndarray
    related: np.ndarray
    abandoned: np.ndarray
    unrelated_topic: np.ndarray
    chain_ts: np.ndarray
    chain_on: np.ndarray
    chain_click: np.ndarray


@dataclasses.dataclass(frozen=True)
class LoopResult:
    """What the lock-step produced.

    Attributes:
        click_item: ``[sum n_click]`` clicked items, flat in request order.
        drift_cat, drift_ts: ``[Q]`` last search before each request (-1 = none).
        trigger_topic: ``[Q]`` topic of the search opened on the request (-1 = none).
    """

    click_item: np.ndarray
    drift_cat: np.ndarray
    drift_ts: np.ndarray
    trigger_topic: np.ndarray
