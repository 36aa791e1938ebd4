"""The simulated world: everything drawn once per seed, before any event happens.

See ``catalog`` (categories, words, items) and ``population`` (users, communities, schedules).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jsr_tf.simulator.catalog import (CAPTION_SOURCES, QUERY_SOURCES, SEARCH_ITEM_TYPES,
                                      UPLOAD_TYPES, Categories, Items, Vocabulary,
                                      build_categories, build_items, build_vocabulary,
                                      draw_words)
from jsr_tf.simulator.population import (Schedule, Users, build_follows, build_schedule,
                                         build_users)
from jsr_tf.simulator.presets import SimConfig
from jsr_tf.simulator.seeding import derive_rng

__all__ = ["CAPTION_SOURCES", "QUERY_SOURCES", "SEARCH_ITEM_TYPES", "UPLOAD_TYPES", "Categories",
           "Items", "Schedule", "Users", "Vocabulary", "World", "build_world", "draw_words"]


@dataclasses.dataclass(frozen=True)
class World:
    """Everything drawn before the first event.

    Attributes:
        config: The configuration it was drawn from.
        categories, vocabulary, items: The catalogue (``catalog``).
        users, schedule: The population and its episodes / demands (``population``).
        follows: ``[E, 2]`` directed follow edges as user indices (follower, followed).
    """

    config: SimConfig
    categories: Categories
    vocabulary: Vocabulary
    items: Items
    users: Users
    schedule: Schedule
    follows: np.ndarray


def build_world(config: SimConfig, seed: int) -> World:
    """Draws the world of ``config`` with ``seed`` (deterministic)."""
    config.validate()
    categories = build_categories(config, derive_rng(seed, "categories"))
    vocabulary = build_vocabulary(config, derive_rng(seed, "vocabulary"))
    items = build_items(config, categories, vocabulary, derive_rng(seed, "items"))
    users = build_users(config, categories, derive_rng(seed, "users"))
    schedule = build_schedule(config, categories, users, derive_rng(seed, "schedule"))
    follows = build_follows(config, users, derive_rng(seed, "follows"))
    return World(config, categories, vocabulary, items, users, schedule, follows)
