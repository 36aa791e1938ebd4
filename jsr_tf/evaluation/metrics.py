"""Rank metrics over fixed candidate sets (spec/evaluation.md §4), in numpy.

Shapes: ``N`` rows (targets), ``C`` candidates per row (100 in the shared files). Scores are
logits or any real scores; NaN counts as ``-inf``. **Ties count against the model**: the rank of
candidate i is ``1 + #{j != i : s_j > s_i} + #{j != i : s_j == s_i}``, so a constant scorer ranks
every candidate last (HR@1 = 0, MRR = 1/C).

Per row, with one relevant item: ``HR@K = [rank <= K]``, ``NDCG@K = [rank <= K] / log2(rank + 1)``,
``MRR = 1 / rank``. Reported: HR@{1,5,10,20,50}, NDCG@{5,10,20,50}, MRR (NDCG@1 = HR@1).
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np

HR_KS = (1, 5, 10, 20, 50)
NDCG_KS = (5, 10, 20, 50)


def metric_names(hr_ks: Sequence[int] = HR_KS, ndcg_ks: Sequence[int] = NDCG_KS) -> tuple:
    """Names in report order: ``HR@1 … HR@50, NDCG@5 … NDCG@50, MRR``."""
    return tuple(f"HR@{k}" for k in hr_ks) + tuple(f"NDCG@{k}" for k in ndcg_ks) + ("MRR",)


def _scores(scores: np.ndarray) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or s.shape[1] < 2:
        raise ValueError(f"`scores` should have shape (N, C) with C >= 2. Received: "
                         f"`scores.shape={s.shape}`")
    return np.where(np.isnan(s), -np.inf, s)


def _valid(valid, shape) -> np.ndarray:
    """``(N, C)`` bool mask of real candidates (all True when None)."""
    if valid is None:
        return np.ones(shape, bool)
    valid = np.asarray(valid, bool)
    if valid.shape != tuple(shape):
        raise ValueError(f"`valid` should have the shape of `scores` {tuple(shape)}. Received: "
                         f"{valid.shape}")
    return valid


def positive_ranks(scores: np.ndarray, positive_index: int = 0,
                   valid: Optional[np.ndarray] = None) -> np.ndarray:
    """Rank of the positive in every row, ties counted against it.

    Args:
        scores: ``(N, C)`` scores.
        positive_index: Column of the positive (0 in the candidate files).
        valid: Optional ``(N, C)`` bool, the real candidates of padded rows (``impressions``):
            padding columns never count, whatever their scores. The positive must be valid.

    Returns:
        ``(N,)`` int64 ranks in ``[1, C]``.
    """
    s = _scores(scores)
    if not 0 <= positive_index < s.shape[1]:
        raise ValueError(f"`positive_index` should be in [0, {s.shape[1]}). Received: "
                         f"`positive_index={positive_index}`")
    mask = _valid(valid, s.shape)
    if s.size and not mask[:, positive_index].all():
        raise ValueError("The positive's column should be valid in every row.")
    pos = s[:, positive_index:positive_index + 1]
    others = np.delete(s, positive_index, axis=1)
    counted = np.delete(mask, positive_index, axis=1)
    return 1 + np.sum((others >= pos) & counted, axis=1).astype(np.int64)


def candidate_ranks(scores: np.ndarray) -> np.ndarray:
    """Rank of every candidate of every row, ties counted against it: ``(N, C)`` int64."""
    s = _scores(scores)
    n, c = s.shape
    order = np.argsort(-s, axis=1, kind="stable")
    desc = np.take_along_axis(s, order, axis=1)
    is_end = np.ones((n, c), dtype=bool)
    is_end[:, :-1] = desc[:, :-1] != desc[:, 1:]
    end = np.where(is_end, np.arange(c), c)
    end = np.minimum.accumulate(end[:, ::-1], axis=1)[:, ::-1]
    ranks = np.empty((n, c), dtype=np.int64)
    np.put_along_axis(ranks, order, end + 1, axis=1)
    return ranks


def tie_mask(scores: np.ndarray, valid: Optional[np.ndarray] = None) -> np.ndarray:
    """``(N,)`` True where any two real candidates of the row have equal scores."""
    s = _scores(scores)
    s = np.where(_valid(valid, s.shape), s, np.nan)  # NaN never equals anything
    desc = np.sort(s, axis=1)
    return np.any(desc[:, 1:] == desc[:, :-1], axis=1)


def per_row_metrics(ranks: np.ndarray, hr_ks: Sequence[int] = HR_KS,
                    ndcg_ks: Sequence[int] = NDCG_KS) -> Dict[str, np.ndarray]:
    """Metric values per row (or per candidate) from ranks of any shape."""
    ranks = np.asarray(ranks)
    if ranks.size and ranks.min() < 1:
        raise ValueError(f"Ranks should be >= 1. Received: min rank {ranks.min()}")
    out: Dict[str, np.ndarray] = {}
    for k in hr_ks:
        out[f"HR@{k}"] = (ranks <= k).astype(np.float64)
    discount = 1.0 / np.log2(ranks + 1.0)
    for k in ndcg_ks:
        out[f"NDCG@{k}"] = np.where(ranks <= k, discount, 0.0)
    out["MRR"] = 1.0 / ranks
    return out


def metrics_from_ranks(ranks: np.ndarray, hr_ks: Sequence[int] = HR_KS,
                       ndcg_ks: Sequence[int] = NDCG_KS) -> Dict[str, float]:
    """Mean metrics over rows from ``(N,)`` positive ranks (NaN for ``N = 0``)."""
    ranks = np.asarray(ranks)
    per_row = per_row_metrics(ranks, hr_ks, ndcg_ks)
    return {name: float(np.mean(v)) if ranks.size else float("nan")
            for name, v in per_row.items()}


def rank_metrics(scores: np.ndarray, positive_index: int = 0, hr_ks: Sequence[int] = HR_KS,
                 ndcg_ks: Sequence[int] = NDCG_KS,
                 valid: Optional[np.ndarray] = None) -> Dict[str, float]:
    """Mean metrics of ``(N, C)`` scores plus ``tie_fraction``, ``positive_tie_fraction``, ``rows``.

    ``tie_fraction`` is the share of rows with any tie (spec §4); ``positive_tie_fraction`` the
    share of rows whose positive ties with another candidate (the ties that cost rank).
    ``valid`` (optional ``(N, C)`` bool) leaves padding columns out of every count.
    """
    s = _scores(scores)
    ranks = positive_ranks(s, positive_index, valid)
    out = metrics_from_ranks(ranks, hr_ks, ndcg_ks)
    pos = s[:, positive_index:positive_index + 1]
    others = np.delete(s, positive_index, axis=1)
    counted = np.delete(_valid(valid, s.shape), positive_index, axis=1)
    out["tie_fraction"] = float(np.mean(tie_mask(s, valid))) if len(s) else float("nan")
    out["positive_tie_fraction"] = (float(np.mean(np.any((others == pos) & counted, axis=1)))
                                    if len(s) else float("nan"))
    out["rows"] = float(len(s))
    return out


def expected_metrics(scores: np.ndarray, posterior: np.ndarray, hr_ks: Sequence[int] = HR_KS,
                     ndcg_ks: Sequence[int] = NDCG_KS) -> Dict[str, float]:
    """Expected metrics when the positive is drawn from ``posterior`` (spec/evaluation.md §7).

    ``E[metric] = Σ_i posterior_i · metric(rank_i)`` per row, averaged over rows, where ``rank_i``
    is candidate i's rank under ``scores`` (ties against).

    Args:
        scores: ``(N, C)`` scores of the ranker.
        posterior: ``(N, C)`` non-negative probabilities that each candidate is the positive;
            every row is normalised here (an all-zero row becomes uniform).
    """
    ranks = candidate_ranks(scores)
    post = np.asarray(posterior, dtype=np.float64)
    if post.shape != ranks.shape:
        raise ValueError(f"`posterior` should have the shape of `scores` {ranks.shape}. "
                         f"Received: `posterior.shape={post.shape}`")
    if np.any(post < 0) or not np.all(np.isfinite(post)):
        raise ValueError("`posterior` should be finite and non-negative.")
    total = post.sum(axis=1, keepdims=True)
    post = np.where(total > 0, post / np.where(total > 0, total, 1.0), 1.0 / post.shape[1])
    per_cand = per_row_metrics(ranks, hr_ks, ndcg_ks)
    return {name: float(np.mean(np.sum(post * v, axis=1))) if len(post) else float("nan")
            for name, v in per_cand.items()}
