"""Users, communities and their time-bound states (community episodes, spontaneous demands).

Users have a sparse long-term interest (a few second-level categories, Dirichlet weights, partly
drawn from their community's preferences), heavy-tailed activity, a search propensity (0 for some)
and a click propensity (0 for some). Each community has demand episodes: a topic becomes hot at a
community time and every participating member enters it within hours (``community_sync``); the
control world draws each member's episodes independently with the same marginals. Follow edges
are sparse and mostly inside communities.
"""

from __future__ import annotations

import dataclasses
from typing import Tuple

import numpy as np

from jsr_tf.simulator import clock, ragged
from jsr_tf.simulator.catalog import Categories, distinct_ids
from jsr_tf.simulator.presets import MAX_INTERESTS, SimConfig


@dataclasses.dataclass(frozen=True)
class Users:
    """Users and their latent traits (index order = file order).

    Attributes:
        user_id: ``[U]`` sparse int64 ids.
        community: ``[U]`` community index.
        lt_cat, lt_weight: ``[U, MAX_INTERESTS]`` long-term interest (-1 / 0 padded; rows sum to 1).
        activity: ``[U]`` feed activity multiplier (mean 1, heavy-tailed).
        search_propensity: ``[U]`` search multiplier (0 = never searches).
        click_propensity: ``[U]`` chance that a delivered item is clicked (0 = never clicks).
        session_click_rate: ``[U]`` chance that a search session has a click.
        features: ``[U, 4]`` search_active_level, rec_active_level, onehot_feat1, onehot_feat2.
    """

    user_id: np.ndarray
    community: np.ndarray
    lt_cat: np.ndarray
    lt_weight: np.ndarray
    activity: np.ndarray
    search_propensity: np.ndarray
    click_propensity: np.ndarray
    session_click_rate: np.ndarray
    features: np.ndarray


@dataclasses.dataclass(frozen=True)
class Schedule:
    """Time-bound states, each a per-user non-overlapping interval list sorted by (user, start).

    Attributes:
        episode_*: community episodes per member (``episode_event`` = community episode index).
        demand_*: spontaneous demands.
        community_episode_*: the community-level episodes (community, time, category, topic).
    """

    episode_user: np.ndarray
    episode_start: np.ndarray
    episode_end: np.ndarray
    episode_cat2: np.ndarray
    episode_topic: np.ndarray
    episode_event: np.ndarray
    demand_user: np.ndarray
    demand_start: np.ndarray
    demand_end: np.ndarray
    demand_cat2: np.ndarray
    demand_topic: np.ndarray
    community_episode_community: np.ndarray
    community_episode_time: np.ndarray
    community_episode_cat2: np.ndarray
    community_episode_topic: np.ndarray


def build_users(config: SimConfig, cats: Categories, rng: np.random.Generator) -> Users:
    n, n2 = config.num_users, config.num_cat2
    user_id = distinct_ids(rng, n, ((10_000, 2**31, 0.5), (2**31, 4_200_000_000, 0.5)))
    comm_p = (np.arange(config.num_communities) + 1.0) ** -0.7
    community = rng.choice(config.num_communities, n, p=comm_p / comm_p.sum())
    prefs = np.stack([rng.choice(n2, 3, replace=False, p=cats.cat2_share)
                      for _ in range(config.num_communities)])
    share = cats.cat2_share ** 0.8
    share /= share.sum()
    num_interests = np.clip(1 + rng.poisson(1.5, n), 1, MAX_INTERESTS)
    lt_cat = np.full((n, MAX_INTERESTS), -1, np.int64)
    lt_weight = np.zeros((n, MAX_INTERESTS))
    slots = (n, 4 * MAX_INTERESTS)
    draws = np.where(rng.random(slots) < 0.35,
                     prefs[community][np.arange(n)[:, None], rng.integers(0, 3, slots)],
                     rng.choice(n2, slots, p=share))
    gamma = rng.gamma(1.0, 1.0, (n, MAX_INTERESTS))
    for u in range(n):
        _, first = np.unique(draws[u], return_index=True)
        chosen = draws[u][np.sort(first)][:num_interests[u]]
        k = len(chosen)
        lt_cat[u, :k] = chosen
        lt_weight[u, :k] = gamma[u, :k] / gamma[u, :k].sum()

    activity = np.exp(rng.normal(0.0, 1.0, n))
    activity /= activity.mean()
    search = np.exp(rng.normal(0.0, 0.7, n))
    search /= search.mean()
    search[rng.random(n) < config.no_search_users] = 0.0
    click = rng.beta(5.0, 5.0, n)
    click[rng.random(n) < config.no_click_users] = 0.0
    a = 10.0 * config.session_click_rate
    session_click = rng.beta(a, 10.0 - a, n)

    def level(x: np.ndarray) -> np.ndarray:
        noisy = x * np.exp(rng.normal(0.0, 0.3, n))
        return 1 + np.searchsorted(np.quantile(noisy, [0.25, 0.5, 0.75]), noisy)

    features = np.stack([np.where(search > 0, level(search), 0), level(activity),
                         rng.choice(3, n, p=[0.5, 0.3, 0.2]),
                         np.where(rng.random(n) < 0.3, cats.cat2_parent[lt_cat[:, 0]] % 8,
                                  rng.integers(0, 8, n))], axis=1)
    return Users(user_id=user_id, community=community, lt_cat=lt_cat, lt_weight=lt_weight,
                 activity=activity, search_propensity=search, click_propensity=click,
                 session_click_rate=session_click, features=features.astype(np.int64))


