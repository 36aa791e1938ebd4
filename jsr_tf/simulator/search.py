"""Search side of the process: exogenous sessions, reformulations, queries and shown items."""

from __future__ import annotations

from typing import Tuple

import numpy as np

from jsr_tf.simulator import clock, ragged
from jsr_tf.simulator.dynamics import ChoiceModel, personal_weights, pick_interest
from jsr_tf.simulator.logs import (BACKGROUND, DEMAND, EPISODE, REFORMULATION,
                                   TRIGGER_RELATED, TRIGGER_UNRELATED, Exogenous, FeedLog,
                                   LoopResult, Plan, SearchLog)
from jsr_tf.simulator.presets import SimConfig
from jsr_tf.simulator.seeding import derive_rng
from jsr_tf.simulator.state import IntervalTable, time_key
from jsr_tf.simulator.world import QUERY_SOURCES, Users, World, draw_words

_SOURCE_BY_ORIGIN = np.array([[0.70, 0.15, 0.00, 0.15],   # background
                              [0.60, 0.00, 0.00, 0.40],   # episode
                              [1.00, 0.00, 0.00, 0.00],   # demand
                              [1.00, 0.00, 0.00, 0.00],   # trigger related (magnifier icon)
                              [1.00, 0.00, 0.00, 0.00],   # trigger unrelated
                              [0.50, 0.00, 0.50, 0.00]])  # reformulation
_MAX_SHOWN = 20
_MAX_CLICKS = 5
_MAX_REDRAWS = 1000


def chain(rng: np.random.Generator, config: SimConfig, has_click: np.ndarray, ts: np.ndarray,
           limit: np.ndarray, click_rate: np.ndarray) -> Tuple[np.ndarray, ...]:
    """One reformulation step: which sessions get a follow-up, its time and its click flag."""
    p = np.where(has_click, config.reformulation_after_click, config.reformulation_after_no_click)
    follow = rng.random(len(ts)) < p
    t_next = ts + (10_000 + rng.exponential(40_000.0, len(ts))).astype(np.int64)
    follow &= t_next < limit
    click_next = rng.random(len(ts)) < click_rate
    return follow, t_next, click_next


def into_visits(rng: np.random.Generator, share: float, user: np.ndarray, ts: np.ndarray,
                limit: np.ndarray, req_user: np.ndarray, req_ts: np.ndarray) -> np.ndarray:
    """Moves a share of searches into the user's next app visit.

    A moved search happens right after the user's first feed request at or after its nominal
    time and before the following request (so the feed continues after it), if that is still
    before ``limit``.

    Args:
        rng: Random stream.
        share: Chance that a search is moved.
        user, ts, limit: ``[S]`` nominal searches and their latest allowed time.
        req_user, req_ts: Feed requests sorted by (user, ts), at least 1 s apart per user.

    Returns:
        ``[S]`` new times.
    """
    n = len(req_user)
    u = rng.random((len(ts), 2))
    if n == 0:
        return ts
    pos = np.searchsorted(time_key(req_user, req_ts), time_key(user, ts), side="left")
    cur, nxt = np.minimum(pos, n - 1), np.minimum(pos + 1, n - 1)
    ok = (pos + 1 < n) & (req_user[cur] == user) & (req_user[nxt] == user)
    gap = np.minimum(req_ts[nxt] - req_ts[cur], 60_000)
    moved = req_ts[cur] + 1 + (u[:, 0] * (gap - 1)).astype(np.int64)
    move = ok & (u[:, 1] < share) & (moved < limit)
    return np.where(move, moved, ts)


