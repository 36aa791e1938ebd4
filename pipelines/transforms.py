"""Beam transforms: KuaiSAR CSVs → validated events → per-user timelines → examples + vocabularies.

The composite ``KuaisarToExamples`` is shared by the ``jsr-preprocess`` pipeline and the TFDS
builder. TF objects are only created in ``DoFn.setup``; the pure-Python logic lives in
``jsr_tf.data`` so it is unit-tested without Beam.
"""

from __future__ import annotations

import collections
import logging
from typing import Dict, Iterable, List, Mapping, Sequence, Tuple

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems

from jsr_tf import features as F
from jsr_tf import filenames as FN
from jsr_tf.data import kuaisar
from jsr_tf.data.config import PreprocessConfig
from jsr_tf.data.examples import (KeyedExample, eval_row_exclusions, to_tf_example,
                                  user_examples)
from jsr_tf.data.negatives import NegativePool
from jsr_tf.data.records import ItemRecord, UserRecord
from jsr_tf.data.timeline import UserTimeline, build_timeline
from jsr_tf.features import EventKind, Split, Task

# Short names of the raw files (file names, counter prefixes and keys of the jobs).
REC, SRC, ITEMS, USERS = FN.REC_INTER, FN.SRC_INTER, FN.ITEM_FEATURES, FN.USER_FEATURES
SOCIAL = FN.SOCIAL_NETWORK
REQUIRED_FILES = (REC, SRC, ITEMS, USERS)
OPTIONAL_FILES = (SOCIAL,)

STATS = "stats"
DEAD = "dead_letter"
FIRST_TS, LAST_TS = "first_ts_ms", "last_ts_ms"  # per-file span of the accepted events
_PROGRESS_ROWS = 1_000_000
_PROGRESS_USERS = 5_000

Counters = Dict[str, int]


def merge_counters(dicts: Iterable[Mapping[str, int]]) -> Counters:
    total: Counters = collections.Counter()
    for counts in dicts:
        total.update(counts)
    return dict(sorted(total.items()))


def bump(counts: Counters, name: str, n: int = 1) -> None:
    """Adds ``n`` to the counter ``name``."""
    counts[name] = counts.get(name, 0) + n


class Progress:
    """Logs ``<job>/<label>: N done`` every ``every`` elements of one DoFn instance."""

    def __init__(self, job: str, label: str, every: int = 20_000) -> None:
        self.job = job
        self.label = label
        self.every = every
        self.count = 0

    def tick(self) -> None:
        self.count += 1
        if self.count % self.every == 0:
            logging.info("%s/%s: %d done", self.job, self.label, self.count)


class ReadKuaisarFile(beam.DoFn):
    """Reads one KuaiSAR CSV sequentially, so every row keeps its 0-based data-line index.

    Input: ``(file_name, path)``. Main output: canonical records (``(row, record)`` for the item,
    user and social files). Tagged outputs: ``dead_letter`` (``Rejection``) and ``stats`` (one
    counter dict per file).
    """

    def __init__(self, config: PreprocessConfig) -> None:
        self._config = config

    def process(self, element: Tuple[str, str]):
        file_name, path = element
        period = kuaisar.Period(self._config.period_start_ms, self._config.period_end_ms)
        counts: Counters = collections.Counter()
        with FileSystems.open(path) as stream:
            header = kuaisar.read_header(stream, file_name)
            info = kuaisar.check_header(file_name, header)
            if info.extra:
                logging.warning("%s: ignoring unknown columns %s", file_name, list(info.extra))
                counts[f"{file_name}/unknown_columns"] = len(info.extra)
            parser = kuaisar.RowParser(file_name, header, period=period,
                                       max_words=self._config.max_query_words)
            keep_row = file_name not in (REC, SRC)
            first_ts = last_ts = None
            for row, line, raw in kuaisar.iter_lines(stream):
                result = parser.parse(row, line, raw)
                counts[f"{file_name}/rows_read"] += 1
                for note in result.notes:
                    counts[f"{file_name}/note/{note}"] += 1
                if result.rejection is not None:
                    counts[f"{file_name}/rejected/{result.rejection.reason}"] += 1
                    yield beam.pvalue.TaggedOutput(DEAD, result.rejection)
                elif keep_row:
                    yield row, result.record
                else:
                    ts = result.record.ts
                    first_ts = ts if first_ts is None else min(first_ts, ts)
                    last_ts = ts if last_ts is None else max(last_ts, ts)
                    yield result.record
                if (row + 1) % _PROGRESS_ROWS == 0:
                    logging.info("%s: %d rows read", file_name, row + 1)
        if first_ts is not None:  # one stats dict per file: merging keeps these as they are
            counts[f"{file_name}/{FIRST_TS}"] = first_ts
            counts[f"{file_name}/{LAST_TS}"] = last_ts
        logging.info("%s: done, %d rows read", file_name, counts[f"{file_name}/rows_read"])
        yield beam.pvalue.TaggedOutput(STATS, dict(counts))


