"""The window join: LSH candidates whose number per user does not grow with the population.

Pure numpy + Python (no TF, no Beam); ``pipelines/neighbours.py`` uses it in both LSH layouts.

**Why.** The bucket join (``minhash.lsh_candidates``) pairs every two users that share a band key.
A bucket holds every user whose band value is the same token's hash, so its size grows with the
population and its pairs with the square of that (issue 6 skipped buckets above ``max_bucket``;
BENCHMARKS.md §8 measured time growing as users^2.2).

**The join** (a sorted-signature windowed join; an LSH forest of depth ``D`` read through a
fixed window):

- For band ``t`` each user's *sort key* is its band keys ``t, t+1, …, t+D−1`` (cyclic over the
  ``b`` bands), then its row. Sorting the population by it puts each band-``t`` bucket in one
  run, and orders the run by the next ``D − 1`` band keys, so users that agree on more band keys
  sit closer (in a sorted list the common prefix only shrinks with distance).
- Each user is paired with the users at most ``W`` positions away that share its band-``t`` key
  (the same bucket). A bucket of at most ``W + 1`` users is paired completely, exactly as the
  bucket join pairs it; a larger one gives each member its ``2W`` closest members, whatever its
  size. Nothing is skipped and no bucket's pairs are ever all enumerated.
- A pair's *collisions* are the bands in which it met inside the window; each user keeps its
  ``M`` candidates with the most collisions, ties to the smaller row (``minhash.cap_candidates``),
  for the exact re-rank.

**Bounds per user** (independent of the population ``n``): at most ``2·W·b`` window pairs and
``min(M, 2·W·b)`` candidates; sorting costs ``O(b·D·log n)``.

The grouped layout runs ``window_candidates`` on a whole population; the keyed layout groups one
bucket per Beam key and runs ``window_members`` on it. Both sort by the same keys, so they give
the same pairs.

Shape legend: ``n`` users, ``b`` bands, ``D`` sort depth (band keys per sort key), ``W`` window.
"""

from __future__ import annotations

from typing import Hashable, List, Sequence, Tuple

import numpy as np

from jsr_tf.neighbours.minhash import Candidates, cap_candidates, compact_codes

__all__ = ["sort_bands", "check_window", "window_candidates", "window_members"]

Member = Tuple[Hashable, Tuple[int, ...]]  # (user, band keys t+1 … t+D−1)


def check_window(bands: int, depth: int, window: int) -> None:
    """Raises ``ValueError`` unless ``1 <= depth <= bands`` and ``window >= 1``."""
    for name, value in (("window_depth", depth), ("window", window)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` should be a positive integer. Received: `{name}={value!r}`")
    if depth > bands:
        raise ValueError("`window_depth` should be at most `bands`. Received: "
                         f"`window_depth={depth}`, `bands={bands}`")


def sort_bands(band: int, bands: int, depth: int) -> List[int]:
    """The bands whose keys make band ``band``'s sort key: ``band, band+1, …`` (``depth`` of them,
    cyclic over ``bands``). The first one is the bucket."""
    return [(band + i) % bands for i in range(depth)]


def window_candidates(keys: np.ndarray, depth: int, window: int, max_candidates: int,
                      compact_every: int = 1 << 22) -> Candidates:
    """Candidate pairs of a whole population by the window join (the grouped layout).

    Args:
        keys: int64 ``(n, b)`` band keys of ``n`` distinct users (``minhash.band_keys``). Row
            order is the tie-break order: sort the rows by user id.
        depth: ``D``: band keys per sort key.
        window: ``W``: a user meets the members of its bucket at most ``W`` sorted positions away.
        max_candidates: ``M``: candidates kept per user, most collisions first.
        compact_every: Pending pair codes merged into counts once this many accumulate (memory).

    Returns:
        ``Candidates`` ordered by ``left`` then rank (``buckets_skipped`` is always 0;
        ``window_pairs`` counts ordered pairs, at most ``2·W·b`` per user).
    """
    keys = np.asarray(keys, dtype=np.int64)
    if keys.ndim != 2:
        raise ValueError(f"`keys` should have shape (n, b). Received: {keys.shape}")
    n, bands = keys.shape
    check_window(bands, depth, window)
    rows = np.arange(n, dtype=np.int64)
    codes: List[np.ndarray] = []
    counts: List[np.ndarray] = []
    pending = met = 0
    for band in range(bands):
        columns = sort_bands(band, bands, depth)
        # np.lexsort sorts by its last key first: bucket, then the next bands, then the row.
        order = np.lexsort((rows,) + tuple(keys[:, c] for c in reversed(columns)))
        bucket = keys[order, band]
        for offset in range(1, min(window, n - 1) + 1):
            same = bucket[offset:] == bucket[:-offset]
            a, b = order[:-offset][same], order[offset:][same]
            band_codes = np.minimum(a, b) * n + np.maximum(a, b)  # unordered: counted once
            codes.append(band_codes)
            counts.append(np.ones(band_codes.size, dtype=np.int64))
            pending += band_codes.size
            met += band_codes.size
        if pending >= compact_every:
            unique, merged = compact_codes(codes, counts)
            codes, counts, pending = [unique], [merged], unique.size
    if codes:
        unique, merged = compact_codes(codes, counts)
        low, high = unique // n, unique % n
        codes, counts = [unique, high * n + low], [merged, merged]  # both directions
    left, right, collisions, truncated = cap_candidates(codes, counts, n, max_candidates)
    return Candidates(left, right, collisions, 0, 0, truncated, window_pairs=2 * met)


def window_members(members: Sequence[Member], window: int) -> List[Tuple[Hashable, Tuple]]:
    """One bucket of one band → each member's co-members inside the window (the keyed layout).

    Args:
        members: ``(user, following band keys)`` of the bucket's users (the bucket key itself is
            the same for all); duplicates are dropped.
        window: ``W``.

    Returns:
        ``(user, co-members)`` per member, in sort order; ``co-members`` are the users at most
        ``W`` positions away in the order by (following band keys, user), nearest first on each
        side (left then right). Empty for a bucket of one.
    """
    ranked = sorted(set(members), key=lambda m: (m[1], m[0]))
    users = [user for user, _ in ranked]
    if len(users) < 2:
        return []
    out = []
    for i, user in enumerate(users):
        others = users[max(0, i - window):i] + users[i + 1:i + 1 + window]
        out.append((user, tuple(others)))
    return out
