"""Exact Jaccard re-rank of a whole population's LSH candidates, vectorised per user.

Pure numpy (no TF, no Beam). The grouped LSH layout of ``pipelines/neighbours.py`` uses it; the
keyed layout re-ranks one user at a time with ``minhash.jaccard``. Both apply the selection rule
of ``minhash.rank_neighbours`` and give bit-identical Jaccard values: ``|A ∩ B|`` is an integer
count here and ``inter / (|A| + |B| − inter)`` is one float64 division, as in ``jaccard``.

**How.** ``TokenIndex`` maps the population's tokens to ids and stores each user's set as a
slice of one int32 array (CSR). For user ``u`` the re-rank marks ``u``'s tokens in a boolean
mask over the vocabulary, gathers the mask at the concatenated tokens of ``u``'s candidates and
sums per candidate: ``O(Σ |X_v|)`` numpy work over ``u``'s (at most ``M``) candidates.
"""

from __future__ import annotations

from typing import Dict, Hashable, List, Sequence, Tuple

import numpy as np

__all__ = ["TokenIndex", "rerank_user"]


class TokenIndex:
    """The token sets of one population as integer ids (CSR layout).

    Args:
        token_sets: One collection of hashable tokens per user (row order = the candidate rows).

    Attributes:
        indptr: int64 ``(n + 1,)``: user ``i``'s token ids are ``indices[indptr[i]:indptr[i+1]]``.
        indices: int32 ``(Σ |X_i|,)`` token ids.
        sizes: int64 ``(n,)`` set sizes ``|X_i|``.
        vocabulary_size: Distinct tokens of the population.
    """

    def __init__(self, token_sets: Sequence[Sequence[Hashable]]) -> None:
        ids: Dict[Hashable, int] = {}
        flat: List[int] = []
        sizes = np.zeros(len(token_sets), dtype=np.int64)
        for i, tokens in enumerate(token_sets):
            row = {ids.setdefault(t, len(ids)) for t in tokens}
            flat.extend(row)
            sizes[i] = len(row)
        self.indices = np.asarray(flat, dtype=np.int32)
        self.sizes = sizes
        self.indptr = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.vocabulary_size = len(ids)
        self._mask = np.zeros(len(ids), dtype=bool)

    @classmethod
    def from_arrays(cls, rows: Sequence[np.ndarray], check: bool = True) -> "TokenIndex":
        """The same index from integer arrays, vectorised (the grouped layout's token codes).

        Args:
            rows: One int array of **distinct** token codes per user.
            check: Verify that the codes of each row are distinct (one more sort of all the
                codes; skip it where the caller guarantees it).

        Returns:
            A ``TokenIndex`` whose ids are the codes' ranks among the population's codes: the
            same sizes and intersections, hence the same ``jaccards``, as ``TokenIndex(rows)``.

        Raises:
            ValueError: A row with a repeated code.
        """
        sizes = np.array([np.size(row) for row in rows], dtype=np.int64)
        flat = (np.concatenate([np.asarray(row, dtype=np.int64).reshape(-1) for row in rows])
                if len(rows) else np.zeros(0, dtype=np.int64))
        vocabulary, ids = np.unique(flat, return_inverse=True)
        indptr = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        if check:
            owner = np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)
            pairs = owner * max(vocabulary.size, 1) + ids.reshape(-1)
            if np.unique(pairs).size != flat.size:
                raise ValueError("Each row of `rows` should hold distinct codes.")
        index = cls.__new__(cls)
        index.indices = ids.reshape(-1).astype(np.int32)
        index.sizes = sizes
        index.indptr = indptr
        index.vocabulary_size = int(vocabulary.size)
        index._mask = np.zeros(vocabulary.size, dtype=bool)
        return index

    def jaccards(self, row: int, candidates: np.ndarray) -> np.ndarray:
        """Exact Jaccard of user ``row`` with each candidate row.

        Args:
            row: The user's row.
            candidates: int ``(m,)`` candidate rows.

        Returns:
            float64 ``(m,)``: ``inter / (|X_row| + |X_c| − inter)`` (0.0 where both are empty).
        """
        candidates = np.asarray(candidates, dtype=np.int64)
        own = self.indices[self.indptr[row]:self.indptr[row + 1]]
        lengths = self.sizes[candidates]
        total = int(lengths.sum())
        inter = np.zeros(candidates.size, dtype=np.int64)
        if total:
            offsets = np.cumsum(lengths) - lengths
            gather = np.repeat(self.indptr[candidates] - offsets, lengths) + np.arange(total)
            self._mask[own] = True
            hit = self._mask[self.indices[gather]]
            self._mask[own] = False
            nonempty = lengths > 0  # reduceat needs strictly increasing offsets
            inter[nonempty] = np.add.reduceat(hit, offsets[nonempty], dtype=np.int64)
        union = self.sizes[row] + lengths - inter
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def rerank_user(index: TokenIndex, row: int, candidates: np.ndarray, users: np.ndarray, k: int,
                min_jaccard: float) -> Tuple[List[Tuple[int, float]], int]:
    """``minhash.rank_neighbours`` for one user of a ``TokenIndex``, vectorised.

    Args:
        index: The population's token sets.
        row: The user's row.
        candidates: int ``(m,)`` distinct candidate rows (the user's own row is dropped).
        users: int64 ``(n,)`` user id of every row.
        k: Neighbours kept.
        min_jaccard: Candidates with ``J < min_jaccard`` (or ``J == 0``) are dropped.

    Returns:
        ``(neighbours, dropped)`` exactly as ``rank_neighbours`` returns them: at most ``k``
        ``(user id, jaccard)``, Jaccard descending then id ascending, and the count of non-self
        candidates dropped.
    """
    candidates = np.asarray(candidates, dtype=np.int64)
    candidates = candidates[users[candidates] != users[row]]
    values = index.jaccards(row, candidates)
    keep = (values >= min_jaccard) & (values > 0.0)
    ids, kept = users[candidates[keep]], values[keep]
    order = np.lexsort((ids, -kept))[:k]
    return ([(int(v), float(j)) for v, j in zip(ids[order], kept[order])],
            int(candidates.size - keep.sum()))