class ParseFile(beam.PTransform):
    """One KuaiSAR file → (records, rejections, stats)."""

    def __init__(self, file_name: str, path: str, config: PreprocessConfig) -> None:
        super().__init__()
        self._file_name = file_name
        self._path = path
        self._config = config

    def expand(self, pbegin):
        return (pbegin
                | "Path" >> beam.Create([(self._file_name, self._path)])
                | "Read" >> beam.ParDo(ReadKuaisarFile(self._config)).with_outputs(
                    DEAD, STATS, main="records"))


class BuildTimelines(beam.DoFn):
    """``(user_id, {"feed": [...], "search": [...]})`` → ``UserTimeline`` (+ ``stats``)."""

    def __init__(self, config: PreprocessConfig) -> None:
        self._config = config
        self._users = 0

    def process(self, element):
        user_id, grouped = element
        counts: Counters = {}
        timeline = build_timeline(user_id, grouped["feed"], grouped["search"], self._config,
                                  counts)
        counts["users/with_events"] = 1
        self._users += 1
        if self._users % _PROGRESS_USERS == 0:
            logging.info("timelines: %d users merged", self._users)
        yield timeline
        yield beam.pvalue.TaggedOutput(STATS, counts)


def parse_timelines(pipeline: beam.Pipeline, paths: Dict[str, str], config: PreprocessConfig,
                    names: Tuple[str, ...] = (REC, SRC)):
    """Parses the ``names`` files (feed and search logs at least) and builds the per-user
    timelines (``KuaisarToExamples`` and the neighbour jobs).

    Returns:
        ``(parsed, timelines)``: ``ParseFile`` outputs per file name (``records``, ``stats``),
        and ``BuildTimelines`` outputs (``tl``: ``UserTimeline``, ``stats``).
    """
    parsed = {name: pipeline | f"Parse {name}" >> ParseFile(name, paths[name], config)
              for name in names}
    feed = parsed[REC].records | "KeyFeed" >> beam.Map(lambda e: (e.user_id, e))
    search = parsed[SRC].records | "KeySearch" >> beam.Map(lambda r: (r.user_id, r))
    timelines = ({"feed": feed, "search": search}
                 | "GroupByUser" >> beam.CoGroupByKey()
                 | "Timelines" >> beam.ParDo(BuildTimelines(config)).with_outputs(
                     STATS, main="tl"))
    return parsed, timelines


def train_target_items(timeline: UserTimeline) -> Iterable[Tuple[Tuple[int, int], int]]:
    """``((task, item), 1)`` for each train target: the popularity weights ``w_i``."""
    for target in timeline.targets:
        if target.split == Split.TRAIN.value:
            yield (target.task, timeline.events[target.index].item), 1


def train_visible_words(timeline: UserTimeline) -> Iterable[Tuple[int, int]]:
    """``(word, 1)`` for the query words of every session that is not a held-out target."""
    for index, event in enumerate(timeline.events):
        if event.kind == EventKind.SEARCH and index not in timeline.heldout:
            for word in event.words:
                yield word, 1


