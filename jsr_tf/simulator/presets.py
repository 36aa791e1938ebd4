"""Simulator configuration: world sizes, activity rates and the planted dynamics.

``SimConfig`` is a frozen dataclass; the named presets live in ``PRESETS`` (read-only). The
``DynamicsParams`` part is written to the ground-truth folder, because the oracle recomputes the
choice distributions from it (``dynamics.py``).
"""

from __future__ import annotations

import dataclasses
import types
from typing import Any, Callable, Dict, Mapping

MAX_INTERESTS = 6
"""Most long-term interest categories a user can have (slots of ``Users.lt_cat``)."""


@dataclasses.dataclass(frozen=True)
class DynamicsParams:
    """Weights of the choice distributions (shared by the simulator and the oracle).

    Feed: a click at time t is drawn from a mixture over second-level categories with unnormalised
    weights ``feed_long_term`` (the user's sparse long-term interest), ``feed_drift ·
    2^(-(t - s) / drift_half_life)`` (category of the user's last search, made at s < t),
    ``feed_episode`` / ``feed_demand`` (category of an active community episode / spontaneous
    demand) and ``feed_explore`` (global popularity). Inside a category items are drawn in
    proportion to their popularity.

    With ``feed_exclude_seen`` the feed never shows a user an item they clicked in an earlier
    request: the choice is the mixture restricted to unseen items and renormalised,
    ``p(i) [i not in H] / (1 - p(H))`` with H the user's feed clicks strictly before t.

    Search: a click of a session whose query is about topic τ (a sub-topic of a second-level
    category) at time t is drawn from ``search_topic`` · items of τ + ``search_category`` · items of
    τ's category + ``search_personal`` · the user's personal mixture (long-term, episode, demand
    with weights ``personal_*``) + ``search_explore`` · global popularity.

    Attributes:
        feed_long_term: Weight of the long-term interest in the feed mixture.
        feed_drift: Weight of the last searched category right after the search.
        drift_half_life_s: Half-life of the drift weight, seconds.
        feed_episode: Weight of an active community episode's category.
        feed_demand: Weight of an active spontaneous demand's category.
        feed_explore: Weight of global popularity in the feed.
        search_topic: Search mixture weight of the query topic.
        search_category: Search mixture weight of the query topic's category.
        search_personal: Search mixture weight of the personal mixture.
        search_explore: Search mixture weight of global popularity.
        personal_long_term: Unnormalised weight of long-term interest inside the personal part.
        personal_episode: Same for an active community episode.
        personal_demand: Same for an active demand.
        popularity_exponent: Zipf exponent of item popularity (rank^-a).
        feed_exclude_seen: Feed clicks avoid items the user clicked in earlier requests.
    """

    feed_long_term: float = 1.0
    feed_drift: float = 2.0
    drift_half_life_s: float = 3 * 3600.0
    feed_episode: float = 1.5
    feed_demand: float = 1.0
    feed_explore: float = 0.25
    search_topic: float = 0.55
    search_category: float = 0.25
    search_personal: float = 0.15
    search_explore: float = 0.05
    personal_long_term: float = 1.0
    personal_episode: float = 1.0
    personal_demand: float = 1.0
    popularity_exponent: float = 0.85
    feed_exclude_seen: bool = True

    def validate(self) -> None:
        """Raises ``ValueError`` on a negative weight or search weights that do not sum to 1."""
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not value >= 0:
                raise ValueError(f"`{field.name}` should be >= 0. Received: `{field.name}={value}`")
        if self.drift_half_life_s <= 0:
            raise ValueError("`drift_half_life_s` should be positive. Received: "
                             f"`drift_half_life_s={self.drift_half_life_s}`")
        total = (self.search_topic + self.search_category + self.search_personal
                 + self.search_explore)
        if abs(total - 1.0) > 1e-9:
            raise ValueError(f"Search mixture weights should sum to 1. Received: sum={total}")

    def to_dict(self) -> Dict[str, float]:
        """JSON-ready dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "DynamicsParams":
        """Inverse of ``to_dict``; unknown keys raise ``ValueError``."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"Unknown DynamicsParams fields: {unknown}")
        return cls(**values)