def exogenous_sessions(world: World, rng: np.random.Generator, req_user: np.ndarray,
                       req_ts: np.ndarray) -> Exogenous:
    """Background, episode and demand searches plus their reformulation chains.

    Nominal times: background searches follow the daily profile, episode searches are uniform
    inside the member's episode, a demand's first search is at its start and the others uniform
    inside it; ``into_visits`` then moves most of them into the next app visit.
    """
    config, users, sched = world.config, world.users, world.schedule
    tp = config.topics_per_cat2
    sp = users.search_propensity
    n = config.num_users
    share = world.categories.cat2_share

    nb = rng.poisson(config.background_searches_per_user * sp)
    b_user = np.repeat(np.arange(n), nb)
    b_ts = clock.sample_diurnal(rng, len(b_user))
    lt = pick_interest(users.lt_cat[b_user], users.lt_weight[b_user], rng.random(len(b_user)))
    b_cat = np.where(rng.random(len(b_user)) < 0.8, lt,
                     rng.choice(config.num_cat2, len(b_user), p=share))
    b_topic = b_cat * tp + rng.integers(0, tp, len(b_user))

    days = (sched.episode_end - sched.episode_start) / clock.DAY_MS
    ne = rng.poisson(config.episode_searches_per_day * days * sp[sched.episode_user])
    e_idx = np.repeat(np.arange(len(ne)), ne)
    e_user = sched.episode_user[e_idx]
    e_ts = sched.episode_start[e_idx] + (rng.random(len(e_idx)) * (
        sched.episode_end - sched.episode_start)[e_idx]).astype(np.int64)

    hours = (sched.demand_end - sched.demand_start) / clock.HOUR_MS
    searcher = sp[sched.demand_user] > 0
    nd = searcher * (1 + rng.poisson(config.demand_searches_per_hour * hours
                                     * sp[sched.demand_user]))
    d_idx = np.repeat(np.arange(len(nd)), nd)
    first = ragged.positions(nd) == 0
    d_ts = sched.demand_start[d_idx] + np.where(
        first, 0, (rng.random(len(d_idx)) * (sched.demand_end - sched.demand_start)[d_idx])
    ).astype(np.int64)
    d_topic = sched.demand_cat2[d_idx] * tp + rng.integers(0, tp, len(d_idx))

    user = np.concatenate([b_user, e_user, sched.demand_user[d_idx]])
    limit = np.concatenate([np.full(len(b_user), clock.PERIOD_END_MS),
                            sched.episode_end[e_idx], sched.demand_end[d_idx]])
    ts = into_visits(rng, config.search_in_visit, user, np.concatenate([b_ts, e_ts, d_ts]),
                     limit, req_user, req_ts)
    topic = np.concatenate([b_topic, sched.episode_topic[e_idx], d_topic])
    origin = np.concatenate([np.full(len(b_user), BACKGROUND), np.full(len(e_idx), EPISODE),
                             np.full(len(d_idx), DEMAND)])
    parent = np.concatenate([np.full(len(b_user), -1), sched.episode_event[e_idx],
                             np.full(len(d_idx), -1)])
    has_click = rng.random(len(user)) < users.session_click_rate[user]

    # Reformulation chains (up to two follow-ups).
    parts = [(user, ts, topic, origin, parent, has_click)]
    cur_index = np.arange(len(user))
    cur_ts, cur_click, cur_user, cur_topic = ts, has_click, user, topic
    total = len(user)
    for _ in range(2):
        follow, t_next, c_next = chain(rng, config, cur_click, cur_ts,
                                       np.full(len(cur_ts), clock.PERIOD_END_MS),
                                       users.session_click_rate[cur_user])
        idx = np.flatnonzero(follow)
        parts.append((cur_user[idx], t_next[idx], cur_topic[idx],
                      np.full(len(idx), REFORMULATION), cur_index[idx], c_next[idx]))
        cur_index = total + np.arange(len(idx))
        total += len(idx)
        cur_ts, cur_click, cur_user, cur_topic = t_next[idx], c_next[idx], cur_user[idx], \
            cur_topic[idx]
    cols = [np.concatenate([p[j] for p in parts]) for j in range(6)]
    order = np.lexsort((cols[1], cols[0]))
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    parent = cols[4][order]
    is_ref = cols[3][order] == REFORMULATION
    parent = np.where(is_ref, inverse[np.where(is_ref, parent, 0)], parent)
    return Exogenous(user=cols[0][order], ts=cols[1][order], topic=cols[2][order],
                     origin=cols[3][order], parent=parent, has_click=cols[5][order])


