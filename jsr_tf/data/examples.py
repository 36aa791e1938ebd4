"""From a user's timeline to one example per target (the contract of ``jsr_tf/features.py``).

Pure Python; the Beam pipeline serialises the dicts to ``tf.train.Example``.
"""

from __future__ import annotations

from typing import Dict, Iterator, List, Mapping, NamedTuple, Sequence

from jsr_tf import features as F
from jsr_tf.data.config import PreprocessConfig
from jsr_tf.data.negatives import NegativePool, NegativeSampler, derived_seed
from jsr_tf.data.timeline import Event, UserTimeline, history_end
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


def _prior_items(history: Sequence[Event]) -> set:
    """Items the user interacted with in ``history``: feed positives and actual search clicks."""
    items = set()
    for event in history:
        if event.kind == EventKind.FEED:
            items.add(event.item)
        else:
            items.update(event.all_clicked)
    return items


def user_examples(timeline: UserTimeline, pools: Mapping[int, NegativePool],
                  config: PreprocessConfig, counters: Dict[str, int]) -> Iterator[KeyedExample]:
    """Yields one example per target of the user.

    Args:
        timeline: From ``build_timeline``.
        pools: ``Task -> NegativePool``.
        config: Preprocessing settings.
        counters: Updated with ``examples/<split>/<task>`` and drop counts.

    Yields:
        ``KeyedExample``s in canonical target order.
    """
    events = timeline.events
    samplers: Dict[tuple, NegativeSampler] = {}
    for target in timeline.targets:
        event = events[target.index]
        task = Task(target.task)
        name = task.name.lower()
        end = history_end(events, target.index, config.strict_same_ts)
        full_history = events[:end]
        if target.split == Split.TRAIN.value and config.mask_heldout_in_train_history:
            history = [e for i, e in enumerate(full_history) if i not in timeline.heldout]
        else:
            history = list(full_history)

        n_neg = (config.num_train_negatives if target.split == Split.TRAIN.value
                 else config.num_eval_negatives)
        key = (task, target.split)
        if key not in samplers:
            seed = derived_seed(config.candidate_seed, int(task), target.split, timeline.user_id)
            samplers[key] = NegativeSampler(pools[task], seed,
                                            config.negatives_must_predate_target)
        exclude = _prior_items(full_history)
        exclude.add(event.item)
        exclude.update(event.all_clicked)
        negatives = samplers[key].sample(n_neg, exclude, event.ts, counters)
        if negatives is None:
            for key in (f"{name}/dropped_insufficient_negatives",
                        f"{name}/dropped_insufficient_negatives/{target.split}"):
                counters[key] = counters.get(key, 0) + 1
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
    return example