@dataclasses.dataclass(frozen=True)
class SimConfig:
    """Everything that shapes one simulated dataset (besides the seed).

    Attributes:
        name: Preset name (recorded in the ground truth).
        num_users: Users.
        num_items: Feed items (VIDEO / IMAGE_ATLAS): the catalogue of ``item_features.csv``.
        num_nonvideo_items: Search-only items (LIVE, USER, …), absent from the feed and features.
        num_words: Word vocabulary shared by captions and queries.
        num_cat1: First-level categories.
        num_cat2: Second-level categories (each has one first-level parent).
        topics_per_cat2: Sub-topics per second-level category (queries and captions use them).
        num_communities: User communities (Zipf sizes) sharing demand episodes.
        visits_per_user: Mean app visits per user over the period (heavy-tailed across users).
        requests_per_visit: Mean feed requests per visit.
        items_per_request: Mean items delivered per feed request.
        background_searches_per_user: Mean spontaneous searches per user (long-term topics).
        trigger_probability: Mean chance that a feed request with a click opens search.
        trigger_related: Share of triggered searches about the watched item's topic.
        abandoned_search: Share of triggered searches that log no session.
        reformulation_after_click: Chance of a follow-up query after a session with a click.
        reformulation_after_no_click: Same after a session without a click.
        episodes_per_community_day: Community demand episodes per community and day.
        episode_participation: Chance that a member joins a community episode.
        episode_jitter_h: Std of a member's start offset around the episode time, hours.
        episode_searches_per_day: Searches per day while in an episode (times search propensity).
        demands_per_user: Mean spontaneous demands (topics outside long-term interests) per user.
        demand_searches_per_hour: Extra searches per hour while a demand is active.
        search_in_visit: Share of exogenous searches made inside an app visit (between two
            feed requests) rather than at an independent time.
        session_click_rate: Mean share of sessions with at least one click.
        no_search_users: Share of users who never search.
        no_click_users: Share of users who never click in the feed.
        social_users: Share of users with outgoing follow edges.
        community_sync: False gives the control world: each member's episodes are drawn
            independently with the same topic and timing marginals.
        dirty_rate: Per fault kind, the share of rows injected in dirty mode (at least 2 each).
        dynamics: Choice-distribution parameters.
    """

    name: str
    num_users: int
    num_items: int
    num_nonvideo_items: int
    num_words: int
    num_cat1: int
    num_cat2: int
    topics_per_cat2: int = 3
    num_communities: int = 50
    visits_per_user: float = 10.0
    requests_per_visit: float = 3.0
    items_per_request: float = 3.5
    background_searches_per_user: float = 3.0
    trigger_probability: float = 0.06
    trigger_related: float = 0.7
    abandoned_search: float = 0.05
    reformulation_after_click: float = 0.1
    reformulation_after_no_click: float = 0.3
    episodes_per_community_day: float = 0.2
    episode_participation: float = 0.8
    episode_jitter_h: float = 6.0
    episode_searches_per_day: float = 0.5
    demands_per_user: float = 1.0
    demand_searches_per_hour: float = 0.1
    search_in_visit: float = 0.8
    session_click_rate: float = 0.6
    no_search_users: float = 0.06
    no_click_users: float = 0.03
    social_users: float = 0.022
    community_sync: bool = True
    dirty_rate: float = 0.0005
    dynamics: DynamicsParams = dataclasses.field(default_factory=DynamicsParams)

    @property
    def num_topics(self) -> int:
        """Sub-topics in the world."""
        return self.num_cat2 * self.topics_per_cat2

    def topical_words(self) -> int:
        """Words reserved for first-level, second-level and topic word sets."""
        return 25 * self.num_cat1 + 15 * self.num_cat2 + 8 * self.num_topics

    def validate(self) -> None:
        """Raises ``ValueError`` (house form) on an inconsistent configuration."""
        positive = ("num_users", "num_items", "num_words", "num_cat1", "num_cat2",
                    "topics_per_cat2", "num_communities")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` should be a positive integer. Received: "
                                 f"`{name}={value!r}`")
        if self.num_users >= 1 << 20:
            raise ValueError(f"`num_users` should be below 2**20. Received: "
                             f"`num_users={self.num_users}`")
        if self.num_cat2 < self.num_cat1:
            raise ValueError(f"`num_cat2` should be >= `num_cat1`. Received: "
                             f"`num_cat2={self.num_cat2}`, `num_cat1={self.num_cat1}`")
        if self.num_items < max(self.num_topics, 200):
            raise ValueError(f"`num_items` should be >= max(num_topics, 200) so that every topic "
                             f"has an item and 99 negatives can be drawn. Received: "
                             f"`num_items={self.num_items}`")
        if self.num_words < self.topical_words() + 300:
            raise ValueError(f"`num_words` should be >= {self.topical_words() + 300} for "
                             f"{self.num_topics} topics. Received: `num_words={self.num_words}`")
        shares = ("trigger_probability", "trigger_related", "abandoned_search",
                  "reformulation_after_click", "reformulation_after_no_click",
                  "episode_participation", "session_click_rate", "no_search_users",
                  "no_click_users", "social_users", "search_in_visit", "dirty_rate")
        for name in shares:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"`{name}` should be in [0, 1]. Received: `{name}={value}`")
        self.dynamics.validate()

    def replace(self, **changes: Any) -> "SimConfig":
        """Returns a validated copy with some fields changed."""
        config = dataclasses.replace(self, **changes)
        config.validate()
        return config


_REGISTRY: Dict[str, Callable[[], SimConfig]] = {}


def _preset(fn: Callable[[], SimConfig]) -> Callable[[], SimConfig]:
    """Registers a preset factory under the config's name (at import time only)."""
    _REGISTRY[fn().name] = fn
    return fn


@_preset
def _tiny() -> SimConfig:
    return SimConfig(name="tiny", num_users=150, num_items=1500, num_nonvideo_items=150,
                     num_words=3000, num_cat1=6, num_cat2=24, num_communities=6,
                     visits_per_user=12.0, background_searches_per_user=5.0,
                     trigger_probability=0.08, episodes_per_community_day=0.5,
                     episode_searches_per_day=1.5)


@_preset
def _small() -> SimConfig:
    return SimConfig(name="small", num_users=2000, num_items=20000, num_nonvideo_items=2000,
                     num_words=20000, num_cat1=20, num_cat2=120, num_communities=20,
                     visits_per_user=9.0, background_searches_per_user=1.5)


@_preset
def _medium() -> SimConfig:
    return SimConfig(name="medium", num_users=10000, num_items=80000, num_nonvideo_items=8000,
                     num_words=50000, num_cat1=30, num_cat2=200, num_communities=50,
                     visits_per_user=13.0, background_searches_per_user=2.5)


@_preset
def _kuaisar_small() -> SimConfig:
    return SimConfig(name="kuaisar_small", num_users=25877, num_items=400000,
                     num_nonvideo_items=40000, num_words=150000, num_cat1=38, num_cat2=297,
                     num_communities=50, visits_per_user=26.0, background_searches_per_user=7.0)


PRESETS: Mapping[str, Callable[[], SimConfig]] = types.MappingProxyType(_REGISTRY)
"""Preset name -> factory of a fresh ``SimConfig``."""


def get_preset(name: str) -> SimConfig:
    """Returns the validated preset ``name`` (``tiny``, ``small``, ``medium``, ``kuaisar_small``).

    Raises:
        ValueError: Unknown preset.
    """
    if name not in PRESETS:
        raise ValueError(f"`preset` should be one of {sorted(PRESETS)}. "
                         f"Received: `preset={name!r}`")
    config = PRESETS[name]()
    config.validate()
    return config
