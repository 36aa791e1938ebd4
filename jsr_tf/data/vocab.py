"""Vocabularies written by the pipeline (``<data_dir>/vocab/``), loaded as numpy arrays.

The model builds its raw-id → dense-index lookups and its item side-feature tables from these.
Dense index convention everywhere: 0 = padding, 1 = OOV, ``2 + i`` = the i-th vocabulary entry.
"""

from __future__ import annotations

import csv
import os
from typing import NamedTuple

import jsr_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TF loads)
import numpy as np
import tensorflow as tf

from jsr_tf import features as F
from jsr_tf import filenames as FN

_ITEMS, _WORDS, _USERS, _QUERIES = FN.ItemsTsv, FN.WordsTsv, FN.UsersTsv, FN.QueriesTsv


NUM_RESERVED = 2  # 0 = pad, 1 = OOV


class Vocab(NamedTuple):
    """Arrays of the three vocabularies, in file order (sorted by raw id).

    Attributes:
        item_ids: ``[N_items]`` int64 raw item ids.
        item_feed_count: ``[N_items]`` int64 train-target counts (feed).
        item_search_count: ``[N_items]`` int64 train-target counts (search).
        item_first_seen: ``[N_items]`` int64 first train-visible ms.
        item_categories: ``[N_items, 4]`` int64 category ids (0 = absent).
        item_captions: ``[N_items, W]`` int64 raw caption word ids, ``RAW_PAD_ID``-padded.
        word_ids: ``[N_words]`` int64 raw word ids.
        word_counts: ``[N_words]`` int64.
        user_ids: ``[N_users]`` int64 raw user ids.
        user_features: ``[N_users, 4]`` int64: search_active_level, rec_active_level,
            onehot_feat1, onehot_feat2.
        queries: ``[N_queries, W]`` int64 raw word ids of the distinct train-visible queries,
            ``RAW_PAD_ID``-padded (the query negatives of the query–item InfoNCE).
        shape: The data's ``DataShape`` (``manifest.json``): the sizes the models are built
            for (history lengths, words per query, neighbour slots).
    """

    item_ids: np.ndarray
    item_feed_count: np.ndarray
    item_search_count: np.ndarray
    item_first_seen: np.ndarray
    item_categories: np.ndarray
    item_captions: np.ndarray
    word_ids: np.ndarray
    word_counts: np.ndarray
    user_ids: np.ndarray
    user_features: np.ndarray
    queries: np.ndarray
    shape: F.DataShape = F.DataShape()

    @property
    def num_items(self) -> int:
        """Rows of an item table including pad and OOV."""
        return len(self.item_ids) + NUM_RESERVED

    @property
    def num_words(self) -> int:
        return len(self.word_ids) + NUM_RESERVED

    @property
    def num_users(self) -> int:
        return len(self.user_ids) + NUM_RESERVED


def _open(path: str):
    return tf.io.gfile.GFile(path, "r")  # any TF filesystem (local, gs://, ...)


def load_vocab(data_dir: str) -> Vocab:
    """Reads ``vocab/items.tsv``, ``words.tsv``, ``users.tsv`` and ``queries.tsv``, and the data's
    ``DataShape`` (captions keep their first ``caption_words`` words, queries their first
    ``query_words``).

    Raises:
        FileNotFoundError: If a vocabulary file is missing (run ``jsr-preprocess`` first).
    """
    shape = F.DataShape.read(data_dir)
    max_caption_words = shape.caption_words
    vocab_dir = os.path.join(data_dir, FN.VOCAB_DIR)
    for name in (FN.ITEMS_VOCAB, FN.WORDS_VOCAB, FN.USERS_VOCAB, FN.QUERIES_VOCAB):
        path = os.path.join(vocab_dir, name)
        if not tf.io.gfile.exists(path):
            raise FileNotFoundError(f"Vocabulary file {path!r} not found: run jsr-preprocess.")

    with _open(os.path.join(vocab_dir, FN.ITEMS_VOCAB)) as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    n = len(rows)
    captions = np.full([n, max_caption_words], F.RAW_PAD_ID, np.int64)
    for i, row in enumerate(rows):
        words = [int(w) for w in row[_ITEMS.CAPTION].split()][:max_caption_words]
        captions[i, :len(words)] = words

    def col(name: str) -> np.ndarray:
        return np.array([int(r[name]) for r in rows], np.int64)

    categories = np.stack([col(name) for name in _ITEMS.CATEGORIES], axis=1) if n else np.zeros(
        [0, len(_ITEMS.CATEGORIES)], np.int64)
    with _open(os.path.join(vocab_dir, FN.WORDS_VOCAB)) as f:
        words = list(csv.DictReader(f, delimiter="\t"))
    with _open(os.path.join(vocab_dir, FN.USERS_VOCAB)) as f:
        users = list(csv.DictReader(f, delimiter="\t"))
    with _open(os.path.join(vocab_dir, FN.QUERIES_VOCAB)) as f:
        query_rows = [r[_QUERIES.QUERY_WORDS].split() for r in csv.DictReader(f, delimiter="\t")]
    queries = np.full([len(query_rows), shape.query_words], F.RAW_PAD_ID, np.int64)
    for i, query in enumerate(query_rows):
        query_ids = [int(w) for w in query][:shape.query_words]
        queries[i, :len(query_ids)] = query_ids
    return Vocab(
        item_ids=col(_ITEMS.ITEM_ID), item_feed_count=col(_ITEMS.FEED_COUNT),
        item_search_count=col(_ITEMS.SEARCH_COUNT), item_first_seen=col(_ITEMS.FIRST_SEEN_TS),
        item_categories=categories, item_captions=captions,
        word_ids=np.array([int(r[_WORDS.WORD_ID]) for r in words], np.int64),
        word_counts=np.array([int(r[_WORDS.COUNT]) for r in words], np.int64),
        user_ids=np.array([int(r[_USERS.USER_ID]) for r in users], np.int64),
        user_features=np.array([[int(r[c]) for c in _USERS.FEATURES] for r in users],
                               np.int64).reshape(-1, len(_USERS.FEATURES)),
        queries=queries, shape=shape)