def train_visible_queries(timeline: UserTimeline) -> Iterable[Tuple[Tuple[int, ...], int]]:
    """``(query words, 1)`` for every session that is not a held-out target (InfoNCE negatives)."""
    for index, event in enumerate(timeline.events):
        if event.kind == EventKind.SEARCH and index not in timeline.heldout and event.words:
            yield event.words, 1


def eval_target_items(timeline: UserTimeline) -> Iterable[Tuple[Tuple[int, str, int], int]]:
    """``((task, split, item), 1)`` for each valid/test target: the fair pools' weights."""
    for target in timeline.targets:
        if target.split != Split.TRAIN.value:
            yield (target.task, target.split, timeline.events[target.index].item), 1


def all_exposures(timeline: UserTimeline) -> Iterable[Tuple[int, int]]:
    """``(item, ts)`` of every exposure, held-out targets included (their item, or every item
    their session showed): first-seen times of the fair pools, where a test positive first shown
    in someone's test event must still be drawable for later targets."""
    yield from timeline.exposures
    for index in timeline.heldout:
        event = timeline.events[index]
        for item in (event.shown or (event.item,)):
            yield item, event.ts


def excluded_allowed_items(timeline: UserTimeline, first_seen: Mapping[int, int],
                           must_predate: bool = True
                           ) -> Iterable[Tuple[Tuple[int, str, int], int]]:
    """``((task, split, item), 1)`` for every item a valid/test row excludes that the first-seen
    rule alone would have allowed (first seen before the target; every excluded item when
    ``must_predate`` is off)."""
    for task, split, ts, excluded in eval_row_exclusions(timeline):
        for item in excluded:
            if not must_predate or first_seen.get(item, ts) < ts:
                yield (task, split, item), 1


def eval_row_times(timeline: UserTimeline) -> Iterable[Tuple[Tuple[int, str], int]]:
    """``((task, split), target_ts)`` of every valid/test target."""
    for task, split, ts, _ in eval_row_exclusions(timeline):
        yield (task, split), ts


def fair_weights(counts: Mapping[int, int], first_seen: Mapping[int, int],
                 row_times: Sequence[int], excluded: Mapping[int, int],
                 must_predate: bool = True) -> Dict[int, float]:
    """Draw weights that give negatives the positives' distribution over a (task, split).

    A row may draw item i only if i was first seen before the row's target and the row does not
    exclude it, so with weights ``w_i`` (the positives' counts) items often excluded (popular
    ones sit in many histories) would be under-drawn. Weighting by ``w_i / a_i``, with ``a_i``
    the number of rows that may draw i, makes an item's expected share of the negatives
    proportional to ``w_i`` again (to first order), so an item-only scorer stays at chance.

    Args:
        counts: Item -> count among the (task, split)'s positives.
        first_seen: Item -> first-seen ms.
        row_times: Target times of the (task, split)'s rows.
        excluded: Item -> rows that exclude it although it was first seen before them.
        must_predate: The first-seen rule is on (``negatives_must_predate_target``); off, every
            row may draw any item it does not exclude.

    Returns:
        Item -> weight; items no row may draw get 0.
    """
    times = np.sort(np.asarray(list(row_times), np.int64))
    out: Dict[int, float] = {}
    for item, count in counts.items():
        seen = first_seen.get(item)
        if seen is None or count <= 0:
            continue
        allowed = (int(times.size - np.searchsorted(times, seen, side="right")) if must_predate
                   else int(times.size))
        allowed -= int(excluded.get(item, 0))
        out[item] = count / allowed if allowed > 0 else 0.0
    return out


