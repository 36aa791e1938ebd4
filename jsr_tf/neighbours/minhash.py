"""MinHash, LSH banding and exact Jaccard for similar-user retrieval (``similar_users.md`` §2a).

Pure Python + numpy (no TF, no Beam), so the Beam pipeline ``pipelines/neighbours.py`` and the
tests share it.

Pieces, in the order the pipeline uses them:

- **Tokens**: each user's side set holds strings prefixed by their kind, so the spaces never
  collide: ``w:<word>`` and ``i:<item>`` on the search side (query words; items actually clicked
  in search, never the no-click fallback), ``i:<item>`` and ``c2:<category>`` on the feed side
  (feed-positive items and their second-level categories).
- **Hashing**: ``token_hash`` = 4-byte BLAKE2b keyed by the side name, read little-endian, then
  ``mod p`` with ``p = 2^31 - 1``. Stable across processes and Python versions (no ``hash()``).
- **MinHash**: ``P`` functions ``h_j(x) = (a_j x + b_j) mod p`` with ``a_j ∈ [1, p)``,
  ``b_j ∈ [0, p)`` drawn from ``numpy.random.default_rng(seed)``. ``x < p`` and ``a_j < p``, so
  ``a_j x + b_j < 2^62 + 2^31`` fits int64. Signatures are mergeable: the signature of a union is
  the elementwise min of the parts' signatures (``merge_signatures``).
- **LSH**: a signature of ``P = b·r`` values is cut into ``b`` bands of ``r`` rows; each band gets a
  64-bit key (a splitmix64 chain over its ``r`` values). Two users are candidates if they share a
  key in some band: ``P(candidate | J) = 1 − (1 − J^r)^b`` (``candidate_probability``). A key
  collision of different band values is possible but only adds a candidate; the exact re-rank
  removes it.
- **Exact**: ``jaccard`` for two sets, ``pairwise_jaccard`` for all pairs of a small population
  (``|X_u ∩ X_v|`` from blocked incidence-matrix products, ``A Aᵀ``), and ``rank_neighbours``,
  the one selection rule both retrieval modes share: drop self and ``J < min_jaccard``, order by
  ``J`` descending then user id ascending, keep ``k``.

Shape legend: ``P`` hash functions, ``b`` bands, ``r`` rows per band, ``n`` users or tokens.
"""

from __future__ import annotations

import hashlib
from typing import (Collection, Dict, Hashable, Iterable, List, Mapping, NamedTuple, Sequence,
                    Set, Tuple, Union)

import numpy as np

PRIME = (1 << 31) - 1
"""The Mersenne prime ``p = 2^31 − 1``: token hashes and MinHash values lie in ``[0, p)``."""

EMPTY_VALUE = PRIME
"""Value of every slot of the empty set's signature: larger than any ``h_j(x)``, so it is the
identity of the elementwise min."""

WORD_PREFIX = "w:"
ITEM_PREFIX = "i:"
CAT2_PREFIX = "c2:"

SEARCH = "search"
FEED = "feed"
SIDES = (SEARCH, FEED)
"""Side names; they are also the BLAKE2b keys of ``token_hash``."""

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _check_side(side: str) -> str:
    if side not in SIDES:
        raise ValueError(f"`side` should be one of {SIDES}. Received: `side={side!r}`")
    return side


def search_tokens(words: Iterable[int], clicked_items: Iterable[int]) -> Set[str]:
    """Search-side tokens of one or more sessions.

    Args:
        words: Query word ids.
        clicked_items: Items actually clicked in search (exclude the no-click fallback item).

    Returns:
        ``{"w:<word>", ..., "i:<item>", ...}``.
    """
    tokens = {f"{WORD_PREFIX}{int(w)}" for w in words}
    tokens.update(f"{ITEM_PREFIX}{int(i)}" for i in clicked_items)
    return tokens


