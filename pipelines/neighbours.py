"""``python -m jsr_tf.pipelines.neighbours``: KuaiSAR CSVs → per-snapshot similar-user neighbour
table.

Offline neighbour retrieval of ``spec/similar_users.md`` §2a with the leakage rules of §3::

    python -m jsr_tf.pipelines.neighbours --input_dir raw/ --output_dir neighbours/  # in-memory
    python -m jsr_tf.pipelines.neighbours --input_dir raw/ --output_dir nb/ --mode exact \\
        --k_feed 10
    python -m jsr_tf.pipelines.neighbours ... --runner=DataflowRunner --setup_file ./setup.py

Without ``--runner`` the in-memory ``FnApiRunner`` is used (as in ``pipelines/preprocess.py``).

**Input** is read with the importer of ``pipelines/preprocess.py``: the same up-front file checks
(``resolve_inputs``: missing file, empty file, missing column → ``InputError``, exit code 2 from the
CLI), the same row parsers and dead-letter output, the same per-user timelines
(``build_timeline``) and therefore the same targets and splits. Pass the preprocess config
(``--preprocess_config``, ``--reference``) so that the held-out targets excluded below are the
examples' held-out targets.

**Steps**, per visibility (``train``: no valid/test target of anyone; ``test``: no test target;
``all``), snapshot ``T_k`` and side:

1. Token sets from the visible events: search side = query words (``w:``) and items actually
   clicked in search (``i:``; the no-click fallback item is not a click); feed side = feed-positive
   items (``i:``) and their second-level categories (``c2:``, joined from ``item_features.csv``;
   first row of an item wins, category 0 = absent is skipped).
2. Per (user, interval between snapshots) partial token sets and MinHash signatures; per user the
   cumulative union / elementwise min gives the snapshot-``k`` set and signature from events with
   ``ts < T_k`` only. Users with an empty set on a side get no signature there (counted).
3. ``lsh`` mode: band keys → candidate pairs → per user at most ``max_candidates`` candidates,
   most colliding bands first → exact Jaccard re-rank. No all-pairs step. The candidate join
   (``--candidate_join``): ``window`` (default, ``jsr_tf/neighbours/windows.py``) sorts each
   band's users by ``window_depth`` band keys and pairs each user with the members of its
   bucket at most ``window`` positions away, so a user has at most ``2·window·bands`` pairs
   however large its buckets; ``bucket`` (issue 6) pairs every two members of a bucket and
   skips buckets above ``max_bucket`` users (counted). Two layouts with the same result
   (``--lsh_layout``, default ``auto``: ``grouped`` on the in-memory runners, ``keyed`` on
   any other): ``grouped`` does this in memory per (visibility, snapshot, side) population,
   one worker per (visibility, side) walking its snapshots in order (numpy join, vectorised
   re-rank ``jsr_tf/neighbours/rerank.py``); it skips step 2's per-snapshot records and keeps
   one compact history per (visibility, side, user) instead (int64 token codes with their first
   interval, ``jsr_tf/neighbours/histories.py``; the running signatures are rebuilt per side),
   because the in-memory runner holds every record between two stages at once;
   ``keyed`` makes every (band, key) bucket a Beam key, so the buckets spread over the
   workers (one bucket's window join on one worker: memory and time linear in its size),
   then groups the window pairs by user (collision counts and the top ``M`` per user spread
   by user) and joins token sets to candidate pairs for the re-rank (spread by user again).
   It shuffles one element per user and band and several per candidate pair: far slower on
   one machine.
   ``exact`` mode: brute-force Jaccard of all pairs of a (visibility, snapshot, side) group on
   one worker (small data and tests only).
4. Both modes: drop self and ``J < min_jaccard``, keep the top ``k_search`` / ``k_feed``, ties to
   the smaller user id.

**Outputs** under ``--output_dir``:

- ``neighbours-SSSSS-of-NNNNN.jsonl``: the table, one JSON object per line and per (visibility,
  snapshot, side, user) with a non-empty token set (``jsr_tf.neighbours.NeighbourRow``); a user's
  rows go to shard ``user % NNNNN`` (``--num_shards``, default one per 256 MB of
  ``rec_inter.csv``), sorted by (visibility, snapshot, side, user), so the bytes do not depend on
  the runner (``pipelines/sorted_text.py``)::

      {"visibility": "train", "snapshot": 0, "snapshot_ts": 1684857600000, "side": "feed",
       "user": 11, "num_tokens": 4, "neighbours": [15, 12], "jaccards": [0.8, 0.2]}

  Keys are sorted; ``jaccards`` are exact float64 values; empty lists when a user has none.
- ``neighbour_stats.json``: snapshots, per-file row counts, per (visibility, side) totals and
  per-snapshot counters (users known / indexed / with an empty set, rows, pairs emitted, users
  with fewer than k neighbours, candidates below ``min_jaccard``; LSH: buckets skipped, window
  pairs, candidate pairs, users whose candidates were cut at ``M``), and reconciliation checks.
  A failed check raises ``ReconciliationError`` after the file is written.
- ``neighbour_config.json`` (the resolved ``NeighbourConfig`` + ``PreprocessConfig``),
  ``dead_letter/rejected-*.jsonl`` (rejected rows with their reasons).
"""

from __future__ import annotations

import argparse
import collections
import logging
import re
import time
from typing import Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import StandardOptions