def build_fair_pools(_, counts: Mapping[Tuple[int, str, int], int],
                     first_seen: Mapping[int, int],
                     row_times: Mapping[Tuple[int, str], Sequence[int]],
                     excluded: Mapping[Tuple[int, str, int], int],
                     must_predate: bool = True) -> Dict[Tuple[int, str], NegativePool]:
    """``(task, split) -> NegativePool`` weighted by that task and split's positives, corrected
    for exclusions (``fair_weights``); no uniform fallback, so the negatives keep the positives'
    distribution."""
    keys = [(int(t), s.value) for t in Task for s in (Split.VALID, Split.TEST)]
    per_key: Dict[Tuple[int, str], Dict[int, int]] = {key: {} for key in keys}
    excluded_by_key: Dict[Tuple[int, str], Dict[int, int]] = {key: {} for key in keys}
    for (task, split, item), count in counts.items():
        per_key[(int(task), split)][item] = count
    for (task, split, item), count in excluded.items():
        excluded_by_key[(int(task), split)][item] = count
    seen = dict(first_seen)
    return {key: NegativePool.build(
                fair_weights(weights, seen, row_times.get(key, ()), excluded_by_key[key],
                             must_predate),
                seen, uniform_fallback=False)
            for key, weights in per_key.items()}


def build_pools(_, counts: Mapping[Tuple[int, int], int],
                first_seen: Mapping[int, int]) -> Dict[int, NegativePool]:
    per_task: Dict[int, Dict[int, int]] = {Task.FEED: {}, Task.SEARCH: {}}
    for (task, item), count in counts.items():
        per_task[task][item] = count
    return {task: NegativePool.build(per_task[task], dict(first_seen)) for task in per_task}


class MakeExamples(beam.DoFn):
    """``UserTimeline`` → ``KeyedExample`` per target (+ ``stats``)."""

    def __init__(self, config: PreprocessConfig) -> None:
        self._config = config
        self._users = 0

    def process(self, timeline: UserTimeline, pools, fair_pools=None):
        counts: Counters = {}
        yield from user_examples(timeline, pools, self._config, counts, fair_pools)
        self._users += 1
        if self._users % _PROGRESS_USERS == 0:
            logging.info("examples: %d users done", self._users)
        yield beam.pvalue.TaggedOutput(STATS, counts)


class SerializeExamples(beam.DoFn):
    """``KeyedExample`` → ``((split, task, shard), ((user, row), serialized tf.train.Example))``.

    The shard is a fixed function of the user, so shard contents do not depend on the runner.
    """

    def __init__(self, num_shards: Mapping[str, int]) -> None:
        self._num_shards = dict(num_shards)

    def setup(self):
        from tensorflow.core.example import example_pb2  # noqa: F401  (load TF's protos once)

    def process(self, keyed: KeyedExample):
        shard = (keyed.user_id * 2654435761 % (1 << 32)) % self._num_shards[keyed.split]
        data = to_tf_example(keyed.values).SerializeToString(deterministic=True)
        yield (keyed.split, keyed.task, shard), ((keyed.user_id, keyed.target_row), data)


def _vocab_item_row(element) -> List[Tuple]:
    """Joins one item's first-seen time, counts and features into an ``items.tsv`` row (the
    values of ``filenames.ItemsTsv.COLUMNS``, in order).

    Returns:
        One row, or none if the item is not train-visible (then it is not in the vocabulary).
    """
    item_id, grouped = element
    seen = list(grouped["first_seen"])
    if not seen:
        return []
    counts = collections.Counter()
    for task, count in grouped["counts"]:
        counts[task] += count
    records: List[Tuple[int, ItemRecord]] = sorted(grouped["features"], key=lambda x: x[0])
    if records:
        record = records[0][1]
        caption, author, cats = record.caption, record.author_id, record.categories
    else:
        caption, author, cats = (), 0, (0, 0, 0, 0)
    return [(item_id, counts[Task.FEED], counts[Task.SEARCH], min(seen), author, *cats, caption)]


