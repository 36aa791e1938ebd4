"""Floor scorers: popularity, random and the count scorers (spec/evaluation.md §4, §9).

All implement the model contract ``score(batch, task, training=False) -> logits [B, C]``, so
``jsr_tf.evaluation.evaluator.evaluate_model`` treats them like trained models. All are pure
TensorFlow, so they run inside the evaluator's ``tf.function``.
"""

from __future__ import annotations

from typing import Dict

import jsr_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TF loads)
import numpy as np
import tensorflow as tf

from jsr_tf import features as F
from jsr_tf.data import reader
from jsr_tf.data.vocab import Vocab


class PopularityScorer:
    """Scores a candidate by ``w_i``, its train-target count in the row's task.

    ``w_i`` is the same weight the negative sampler draws from (``vocab/items.tsv``: ``feed_count``
    for feed rows, ``search_count`` for search rows). Items outside the vocabulary score 0. Equal
    counts are real ties, and the rank metrics count ties against the scorer.

    Args:
        vocab: The data dir's vocabularies (``jsr_tf.data.vocab.load_vocab``).
    """

    name = "popularity"

    def __init__(self, vocab: Vocab) -> None:
        self.vocab = vocab
        self._tables = {
            task: _count_table(vocab.item_ids, counts)
            for task, counts in ((F.Task.FEED, vocab.item_feed_count),
                                 (F.Task.SEARCH, vocab.item_search_count))}

    def score(self, batch: Dict[str, tf.Tensor], task: int, training: bool = False) -> tf.Tensor:
        """Returns ``[B, C]`` float32 counts of ``batch["candidates"]``."""
        del training
        return self._tables[F.Task(task)].lookup(batch[reader.CANDIDATES])


class CountScorer:
    """Minus an item's train-target count: in the row's task (``same_task``) or in the other one.

    Training-free floors that find a positive by what the candidate set gives away: under the
    ``sampled`` protocol the negatives are drawn by train-target popularity, so an item that was
    rarely (or never) a train target is likely the positive (spec/evaluation.md §9). A fair
    protocol keeps them near random.

    Equal counts are broken by a fixed pseudo-random order of the items (a hash of the id and the
    seed, scaled into ``[0, 0.5)`` and added to the integer counts, so the order of different
    counts is kept and every call scores an item the same): most items share a count of 0, and
    counting those ties against the scorer would hide what the count itself gives away.

    Args:
        vocab: The data dir's vocabularies.
        same_task: True: count in the row's task; False: in the other task.
        seed: Seed of the tie-break draws.
    """

    def __init__(self, vocab: Vocab, same_task: bool = True, seed: int = 0) -> None:
        self.vocab = vocab
        self.same_task = bool(same_task)
        self.seed = int(seed)
        self.name = "-count (same task)" if same_task else "-count (other task)"
        counts = {F.Task.FEED: vocab.item_feed_count, F.Task.SEARCH: vocab.item_search_count}
        self._tables = {}
        for task in F.Task:
            source = task if same_task else F.Task(1 - int(task))
            self._tables[task] = _count_table(vocab.item_ids, -np.asarray(counts[source]))

    def score(self, batch: Dict[str, tf.Tensor], task: int, training: bool = False) -> tf.Tensor:
        """Returns ``[B, C]`` float32 minus counts of ``batch["candidates"]`` (0 outside the
        vocabulary) plus the tie-break draw."""
        del training
        ids = batch[reader.CANDIDATES]
        counts = self._tables[F.Task(task)].lookup(ids)
        return counts + tie_break(ids, self.seed)


class QueryBlindScorer:
    """Scores search rows with the model's *feed* head, ignoring the query (evaluation.md §4).

    The floor that shows what the query adds: the same user side and candidates, scored as if the
    row were a feed request.

    Args:
        model: A model implementing ``score(batch, task, training)``.
    """

    name = "query-blind (feed head)"

    def __init__(self, model) -> None:
        self.model = model

    def score(self, batch: Dict[str, tf.Tensor], task: int, training: bool = False) -> tf.Tensor:
        del task
        return self.model.score(batch, F.Task.FEED, training=training)


def tie_break(ids: tf.Tensor, seed: int = 0) -> tf.Tensor:
    """A fixed value in ``[0, 0.5)`` per item id (a hash of id and seed): ``float32``, ``ids``'s
    shape."""
    keys = tf.strings.join([tf.strings.as_string(tf.cast(ids, tf.int64)), str(int(seed))], "/")
    buckets = tf.strings.to_hash_bucket_fast(keys, 1 << 20)
    return 0.5 * tf.cast(buckets, tf.float32) / float(1 << 20)


def _count_table(item_ids: np.ndarray, counts: np.ndarray) -> tf.lookup.StaticHashTable:
    if len(item_ids) != len(counts):
        raise ValueError("Item ids and counts should have equal lengths. Received: "
                         f"{len(item_ids)} ids and {len(counts)} counts")
    if not len(item_ids):  # a table cannot be built from empty tensors: one pad row scoring 0
        item_ids, counts = np.array([F.RAW_PAD_ID], np.int64), np.array([0], np.int64)
    init = tf.lookup.KeyValueTensorInitializer(
        tf.constant(np.asarray(item_ids, np.int64)),
        tf.constant(np.asarray(counts, np.float32)))
    return tf.lookup.StaticHashTable(init, default_value=0.0)


class RandomScorer:
    """Scores every candidate by an independent uniform draw (continuous, so no ties).

    Expected metrics with C candidates: ``HR@K = K / C``, ``MRR = H_C / C``. Seeded and stateful:
    two scorers with the same seed evaluated on the same files give the same metrics.

    Args:
        seed: Integer seed.
    """

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        if not isinstance(seed, (int, np.integer)):
            raise ValueError(f"`seed` should be an integer. Received: `seed={seed!r}`")
        self.seed = int(seed)
        self._generator = tf.random.Generator.from_seed(self.seed)

    def score(self, batch: Dict[str, tf.Tensor], task: int, training: bool = False) -> tf.Tensor:
        """Returns ``[B, C]`` float32 uniform draws in ``[0, 1)``."""
        del task, training
        return self._generator.uniform(tf.shape(batch[reader.CANDIDATES]), dtype=tf.float32)
