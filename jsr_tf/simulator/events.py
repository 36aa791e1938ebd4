"""Event generation: feed requests, search sessions and the planted transitions between them.

The process (all times in the KuaiSAR-small period):

1. **Feed requests.** Each user makes heavy-tailed numbers of app visits (Beijing-time daily
   profile); a visit is a burst of feed requests seconds apart. A request delivers several items at
   one timestamp; each is clicked with the user's click propensity. Clicked items are drawn from the
   feed choice distribution p(i | state at t) (``dynamics.ChoiceModel.sample_feed``); the others
   (``click = 0``) are exposures drawn from the user's interests and global popularity.
2. **Exogenous searches** (their timing does not depend on feed clicks): background searches about
   long-term interests, searches during community episodes and spontaneous demands, each followed
   by query reformulations with some chance. Most happen inside an app visit, between two feed
   requests (``search.into_visits``), so the feed continues right after them.
3. **Feed -> search.** After a request with a click, the user may open search while watching the
   first clicked item (that row gets ``search = 1``): about the item's topic
   (``search_item_related = 1``) or about something else; a few such searches are abandoned (no
   session). The session comes seconds later, before the next request; reformulations may follow.
4. **Search -> feed.** The category of the user's last search enters the feed mixture with a weight
   that halves every ``drift_half_life_s``.

Because step 3 depends on clicks that depend on step 4, requests are simulated in lock-step over
users: iteration k handles every user's k-th request at once (numpy over users). Search clicks do
not feed back into the state, so sessions are filled in afterwards, all at once.
"""

from __future__ import annotations

from jsr_tf.simulator.dynamics import ChoiceModel
from jsr_tf.simulator.feed import feed_loop, feed_requests, feed_rows, request_plan
from jsr_tf.simulator.logs import (BACKGROUND, DEMAND, EPISODE, ORIGINS, REFORMULATION,
                                   SEARCH_SOURCES, TRIGGER_RELATED, TRIGGER_UNRELATED,
                                   EventLog, FeedLog, SearchLog)
from jsr_tf.simulator.search import exogenous_sessions, sessions
from jsr_tf.simulator.seeding import derive_rng
from jsr_tf.simulator.state import IntervalTable
from jsr_tf.simulator.world import World

__all__ = ["BACKGROUND", "DEMAND", "EPISODE", "ORIGINS", "REFORMULATION", "SEARCH_SOURCES",
           "TRIGGER_RELATED", "TRIGGER_UNRELATED", "EventLog", "FeedLog", "SearchLog",
           "choice_model", "demand_table", "episode_table", "simulate_events"]


def choice_model(world: World) -> ChoiceModel:
    """The world's choice distributions."""
    items, config = world.items, world.config
    return ChoiceModel(config.dynamics, items.cat2, items.topic, items.feed_weight,
                       items.search_weight, config.num_cat2, config.num_topics)


def episode_table(world: World) -> IntervalTable:
    """Community episodes as an interval table."""
    s = world.schedule
    return IntervalTable(s.episode_user, s.episode_start, s.episode_end, s.episode_cat2,
                         s.episode_topic)


def demand_table(world: World) -> IntervalTable:
    """Spontaneous demands as an interval table."""
    s = world.schedule
    return IntervalTable(s.demand_user, s.demand_start, s.demand_end, s.demand_cat2,
                         s.demand_topic)


def simulate_events(world: World, seed: int, progress: bool = False) -> EventLog:
    """Runs the process described in the module docstring (deterministic in ``seed``).

    Args:
        world: The world from ``build_world``.
        seed: Seed of the event streams.
        progress: Log progress lines (long runs).

    Returns:
        The event log.
    """
    model = choice_model(world)
    episodes, demands = episode_table(world), demand_table(world)
    req_user, req_ts = feed_requests(world, derive_rng(seed, "events", "requests"))
    exo = exogenous_sessions(world, derive_rng(seed, "events", "exogenous"), req_user, req_ts)
    plan = request_plan(world, req_user, req_ts, exo, episodes, demands,
                        derive_rng(seed, "events", "plan"))
    loop = feed_loop(world, model, req_user, req_ts, plan, derive_rng(seed, "events", "loop"),
                     progress)
    feed = feed_rows(world, model, req_user, req_ts, plan, loop,
                     derive_rng(seed, "events", "feed_rows"))
    search = sessions(world, model, exo, plan, loop, feed, episodes, demands, seed)
    return EventLog(feed, search)
