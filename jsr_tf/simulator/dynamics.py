"""The choice distributions: sampling (simulator) and exact probabilities (oracle), one code path.

A user's state at time t (all arrays are per event, shape ``[n]`` unless noted):
    lt_cat, lt_weight ``[n, MAX_INTERESTS]``: sparse long-term interest (category index, -1 = pad).
    drift_cat, drift_ts: category and time of the user's last search strictly before t
        (``-1`` if none; canonical order puts a feed event before a search at the same ms).
    episode_cat: category of the community episode active at t (``start <= t < end``), or -1.
    demand_cat: category of the spontaneous demand active at t, or -1.

Feed choice (``feed_weights``): components long-term, drift, episode, demand, explore. Search
choice (``SEARCH_COMPONENTS``): topic, category, personal, explore. Every component is a
distribution over one item group (a category, a topic or everything), in which an item's chance is
its weight over the group's total weight. ``ChoiceModel`` draws from the mixture with
``GroupedSampler`` and computes the same mixture's probability of any candidate item.

With ``DynamicsParams.feed_exclude_seen`` the feed choice is this mixture restricted to items the
user did not click in an earlier request, renormalised: the simulator draws it by rejection
(``feed._redraw_seen``) and the oracle divides by ``1 - p(seen)`` (``jsr_tf.simulator.oracle``).
"""

from __future__ import annotations

import numpy as np

from jsr_tf.simulator.presets import DynamicsParams

FEED_COMPONENTS = ("long_term", "drift", "episode", "demand", "explore")
SEARCH_COMPONENTS = ("topic", "category", "personal", "explore")
PERSONAL_COMPONENTS = ("long_term", "episode", "demand")

NONE = -1


def feed_weights(params: DynamicsParams, t: np.ndarray, drift_ts: np.ndarray,
                 has_episode: np.ndarray, has_demand: np.ndarray) -> np.ndarray:
    """Normalised feed mixture weights ``[n, 5]`` in ``FEED_COMPONENTS`` order.

    Args:
        params: Dynamics parameters.
        t: Event times, ms.
        drift_ts: Time of the last earlier search, ms; negative = none.
        has_episode: Whether a community episode is active at t.
        has_demand: Whether a demand is active at t.
    """
    t = np.asarray(t, np.int64)
    drift_ts = np.asarray(drift_ts, np.int64)
    age_h = (t - drift_ts) / (params.drift_half_life_s * 1000.0)
    drift = np.where(drift_ts >= 0, params.feed_drift * np.exp2(-np.maximum(age_h, 0.0)), 0.0)
    raw = np.stack([
        np.full(t.shape, params.feed_long_term, np.float64),
        drift,
        np.where(has_episode, params.feed_episode, 0.0),
        np.where(has_demand, params.feed_demand, 0.0),
        np.full(t.shape, params.feed_explore, np.float64),
    ], axis=-1)
    return raw / raw.sum(axis=-1, keepdims=True)


def personal_weights(params: DynamicsParams, has_episode: np.ndarray,
                     has_demand: np.ndarray) -> np.ndarray:
    """Normalised weights ``[n, 3]`` of the personal part of search (``PERSONAL_COMPONENTS``)."""
    has_episode = np.asarray(has_episode, bool)
    raw = np.stack([
        np.full(has_episode.shape, params.personal_long_term, np.float64),
        np.where(has_episode, params.personal_episode, 0.0),
        np.where(has_demand, params.personal_demand, 0.0),
    ], axis=-1)
    return raw / raw.sum(axis=-1, keepdims=True)


def search_weights(params: DynamicsParams) -> np.ndarray:
    """Search mixture weights ``[4]`` in ``SEARCH_COMPONENTS`` order."""
    return np.array([params.search_topic, params.search_category, params.search_personal,
                     params.search_explore], np.float64)