import jsr_tf
from jsr_tf import filenames as FN
from jsr_tf.data.config import PreprocessConfig
from jsr_tf.data.timeline import UserTimeline
from jsr_tf.features import EventKind
from jsr_tf.neighbours import (HOUR_MS, JOIN_WINDOW, LAYOUT_GROUPED, MODE_EXACT, MODE_LSH,
                               NeighbourConfig, NeighbourRow, default_snapshots,
                               first_snapshot_seeing, parse_snapshot, resolve_layout,
                               snapshot_time_string, visible_events)
from jsr_tf.neighbours import minhash as mh
from jsr_tf.neighbours import histories, rerank, windows
from jsr_tf.neighbours.minhash import FEED, SEARCH, SIDES
from jsr_tf.pipelines import launch, outputs
from jsr_tf.pipelines.preprocess import resolve_inputs, shards_by_size
from jsr_tf.pipelines.cli import bounded_int, console_main, pipeline_options
from jsr_tf.pipelines.sorted_text import WriteDeadLetters, WriteSortedText
from jsr_tf.pipelines.stats import (Checks, raise_unless_reconciled, read_json, reconcile_line,
                                    write_json)
from jsr_tf.pipelines.transforms import (ITEMS, REC, SRC, STATS, Counters, Progress,
                                         _duplicate_stats, merge_counters, parse_timelines)

TABLE_PREFIX = "neighbours"
_EXACT_WARN_USERS = 20_000
ITEM_REFS = "item_refs"

Key = Tuple[str, str, int, int]  # (visibility, side, snapshot, user)


class Indexed(NamedTuple):
    """A user's token set and MinHash signature on one side at one snapshot."""

    visibility: str
    side: str
    snapshot: int
    user: int
    tokens: Tuple[str, ...]
    signature: np.ndarray

    @property
    def key(self) -> Key:
        return (self.visibility, self.side, self.snapshot, self.user)


def counter_name(visibility: str, snapshot: int, side: Optional[str], name: str) -> str:
    """Flat counter key, e.g. ``train/0/search/users_indexed`` (``train/0/users_known``)."""
    return f"{visibility}/{snapshot}/{side}/{name}" if side else f"{visibility}/{snapshot}/{name}"


# --------------------------------------------------------------------------- snapshots


def event_span(timeline: UserTimeline) -> Iterable[Tuple[int, int]]:
    """``(min ts, max ts)`` of the user's canonical events (none if it has none)."""
    if timeline.events:
        yield (min(e.ts for e in timeline.events), max(e.ts for e in timeline.events))


def merge_spans(spans: Iterable[Optional[Tuple[int, int]]]) -> Optional[Tuple[int, int]]:
    """Associative merge of spans for ``CombineGlobally`` (None = no events)."""
    spans = [s for s in spans if s is not None]
    if not spans:
        return None
    return (min(s[0] for s in spans), max(s[1] for s in spans))


def choose_snapshots(span: Optional[Tuple[int, int]], config: NeighbourConfig) -> List[int]:
    """The configured boundaries, or every ``snapshot_hours`` from Beijing midnight (data span)."""
    if config.snapshots:
        snapshots = list(config.snapshots)
    elif span is None:
        snapshots = []
    else:
        snapshots = default_snapshots(span[0], span[1], config.snapshot_hours * HOUR_MS)
    logging.info("neighbours: %d snapshots %s", len(snapshots),
                 [snapshot_time_string(t) for t in snapshots])
    return snapshots


# --------------------------------------------------------------------------- token sets


class UserTokens(beam.DoFn):
    """``UserTimeline`` → partial token sets per (visibility, side, user, interval).

    The interval of an event is ``first_snapshot_seeing(ts)``: the first snapshot ``k`` with
    ``ts < T_k``; events at or after the last boundary are unused.

    Main output: ``((visibility, side, user), (interval, tokens))``. Tagged outputs:
    ``item_refs`` ``(item, (visibility, user, interval))`` for the category join (earliest
    interval per item), and ``stats`` (users known / with an empty side, per snapshot).
    """

    def __init__(self, config: NeighbourConfig) -> None:
        self._config = config
        self._progress = Progress("neighbours", "tokens")

    def process(self, timeline: UserTimeline, snapshots: List[int]):
        n_snap = len(snapshots)
        counts: Counters = {}
        user = timeline.user_id
        for visibility in self._config.visibilities:
            search: Dict[int, set] = collections.defaultdict(set)
            feed_first: Dict[int, int] = {}  # item -> earliest interval
            for event in visible_events(timeline, visibility):
                interval = first_snapshot_seeing(event.ts, snapshots)
                if interval >= n_snap:
                    continue
                if event.kind == EventKind.SEARCH:
                    search[interval].update(mh.search_tokens(event.words, event.all_clicked))
                else:
                    feed_first[event.item] = min(interval, feed_first.get(event.item, n_snap))
            feed: Dict[int, set] = collections.defaultdict(set)
            for item, interval in feed_first.items():
                feed[interval].update(mh.feed_tokens([item]))
                yield beam.pvalue.TaggedOutput(ITEM_REFS, (item, (visibility, user, interval)))
            for side, parts in ((SEARCH, search), (FEED, feed)):
                for interval, tokens in parts.items():
                    yield (visibility, side, user), (interval, tuple(sorted(tokens)))
            first = {SEARCH: min(search, default=n_snap), FEED: min(feed, default=n_snap)}
            known_from = min(first.values())
            for k in range(known_from, n_snap):
                name = counter_name(visibility, k, None, "users_known")
                counts[name] = counts.get(name, 0) + 1
                for side in SIDES:
                    if first[side] > k:
                        name = counter_name(visibility, k, side, "users_empty")
                        counts[name] = counts.get(name, 0) + 1
        self._progress.tick()
        yield beam.pvalue.TaggedOutput(STATS, counts)