def _non_overlapping(user: np.ndarray, start: np.ndarray, end: np.ndarray
                     ) -> Tuple[np.ndarray, np.ndarray]:
    """Sort order by (user, start) and ends cut at the user's next start; drops empty ones."""
    order = np.lexsort((start, user))
    user, start, end = user[order], start[order], end[order].copy()
    same = np.flatnonzero(user[1:] == user[:-1])
    end[same] = np.minimum(end[same], start[same + 1])
    keep = end > start
    return order[keep], end[keep]


def build_schedule(config: SimConfig, cats: Categories, users: Users,
              rng: np.random.Generator) -> Schedule:
    start_p, end_p = clock.PERIOD_START_MS, clock.PERIOD_END_MS
    tp = config.topics_per_cat2
    prefs_p = cats.cat2_share
    # Community-level episodes.
    per = rng.poisson(config.episodes_per_community_day * clock.PERIOD_DAYS,
                      config.num_communities) + 1
    ce_comm = np.repeat(np.arange(config.num_communities), per)
    ce_time = rng.integers(start_p - 12 * clock.HOUR_MS, end_p - 12 * clock.HOUR_MS, len(ce_comm))
    ce_cat2 = rng.choice(config.num_cat2, len(ce_comm), p=prefs_p)
    ce_topic = ce_cat2 * tp + rng.integers(0, tp, len(ce_comm))

    # Members join the episodes of their community.
    members = [np.flatnonzero(users.community == c) for c in range(config.num_communities)]
    ev = np.concatenate([np.full(len(members[c]), e) for e, c in enumerate(ce_comm)]
                        ) if len(ce_comm) else np.empty(0, np.int64)
    usr = np.concatenate([members[c] for c in ce_comm]) if len(ce_comm) else np.empty(0, np.int64)
    ev, usr = ev.astype(np.int64), usr.astype(np.int64)
    join = rng.random(len(usr)) < config.episode_participation
    ev, usr = ev[join], usr[join]
    jitter = rng.normal(0.0, config.episode_jitter_h * clock.HOUR_MS, len(usr))
    if config.community_sync:
        begin = ce_time[ev] + jitter.astype(np.int64)
        topic = ce_topic[ev]
    else:  # Control: same marginals, drawn per member.
        first = ragged.offsets(per)[:-1]
        comm = ce_comm[ev]
        other = first[comm] + (rng.random(len(usr)) * per[comm]).astype(np.int64)
        begin = (rng.integers(start_p - 12 * clock.HOUR_MS, end_p - 12 * clock.HOUR_MS, len(usr))
                 + jitter.astype(np.int64))
        topic = ce_topic[other]
    stop = begin + rng.integers(clock.DAY_MS, 2 * clock.DAY_MS, len(usr))
    begin, stop = np.maximum(begin, start_p), np.minimum(stop, end_p)
    order, stop = _non_overlapping(usr, begin, stop)

    # Spontaneous demands outside the long-term interests.
    count = rng.poisson(config.demands_per_user, config.num_users)
    d_user = np.repeat(np.arange(config.num_users), count)
    d_cat = rng.choice(config.num_cat2, len(d_user), p=prefs_p)
    for _ in range(8):  # Redraw categories that hit a long-term interest.
        bad = (users.lt_cat[d_user] == d_cat[:, None]).any(axis=1)
        if not bad.any():
            break
        d_cat[bad] = rng.choice(config.num_cat2, int(bad.sum()), p=prefs_p)
    d_topic = d_cat * tp + rng.integers(0, tp, len(d_user))
    d_start = rng.integers(start_p, end_p - clock.HOUR_MS, len(d_user))
    d_len = np.clip(np.exp(rng.normal(np.log(6.0), 0.5, len(d_user))), 2.0, 12.0)
    d_end = np.minimum(d_start + (d_len * clock.HOUR_MS).astype(np.int64), end_p)
    d_order, d_end = _non_overlapping(d_user, d_start, d_end)
    return Schedule(
        episode_user=usr[order], episode_start=begin[order], episode_end=stop,
        episode_cat2=topic[order] // tp, episode_topic=topic[order], episode_event=ev[order],
        demand_user=d_user[d_order], demand_start=d_start[d_order], demand_end=d_end,
        demand_cat2=d_cat[d_order], demand_topic=d_topic[d_order],
        community_episode_community=ce_comm, community_episode_time=ce_time,
        community_episode_cat2=ce_cat2, community_episode_topic=ce_topic)


def build_follows(config: SimConfig, users: Users, rng: np.random.Generator) -> np.ndarray:
    n = config.num_users
    followers = rng.choice(n, max(2, int(round(config.social_users * n))), replace=False)
    out_degree = 1 + rng.poisson(2.0, len(followers))
    src = np.repeat(followers, out_degree)
    members = [np.flatnonzero(users.community == c) for c in range(config.num_communities)]
    same = rng.random(len(src)) < 0.8
    dst = rng.integers(0, n, len(src))
    pick = rng.random(len(src))
    for i in np.flatnonzero(same):
        pool = members[users.community[src[i]]]
        dst[i] = pool[int(pick[i] * len(pool))]
    edges = np.stack([src, dst], axis=1)
    edges = edges[edges[:, 0] != edges[:, 1]]
    return np.unique(edges, axis=0)