def sessions(world: World, model: ChoiceModel, exo: Exogenous, plan: Plan, loop: LoopResult,
             feed: FeedLog, episodes: IntervalTable, demands: IntervalTable,
             seed: int) -> SearchLog:
    """All sessions in file order, with queries, shown items and clicks."""
    config, users = world.config, world.users
    # Triggered chains -> session arrays (creation order: exogenous first, then triggered).
    tr = np.flatnonzero(plan.chain_on[:, 0])
    t_parts = []
    base = len(exo.user)
    prev_rows = prev_idx = None
    for j in range(3):
        rows = tr[plan.chain_on[tr, j]]  # ascending; a subset of the previous step's rows
        idx = base + np.arange(len(rows))
        if j == 0:
            origin = np.where(plan.related[rows], TRIGGER_RELATED, TRIGGER_UNRELATED)
            parent = np.full(len(rows), -1, np.int64)  # Set to the trigger row below.
        else:
            origin = np.full(len(rows), REFORMULATION)
            parent = prev_idx[np.searchsorted(prev_rows, rows)]
        t_parts.append((rows, plan.chain_ts[rows, j], origin, parent, plan.chain_click[rows, j]))
        prev_rows, prev_idx = rows, idx
        base += len(rows)
    t_req = np.concatenate([p[0] for p in t_parts])
    n_exo = len(exo.user)
    user = np.concatenate([exo.user, feed.request_user[t_req]])
    ts = np.concatenate([exo.ts, np.concatenate([p[1] for p in t_parts])])
    topic = np.concatenate([exo.topic, loop.trigger_topic[t_req]])
    origin = np.concatenate([exo.origin, np.concatenate([p[2] for p in t_parts])])
    t_parent = np.concatenate([p[3] for p in t_parts])
    is_trig_root = np.concatenate([np.zeros(n_exo, bool), t_parent < 0])
    parent = np.concatenate([exo.parent, t_parent])
    parent[is_trig_root] = feed.request_trigger_row[t_req[t_parent < 0]]
    has_click = np.concatenate([exo.has_click, np.concatenate([p[4] for p in t_parts])])
    triggered = np.concatenate([np.zeros(n_exo, np.int64), np.ones(len(t_req), np.int64)])
    is_ref = origin == REFORMULATION
    depth = np.zeros(len(user), np.int64)
    # Depth of reformulations (parents always come earlier in creation order within a part).
    for _ in range(2):
        depth[is_ref] = depth[parent[is_ref]] + 1

    # File order: (user, ts, exogenous before triggered).
    order = np.lexsort((triggered, ts, user))
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))

    words, word_len = _queries(world, derive_rng(seed, "events", "queries"), topic, parent,
                               depth)
    w_off = ragged.offsets(word_len)
    words_sorted, len_sorted = ragged.gather_rows(words, w_off, order)

    user, ts, topic, origin, has_click = (user[order], ts[order], topic[order], origin[order],
                                          has_click[order])
    parent = parent[order]
    is_ref = origin == REFORMULATION
    parent[is_ref] = inverse[parent[is_ref]]

    rng = derive_rng(seed, "events", "search_items")
    row_offsets, row_item, row_clicks = _shown_items(config, model, users, rng, user, ts, topic,
                                                     has_click, episodes, demands)
    src_rng = derive_rng(seed, "events", "sources")
    cum = np.cumsum(_SOURCE_BY_ORIGIN, axis=1)
    source = np.minimum((src_rng.random(len(user))[:, None] >= cum[origin][:, :-1]).sum(1), 3)
    click_cnt = row_clicks * np.where(src_rng.random(len(row_clicks)) < 0.05, 2, 1)
    session_id = _session_ids(derive_rng(seed, "events", "session_ids"), user)
    return SearchLog(user=user, ts=ts, topic=topic, origin=origin,
                     has_click=has_click.astype(np.int64), source=source,
                     session_id=session_id, parent=parent, words=words_sorted,
                     word_offsets=ragged.offsets(len_sorted), row_offsets=row_offsets,
                     row_item=row_item, row_click_cnt=click_cnt)