def join_categories(element) -> Iterable:
    """``(item, {"refs": ..., "features": [(row, ItemRecord)]})`` → ``c2:`` tokens + item counters.

    The first row of an item wins (as in the preprocess vocabulary); duplicates are counted the
    preprocess way, so ``item_features.csv`` rows reconcile.

    Yields:
        ``((visibility, "feed", user), (interval, ("c2:<cat>",)))`` per reference, and a
        ``stats`` counter dict.
    """
    item, grouped = element
    records = sorted(grouped["features"], key=lambda x: x[0])
    refs = list(grouped["refs"])
    counts: Counters = {}
    category = 0
    if records:
        counts = _duplicate_stats((item, records), ITEMS)
        category = records[0][1].categories[1]
    if refs:
        tokens = tuple(sorted(mh.feed_tokens((), [category])))
        if not records:
            counts["feed/positive_items_without_features"] = 1
        elif not tokens:
            counts["feed/positive_items_without_category"] = 1
        if tokens:
            for visibility, user, interval in refs:
                yield (visibility, FEED, user), (interval, tokens)
    if counts:
        yield beam.pvalue.TaggedOutput(STATS, counts)


class CumulativeSignatures(beam.DoFn):
    """``((visibility, side, user), [(interval, tokens), ...])`` → ``Indexed`` per snapshot.

    Snapshot ``k``'s set is the union of intervals ``≤ k`` and its signature the elementwise min
    of the partial signatures (MinHash is mergeable), from the user's first non-empty interval
    to the last snapshot.
    """

    def __init__(self, config: NeighbourConfig) -> None:
        self._config = config
        self._hasher: Optional[mh.MinHasher] = None
        self._progress = Progress("neighbours", "signatures")

    def setup(self):
        self._hasher = mh.MinHasher(self._config.num_perm, self._config.hash_seed)

    def process(self, element, snapshots: List[int]):
        (visibility, side, user), parts = element
        by_interval: Dict[int, set] = collections.defaultdict(set)
        for interval, part in parts:
            by_interval[interval].update(part)
        counts: Counters = {}
        tokens: set = set()
        signature = self._hasher.empty()
        for k in range(min(by_interval), len(snapshots)):
            new = by_interval.get(k)
            if new:
                tokens |= new
                signature = mh.merge_signatures(
                    signature, self._hasher.signature_of_tokens(new, side))
            counts[counter_name(visibility, k, side, "users_indexed")] = 1
            yield Indexed(visibility, side, k, user, tuple(sorted(tokens)), signature)
        self._progress.tick()
        yield beam.pvalue.TaggedOutput(STATS, counts)


# --------------------------------------------------------------------------- retrieval


def _row(key: Key, num_tokens: int, neighbours: Sequence[Tuple[int, float]],
         snapshots: List[int]) -> NeighbourRow:
    visibility, side, k, user = key
    return NeighbourRow(visibility, k, snapshots[k], side, user, num_tokens,
                        tuple(v for v, _ in neighbours), tuple(j for _, j in neighbours))


def _row_counts(key: Key, neighbours: Sequence, dropped: int, k_side: int) -> Counters:
    visibility, side, k, _ = key
    counts = {counter_name(visibility, k, side, "rows_written"): 1,
              counter_name(visibility, k, side, "pairs_emitted"): len(neighbours),
              counter_name(visibility, k, side, "below_min_jaccard"): dropped}
    if len(neighbours) < k_side:
        counts[counter_name(visibility, k, side, "users_below_k")] = 1
    if not neighbours:
        counts[counter_name(visibility, k, side, "users_without_neighbours")] = 1
    return counts


class ExactNeighbours(beam.DoFn):
    """``((visibility, side, k), [(user, tokens), ...])`` → ``NeighbourRow`` per user (+ stats).

    Brute force over all pairs of the group (``minhash.pairwise_jaccard``): one worker holds
    the whole group, so this is for small data and tests.
    """

    def __init__(self, config: NeighbourConfig) -> None:
        self._config = config

    def process(self, element, snapshots: List[int]):
        (visibility, side, k), members = element
        members = sorted(members)
        if len(members) > _EXACT_WARN_USERS:
            logging.warning("neighbours: exact mode on %d users (%s, %s, snapshot %d): "
                            "quadratic, use --mode lsh", len(members), visibility, side, k)
        users = [u for u, _ in members]
        matrix = mh.pairwise_jaccard([tokens for _, tokens in members])
        counts: Counters = collections.Counter()
        k_side = self._config.k(side)
        for i, (user, tokens) in enumerate(members):
            scored = [(users[j], matrix[i, j]) for j in np.flatnonzero(matrix[i] > 0.0)]
            neighbours, dropped = mh.rank_neighbours(user, scored, k_side,
                                                     self._config.min_jaccard)
            key = (visibility, side, k, user)
            counts.update(_row_counts(key, neighbours, dropped, k_side))
            yield _row(key, len(tokens), neighbours, snapshots)
        logging.info("neighbours/exact: %s %s snapshot %d: %d users", visibility, side, k,
                     len(members))
        yield beam.pvalue.TaggedOutput(STATS, dict(counts))