class KuaisarToExamples(beam.PTransform):
    """The whole import: KuaiSAR files → examples, vocabularies, dead letters and counters.

    Args:
        paths: File name (e.g. ``"rec_inter.csv"``) → path on any Beam filesystem. The four
            required files must be present; ``social_network.csv`` is optional.
        config: Preprocessing settings.

    Returns (from ``expand``):
        Dict of PCollections: ``examples`` (``KeyedExample``), ``items``
        (``items.tsv`` rows), ``words`` (``(word, count)``), ``users`` (``users.tsv`` rows),
        ``queries`` (``(words tuple, count)`` of train-visible sessions),
        ``dead_letter`` (``Rejection``), ``stats`` (one merged counter dict).
    """

    def __init__(self, paths: Mapping[str, str], config: PreprocessConfig) -> None:
        super().__init__()
        self._paths = dict(paths)
        self._config = config

    def expand(self, pbegin):
        config = self._config
        parsed, timelines_out = parse_timelines(pbegin, self._paths, config,
                                                tuple(sorted(self._paths)))
        timelines = timelines_out.tl

        counts = (timelines
                  | "TrainTargets" >> beam.FlatMap(train_target_items)
                  | "CountTargets" >> beam.CombinePerKey(sum))
        first_seen = (timelines
                      | "Exposures" >> beam.FlatMap(lambda t: t.exposures)
                      | "FirstSeen" >> beam.CombinePerKey(min))
        pools = (pbegin
                 | "PoolSeed" >> beam.Create([None])
                 | "Pools" >> beam.Map(build_pools, counts=beam.pvalue.AsDict(counts),
                                       first_seen=beam.pvalue.AsDict(first_seen)))
        eval_counts = (timelines
                       | "EvalTargets" >> beam.FlatMap(eval_target_items)
                       | "CountEvalTargets" >> beam.CombinePerKey(sum))
        first_seen_all = (timelines
                          | "AllExposures" >> beam.FlatMap(all_exposures)
                          | "FirstSeenAll" >> beam.CombinePerKey(min))
        row_times = (timelines
                     | "EvalRowTimes" >> beam.FlatMap(eval_row_times)
                     | "GroupRowTimes" >> beam.GroupByKey()
                     | "SortRowTimes" >> beam.MapTuple(lambda key, ts: (key, sorted(ts))))
        excluded = (timelines
                    | "EvalExclusions" >> beam.FlatMap(
                        excluded_allowed_items, first_seen=beam.pvalue.AsDict(first_seen_all),
                        must_predate=config.negatives_must_predate_target)
                    | "CountExclusions" >> beam.CombinePerKey(sum))
        fair_pools = (pbegin
                      | "FairPoolSeed" >> beam.Create([None])
                      | "FairPools" >> beam.Map(build_fair_pools,
                                                counts=beam.pvalue.AsDict(eval_counts),
                                                first_seen=beam.pvalue.AsDict(first_seen_all),
                                                row_times=beam.pvalue.AsDict(row_times),
                                                excluded=beam.pvalue.AsDict(excluded),
                                                must_predate=config.negatives_must_predate_target))
        examples_out = (timelines
                        | "Examples" >> beam.ParDo(
                            MakeExamples(config),
                            pools=beam.pvalue.AsSingleton(pools),
                            fair_pools=beam.pvalue.AsSingleton(fair_pools)).with_outputs(
                                STATS, main="ex"))

        item_features = parsed[ITEMS].records | "KeyItems" >> beam.Map(
            lambda rr: (rr[1].item_id, rr))
        count_by_item = counts | "CountByItem" >> beam.Map(lambda kv: (kv[0][1], (kv[0][0], kv[1])))
        items = ({"first_seen": first_seen, "counts": count_by_item, "features": item_features}
                 | "JoinItems" >> beam.CoGroupByKey()
                 | "ItemRows" >> beam.FlatMap(_vocab_item_row))
        words = ((timelines | "QueryWords" >> beam.FlatMap(train_visible_words),
                  items | "CaptionWords" >> beam.FlatMap(lambda row: ((w, 1) for w in row[-1])))
                 | "AllWords" >> beam.Flatten()
                 | "CountWords" >> beam.CombinePerKey(sum))
        queries = (timelines
                   | "Queries" >> beam.FlatMap(train_visible_queries)
                   | "CountQueries" >> beam.CombinePerKey(sum))
        user_features = parsed[USERS].records | "KeyUsers" >> beam.Map(
            lambda rr: (rr[1].user_id, rr))
        users = ({"features": user_features,
                  "events": timelines | "UserIds" >> beam.Map(lambda t: (t.user_id, 1))}
                 | "JoinUsers" >> beam.CoGroupByKey()
                 | "UserRows" >> beam.Map(_vocab_user_row))

        stats_parts = [p.stats for p in parsed.values()]
        stats_parts += [timelines_out.stats, examples_out.stats]
        stats_parts.append(items | "CountItemVocab" >> beam.combiners.Count.Globally()
                           | "ItemStat" >> beam.Map(lambda n: {"vocab/items": n}))
        stats_parts.append(words | "CountWordVocab" >> beam.combiners.Count.Globally()
                           | "WordStat" >> beam.Map(lambda n: {"vocab/words": n}))
        stats_parts.append(users | "UserVocabStats" >> beam.Map(_user_row_stats))
        stats_parts.append(item_features | "ItemFileStats" >> beam.GroupByKey()
                           | "ItemDupStats" >> beam.Map(_duplicate_stats, ITEMS))
        if SOCIAL in parsed:  # imported and counted (too sparse to drive similar users)
            stats_parts.append(parsed[SOCIAL].records
                               | "KeyFollows" >> beam.Map(
                                   lambda rr: ((rr[1].user_id, rr[1].user_follow_id), rr))
                               | "GroupFollows" >> beam.GroupByKey()
                               | "FollowDupStats" >> beam.Map(_duplicate_stats, SOCIAL))
        stats_parts.append(queries | "CountQueryVocab" >> beam.combiners.Count.Globally()
                           | "QueryStat" >> beam.Map(lambda n: {"vocab/queries": n}))
        stats = (stats_parts
                 | "AllStats" >> beam.Flatten()
                 | "MergeStats" >> beam.CombineGlobally(merge_counters))
        dead = [p.dead_letter for p in parsed.values()] | "AllDead" >> beam.Flatten()
        return {"examples": examples_out.ex, "items": items, "words": words, "users": users,
                "queries": queries,
                "dead_letter": dead, "stats": stats}


