"""Simulate a world and write it as a KuaiSAR directory plus its ground truth."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import Dict, Optional

import numpy as np

from jsr_tf import filenames as FN
from jsr_tf.simulator import clock, dirty as dirty_lib, groundtruth as gt, writer
from jsr_tf.simulator.events import ORIGINS, REFORMULATION, TRIGGER_RELATED, \
    TRIGGER_UNRELATED, EventLog, simulate_events
from jsr_tf.simulator.presets import SimConfig
from jsr_tf.simulator.seeding import derive_rng
from jsr_tf.simulator.world import World, build_world


@dataclasses.dataclass(frozen=True)
class Simulation:
    """An in-memory simulated dataset (world + behaviour)."""

    config: SimConfig
    seed: int
    world: World
    log: EventLog


@dataclasses.dataclass(frozen=True)
class Summary:
    """What ``generate`` wrote.

    Attributes:
        output_dir: The KuaiSAR directory.
        rows: Data lines per CSV file (dirty lines included).
        users, items, search_only_items, sessions, feed_clicks: Sizes.
        faults: Injected faults per file (empty without dirty mode).
        seconds: Wall time.
    """

    output_dir: str
    rows: Dict[str, int]
    users: int
    items: int
    search_only_items: int
    sessions: int
    feed_clicks: int
    faults: Dict[str, Dict[str, int]]
    seconds: float

    def format(self) -> str:
        """A short human-readable report."""
        lines = [f"KuaiSAR-format data in {self.output_dir}"]
        for name, count in self.rows.items():
            lines.append(f"  {name:<20s} {count:>12,d} rows")
        lines.append(f"  users {self.users:,d}, feed items {self.items:,d}, search-only items "
                     f"{self.search_only_items:,d}, sessions {self.sessions:,d}, feed clicks "
                     f"{self.feed_clicks:,d}")
        if self.faults:
            total = sum(sum(v.values()) for v in self.faults.values())
            lines.append(f"  dirty mode: {total} faulty lines (see oracle/{gt.DIRTY_FAULTS})")
        lines.append(f"  took {self.seconds:.1f}s")
        return "\n".join(lines)


def simulate(config: SimConfig, seed: int, progress: bool = False) -> Simulation:
    """Draws the world and its behaviour (no files)."""
    world = build_world(config, seed)
    if progress:
        logging.info("world: %d users, %d items", config.num_users, len(world.items.item_id))
    return Simulation(config, seed, world, simulate_events(world, seed, progress=progress))


def generate(config: SimConfig, seed: int, output_dir: str, dirty: bool = False,
             progress: bool = False, simulation: Optional[Simulation] = None) -> Summary:
    """Simulates and writes the five CSVs and ``oracle/``.

    Args:
        config: The preset (or a modified one).
        seed: Seed; the same seed, config and ``dirty`` give byte-identical files.
        output_dir: Directory to create or overwrite files in.
        dirty: Inject the faults of spec §3.5 (extra lines, counted in the ground truth).
        progress: Log progress lines.
        simulation: A precomputed ``simulate(config, seed)`` result to write.

    Returns:
        A ``Summary``.
    """
    start = time.time()
    sim = simulation or simulate(config, seed, progress)
    if sim.config != config or sim.seed != seed:
        raise ValueError("`simulation` was made with another config or seed.")
    world, log = sim.world, sim.log
    os.makedirs(gt.folder(output_dir), exist_ok=True)
    item_order = derive_rng(seed, "writer", "item_order").permutation(world.items.num_feed)
    tables = {
        FN.REC_INTER: writer.rec_table(world, log),
        FN.SRC_INTER: writer.src_table(world, log),
        FN.ITEM_FEATURES: writer.item_table(world, item_order),
        FN.USER_FEATURES: writer.user_table(world),
        FN.SOCIAL_NETWORK: writer.social_table(world),
    }
    first_rows = log.search.row_offsets[:-1]
    insertions = {name: writer.Insertions.none() for name in tables}
    faults: Dict[str, Dict[str, int]] = {}
    if dirty:
        for name, table in tables.items():
            insertions[name], faults[name] = dirty_lib.plan_faults(
                table, derive_rng(seed, "dirty", name), config.dirty_rate, first_rows,
                world.items.spare_ids)
    rows = {}
    for name in writer.FILES:
        t0 = time.time()
        rows[name] = writer.write_table(tables[name], output_dir, insertions[name])
        if progress:
            logging.info("wrote %s: %d rows (%.1fs)", name, rows[name], time.time() - t0)
    _write_ground_truth(sim, output_dir, insertions, faults, rows, dirty)
    return Summary(output_dir=output_dir, rows=rows, users=config.num_users,
                   items=world.items.num_feed,
                   search_only_items=len(world.items.item_id) - world.items.num_feed,
                   sessions=len(log.search.user), feed_clicks=int(log.feed.click.sum()),
                   faults=faults, seconds=time.time() - start)


def _write_ground_truth(sim: Simulation, output_dir: str,
                        insertions: Dict[str, writer.Insertions],
                        faults: Dict[str, Dict[str, int]], rows: Dict[str, int],
                        dirty: bool) -> None:
    world, log, config = sim.world, sim.log, sim.config
    folder = gt.folder(output_dir)
    items, users, sched, s = world.items, world.users, world.schedule, log.search

    gt.save_array(os.path.join(folder, gt.ITEMS), gt.records(
        gt.ITEM_DTYPE, item_id=items.item_id, kind=items.kind, cat2=items.cat2, topic=items.topic,
        feed_weight=items.feed_weight, search_weight=items.search_weight))
    gt.save_array(os.path.join(folder, gt.USERS), gt.records(
        gt.USER_DTYPE, user_id=users.user_id, community=users.community, lt_cat=users.lt_cat,
        lt_weight=users.lt_weight))

    src_rows = insertions[FN.SRC_INTER]
    first_row = src_rows.final_rows(s.row_offsets[:-1])
    parent = s.parent.copy()
    trig = (s.origin == TRIGGER_RELATED) | (s.origin == TRIGGER_UNRELATED)
    parent[trig] = insertions[FN.REC_INTER].final_rows(parent[trig])
    ref = s.origin == REFORMULATION
    parent[ref] = first_row[parent[ref]]
    gt.save_array(os.path.join(folder, gt.SESSIONS), gt.records(
        gt.SESSION_DTYPE, user=s.user, ts=s.ts, topic=s.topic, first_row=first_row,
        num_rows=np.diff(s.row_offsets), session_id=s.session_id, origin=s.origin,
        parent=parent, has_click=s.has_click))
    gt.save_array(os.path.join(folder, gt.INTERVALS), np.concatenate([
        gt.records(gt.INTERVAL_DTYPE, kind=np.full(len(sched.episode_user), gt.EPISODE),
                   user=sched.episode_user, start=sched.episode_start, end=sched.episode_end,
                   cat2=sched.episode_cat2, topic=sched.episode_topic, event=sched.episode_event),
        gt.records(gt.INTERVAL_DTYPE, kind=np.full(len(sched.demand_user), gt.DEMAND),
                   user=sched.demand_user, start=sched.demand_start, end=sched.demand_end,
                   cat2=sched.demand_cat2, topic=sched.demand_topic,
                   event=np.full(len(sched.demand_user), -1))]))

    feed = log.feed
    clicks = np.flatnonzero(feed.click == 1)
    clicks = clicks[np.lexsort((clicks, feed.ts[clicks], feed.user[clicks]))]
    gt.save_array(os.path.join(folder, gt.FEED_CLICKS), gt.records(
        gt.FEED_CLICK_DTYPE, user=feed.user[clicks], ts=feed.ts[clicks], item=feed.item[clicks],
        row=insertions[FN.REC_INTER].final_rows(clicks)))

    cats = world.categories
    gt.write_csv(os.path.join(folder, gt.CATEGORIES), "cat2,cat2_id,cat1_id",
                 zip(range(config.num_cat2), cats.cat2_id.tolist(),
                     cats.cat1_id[cats.cat2_parent].tolist()))
    gt.write_csv(os.path.join(folder, gt.COMMUNITIES), "user_id,community",
                 zip(users.user_id.tolist(), users.community.tolist()))
    gt.write_csv(os.path.join(folder, gt.COMMUNITY_EPISODES),
                 "episode,community,time_ms,cat2_id,topic",
                 zip(range(len(sched.community_episode_time)),
                     sched.community_episode_community.tolist(),
                     sched.community_episode_time.tolist(),
                     cats.cat2_id[sched.community_episode_cat2].tolist(),
                     sched.community_episode_topic.tolist()))
    gt.save_json(os.path.join(folder, gt.DIRTY_FAULTS), _fault_report(sim, faults, rows, dirty))
    gt.save_json(os.path.join(folder, gt.PARAMS), {
        "format_version": gt.FORMAT_VERSION,
        "preset": config.name,
        "seed": sim.seed,
        "dirty": dirty,
        "community_sync": config.community_sync,
        "period_start_ms": clock.PERIOD_START_MS,
        "period_end_ms": clock.PERIOD_END_MS,
        "num_cat2": config.num_cat2,
        "num_topics": config.num_topics,
        "topics_per_cat2": config.topics_per_cat2,
        "num_communities": config.num_communities,
        "dynamics": config.dynamics.to_dict(),
        "origins": list(ORIGINS),
        "rows": rows,
        "counts": {
            "users": config.num_users,
            "feed_items": world.items.num_feed,
            "search_only_items": len(world.items.item_id) - world.items.num_feed,
            "sessions": len(s.user),
            "clicked_sessions": int(s.has_click.sum()),
            "feed_clicks": int(log.feed.click.sum()),
            "feed_requests": len(log.feed.request_user),
        },
    })


def _fault_report(sim: Simulation, faults: Dict[str, Dict[str, int]], rows: Dict[str, int],
                  dirty: bool) -> Dict:
    """Per file: injected faults, expected dead-letter reasons, duplicates and parser notes."""
    world, log = sim.world, sim.log
    items = world.items
    cap_len = np.diff(items.caption_offsets)
    word_len = np.diff(log.search.word_offsets)
    rows_per_session = np.diff(log.search.row_offsets)
    notes = {
        FN.ITEM_FEATURES: {
            "caption_missing": int(items.caption_state.sum()),
            "caption_truncated": int((cap_len > 50).sum()),
            "caption_malformed": faults.get(FN.ITEM_FEATURES, {}).get(
                dirty_lib.CAPTION_MALFORMED, 0),
        },
        FN.SRC_INTER: {
            "keyword_truncated": int(rows_per_session[word_len > 50].sum()),
        },
    }
    report = {"dirty": dirty, "files": {}}
    for name in writer.FILES:
        injected = faults.get(name, {})
        report["files"][name] = {
            "rows": rows[name],
            "clean_rows": rows[name] - sum(injected.values()),
            "injected": injected,
            "expected_dead_letter": {k: v for k, v in injected.items()
                                     if k in dirty_lib.DEAD_LETTER_KINDS},
            "expected_duplicates_dropped": injected.get(dirty_lib.DUPLICATE_ROW, 0),
            "expected_notes": notes.get(name, {}),
        }
    return report