def band_entries(record: Indexed, config: NeighbourConfig) -> Iterable:
    """``Indexed`` → ``((visibility, side, k, band, key), member)`` for each of the ``b`` bands.

    ``member`` is the user for the bucket join, and ``(user, keys of the next D − 1 bands)``
    for the window join (``windows.sort_bands``).
    """
    keys = mh.band_keys(record.signature, config.bands, config.rows).tolist()
    for band, key in enumerate(keys):
        member = record.user
        if config.candidate_join == JOIN_WINDOW:
            following = windows.sort_bands(band, config.bands, config.window_depth)[1:]
            member = (record.user, tuple(keys[b] for b in following))
        yield (record.visibility, record.side, record.snapshot, band, key), member


def bucket_members(element, max_bucket: int) -> Iterable:
    """One LSH bucket → ``((visibility, side, k, user), other members)`` for each member.

    A bucket of more than ``max_bucket`` users is skipped and counted
    (``buckets_skipped``, ``bucket_users_skipped``); a singleton yields nothing.
    """
    (visibility, side, k, _, _), users = element
    members = sorted(set(users))
    if len(members) > max_bucket:
        yield beam.pvalue.TaggedOutput(STATS, {
            counter_name(visibility, k, side, "buckets_skipped"): 1,
            counter_name(visibility, k, side, "bucket_users_skipped"): len(members)})
        return
    if len(members) < 2:
        return
    for i, user in enumerate(members):
        yield (visibility, side, k, user), tuple(members[:i] + members[i + 1:])


def window_bucket_members(element, window: int) -> Iterable:
    """One LSH bucket of the window join → ``((visibility, side, k, user), co-members)`` per
    member: the members at most ``window`` positions away in the bucket's sort order
    (``windows.window_members``). A bucket of any size gives at most ``2·window`` per member."""
    (visibility, side, k, _, _), members = element
    for user, others in windows.window_members(list(members), window):
        yield (visibility, side, k, user), others


class TopCandidates(beam.DoFn):
    """``(key, [bucket co-members, ...])`` → ``(key, candidates)``: at most ``M``, ranked by the
    number of bands the pair collides in, ties to the smaller id (+ stats)."""

    def __init__(self, config: NeighbourConfig) -> None:
        self._config = config
        self._progress = Progress("neighbours", "candidates")

    def process(self, element):
        key, lists = element
        visibility, side, k, _ = key
        collisions: Dict[int, int] = collections.Counter()
        for others in lists:
            collisions.update(others)
        candidates = mh.top_candidates(collisions, self._config.max_candidates)
        counts = {counter_name(visibility, k, side, "candidate_pairs"): len(candidates)}
        if self._config.candidate_join == JOIN_WINDOW:
            counts[counter_name(visibility, k, side, "window_pairs")] = sum(
                len(others) for others in lists)
        if len(collisions) > len(candidates):
            counts[counter_name(visibility, k, side, "users_candidates_truncated")] = 1
        self._progress.tick()
        yield key, tuple(candidates)
        yield beam.pvalue.TaggedOutput(STATS, counts)


def serve_tokens(element) -> Iterable:
    """``(candidate key, {"tokens": [tokens], "requests": [user, ...]})`` →
    ``((visibility, side, k, user), (candidate, tokens))`` for each requesting user."""
    (visibility, side, k, candidate), grouped = element
    tokens = list(grouped["tokens"])
    if not tokens:
        return
    for user in grouped["requests"]:
        yield (visibility, side, k, user), (candidate, tokens[0])


class ReRank(beam.DoFn):
    """``(key, {"self": [tokens], "candidates": [(v, tokens_v), ...]})`` → ``NeighbourRow``.

    Exact Jaccard of every candidate, then ``rank_neighbours`` (+ stats).
    """

    def __init__(self, config: NeighbourConfig) -> None:
        self._config = config
        self._progress = Progress("neighbours", "rerank")

    def process(self, element, snapshots: List[int]):
        key, grouped = element
        own = list(grouped["self"])
        if not own:
            return
        tokens = set(own[0])
        visibility, side, k, user = key
        scored = [(v, mh.jaccard(tokens, other)) for v, other in grouped["candidates"]]
        k_side = self._config.k(side)
        neighbours, dropped = mh.rank_neighbours(user, scored, k_side, self._config.min_jaccard)
        counts = _row_counts(key, neighbours, dropped, k_side)
        counts[counter_name(visibility, k, side, "candidates_scored")] = len(scored)
        self._progress.tick()
        yield _row(key, len(tokens), neighbours, snapshots)
        yield beam.pvalue.TaggedOutput(STATS, counts)


class UserHistories(beam.DoFn):
    """``((visibility, side, user), [(interval, tokens), ...])`` → ``((visibility, side),
    UserHistory)``: the grouped layout's one compact record per user and side, instead of one
    ``Indexed`` per snapshot (``jsr_tf/neighbours/histories.py``). Counts ``users_indexed`` as
    ``CumulativeSignatures`` does."""

    def __init__(self) -> None:
        self._progress = Progress("neighbours", "histories")

    def process(self, element, snapshots: List[int]):
        (visibility, side, user), parts = element
        history = histories.build_history(user, parts)
        counts = {counter_name(visibility, k, side, "users_indexed"): 1
                  for k in range(history.start, len(snapshots))}
        self._progress.tick()
        yield (visibility, side), history
        yield beam.pvalue.TaggedOutput(STATS, counts)