def feed_tokens(items: Iterable[int], categories: Iterable[int] = ()) -> Set[str]:
    """Feed-side tokens: feed-positive items and their second-level categories.

    Args:
        items: Feed-positive (clicked) item ids.
        categories: Second-level category ids of those items. ``0`` (absent, kuaisar_format.md)
            is skipped, so items without a category never share a token through it.

    Returns:
        ``{"i:<item>", ..., "c2:<category>", ...}``.
    """
    tokens = {f"{ITEM_PREFIX}{int(i)}" for i in items}
    tokens.update(f"{CAT2_PREFIX}{int(c)}" for c in categories if int(c) != 0)
    return tokens


def token_hash(token: str, side: str) -> int:
    """Stable 31-bit hash of one token: 4-byte BLAKE2b keyed by ``side``, then ``mod p``.

    Args:
        token: A prefixed token, e.g. ``"i:501"``.
        side: ``"search"`` or ``"feed"``; the same token hashes differently on each side.

    Returns:
        An int in ``[0, PRIME)``.
    """
    digest = hashlib.blake2b(token.encode("utf-8"), digest_size=4,
                             key=_check_side(side).encode("utf-8")).digest()
    return int.from_bytes(digest, "little") % PRIME


def hash_tokens(tokens: Iterable[str], side: str) -> np.ndarray:
    """``token_hash`` of every token.

    Returns:
        Sorted unique hashes, int64 ``(n,)``.
    """
    _check_side(side)
    return np.unique(np.fromiter((token_hash(t, side) for t in tokens), dtype=np.int64))


class MinHasher:
    """``P`` seeded hash functions ``h_j(x) = (a_j x + b_j) mod p``; signatures and estimates.

    Args:
        num_perm: Number of hash functions ``P``.
        seed: Seed of ``numpy.random.default_rng`` that draws ``a`` and ``b``.

    Attributes:
        num_perm: As given.
        seed: As given.
        a: int64 ``(P,)`` in ``[1, p)``.
        b: int64 ``(P,)`` in ``[0, p)``.

    Raises:
        ValueError: ``num_perm`` is not a positive integer.
    """

    def __init__(self, num_perm: int = 128, seed: int = 1) -> None:
        if isinstance(num_perm, bool) or not isinstance(num_perm, int) or num_perm < 1:
            raise ValueError(f"`num_perm` should be a positive integer. "
                             f"Received: `num_perm={num_perm!r}`")
        self.num_perm = num_perm
        self.seed = seed
        rng = np.random.default_rng(seed)
        self.a = rng.integers(1, PRIME, size=num_perm, dtype=np.int64)
        self.b = rng.integers(0, PRIME, size=num_perm, dtype=np.int64)

    def empty(self) -> np.ndarray:
        """The empty set's signature (all ``EMPTY_VALUE``), int64 ``(P,)``."""
        return np.full(self.num_perm, EMPTY_VALUE, dtype=np.int64)

    def signature(self, hashes: Union[np.ndarray, Sequence[int]],
                  chunk: int = 4096) -> np.ndarray:
        """MinHash signature of a set given by its token hashes.

        Args:
            hashes: ``token_hash`` values, int ``(n,)``, each in ``[0, p)``.
            chunk: Tokens processed per step (bounds memory at ``P·chunk`` int64).

        Returns:
            int64 ``(P,)``: ``min_x h_j(x)``; ``empty()`` for an empty set.

        Raises:
            ValueError: A hash outside ``[0, p)`` (the int64 arithmetic would overflow).
        """
        x = np.asarray(hashes, dtype=np.int64).reshape(-1)
        if x.size and (x.min() < 0 or x.max() >= PRIME):
            raise ValueError("`hashes` should lie in [0, 2^31 - 1). Received values in "
                             f"[{x.min()}, {x.max()}]")
        out = self.empty()
        for start in range(0, x.size, chunk):
            part = x[None, start:start + chunk]
            values = (self.a[:, None] * part + self.b[:, None]) % PRIME  # (P, chunk)
            np.minimum(out, values.min(axis=1), out=out)
        return out

    def signature_of_tokens(self, tokens: Iterable[str], side: str) -> np.ndarray:
        """``signature(hash_tokens(tokens, side))``."""
        return self.signature(hash_tokens(tokens, side))


