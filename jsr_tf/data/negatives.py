"""Popularity-weighted negative sampling (spec/evaluation.md §3).

The pool of a task holds every item with a positive weight ``w_i`` (its count among that task's
*train* targets) and its first-seen time (train-visible data). A draw for a target excludes the
positive, the session's other clicks, the user's earlier items and (optionally) items first seen
at or after the target, and is seeded by ``(candidate_seed, task, split, user)`` so that it does
not depend on worker count or order.
"""

from __future__ import annotations

import hashlib
from typing import Container, Dict, List, NamedTuple, Optional

import numpy as np

_NEVER = np.iinfo(np.int64).max


def derived_seed(*parts: object) -> int:
    """A stable 64-bit seed from the parts' ``repr`` (never Python's randomised ``hash``)."""
    digest = hashlib.blake2b(repr(parts).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


class NegativePool(NamedTuple):
    """Sampling pool of one task.

    Attributes:
        items: ``[N]`` int64 raw item ids with positive weight, sorted by id.
        weights: ``[N]`` float64 weights (train-target counts).
        cumulative: ``[N]`` float64 normalised cumulative weights (for inverse-CDF draws).
        first_seen: ``[N]`` int64 first train-visible timestamp (ms) of each item.
        fallback_items: ``[M]`` int64 every train-visible item (uniform fallback when the weighted
            pool is exhausted), sorted by id.
        fallback_first_seen: ``[M]`` int64 first-seen times of ``fallback_items``.
        weighted_exhaustive: The exhaustive pass visits the pool in a weighted random order
            (Efraimidis–Spirakis keys) instead of a uniform one, so a row that needs it keeps the
            pool's distribution as far as its exclusions allow (the fair pools).
    """

    items: np.ndarray
    weights: np.ndarray
    cumulative: np.ndarray
    first_seen: np.ndarray
    fallback_items: np.ndarray
    fallback_first_seen: np.ndarray
    weighted_exhaustive: bool = False

    @classmethod
    def build(cls, counts: Dict[int, int], first_seen: Dict[int, int],
              uniform_fallback: bool = True) -> "NegativePool":
        """Builds a pool from ``item -> weight`` (e.g. train-target count) and ``item ->
        first-seen ms``.

        Args:
            counts: Item weights; items with weight 0 are not in the weighted pool.
            first_seen: First-seen time of every item that may be drawn.
            uniform_fallback: Keep every item of ``first_seen`` as the uniform fallback. False
                (the fair pools): a draw never leaves the weighted pool, so the negatives keep
                its distribution (the exhaustive pass is weighted too); a row it cannot fill gets
                None.
        """
        items = np.array(sorted(i for i, c in counts.items() if c > 0), dtype=np.int64)
        weights = np.array([counts[i] for i in items], dtype=np.float64)
        seen = np.array([first_seen.get(int(i), _NEVER) for i in items], dtype=np.int64)
        all_items = np.array(sorted(first_seen) if uniform_fallback else [], dtype=np.int64)
        all_seen = np.array([first_seen[int(i)] for i in all_items], dtype=np.int64)
        total = weights.sum()
        cumulative = np.cumsum(weights) / total if total > 0 else np.zeros(0)
        return cls(items, weights, cumulative, seen, all_items, all_seen,
                   weighted_exhaustive=not uniform_fallback)


class NegativeSampler:
    """Draws negatives for the targets of one (user, task, split) stream.

    Args:
        pool: The task's pool.
        seed: From ``derived_seed(candidate_seed, task, split, user)``.
        must_predate: Exclude items first seen at or after the target time.
    """

    def __init__(self, pool: NegativePool, seed: int, must_predate: bool = True) -> None:
        self._pool = pool
        self._rng = np.random.Generator(np.random.PCG64(seed))
        self._must_predate = must_predate
        self._cum = pool.cumulative

    def sample(self, n: int, exclude: Container[int], target_ts: int,
               counters: Optional[Dict[str, int]] = None) -> Optional[List[int]]:
        """Draws ``n`` distinct negatives without replacement.

        Rejection sampling from the weighted pool first; if that stalls (a small pool), an
        exhaustive pass over the weighted pool in a seeded random order; then a uniform pass over
        every train-visible item. Each fallback is counted.

        Args:
            n: How many negatives.
            exclude: Items that may not be drawn (positive, session clicks, the user's earlier
                items).
            target_ts: Target time (ms).
            counters: Updated with ``negatives/fallback_*`` counts.

        Returns:
            ``n`` item ids, or None if even the fallbacks cannot supply ``n`` (the caller drops
            the row and counts it).
        """
        if n == 0:
            return []
        pool = self._pool
        chosen: List[int] = []
        taken = set()

        def accept(item: int, seen: int) -> bool:
            if item in exclude or item in taken:
                return False
            if self._must_predate and seen >= target_ts:
                return False
            taken.add(item)
            chosen.append(item)
            return True

        if self._cum.size:
            for _ in range(8):
                draws = np.searchsorted(self._cum, self._rng.random(max(2 * n, 16)), side="right")
                draws = np.minimum(draws, self._cum.size - 1)
                for index in draws:
                    accept(int(pool.items[index]), int(pool.first_seen[index]))
                    if len(chosen) == n:
                        return chosen
            if counters is not None:
                counters["negatives/fallback_exhaustive"] = counters.get(
                    "negatives/fallback_exhaustive", 0) + 1
            if pool.weighted_exhaustive:  # weighted order: argsort of log(u) / w, descending
                keys = np.log(self._rng.random(pool.items.size)) / np.maximum(pool.weights,
                                                                              1e-300)
                order = np.argsort(-keys, kind="stable")
            else:
                order = self._rng.permutation(pool.items.size)
            for index in order:
                accept(int(pool.items[index]), int(pool.first_seen[index]))
                if len(chosen) == n:
                    return chosen
        if counters is not None:
            counters["negatives/fallback_uniform"] = counters.get("negatives/fallback_uniform", 0) + 1
        for index in self._rng.permutation(pool.fallback_items.size):
            accept(int(pool.fallback_items[index]), int(pool.fallback_first_seen[index]))
            if len(chosen) == n:
                return chosen
        return None
