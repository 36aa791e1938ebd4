"""From a user's timeline to one example per target (the contract of ``jsr_tf/features.py``).

Pure Python; the Beam pipeline serialises the dicts to ``tf.train.Example``.
"""

from __future__ import annotations

import bisect
from typing import Dict, Iterator, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from jsr_tf import features as F
from jsr_tf.data.config import PreprocessConfig
from jsr_tf.data.negatives import NegativePool, NegativeSampler, derived_seed
from jsr_tf.data.timeline import Event, UserTimeline, history_ends
from jsr_tf.features import EventKind, Split, Task

ExampleDict = Dict[str, List[int]]


class KeyedExample(NamedTuple):
    """An example with where it goes: ``split`` and ``task`` pick the file."""

    split: str
    task: int
    user_id: int
    target_row: int
    values: ExampleDict


def history_fields(history: Sequence[Event], config: PreprocessConfig) -> ExampleDict:
    """The history features of the contract from events in canonical order (oldest first).

    Args:
        history: Candidate history events, oldest first, already filtered (time, masking).
        config: For the caps.

    Returns:
        Dict with every ``feed_*`` and ``search_*`` feature.
    """
    feed = [e for e in history if e.kind == EventKind.FEED][-config.max_feed_history:]
    search = [e for e in history if e.kind == EventKind.SEARCH][-config.max_search_history:]
    words: List[int] = []
    clicks: List[int] = []
    for session in search:
        words.extend(session.words)
        clicks.extend(session.clicks)
    return {
        F.FEED_ITEMS: [e.item for e in feed],
        F.FEED_TS: [e.ts for e in feed],
        F.FEED_ROWS: [e.row for e in feed],
        F.SEARCH_TS: [e.ts for e in search],
        F.SEARCH_ROWS: [e.row for e in search],
        F.SEARCH_HAS_CLICK: [e.has_click for e in search],
        F.SEARCH_WORDS: words,
        F.SEARCH_WORD_LENGTHS: [len(e.words) for e in search],
        F.SEARCH_CLICKS: clicks,
        F.SEARCH_CLICK_LENGTHS: [len(e.clicks) for e in search],
    }


class _Exclusions:
    """``item in exclusions``: the user's items so far plus a target's own items, without copying
    the (growing) set of earlier items for every target."""

    __slots__ = ("prior", "own")

    def __init__(self, prior: set, own: set) -> None:
        self.prior = prior
        self.own = own

    def __contains__(self, item: int) -> bool:
        return item in self.own or item in self.prior


def _last(indices: List[int], end: int, cap: int, skip: frozenset) -> List[int]:
    """The last ``cap`` indices below ``end`` that are not in ``skip`` (indices are sorted)."""
    stop = bisect.bisect_left(indices, end)
    out: List[int] = []
    for position in range(stop - 1, -1, -1):
        if indices[position] not in skip:
            out.append(indices[position])
            if len(out) == cap:
                break
    out.reverse()
    return out


def impression_negatives(event: Event, cap: int) -> List[int]:
    """A search target's shown-but-not-clicked items: file order, deduplicated, the first
    ``cap`` (``DataShape.impressions``)."""
    clicked = set(event.all_clicked)
    clicked.add(event.item)
    return [i for i in dict.fromkeys(event.shown) if i not in clicked][:cap]


class PriorItems:
    """The user's items of ``events[:consumed]`` (feed positives and actual search clicks), grown
    incrementally as targets advance in canonical order (``items`` is updated in place)."""

    __slots__ = ("events", "items", "consumed")

    def __init__(self, events: Sequence[Event]) -> None:
        self.events = events
        self.items: set = set()
        self.consumed = 0

    def advance(self, index: int) -> None:
        """Adds the items of every event before ``index``."""
        while self.consumed < index:
            earlier = self.events[self.consumed]
            if earlier.kind == EventKind.FEED:
                self.items.add(earlier.item)
            else:
                self.items.update(earlier.all_clicked)
            self.consumed += 1


def eval_row_exclusions(timeline: UserTimeline) -> Iterator[Tuple[int, str, int, frozenset]]:
    """``(task, split, target_ts, excluded items)`` of every valid/test target: the items its
    negatives may not be (the user's items before it in canonical order, the positive and the
    session's clicks), as ``user_examples`` builds them. The fair pools use them to correct their
    weights for how often each item is excluded."""
    prior = PriorItems(timeline.events)
    for target in timeline.targets:
        prior.advance(target.index)
        if target.split == Split.TRAIN.value:
            continue
        event = timeline.events[target.index]
        yield (int(target.task), target.split, event.ts,
               frozenset(prior.items | {event.item, *event.all_clicked}))


def _bump(counters: Dict[str, int], name: str) -> None:
    counters[name] = counters.get(name, 0) + 1