def lsh_population(population: histories.Population, visibility: str, side: str,
                   config: NeighbourConfig, snapshots: List[int]) -> Iterable:
    """One (visibility, snapshot, side) population → ``NeighbourRow`` per user, then its counter
    dict as a ``stats`` output: band keys, the candidate join (``windows.window_candidates``, or
    ``minhash.lsh_candidates`` for the bucket join with its ``max_bucket`` skip), the ``M`` most
    colliding candidates and the exact re-rank, in memory, never all pairs."""
    k, users, index = population.snapshot, population.users, population.index
    keys = mh.band_keys(population.signatures, config.bands, config.rows)
    if config.candidate_join == JOIN_WINDOW:
        found = windows.window_candidates(keys, config.window_depth, config.window,
                                          config.max_candidates)
    else:
        found = mh.lsh_candidates(keys, config.max_bucket, config.max_candidates)
    bounds = np.searchsorted(found.left, np.arange(len(users) + 1)).tolist()
    right = found.right
    k_side = config.k(side)
    counts: Counters = collections.Counter({
        counter_name(visibility, k, side, "buckets_skipped"): found.buckets_skipped,
        counter_name(visibility, k, side, "bucket_users_skipped"): found.bucket_users_skipped,
        counter_name(visibility, k, side, "candidate_pairs"): len(right),
        counter_name(visibility, k, side, "candidates_scored"): len(right),
        counter_name(visibility, k, side, "users_candidates_truncated"): found.users_truncated,
        counter_name(visibility, k, side, "window_pairs"): found.window_pairs})
    for i, user in enumerate(users.tolist()):
        neighbours, dropped = rerank.rerank_user(index, i, right[bounds[i]:bounds[i + 1]],
                                                 users, k_side, config.min_jaccard)
        key = (visibility, side, k, user)
        counts.update(_row_counts(key, neighbours, dropped, k_side))
        yield _row(key, int(index.sizes[i]), neighbours, snapshots)
    logging.info("neighbours/lsh: %s %s snapshot %d: %d users, %d candidate pairs, "
                 "%d buckets skipped", visibility, side, k, len(users), len(right),
                 found.buckets_skipped)
    yield beam.pvalue.TaggedOutput(STATS, dict(counts))


class LshSideNeighbours(beam.DoFn):
    """``((visibility, side), [UserHistory, ...])`` → ``NeighbourRow`` per (snapshot, user).

    The ``grouped`` LSH layout: the snapshots of one (visibility, side) one after the other
    (``histories.snapshot_populations``: one running signature per user), each population
    through ``lsh_population`` (+ stats). Holds the side's histories, one snapshot's index and
    its candidates, never every snapshot's sets.
    """

    def __init__(self, config: NeighbourConfig) -> None:
        self._config = config
        self._hasher: Optional[mh.MinHasher] = None

    def setup(self):
        self._hasher = mh.MinHasher(self._config.num_perm, self._config.hash_seed)

    def process(self, element, snapshots: List[int]):
        (visibility, side), members = element
        for population in histories.snapshot_populations(list(members), len(snapshots),
                                                         self._hasher, side):
            yield from lsh_population(population, visibility, side, self._config, snapshots)


class RetrieveNeighbours(beam.PTransform):
    """``Indexed`` records → ``NeighbourRow`` per record, and stats: ``exact`` mode, or ``lsh``
    mode in the ``keyed`` layout (the ``grouped`` layout is ``RetrieveGrouped``).

    Args:
        config: Retrieval settings.
        snapshots: Singleton PCollection of the boundary list (a side input).

    Returns (from ``expand``):
        ``{"rows": NeighbourRow, "stats": counter dicts}``.
    """

    def __init__(self, config: NeighbourConfig, snapshots) -> None:
        super().__init__()
        self._config = config
        self._snapshots = snapshots

    def expand(self, indexed):
        config = resolve_layout(self._config,
                                indexed.pipeline.options.view_as(StandardOptions).runner)
        snaps = beam.pvalue.AsSingleton(self._snapshots)
        if config.mode == MODE_EXACT:
            out = (indexed
                   | "KeyByGroup" >> beam.Map(
                       lambda r: ((r.visibility, r.side, r.snapshot), (r.user, r.tokens)))
                   | "GroupUsers" >> beam.GroupByKey()
                   | "AllPairs" >> beam.ParDo(ExactNeighbours(config), snaps).with_outputs(
                       STATS, main="rows"))
            return {"rows": out.rows, "stats": [out.stats]}
        if config.lsh_layout == LAYOUT_GROUPED:
            raise ValueError("The grouped LSH layout retrieves from user histories, not "
                             "`Indexed` records: use `RetrieveGrouped` on the grouped partials.")
        if config.candidate_join == JOIN_WINDOW:
            members = beam.FlatMap(window_bucket_members, config.window).with_outputs(
                STATS, main="members")
        else:
            members = beam.FlatMap(bucket_members, config.max_bucket).with_outputs(
                STATS, main="members")
        buckets = (indexed
                   | "BandKeys" >> beam.FlatMap(band_entries, config)
                   | "GroupBuckets" >> beam.GroupByKey()
                   | "BucketMembers" >> members)
        candidates = (buckets.members
                      | "GroupCandidates" >> beam.GroupByKey()
                      | "TopCandidates" >> beam.ParDo(TopCandidates(config)).with_outputs(
                          STATS, main="cands"))
        tokens = indexed | "KeyTokens" >> beam.Map(lambda r: (r.key, r.tokens))
        requests = candidates.cands | "Requests" >> beam.FlatMap(
            lambda kv: (((kv[0][0], kv[0][1], kv[0][2], v), kv[0][3]) for v in kv[1]))
        served = ({"tokens": tokens, "requests": requests}
                  | "JoinCandidateTokens" >> beam.CoGroupByKey()
                  | "ServeTokens" >> beam.FlatMap(serve_tokens))
        reranked = ({"self": tokens, "candidates": served}
                    | "JoinOwnTokens" >> beam.CoGroupByKey()
                    | "ReRank" >> beam.ParDo(ReRank(config), snaps).with_outputs(
                        STATS, main="rows"))
        return {"rows": reranked.rows,
                "stats": [buckets.stats, candidates.stats, reranked.stats]}


