"""Vocabulary tables of the models (numpy, dense-index order: row 0 = pad, row 1 = OOV):
``dense_rows``, ``ItemTables`` (item captions and categories), ``user_feature_table``,
``query_table``.
"""

from __future__ import annotations

from typing import Tuple

import jsr_tf  # noqa: F401
import numpy as np

from jsr_tf import features as F
from jsr_tf.data.vocab import NUM_RESERVED, Vocab


NUM_USER_FEATURES = 4  # onehot_feat1, onehot_feat2, search_active_level, rec_active_level


def dense_rows(raw: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Maps raw ids to dense indices of a vocabulary.

    The same mapping as ``IdLookup`` (``jsr_tf/layers/id_lookup.py``), in numpy.

    Args:
        raw: Integer array of raw ids, any shape; negative = padding (``F.RAW_PAD_ID``), and 0
            too when ``ids`` does not hold it.
        ids: The vocabulary's raw ids, in dense order (``ids[k]`` has index ``k + 2``).

    Returns:
        int64 array shaped like ``raw``: 0 for padding, 1 (OOV) for ids not in ``ids``.
    """
    order = np.argsort(ids)
    sorted_ids = ids[order]
    pos = np.searchsorted(sorted_ids, raw)
    pos = np.minimum(pos, max(len(ids) - 1, 0))
    found = (len(ids) > 0) & (sorted_ids[pos] == raw) if len(ids) else np.zeros_like(raw, bool)
    dense = np.where(found, order[pos] + NUM_RESERVED, 1)
    padding = (raw < 0) | ((raw == 0) & ~found)
    return np.where(padding, F.PAD_ID, dense).astype(np.int64)


class ItemTables:
    """Item side-feature tables in dense-index order (row 0 = pad, row 1 = OOV).

    Args:
        vocab: Vocabularies from the pipeline.

    Attributes:
        captions: int64 ``[num_items, W]`` dense word indices of each item's caption.
        categories: int64 ``[num_items, 2]`` first- and second-level category.
        category_sizes: Rows of the two category tables.
    """

    def __init__(self, vocab: Vocab) -> None:
        n = vocab.num_items
        self.captions = np.zeros([n, vocab.shape.caption_words], np.int64)
        self.captions[NUM_RESERVED:] = dense_rows(vocab.item_captions, vocab.word_ids)
        self.categories = np.zeros([n, 2], np.int64)
        self.categories[NUM_RESERVED:] = vocab.item_categories[:, :2]
        self.category_sizes = tuple(int(self.categories[:, k].max(initial=0)) + 1 for k in range(2))


def user_feature_table(vocab: Vocab) -> Tuple[np.ndarray, Tuple[int, ...]]:
    """The user side features in dense-index order and the sizes of the user tables.

    Args:
        vocab: Vocabularies from the pipeline.

    Returns:
        ``(table, sizes)``: int64 ``[num_users, 4]`` (rows 0 and 1 all zero) and the number of
        values of the user id and of each of the four features (5 sizes).
    """
    table = np.zeros([vocab.num_users, NUM_USER_FEATURES], np.int64)
    table[NUM_RESERVED:] = vocab.user_features
    sizes = (vocab.num_users,) + tuple(
        int(table[:, k].max(initial=0)) + 1 for k in range(NUM_USER_FEATURES))
    return table, sizes


def query_table(vocab: Vocab) -> np.ndarray:
    """The train-visible queries as dense word indices (the InfoNCE negative pool).

    Returns:
        int64 ``[num_queries, W]``; one all-padding query when the vocabulary has none.
    """
    if len(vocab.queries):
        return dense_rows(vocab.queries, vocab.word_ids)
    return np.zeros([1, vocab.shape.query_words], np.int64)