def _dedupe_counts(records: List[Tuple[int, object]]) -> Tuple[int, int]:
    """(exact duplicates, conflicting rows) among ``(row, record)`` of one id; the first row wins.

    Exact duplicates repeat the first row's content; conflicting rows reuse its id with other
    content. Both are dropped, under different counter names.
    """
    first = records[0][1]
    exact = sum(1 for _, record in records[1:] if record == first)
    return exact, len(records) - 1 - exact


def _vocab_user_row(element) -> Tuple:
    """``(user_id, 4 features, has_events, exact duplicates, conflicting rows, has_record)``: the
    ``users.tsv`` columns (``filenames.UsersTsv.COLUMNS``; the features are ``UserRecord``'s
    fields of the same names), then what ``_user_row_stats`` counts."""
    user_id, grouped = element
    records: List[Tuple[int, UserRecord]] = sorted(grouped["features"], key=lambda x: x[0])
    has_events = int(bool(list(grouped["events"])))
    if records:
        r = records[0][1]
        return (user_id, *(getattr(r, name) for name in FN.UsersTsv.FEATURES), has_events,
                *_dedupe_counts(records), 1)
    return (user_id, *(0 for _ in FN.UsersTsv.FEATURES), has_events, 0, 0, 0)


def _user_row_stats(row: Tuple) -> Counters:
    has_events, exact, conflicting, has_record = row[len(FN.UsersTsv.COLUMNS):]
    counts = {"vocab/users": 1}  # users/with_events is counted by BuildTimelines
    if not has_events:
        counts["users/without_events"] = 1
    if has_record:
        counts[f"{USERS}/canonical"] = 1
        counts[f"{USERS}/dropped_duplicate"] = exact
        counts[f"{USERS}/dropped_conflicting_id"] = conflicting
    return counts


def _duplicate_stats(element, file_name: str) -> Counters:
    """Counters of one id's ``(row, record)`` group (social edges: the record is the edge)."""
    _, records = element
    exact, conflicting = _dedupe_counts(sorted(records, key=lambda x: x[0]))
    return {f"{file_name}/canonical": 1, f"{file_name}/dropped_duplicate": exact,
            f"{file_name}/dropped_conflicting_id": conflicting}