class RetrieveGrouped(RetrieveNeighbours):
    """Grouped partial token sets → ``NeighbourRow`` and stats: the ``grouped`` LSH layout.

    Input: ``((visibility, side, user), [(interval, tokens), ...])`` (``GroupPartials``), not
    ``Indexed`` records; arguments and output as ``RetrieveNeighbours``'.
    """

    def expand(self, partials):
        snaps = beam.pvalue.AsSingleton(self._snapshots)
        found = (partials
                 | "Histories" >> beam.ParDo(UserHistories(), snaps).with_outputs(
                     STATS, main="histories"))
        out = (found.histories
               | "GroupSides" >> beam.GroupByKey()
               | "LshInMemory" >> beam.ParDo(LshSideNeighbours(self._config),
                                             snaps).with_outputs(STATS, main="rows"))
        return {"rows": out.rows, "stats": [found.stats, out.stats]}


# --------------------------------------------------------------------------- pipeline


# Files of a run from before ``FN.OWNED_FILE`` existed, which a rerun may delete.
LEGACY_OUTPUTS = (f"{TABLE_PREFIX}{outputs.SHARD}" + re.escape(FN.JSONL_SUFFIX),
                  rf"{FN.DEAD_LETTER_DIR}/rejected{outputs.SHARD}\.jsonl")


def build_pipeline(pipeline: beam.Pipeline, paths: Dict[str, str], output_dir: str,
                   config: NeighbourConfig, preprocess_config: PreprocessConfig,
                   num_shards: int = 1) -> None:
    """Adds the whole neighbour graph to ``pipeline``; the table goes to ``num_shards`` files
    (user id modulo ``num_shards``), each sorted by (visibility, snapshot, side, user)."""
    parsed, timelines = parse_timelines(pipeline, paths, preprocess_config, (REC, SRC, ITEMS))

    snapshots = (timelines.tl
                 | "EventSpan" >> beam.FlatMap(event_span)
                 | "DataSpan" >> beam.CombineGlobally(merge_spans)
                 | "Snapshots" >> beam.Map(choose_snapshots, config))
    snaps = beam.pvalue.AsSingleton(snapshots)
    tokens = timelines.tl | "Tokens" >> beam.ParDo(UserTokens(config), snaps).with_outputs(
        ITEM_REFS, STATS, main="partials")
    item_features = parsed[ITEMS].records | "KeyItems" >> beam.Map(lambda rr: (rr[1].item_id, rr))
    categories = ({"refs": tokens[ITEM_REFS], "features": item_features}
                  | "JoinItems" >> beam.CoGroupByKey()
                  | "Categories" >> beam.FlatMap(join_categories).with_outputs(
                      STATS, main="partials"))
    partials = ((tokens.partials, categories.partials)
                | "AllPartials" >> beam.Flatten()
                | "GroupPartials" >> beam.GroupByKey())
    runner = pipeline.options.view_as(StandardOptions).runner
    if config.mode == MODE_LSH and resolve_layout(config, runner).lsh_layout == LAYOUT_GROUPED:
        retrieved = partials | "Retrieve" >> RetrieveGrouped(config, snapshots)
        signature_stats = []
    else:
        indexed = partials | "Signatures" >> beam.ParDo(
            CumulativeSignatures(config), snaps).with_outputs(STATS, main="indexed")
        retrieved = indexed.indexed | "Retrieve" >> RetrieveNeighbours(config, snapshots)
        signature_stats = [indexed.stats]

    (retrieved["rows"]
     | "RowJson" >> beam.Map(lambda r: (r.user % num_shards,
                                        (r.visibility, r.snapshot, r.side, r.user), r.to_json()))
     | "WriteTable" >> WriteSortedText(output_dir, TABLE_PREFIX, FN.JSONL_SUFFIX, num_shards))
    dead = [p.dead_letter for p in parsed.values()] | "AllDead" >> beam.Flatten()
    dead | "DeadLetters" >> WriteDeadLetters(output_dir, FN.DEAD_LETTER_DIR)
    stats_parts = [p.stats for p in parsed.values()]
    stats_parts += [timelines.stats, tokens.stats, categories.stats, *signature_stats]
    stats_parts += retrieved["stats"]
    (stats_parts
     | "AllStats" >> beam.Flatten()
     | "MergeStats" >> beam.CombineGlobally(merge_counters)
     | "WriteRawStats" >> beam.Map(write_json,
                                   FileSystems.join(output_dir, FN.NEIGHBOUR_RAW_COUNTERS_FILE)))
    (snapshots | "WriteSnapshots" >> beam.Map(
        write_json, FileSystems.join(output_dir, FN.SNAPSHOTS_FILE)))


# --------------------------------------------------------------------------- stats