def merge_signatures(*signatures: np.ndarray) -> np.ndarray:
    """Signature of the union of the sets: the elementwise min of their signatures."""
    if not signatures:
        raise ValueError("`merge_signatures` needs at least one signature.")
    return np.minimum.reduce([np.asarray(s, dtype=np.int64) for s in signatures])


def estimate_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
    """MinHash estimate of Jaccard: the fraction of equal slots (std ≈ ``sqrt(J(1−J)/P)``)."""
    sig_a, sig_b = np.asarray(sig_a), np.asarray(sig_b)
    if sig_a.shape != sig_b.shape:
        raise ValueError(f"Signatures should have equal shapes. Received: {sig_a.shape} and "
                         f"{sig_b.shape}")
    return float(np.mean(sig_a == sig_b))


def _check_bands(num_perm: int, bands: int, rows: int) -> None:
    if bands < 1 or rows < 1 or bands * rows != num_perm:
        raise ValueError("`bands * rows` should equal the signature length. Received: "
                         f"`bands={bands}`, `rows={rows}`, signature length {num_perm}")


def band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """64-bit LSH key of every band.

    Args:
        signatures: int64 ``(P,)`` or ``(n, P)`` with ``P = bands * rows``.
        bands: Number of bands ``b``.
        rows: Signature values per band ``r``.

    Returns:
        int64 ``(b,)`` or ``(n, b)``: a splitmix64 chain over each band's ``r`` values (equal band
        values give equal keys; different values collide with probability about ``2^-64``).
    """
    sig = np.asarray(signatures, dtype=np.int64)
    single = sig.ndim == 1
    sig = sig.reshape(1, -1) if single else sig
    _check_bands(sig.shape[1], bands, rows)
    values = sig.reshape(sig.shape[0], bands, rows).astype(np.uint64)
    with np.errstate(over="ignore"):
        key = np.zeros(values.shape[:2], dtype=np.uint64)
        for i in range(rows):
            z = key * _GOLDEN + values[:, :, i] + np.uint64(i + 1)  # wraps mod 2^64
            z = (z ^ (z >> np.uint64(30))) * _MIX1
            z = (z ^ (z >> np.uint64(27))) * _MIX2
            key = z ^ (z >> np.uint64(31))
    key = key.view(np.int64)
    return key[0] if single else key


class Candidates(NamedTuple):
    """LSH candidate pairs of one population (``lsh_candidates``).

    Attributes:
        left: int64 ``(m,)`` row index of the user.
        right: int64 ``(m,)`` row index of its candidate; per ``left`` most collisions first,
            ties to the smaller index.
        collisions: int64 ``(m,)`` bands the pair shares (skipped buckets not counted).
        buckets_skipped: buckets with more than ``max_bucket`` users.
        bucket_users_skipped: users summed over those buckets.
        users_truncated: users that had more than ``max_candidates`` candidates.
        window_pairs: pairs met inside a sort window, summed over bands (the window join of
            ``jsr_tf.neighbours.windows``; 0 for the bucket join).
    """

    left: np.ndarray
    right: np.ndarray
    collisions: np.ndarray
    buckets_skipped: int
    bucket_users_skipped: int
    users_truncated: int
    window_pairs: int = 0