def user_examples(timeline: UserTimeline, pools: Mapping[int, NegativePool],
                  config: PreprocessConfig, counters: Dict[str, int],
                  fair_pools: Optional[Mapping[Tuple[int, str], NegativePool]] = None
                  ) -> Iterator[KeyedExample]:
    """Yields one example per target of the user.

    Work per target is O(caps + log n): histories come from per-kind index lists, and the
    user's earlier items (negative exclusions) grow incrementally as targets advance in time.

    Args:
        timeline: From ``build_timeline``.
        pools: ``Task -> NegativePool``.
        config: Preprocessing settings.
        counters: Updated with ``examples/<split>/<task>`` and drop counts.
        fair_pools: ``(Task, split) -> NegativePool`` of the ``sampled_fair`` protocol (weights:
            the counts of that task and split's positives). When given, valid and test rows get
            ``negatives_fair`` (same exclusions and seeding scheme as ``negatives``, its own
            seed) and valid and test search rows get ``impressions`` and ``other_clicks``.

    Yields:
        ``KeyedExample``s in canonical target order.
    """
    events = timeline.events
    feed_idx = [i for i, e in enumerate(events) if e.kind == EventKind.FEED]
    search_idx = [i for i, e in enumerate(events) if e.kind == EventKind.SEARCH]
    no_skip: frozenset = frozenset()
    samplers: Dict[tuple, NegativeSampler] = {}
    ends = history_ends(events, config.strict_same_ts)
    impressions_cap = config.data_shape().impressions
    # Exclusions run up to the target itself in canonical order, so with strict_same_ts an item
    # clicked at the same moment (same feed delivery) is never a negative even though it is not
    # history.
    prior_items = PriorItems(events)
    prior = prior_items.items
    for target in timeline.targets:
        event = events[target.index]
        task = Task(target.task)
        name = task.name.lower()
        end = ends[target.index]
        prior_items.advance(target.index)
        masked = target.split == Split.TRAIN.value and config.mask_heldout_in_train_history
        skip = timeline.heldout if masked else no_skip
        chosen = (_last(feed_idx, end, config.max_feed_history, skip)
                  + _last(search_idx, end, config.max_search_history, skip))
        history = [events[i] for i in sorted(chosen)]

        n_neg = (config.num_train_negatives if target.split == Split.TRAIN.value
                 else config.num_eval_negatives)
        key = (task, target.split)
        if key not in samplers:
            seed = derived_seed(config.candidate_seed, int(task), target.split, timeline.user_id)
            samplers[key] = NegativeSampler(pools[task], seed,
                                            config.negatives_must_predate_target)
        own = {event.item, *event.all_clicked}
        negatives = samplers[key].sample(n_neg, _Exclusions(prior, own), event.ts, counters)
        if negatives is None:
            for counter in (f"{name}/dropped_insufficient_negatives",
                            f"{name}/dropped_insufficient_negatives/{target.split}"):
                counters[counter] = counters.get(counter, 0) + 1
            continue

        values: ExampleDict = {
            F.USER_ID: [timeline.user_id],
            F.TASK: [int(task)],
            F.TARGET_ITEM: [event.item],
            F.TARGET_TS: [event.ts],
            F.TARGET_ROW: [event.row],
            F.QUERY_WORDS: list(event.words) if task == Task.SEARCH else [],
            F.NEGATIVES: negatives,
        }
        values.update(history_fields(history, config))
        if fair_pools is not None and target.split != Split.TRAIN.value:
            fair_key = ("fair", task, target.split)
            if fair_key not in samplers:
                seed = derived_seed(config.candidate_seed, "fair", int(task), target.split,
                                    timeline.user_id)
                samplers[fair_key] = NegativeSampler(fair_pools[(int(task), target.split)], seed,
                                                     config.negatives_must_predate_target)
            fair_counts: Dict[str, int] = {}
            fair = samplers[fair_key].sample(config.num_eval_negatives,
                                             _Exclusions(prior, own), event.ts, fair_counts)
            for key, count in fair_counts.items():  # negatives/fallback_* of the fair pools
                counters[f"fair_{key}"] = counters.get(f"fair_{key}", 0) + count
            values[F.NEGATIVES_FAIR] = fair or []
            _bump(counters, f"{name}/fair_negatives/{'written' if fair else 'short'}")
            if task == Task.SEARCH:
                values[F.IMPRESSIONS] = impression_negatives(event, impressions_cap)
                values[F.OTHER_CLICKS] = [i for i in event.all_clicked
                                          if i != event.item][:impressions_cap]
                _bump(counters, f"{name}/impressions/"
                                f"{'written' if values[F.IMPRESSIONS] else 'empty'}")
        if not values[F.FEED_ITEMS]:
            counters[f"{name}/rows_without_feed_history"] = counters.get(
                f"{name}/rows_without_feed_history", 0) + 1
        if not values[F.SEARCH_TS]:
            counters[f"{name}/rows_without_search_history"] = counters.get(
                f"{name}/rows_without_search_history", 0) + 1
        counters[f"examples/{target.split}/{name}"] = counters.get(
            f"examples/{target.split}/{name}", 0) + 1
        yield KeyedExample(target.split, int(task), timeline.user_id, event.row, values)


def to_tf_example(values: Mapping[str, Sequence[int]]):
    """Serialisable ``tf.train.Example`` from an example dict (imports TF's proto lazily)."""
    from tensorflow.core.example import example_pb2  # pylint: disable=g-import-not-at-top

    example = example_pb2.Example()
    feature_map = example.features.feature
    for name in F.ALL_FEATURES:
        feature_map[name].int64_list.value.extend(values[name])
    for name in F.EVAL_FEATURES:  # optional evaluation lists (valid/test rows)
        if name in values:
            feature_map[name].int64_list.value.extend(values[name])
    return example