def pick_component(weights: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF choice of a component per row. ``weights [n, k]`` rows sum to 1, ``u [n]``."""
    cum = np.cumsum(weights, axis=-1)
    return np.minimum((u[:, None] >= cum[:, :-1]).sum(axis=-1), weights.shape[-1] - 1)


def pick_interest(lt_cat: np.ndarray, lt_weight: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Draws one long-term category per row from ``lt_weight [n, S]`` (rows sum to 1)."""
    cum = np.cumsum(lt_weight, axis=-1)
    valid = (lt_cat >= 0).sum(axis=-1)
    slot = np.minimum((u[:, None] >= cum).sum(axis=-1), valid - 1)
    return lt_cat[np.arange(len(u)), slot]


def interest_weight(lt_cat: np.ndarray, lt_weight: np.ndarray, cats: np.ndarray) -> np.ndarray:
    """Long-term weight ``[n, C]`` of each candidate category ``cats [n, C]`` (``lt_* [n, S]``)."""
    match = cats[:, :, None] == lt_cat[:, None, :]
    match &= cats[:, :, None] >= 0
    return (match * lt_weight[:, None, :]).sum(axis=-1)


class GroupedSampler:
    """Draws items from per-group distributions proportional to fixed item weights.

    One item may belong to several groups (e.g. its topic, its category and the global group).

    Args:
        groups: Group of each membership ``[m]``.
        members: Item of each membership ``[m]``.
        weights: Weight of each membership ``[m]``; zero-weight memberships are dropped.
        num_groups: Number of groups.
    """

    def __init__(self, groups: np.ndarray, members: np.ndarray, weights: np.ndarray,
                 num_groups: int) -> None:
        keep = weights > 0
        groups, members, weights = groups[keep], members[keep], weights[keep]
        order = np.lexsort((members, groups))
        self.num_groups = num_groups
        self._members = members[order].astype(np.int64)
        self._groups = groups[order]
        self._cum = np.cumsum(weights[order].astype(np.float64))
        self._start = np.searchsorted(self._groups, np.arange(num_groups), side="left")
        self._end = np.searchsorted(self._groups, np.arange(num_groups), side="right")
        lo = np.where(self._start > 0, self._cum[np.maximum(self._start - 1, 0)], 0.0)
        hi = np.where(self._end > 0, self._cum[np.maximum(self._end - 1, 0)], 0.0)
        self._lo = lo
        self._hi = hi
        self.totals = np.bincount(groups, weights=weights, minlength=num_groups)

    def empty_groups(self) -> np.ndarray:
        """Indices of groups without any positive-weight item."""
        return np.flatnonzero(self._end == self._start)

    def sample(self, groups: np.ndarray, u: np.ndarray) -> np.ndarray:
        """One item per ``(group, uniform)`` pair: P(item) = weight / group total.

        Raises:
            ValueError: A requested group is empty.
        """
        groups = np.asarray(groups, np.int64)
        if groups.size and np.any(self._end[groups] == self._start[groups]):
            raise ValueError("Cannot sample from an empty item group.")
        x = self._lo[groups] + u * (self._hi[groups] - self._lo[groups])
        pos = np.searchsorted(self._cum, x, side="right")
        pos = np.clip(pos, self._start[groups], self._end[groups] - 1)
        return self._members[pos]


class ChoiceModel:
    """The feed and search choice distributions over one item universe.

    Args:
        params: Dynamics parameters.
        item_cat2: ``[I]`` second-level category index of every item.
        item_topic: ``[I]`` topic index of every item.
        feed_weight: ``[I]`` feed weight (0 = never in the feed).
        search_weight: ``[I]`` search weight.
        num_cat2: Number of second-level categories.
        num_topics: Number of topics.
    """

    def __init__(self, params: DynamicsParams, item_cat2: np.ndarray, item_topic: np.ndarray,
                 feed_weight: np.ndarray, search_weight: np.ndarray, num_cat2: int,
                 num_topics: int) -> None:
        self.params = params
        self.num_cat2 = num_cat2
        self.num_topics = num_topics
        self.item_cat2 = np.asarray(item_cat2, np.int64)
        self.num_items = len(self.item_cat2)
        self.item_topic = np.asarray(item_topic, np.int64)
        self.feed_weight = np.asarray(feed_weight, np.float64)
        self.search_weight = np.asarray(search_weight, np.float64)
        items = np.arange(len(self.item_cat2), dtype=np.int64)
        self.feed = GroupedSampler(
            np.concatenate([self.item_cat2, np.full(len(items), num_cat2)]),
            np.concatenate([items, items]), np.concatenate([self.feed_weight] * 2), num_cat2 + 1)
        self.search = GroupedSampler(
            np.concatenate([self.item_topic, num_topics + self.item_cat2,
                            np.full(len(items), num_topics + num_cat2)]),
            np.concatenate([items, items, items]), np.concatenate([self.search_weight] * 3),
            num_topics + num_cat2 + 1)

    # -- feed ------------------------------------------------------------------------------------
    def sample_feed(self, rng: np.random.Generator, weights: np.ndarray, lt_cat: np.ndarray,
                    lt_weight: np.ndarray, drift_cat: np.ndarray, episode_cat: np.ndarray,
                    demand_cat: np.ndarray) -> np.ndarray:
        """Draws one feed click per row from the mixture (``weights`` from ``feed_weights``)."""
        n = len(weights)
        u = rng.random((n, 3))
        comp = pick_component(weights, u[:, 0])
        lt = pick_interest(lt_cat, lt_weight, u[:, 1])
        cats = np.stack([lt, drift_cat, episode_cat, demand_cat, np.full(n, NONE)], axis=-1)
        cat = cats[np.arange(n), comp]
        return self.feed.sample(np.where(cat >= 0, cat, self.num_cat2), u[:, 2])

    def sample_feed_groups(self, cats: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Draws feed items of category ``cats`` (-1 = global popularity)."""
        return self.feed.sample(np.where(cats >= 0, cats, self.num_cat2), u)

    def feed_probabilities(self, weights: np.ndarray, lt_cat: np.ndarray, lt_weight: np.ndarray,
                           drift_cat: np.ndarray, episode_cat: np.ndarray,
                           demand_cat: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Exact feed choice probability ``[n, C]`` of item indices ``items [n, C]`` (-1 -> 0)."""
        known = items >= 0
        idx = np.where(known, items, 0)
        cat = self.item_cat2[idx]
        w = self.feed_weight[idx]
        within = w / self.feed.totals[cat]
        mass = (weights[:, 0:1] * interest_weight(lt_cat, lt_weight, cat)
                + weights[:, 1:2] * (cat == drift_cat[:, None])
                + weights[:, 2:3] * (cat == episode_cat[:, None])
                + weights[:, 3:4] * (cat == demand_cat[:, None]))
        p = within * mass + weights[:, 4:5] * w / self.feed.totals[self.num_cat2]
        return np.where(known, p, 0.0)

    # -- search ----------------------------------------------------------------------------------
    def sample_search(self, rng: np.random.Generator, topic: np.ndarray, personal: np.ndarray,
                      lt_cat: np.ndarray, lt_weight: np.ndarray, episode_cat: np.ndarray,
                      demand_cat: np.ndarray) -> np.ndarray:
        """Draws one search click per row given the query topic and the personal weights."""
        n = len(topic)
        u = rng.random((n, 4))
        comp = pick_component(np.broadcast_to(search_weights(self.params), (n, 4)), u[:, 0])
        part = pick_component(personal, u[:, 1])
        lt = pick_interest(lt_cat, lt_weight, u[:, 2])
        personal_cat = np.stack([lt, episode_cat, demand_cat], axis=-1)[np.arange(n), part]
        group = np.select(
            [comp == 0, comp == 1, comp == 2],
            [topic, self.num_topics + self.topic_cat2(topic),
             self.num_topics + personal_cat],
            self.num_topics + self.num_cat2)
        return self.search.sample(group, u[:, 3])

    def sample_search_groups(self, groups: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Draws items of raw search groups (topics, then ``num_topics + cat``, then global)."""
        return self.search.sample(groups, u)

    def topic_cat2(self, topic: np.ndarray) -> np.ndarray:
        """Category of each topic (topics are numbered category-major)."""
        return np.asarray(topic, np.int64) // (self.num_topics // self.num_cat2)

    def search_probabilities(self, topic: np.ndarray, personal: np.ndarray, lt_cat: np.ndarray,
                             lt_weight: np.ndarray, episode_cat: np.ndarray,
                             demand_cat: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Exact search click probability ``[n, C]`` of item indices ``items [n, C]`` (-1 -> 0)."""
        known = items >= 0
        idx = np.where(known, items, 0)
        cat = self.item_cat2[idx]
        top = self.item_topic[idx]
        w = self.search_weight[idx]
        mix = search_weights(self.params)
        totals = self.search.totals
        query_cat = self.topic_cat2(topic)
        p_topic = (top == topic[:, None]) * w / totals[np.asarray(topic)][:, None]
        p_cat = (cat == query_cat[:, None]) * w / totals[self.num_topics + query_cat][:, None]
        within = w / totals[self.num_topics + cat]
        p_personal = within * (personal[:, 0:1] * interest_weight(lt_cat, lt_weight, cat)
                               + personal[:, 1:2] * (cat == episode_cat[:, None])
                               + personal[:, 2:3] * (cat == demand_cat[:, None]))
        p_global = w / totals[self.num_topics + self.num_cat2]
        p = mix[0] * p_topic + mix[1] * p_cat + mix[2] * p_personal + mix[3] * p_global
        return np.where(known, p, 0.0)