_SNAPSHOT_COUNTERS = ("users_indexed", "users_empty", "rows_written", "pairs_emitted",
                      "users_below_k", "users_without_neighbours", "below_min_jaccard")
_LSH_COUNTERS = ("buckets_skipped", "bucket_users_skipped", "window_pairs", "candidate_pairs",
                 "users_candidates_truncated", "candidates_scored")


def file_counts(counters: Dict[str, int], names: Sequence[str], check: Checks,
                conflicting_id: bool = True, by_reason: bool = True) -> Dict:
    """Per input file: rows read, canonical, dropped (duplicates; conflicting ids if
    ``conflicting_id``) and rejected (``rejected`` per reason and ``rejected_total`` if
    ``by_reason``, else ``rejected`` = the total); checks that ``rows_read`` adds up."""
    parts = ["canonical", "dropped_duplicate"] + (["dropped_conflicting_id"] if conflicting_id
                                                  else [])
    files = {}
    for name in names:
        prefix = f"{name}/rejected/"
        rejected = {k[len(prefix):]: v for k, v in counters.items() if k.startswith(prefix)}
        total = sum(rejected.values())
        f = {"rows_read": counters.get(f"{name}/rows_read", 0)}
        f.update({part: counters.get(f"{name}/{part}", 0) for part in parts})
        if by_reason:
            f.update(rejected=rejected, rejected_total=total)
        else:
            f["rejected"] = total
        files[name] = f
        check(f"{name}: rows_read = {' + '.join(parts + ['rejected'])}", f["rows_read"],
              sum(f[part] for part in parts) + total)
    return files


def snapshot_entries(snapshots: Sequence[int]) -> List[Dict]:
    """``[{"snapshot": k, "snapshot_ts": T_k, "time": Beijing time}]``."""
    return [{"snapshot": k, "snapshot_ts": t, "time": snapshot_time_string(t)}
            for k, t in enumerate(snapshots)]


def snapshot_tables(snapshots: Sequence[int], config: NeighbourConfig, names: Sequence[str],
                    fill: Callable[[Dict, str, str, int], None]) -> Dict:
    """``tables[visibility][side]`` = ``{"k", "totals" (sums of ``names``), "per_snapshot"}``
    with one row per snapshot: the ``snapshot_entries`` fields, then ``fill(row, visibility,
    side, k)`` adds the counters (and runs the checks)."""
    tables: Dict = {}
    for visibility in config.visibilities:
        tables[visibility] = {}
        for side in SIDES:
            per_snapshot = snapshot_entries(snapshots)
            for k, row in enumerate(per_snapshot):
                fill(row, visibility, side, k)
            totals = {n: sum(r[n] for r in per_snapshot) for n in names}
            tables[visibility][side] = {"k": config.k(side), "totals": totals,
                                        "per_snapshot": per_snapshot}
    return tables


def summarise(counters: Dict[str, int], snapshots: List[int], config: NeighbourConfig) -> Dict:
    """Structured stats and reconciliation checks from the flat counters."""
    c = counters.get
    check = Checks()

    files = file_counts(counters, (REC, SRC, ITEMS), check)
    names = _SNAPSHOT_COUNTERS + (_LSH_COUNTERS if config.mode == MODE_LSH else ())

    def fill(row: Dict, visibility: str, side: str, k: int) -> None:
        row["users_known"] = c(counter_name(visibility, k, None, "users_known"), 0)
        row.update({n: c(counter_name(visibility, k, side, n), 0) for n in names})
        where = f"{visibility}/{side}/snapshot {k}"
        check(f"{where}: users_indexed + users_empty = users_known",
              row["users_indexed"] + row["users_empty"], row["users_known"])
        check(f"{where}: rows_written = users_indexed", row["rows_written"],
              row["users_indexed"])
        if config.mode == MODE_LSH:
            check(f"{where}: candidates_scored = candidate_pairs",
                  row["candidates_scored"], row["candidate_pairs"])

    tables = snapshot_tables(snapshots, config, names, fill)
    return {
        "snapshots": snapshot_entries(snapshots),
        "files": files,
        "items": {"positive_items_without_features":
                  c("feed/positive_items_without_features", 0),
                  "positive_items_without_category":
                  c("feed/positive_items_without_category", 0)},
        "tables": tables,
        "checks": list(check),
        "reconciled": check.reconciled,
        "counters": counters,
    }


def finalize(output_dir: str, config: NeighbourConfig, preprocess_config: PreprocessConfig,
             elapsed_s: float, input_dir: str = "") -> Dict:
    """Writes ``neighbour_stats.json`` and ``neighbour_config.json``; returns the stats.

    Raises:
        ReconciliationError: If a count check fails (after the stats are written).
    """
    counters = read_json(FileSystems.join(output_dir, FN.NEIGHBOUR_RAW_COUNTERS_FILE))
    snapshots = read_json(FileSystems.join(output_dir, FN.SNAPSHOTS_FILE))
    stats = summarise(counters, snapshots, config)
    stats.update(elapsed_s=round(elapsed_s, 2), input_dir=input_dir, mode=config.mode,
                 jsr_tf_version=jsr_tf.__version__)
    write_json(stats, FileSystems.join(output_dir, FN.NEIGHBOUR_STATS_FILE))
    write_json({"neighbours": config.to_dict(), "preprocess": preprocess_config.to_dict()},
                FileSystems.join(output_dir, FN.NEIGHBOUR_CONFIG_FILE))
    FileSystems.delete([FileSystems.join(output_dir, FN.NEIGHBOUR_RAW_COUNTERS_FILE),
                        FileSystems.join(output_dir, FN.SNAPSHOTS_FILE)])
    raise_unless_reconciled(stats, "Neighbour counts")
    return stats