def _queries(world: World, rng: np.random.Generator, topic: np.ndarray, parent: np.ndarray,
             depth: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Query word indices per session (creation order).

    Depth-0 queries are drawn from their topic's word sources (1-5 words; very rarely 51-60).
    A reformulation keeps each parent word with chance 0.6 (at least one) and appends 1-2 new
    words of the same topic.

    Returns:
        ``(flat words, lengths)`` in creation order.
    """
    config, cats, vocab = world.config, world.categories, world.vocabulary
    tp = config.topics_per_cat2
    n = len(topic)
    per_session = [np.empty(0, np.int64)] * n
    fresh = np.flatnonzero(depth == 0)
    length = 1 + rng.binomial(4, 0.35, len(fresh))
    very_long = rng.random(len(fresh)) < 0.0005
    length[very_long] = rng.integers(51, 61, int(very_long.sum()))
    words = draw_words(rng, vocab, np.repeat(topic[fresh], length), tp, cats.cat2_parent,
                       QUERY_SOURCES)
    for s, chunk in zip(fresh.tolist(), np.split(words, ragged.offsets(length)[1:-1])):
        per_session[s] = chunk
    for d in (1, 2):
        rows = np.flatnonzero(depth == d)
        if not len(rows):
            continue
        par = parent[rows]
        par_len = np.array([len(per_session[p]) for p in par.tolist()], np.int64)
        keep_u = np.split(rng.random(int(par_len.sum())), ragged.offsets(par_len)[1:-1])
        extra = 1 + rng.binomial(1, 0.4, len(rows))
        new_words = np.split(draw_words(rng, vocab, np.repeat(topic[rows], extra), tp,
                                        cats.cat2_parent, QUERY_SOURCES),
                             ragged.offsets(extra)[1:-1])
        for s, p, keep, add in zip(rows.tolist(), par.tolist(), keep_u, new_words):
            mask = keep < 0.6
            if not mask.any():
                mask[0] = True
            per_session[s] = np.concatenate([per_session[p][mask], add])[:60]
    lengths = np.array([len(w) for w in per_session], np.int64)
    flat = np.concatenate(per_session) if n else np.empty(0, np.int64)
    return flat.astype(np.int64), lengths


def _shown_items(config: SimConfig, model: ChoiceModel, users: Users, rng: np.random.Generator,
                 user: np.ndarray, ts: np.ndarray, topic: np.ndarray, has_click: np.ndarray,
                 episodes: IntervalTable, demands: IntervalTable
                 ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shown rows per session: clicked items from p(i | state, query) plus engine fillers."""
    s = len(user)
    n_clicks = np.where(has_click, np.minimum(rng.geometric(0.72, s), _MAX_CLICKS), 0)
    n_shown = np.clip(1 + rng.poisson(7.0, s), n_clicks, _MAX_SHOWN)
    ep_cat = episodes.active_cat(user, ts)
    dem_cat = demands.active_cat(user, ts)
    personal = personal_weights(config.dynamics, ep_cat >= 0, dem_cat >= 0)
    c_sess = np.repeat(np.arange(s), n_clicks)
    c_item = model.sample_search(rng, topic[c_sess], personal[c_sess],
                                 users.lt_cat[user[c_sess]], users.lt_weight[user[c_sess]],
                                 ep_cat[c_sess], dem_cat[c_sess])
    c_pos = ragged.positions(n_clicks)
    n_fill = n_shown - n_clicks
    f_sess = np.repeat(np.arange(s), n_fill)
    u = rng.random(len(f_sess))
    groups = np.where(u < 0.6, topic[f_sess],
                      np.where(u < 0.9, config.num_topics + topic[f_sess] // config.topics_per_cat2,
                               config.num_topics + config.num_cat2))
    f_item = model.sample_search_groups(groups, rng.random(len(f_sess)))

    sess = np.concatenate([c_sess, f_sess])
    item = np.concatenate([c_item, f_item])
    clicked = np.concatenate([np.ones(len(c_sess), bool), np.zeros(len(f_sess), bool)])
    pos = np.concatenate([c_pos, ragged.positions(n_fill)])
    # Drop repeated items of a session (clicks and earlier draws win), via one packed key.
    item_bits = max(1, int(model.num_items).bit_length())
    if s.bit_length() + item_bits + 6 > 62:
        raise ValueError(f"Too many sessions ({s}) for the packed sort keys.")
    key = ((((sess << item_bits) | item) << 1 | ~clicked) << 5) | np.minimum(pos, 31)
    order = np.argsort(key, kind="stable")
    keep = np.sort(order[ragged.first_in_group(key[order] >> 6)])
    sess, item, clicked = sess[keep], item[keep], clicked[keep]
    # Display keys: clicks lean to the top and keep their draw order; fillers anywhere.
    key = rng.random(len(sess))
    key[clicked] **= 2
    c_idx = np.flatnonzero(clicked)  # grouped by session, in draw order
    key[c_idx] = key[c_idx][np.lexsort((key[c_idx], sess[c_idx]))]
    order = np.argsort((sess << 30) | (key * (1 << 30)).astype(np.int64), kind="stable")
    sess, item, clicked = sess[order], item[order], clicked[order]
    counts = np.bincount(sess, minlength=s)
    return ragged.offsets(counts), item, clicked.astype(np.int64)


def _session_ids(rng: np.random.Generator, user: np.ndarray) -> np.ndarray:
    """Distinct ids per session; ~1 % reuse another user's id (ids are unique per user only)."""
    s = len(user)
    ids = rng.permutation(np.arange(1_000_000, 1_000_000 + 40 * s, 40, dtype=np.int64))
    ids += rng.integers(0, 40, s)
    shared = np.flatnonzero(rng.random(s) < 0.01)
    donor = rng.integers(0, max(s, 1), len(shared))
    ok = user[donor] != user[shared]
    shared, donor = shared[ok], donor[ok]
    original = ids.copy()
    ids[shared] = original[donor]
    # Two reused ids could land on one user: revert those (original ids are globally unique).
    key = time_key(user, ids)
    order = np.argsort(key, kind="stable")
    dup = np.zeros(s, bool)
    same = key[order][1:] == key[order][:-1]
    dup[order[1:][same]] = True
    dup[order[:-1][same]] = True
    revert = shared[dup[shared]]
    ids[revert] = original[revert]
    return ids
