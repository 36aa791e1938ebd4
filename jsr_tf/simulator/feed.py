"""Feed side of the process: requests, the lock-step over users, delivered rows."""

from __future__ import annotations

import logging
import time
from typing import Set, Tuple

import numpy as np

from jsr_tf.simulator import clock, ragged
from jsr_tf.simulator.dynamics import ChoiceModel, feed_weights, pick_interest
from jsr_tf.simulator.logs import Exogenous, FeedLog, LoopResult, Plan
from jsr_tf.simulator.search import chain
from jsr_tf.simulator.state import IntervalTable, SessionTimeline, time_key
from jsr_tf.simulator.world import World

_MAX_REDRAWS = 1000


def feed_requests(world: World, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """Request users and times, sorted by (user, ts), at least 1 s apart per user."""
    config, users = world.config, world.users
    n = config.num_users
    visits = 1 + rng.poisson(config.visits_per_user * users.activity)
    v_user = np.repeat(np.arange(n), visits)
    v_start = clock.sample_diurnal(rng, len(v_user), clock.PERIOD_START_MS,
                                   clock.PERIOD_END_MS - clock.HOUR_MS)
    n_req = rng.geometric(1.0 / config.requests_per_visit, len(v_user))
    gaps = (3_000 + rng.exponential(35_000.0, int(n_req.sum()))).astype(np.int64)
    gaps[ragged.offsets(n_req)[:-1]] = 0
    cum = np.cumsum(gaps)
    visit = ragged.segment_ids(n_req)
    t = v_start[visit] + cum - cum[ragged.offsets(n_req)[:-1]][visit]
    user = v_user[visit]
    order = np.lexsort((t, user))
    user, t = user[order], t[order]
    k = ragged.positions(np.bincount(user, minlength=n))
    spaced = np.maximum.accumulate(time_key(user, t - 1000 * k)) - time_key(user, 0) + 1000 * k
    keep = spaced < clock.PERIOD_END_MS
    return user[keep], spaced[keep]


def request_plan(world: World, req_user: np.ndarray, req_ts: np.ndarray, exo: Exogenous,
                 episodes: IntervalTable, demands: IntervalTable,
                 rng: np.random.Generator) -> Plan:
    """Deliveries, clicks counts, exogenous state and trigger draws of every request."""
    config, users = world.config, world.users
    q = len(req_user)
    tp = config.topics_per_cat2
    p_item = (config.items_per_request - 1.0) / 5.0
    n_deliver = 1 + rng.binomial(5, p_item, q)
    n_click = rng.binomial(n_deliver, users.click_propensity[req_user])
    exo_cat, exo_ts = SessionTimeline(exo.user, exo.ts, exo.topic // tp).last_before(req_user,
                                                                                      req_ts)
    trig_p = np.minimum(1.0, config.trigger_probability * users.search_propensity[req_user])
    trigger = (n_click > 0) & (rng.random(q) < trig_p)
    related = trigger & (rng.random(q) < config.trigger_related)
    abandoned = trigger & (rng.random(q) < config.abandoned_search)
    lt = pick_interest(users.lt_cat[req_user], users.lt_weight[req_user], rng.random(q))
    other_cat = np.where(rng.random(q) < 0.5, lt,
                         rng.choice(config.num_cat2, q, p=world.categories.cat2_share))
    unrelated_topic = other_cat * tp + rng.integers(0, tp, q)

    last = np.ones(q, bool)
    last[:-1] = req_user[1:] != req_user[:-1]
    next_ts = np.where(last, clock.PERIOD_END_MS, np.roll(req_ts, -1))
    gap = next_ts - req_ts
    delay = (2_000 + rng.exponential(20_000.0, q)).astype(np.int64)
    squeeze = np.maximum(1, (gap * rng.uniform(0.1, 0.9, q)).astype(np.int64))
    delay = np.where(delay < gap, delay, squeeze)
    rate = users.session_click_rate[req_user]
    chain_ts = np.zeros((q, 3), np.int64)
    chain_on = np.zeros((q, 3), bool)
    chain_click = np.zeros((q, 3), bool)
    chain_ts[:, 0] = req_ts + delay
    chain_on[:, 0] = trigger & ~abandoned
    chain_click[:, 0] = rng.random(q) < rate
    for j in (1, 2):
        follow, t_next, c_next = chain(rng, config, chain_click[:, j - 1], chain_ts[:, j - 1],
                                        next_ts, rate)
        chain_on[:, j] = chain_on[:, j - 1] & follow
        chain_ts[:, j] = t_next
        chain_click[:, j] = c_next
    return Plan(n_deliver=n_deliver, n_click=n_click, click_off=ragged.offsets(n_click),
                 episode_cat=episodes.active_cat(req_user, req_ts),
                 demand_cat=demands.active_cat(req_user, req_ts), exo_cat=exo_cat, exo_ts=exo_ts,
                 trigger=trigger, related=related, abandoned=abandoned,
                 unrelated_topic=unrelated_topic, chain_ts=chain_ts, chain_on=chain_on,
                 chain_click=chain_click)


def feed_loop(world: World, model: ChoiceModel, req_user: np.ndarray, req_ts: np.ndarray,
               plan: Plan, rng: np.random.Generator, progress: bool) -> LoopResult:
    """Lock-step over users' k-th requests: feed clicks and the searches they trigger."""
    config, users = world.config, world.users
    tp = config.topics_per_cat2
    n = config.num_users
    counts = np.bincount(req_user, minlength=n)
    offs = ragged.offsets(counts)
    order = np.argsort(-counts, kind="stable")
    trig_ts = np.full(n, -1, np.int64)
    trig_cat = np.full(n, -1, np.int64)
    click_item = np.empty(int(plan.n_click.sum()), np.int64)
    drift_cat = np.full(len(req_user), -1, np.int64)
    drift_ts = np.full(len(req_user), -1, np.int64)
    trigger_topic = np.full(len(req_user), -1, np.int64)
    chain_end = np.where(plan.chain_on[:, 2], plan.chain_ts[:, 2],
                         np.where(plan.chain_on[:, 1], plan.chain_ts[:, 1], plan.chain_ts[:, 0]))
    seen: Set[int] = set()  # (user << 32 | item) of clicks in earlier requests
    started = time.time()
    steps = int(counts.max(initial=0))
    for k in range(steps):
        m = _num_active(counts, order, k)
        us = order[:m]
        r = offs[us] + k
        use_trig = trig_ts[us] >= plan.exo_ts[r]
        d_ts = np.where(use_trig, trig_ts[us], plan.exo_ts[r])
        d_cat = np.where(use_trig, trig_cat[us], plan.exo_cat[r])
        drift_cat[r], drift_ts[r] = d_cat, d_ts
        nc = plan.n_click[r]
        has = nc > 0
        if not has.any():
            continue
        rr, cnt = r[has], nc[has]
        rows = np.repeat(np.arange(len(rr)), cnt)
        ru = req_user[rr][rows]
        w = feed_weights(config.dynamics, req_ts[rr], d_ts[has], plan.episode_cat[rr] >= 0,
                         plan.demand_cat[rr] >= 0)[rows]
        args = (w, users.lt_cat[ru], users.lt_weight[ru], d_cat[has][rows],
                plan.episode_cat[rr][rows], plan.demand_cat[rr][rows])
        items = model.sample_feed(rng, *args)
        if config.dynamics.feed_exclude_seen:
            items = _redraw_seen(model, rng, args, ru, items, seen)
        click_item[np.repeat(plan.click_off[rr], cnt) + ragged.positions(cnt)] = items
        trg = plan.trigger[rr]
        if trg.any():
            tr = rr[trg]
            first_item = click_item[plan.click_off[tr]]
            topic = np.where(plan.related[tr], world.items.topic[first_item],
                             plan.unrelated_topic[tr])
            trigger_topic[tr] = topic
            logged = plan.chain_on[tr, 0]
            tu = req_user[tr[logged]]
            trig_ts[tu] = chain_end[tr[logged]]
            trig_cat[tu] = topic[logged] // tp
        if progress and (k % 200 == 0 or k == steps - 1):
            logging.info("feed lock-step %d/%d (%d users active, %.1fs)", k + 1, steps, m,
                         time.time() - started)
    return LoopResult(click_item=click_item, drift_cat=drift_cat, drift_ts=drift_ts,
                 trigger_topic=trigger_topic)


def _redraw_seen(model: ChoiceModel, rng: np.random.Generator, args: Tuple[np.ndarray, ...],
                 user: np.ndarray, items: np.ndarray, seen: Set[int]) -> np.ndarray:
    """Rejection sampling: redraws clicks of items the user clicked in an earlier request.

    Exact for the restricted, renormalised mixture. ``seen`` is updated with this step's clicks.
    """
    keys = (user << 32) | items
    bad = np.fromiter((k in seen for k in keys.tolist()), bool, len(keys))
    for _ in range(_MAX_REDRAWS):
        if not bad.any():
            break
        idx = np.flatnonzero(bad)
        new = model.sample_feed(rng, *(a[idx] for a in args))
        items[idx] = new
        keys[idx] = (user[idx] << 32) | new
        bad[idx] = np.fromiter((k in seen for k in keys[idx].tolist()), bool, len(idx))
    if bad.any():
        logging.warning("%d feed clicks repeat a seen item after %d redraws.", int(bad.sum()),
                        _MAX_REDRAWS)
    seen.update(keys.tolist())
    return items


def _num_active(counts: np.ndarray, order: np.ndarray, k: int) -> int:
    """Users (a prefix of ``order``, sorted by decreasing count) with more than k requests."""
    return int(np.searchsorted(-counts[order], -k, side="left"))


def feed_rows(world: World, model: ChoiceModel, req_user: np.ndarray, req_ts: np.ndarray,
              plan: Plan, loop: LoopResult, rng: np.random.Generator) -> FeedLog:
    """Adds exposures (click = 0), removes in-request duplicates, fixes the row order."""
    users, items = world.users, world.items
    q = len(req_user)
    n_exp = plan.n_deliver - plan.n_click
    e_req = np.repeat(np.arange(q), n_exp)
    e_user = req_user[e_req]
    lt = pick_interest(users.lt_cat[e_user], users.lt_weight[e_user], rng.random(len(e_req)))
    e_cat = np.where(rng.random(len(e_req)) < 0.5, lt, -1)
    e_item = model.sample_feed_groups(e_cat, rng.random(len(e_req)))
    c_req = np.repeat(np.arange(q), plan.n_click)
    c_pos = ragged.positions(plan.n_click)

    req = np.concatenate([c_req, e_req])
    item = np.concatenate([loop.click_item, e_item])
    click = np.concatenate([np.ones(len(c_req), np.int64), np.zeros(len(e_req), np.int64)])
    pos = np.concatenate([c_pos, ragged.positions(n_exp)])
    # Sort by (request, item, clicks first, draw position) with one packed int64 key.
    item_bits = max(1, int(len(items.item_id)).bit_length())
    if q.bit_length() + item_bits + 5 > 62 or q.bit_length() + 24 > 62:
        raise ValueError(f"Too many feed requests ({q}) for the packed sort keys.")
    key = (((req << item_bits | item) << 1 | (1 - click)) << 4) | np.minimum(pos, 15)
    order = np.argsort(key, kind="stable")
    keep = order[ragged.first_in_group(key[order] >> 5)]
    req, item, click, pos = req[keep], item[keep], click[keep], pos[keep]
    shuffle = (req << 24) | rng.integers(0, 1 << 24, len(req))  # Unordered inside a delivery.
    order = np.argsort(shuffle, kind="stable")
    req, item, click, pos = req[order], item[order], click[order], pos[order]

    trigger_row = (click == 1) & (pos == 0) & plan.trigger[req]
    n = len(req)
    duration = items.duration_ms[item]
    watched = duration * np.exp(rng.normal(-0.2, 0.6, n))
    skipped = np.minimum(duration, rng.exponential(2_500.0, n))
    playing = np.round(np.where(click == 1, watched, skipped)).astype(np.int64)
    u = rng.random((n, 3))
    request_trigger_row = np.full(q, -1, np.int64)
    request_trigger_row[req[trigger_row]] = np.flatnonzero(trigger_row)
    return FeedLog(
        user=req_user[req], item=item, ts=req_ts[req], click=click,
        forward=((click == 1) & (u[:, 0] < 0.01)).astype(np.int64),
        like=((click == 1) & (u[:, 1] < 0.06)).astype(np.int64),
        follow=((click == 1) & (u[:, 2] < 0.015)).astype(np.int64),
        search=trigger_row.astype(np.int64),
        related=(trigger_row & plan.related[req]).astype(np.int64),
        playing_ms=playing, duration_ms=duration, request=req, request_user=req_user,
        request_ts=req_ts, request_drift_cat=loop.drift_cat, request_drift_ts=loop.drift_ts,
        request_trigger_row=request_trigger_row)