def format_table(stats: Dict) -> str:
    """A plain-text summary: per visibility and side, totals over snapshots."""
    lines = ["", f"{len(stats['snapshots'])} snapshots, mode {stats['mode']}",
             f"{'table':<16}{'indexed':>10}{'empty':>10}{'pairs':>10}{'< k':>10}{'skipped':>10}"]
    for visibility, sides in stats["tables"].items():
        for side, table in sides.items():
            t = table["totals"]
            lines.append(f"{visibility + '/' + side:<16}{t['users_indexed']:>10,}"
                         f"{t['users_empty']:>10,}{t['pairs_emitted']:>10,}"
                         f"{t['users_below_k']:>10,}{t.get('buckets_skipped', 0):>10,}")
    lines.append(reconcile_line(stats))
    return "\n".join(lines)


# --------------------------------------------------------------------------- entry points

_OVERRIDES = (("mode", str), ("lsh_layout", str), ("candidate_join", str), ("num_perm", int),
              ("bands", int), ("rows", int), ("hash_seed", int), ("k_search", int),
              ("k_feed", int), ("min_jaccard", float), ("max_bucket", int), ("window", int),
              ("window_depth", int), ("max_candidates", int), ("snapshot_hours", int))


def parse_config(args: argparse.Namespace) -> Tuple[NeighbourConfig, PreprocessConfig]:
    """``--config`` file, then flag overrides → validated configs."""
    values = {}
    if args.config:
        values = read_json(args.config)
    for name, _ in _OVERRIDES:
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    if args.snapshots:
        values["snapshots"] = [parse_snapshot(t) for t in args.snapshots.split(",") if t.strip()]
    if args.visibility:
        values["visibilities"] = [v.strip() for v in args.visibility.split(",") if v.strip()]
    config = NeighbourConfig.from_dict(values)

    pre_values = {}
    if args.preprocess_config:
        pre_values = read_json(args.preprocess_config)
    preprocess_config = (PreprocessConfig.reference(**pre_values) if args.reference
                         else PreprocessConfig.from_dict(pre_values))
    return config, preprocess_config


def run(argv: Optional[Sequence[str]] = None, save_main_session: bool = False) -> Dict:
    """Parses arguments, runs the pipeline, then writes and returns the stats.

    Args:
        argv: Command-line arguments (pipeline options included).
        save_main_session: Passed to ``SetupOptions``.

    Returns:
        The stats dict (also written to ``neighbour_stats.json``).
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input_dir", required=True, help="Directory with the KuaiSAR CSVs.")
    parser.add_argument("--output_dir", required=True, help="Where to write the table.")
    parser.add_argument("--config", default=None, help="JSON file of NeighbourConfig fields.")
    parser.add_argument("--preprocess_config", default=None,
                        help="JSON file of PreprocessConfig fields (as given to preprocess): "
                             "decides targets and splits, hence what each visibility excludes.")
    parser.add_argument("--reference", action="store_true",
                        help="Targets of the UniSAR reference recipe (PreprocessConfig.reference).")
    for name, kind in _OVERRIDES:
        parser.add_argument(f"--{name}", type=kind, default=None,
                            help=f"Overrides NeighbourConfig.{name}.")
    parser.add_argument("--snapshots", default=None,
                        help="Comma-separated boundaries: unix ms or Beijing 'YYYY-MM-DD[ HH:MM]'.")
    parser.add_argument("--visibility", default=None,
                        help="Comma-separated tables to build: train, test, all.")
    parser.add_argument("--num_shards",
                        type=bounded_int("num_shards", 0, "a non-negative integer"), default=0,
                        help="Table shards (users by user_id %% num_shards; 0 = one per 256 MB "
                             "of rec_inter.csv, at most 64).")
    args, beam_args = parser.parse_known_args(argv)
    try:
        config, preprocess_config = parse_config(args)
    except ValueError as err:
        parser.error(str(err))  # exits with status 2, like any bad flag

    options = pipeline_options(beam_args, save_main_session)
    config = resolve_layout(config, options.view_as(StandardOptions).runner)
    launch.check_runner(options, {"input_dir": args.input_dir, "output_dir": args.output_dir})

    start = time.time()
    paths = resolve_inputs(args.input_dir)
    num_shards = args.num_shards or shards_by_size(paths[REC])
    logging.info("neighbours: %s -> %s, mode %s (%s layout, %s join), visibilities %s, "
                 "%d shards", args.input_dir, args.output_dir, config.mode, config.lsh_layout,
                 config.candidate_join, list(config.visibilities), num_shards)

    def produce(staging: str) -> Dict:
        return launch.run_job(
            options, lambda pipeline: build_pipeline(pipeline, paths, staging, config,
                                                     preprocess_config, num_shards),
            lambda: finalize(staging, config, preprocess_config, time.time() - start,
                             input_dir=args.input_dir))

    stats = outputs.run_staged(args.output_dir, "jsr-neighbours", produce, LEGACY_OUTPUTS)
    logging.info("neighbours: done in %.1f s", stats["elapsed_s"])
    return stats


def main(argv: Optional[Sequence[str]] = None) -> None:
    """``jsr-neighbours`` entry point: runs and prints the summary table."""
    console_main(run, format_table, argv)


if __name__ == "__main__":
    main()