def compact_codes(codes: List[np.ndarray],
                  counts: List[np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
    """Merges pair codes: ``(unique codes, summed counts)``."""
    flat, weights = np.concatenate(codes), np.concatenate(counts)
    if not weights.size or np.all(weights == 1):
        unique, found = np.unique(flat, return_counts=True)
        return unique, found.astype(np.int64)
    order = np.argsort(flat, kind="stable")
    flat, weights = flat[order], weights[order]
    starts = np.flatnonzero(np.r_[True, flat[1:] != flat[:-1]])
    return flat[starts], np.add.reduceat(weights, starts).astype(np.int64)


def lsh_candidates(keys: np.ndarray, max_bucket: int, max_candidates: int,
                   compact_every: int = 1 << 22) -> Candidates:
    """Candidate pairs from band keys: users sharing a key in some band, bucket by bucket.

    No all-pairs step: each band is sorted, and only members of the same bucket are paired
    (``Σ s(s−1)`` ordered pairs for buckets of ``s ≤ max_bucket`` users).

    Args:
        keys: int64 ``(n, b)`` band keys of ``n`` distinct users (``band_keys``). Row order is
            the tie-break order: sort the rows by user id.
        max_bucket: Buckets with more users are skipped (counted in the result).
        max_candidates: ``M``: candidates kept per user, most colliding bands first.
        compact_every: Pending pair codes merged into counts once this many accumulate (memory).

    Returns:
        ``Candidates``, ordered by ``left`` then rank.
    """
    keys = np.asarray(keys, dtype=np.int64)
    if keys.ndim != 2:
        raise ValueError(f"`keys` should have shape (n, b). Received: {keys.shape}")
    n = keys.shape[0]
    codes: List[np.ndarray] = []
    counts: List[np.ndarray] = []
    pending = 0
    skipped = skipped_users = 0
    for band in range(keys.shape[1]):
        order = np.argsort(keys[:, band], kind="stable")
        column = keys[order, band]
        starts = np.flatnonzero(np.r_[True, column[1:] != column[:-1]]) if n else np.zeros(0, int)
        sizes = np.diff(np.r_[starts, n])
        big = sizes > max_bucket
        skipped += int(big.sum())
        skipped_users += int(sizes[big].sum())
        ok = (sizes >= 2) & ~big
        if not ok.any():
            continue
        member_start = np.repeat(starts[ok], sizes[ok])  # bucket start of each paired member
        member_size = np.repeat(sizes[ok], sizes[ok])
        member_pos = member_start + (np.arange(member_start.size)
                                     - np.repeat(np.cumsum(sizes[ok]) - sizes[ok], sizes[ok]))
        left = np.repeat(member_pos, member_size)
        right = np.repeat(member_start, member_size) + (
            np.arange(left.size) - np.repeat(np.cumsum(member_size) - member_size, member_size))
        distinct = left != right
        band_codes = order[left[distinct]] * n + order[right[distinct]]
        codes.append(band_codes)
        counts.append(np.ones(band_codes.size, dtype=np.int64))
        pending += band_codes.size
        if pending >= compact_every:
            unique, merged = compact_codes(codes, counts)
            codes, counts, pending = [unique], [merged], unique.size
    left, right, collisions, truncated = cap_candidates(codes, counts, n, max_candidates)
    return Candidates(left, right, collisions, skipped, skipped_users, truncated)


def cap_candidates(codes: List[np.ndarray], counts: List[np.ndarray], n: int,
                   max_candidates: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Ordered pair codes ``left * n + right`` with collision counts → the ``M`` best per user.

    Args:
        codes: int64 arrays of pair codes; a code may repeat (its counts add up).
        counts: int64 arrays of the same shapes: collisions of each code.
        n: Users in the population.
        max_candidates: ``M``.

    Returns:
        ``(left, right, collisions, users_truncated)``, ordered by ``left``, then collisions
        descending, then ``right`` ascending; at most ``M`` rows per ``left``.
    """
    if not codes:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty, 0
    unique, collisions = compact_codes(codes, counts)
    top = int(collisions.max(initial=0))
    if n * n * (top + 1) < 1 << 62:  # one int64 sort key: left, then collisions desc, then right
        key = np.sort(((unique // n) * (top + 1) + (top - collisions)) * n + unique % n)
        right, rest = key % n, key // n
        left, collisions = rest // (top + 1), top - rest % (top + 1)
    else:
        left, right = unique // n, unique % n
        order = np.lexsort((right, -collisions, left))
        left, right, collisions = left[order], right[order], collisions[order]
    group_start = np.flatnonzero(np.r_[True, left[1:] != left[:-1]])
    group_size = np.diff(np.r_[group_start, left.size])
    rank = np.arange(left.size) - np.repeat(group_start, group_size)
    keep = rank < max_candidates
    return (left[keep], right[keep], collisions[keep],
            int((group_size > max_candidates).sum()))


def candidate_probability(jaccard_value: Union[float, np.ndarray], bands: int,
                          rows: int) -> Union[float, np.ndarray]:
    """``1 − (1 − J^r)^b``: the chance that a pair with Jaccard ``J`` shares a band key."""
    return 1.0 - (1.0 - np.asarray(jaccard_value, dtype=np.float64) ** rows) ** bands


def jaccard(a: Collection[Hashable], b: Collection[Hashable]) -> float:
    """Exact Jaccard ``|A ∩ B| / |A ∪ B|`` (0.0 if both are empty). Sets are used as given."""
    a = a if isinstance(a, (set, frozenset)) else set(a)
    b = b if isinstance(b, (set, frozenset)) else set(b)
    inter = len(a & b)
    union = len(a) + len(b) - inter
    return inter / union if union else 0.0


def pairwise_jaccard(token_sets: Sequence[Collection[Hashable]],
                     block: int = 4096) -> np.ndarray:
    """Exact Jaccard of every pair of a small population (brute force, ``O(n²)`` memory).

    Only tokens held by two or more sets can be shared; their ``(n, V)`` 0/1 incidence matrix
    ``A`` is built in blocks of ``block`` tokens and ``|X_u ∩ X_v| = Σ_blocks A Aᵀ`` (float64:
    exact for any count below ``2^53``).

    Args:
        token_sets: ``n`` sets of hashable tokens.
        block: Tokens per incidence block.

    Returns:
        float64 ``(n, n)``; the diagonal is 1.0 for a non-empty set, 0.0 for an empty one. Each
        entry is ``inter / (|X_u| + |X_v| − inter)``, the same float ``jaccard`` returns.
    """
    sets = [set(s) for s in token_sets]
    n = len(sets)
    sizes = np.array([len(s) for s in sets], dtype=np.float64)
    holders: Dict[Hashable, List[int]] = {}
    for index, tokens in enumerate(sets):
        for token in tokens:
            holders.setdefault(token, []).append(index)
    shared = [users for users in holders.values() if len(users) > 1]
    inter = np.zeros((n, n), dtype=np.float64)
    for start in range(0, len(shared), block):
        part = shared[start:start + block]
        incidence = np.zeros((n, len(part)), dtype=np.float64)
        for column, users in enumerate(part):
            incidence[users, column] = 1.0
        inter += incidence @ incidence.T
    np.fill_diagonal(inter, sizes)
    union = sizes[:, None] + sizes[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return out


def rank_neighbours(user: int, scored: Iterable[Tuple[int, float]], k: int,
                    min_jaccard: float) -> Tuple[List[Tuple[int, float]], int]:
    """The selection rule of both retrieval modes.

    Args:
        user: The target user (never its own neighbour).
        scored: ``(neighbour, jaccard)`` pairs; duplicates of a neighbour must carry equal values.
        k: Neighbours kept.
        min_jaccard: Pairs with ``jaccard < min_jaccard`` are dropped.

    Returns:
        ``(neighbours, dropped)``: at most ``k`` ``(neighbour, jaccard)`` ordered by jaccard
        descending, ties to the smaller id; and how many distinct non-self candidates were
        dropped for ``jaccard < min_jaccard`` (or ``jaccard == 0``: a user with no common token
        is never a neighbour, even with ``min_jaccard = 0``).
    """
    best: Dict[int, float] = {}
    for other, value in scored:
        if other != user:
            best[int(other)] = float(value)
    kept = [(v, j) for v, j in best.items() if j >= min_jaccard and j > 0.0]
    kept.sort(key=lambda vj: (-vj[1], vj[0]))
    return kept[:k], len(best) - len(kept)


def top_candidates(collisions: Mapping[int, int], max_candidates: int) -> List[int]:
    """The LSH candidates kept per user: most colliding bands first, ties to the smaller id.

    Args:
        collisions: ``candidate -> number of bands it shares with the user``.
        max_candidates: ``M``; at most this many are returned.

    Returns:
        Candidate ids, best first.
    """
    ranked = sorted(collisions.items(), key=lambda vc: (-vc[1], vc[0]))
    return [v for v, _ in ranked[:max_candidates]]
