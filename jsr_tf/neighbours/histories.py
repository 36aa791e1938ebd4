"""Compact per-user token histories: every snapshot's token set of one user and side in one record.

Pure numpy + Python (no TF, no Beam). The grouped LSH layout of ``pipelines/neighbours.py`` (the
in-memory runners) uses it so that the runner never holds one token set and one signature per
(visibility, snapshot, side, user) at once (BENCHMARKS.md §8, issue 17: those records, as Python
tuples of token strings, are what outgrew memory at ``kuaisar_small``).

**Token codes.** A token ``<prefix><int>`` (``minhash.search_tokens`` / ``feed_tokens``) is the
int64 ``prefix_index · 2^48 + (value + 2^47)``: exact and invertible (``decode_token``), so sets
of codes have the same sizes and intersections as the sets of strings, and the MinHash of a code
is the ``token_hash`` of its string.

**A history** (``UserHistory``) holds the user's distinct tokens sorted by (first interval, code)
and each token's first interval, so snapshot ``k``'s set (events with ``ts < T_k``) is a prefix:
``codes[:end(k)]``. ``snapshot_populations`` walks the snapshots of one (visibility, side) in
order, keeps one running signature per user (the elementwise min of the signatures of the tokens
first seen in each interval: the same values as ``minhash.merge_signatures`` of the per-interval
signatures, MinHash being idempotent) and yields each snapshot's population.
"""

from __future__ import annotations

from typing import Dict, Iterable, Iterator, List, NamedTuple, Sequence, Tuple

import numpy as np

from jsr_tf.neighbours.minhash import (CAT2_PREFIX, ITEM_PREFIX, WORD_PREFIX, MinHasher,
                                       token_hash)
from jsr_tf.neighbours.rerank import TokenIndex

__all__ = ["PREFIXES", "encode_token", "decode_token", "UserHistory", "build_history",
           "Population", "snapshot_populations"]

PREFIXES = (WORD_PREFIX, ITEM_PREFIX, CAT2_PREFIX)
"""Token kinds, in code order (the code's high bits are the index here)."""

_VALUE_BITS = 48
_OFFSET = 1 << (_VALUE_BITS - 1)
_PREFIX_OF = {prefix: i for i, prefix in enumerate(PREFIXES)}


def encode_token(token: str) -> int:
    """The int64 code of a token string such as ``"i:501"``.

    Raises:
        ValueError: Unknown prefix, a value that is not a canonical int, or one outside
            ``[-2^47, 2^47)``.
    """
    prefix, sep, value = token.partition(":")
    index = _PREFIX_OF.get(prefix + sep)
    if index is None:
        raise ValueError(f"Unknown token prefix; expected one of {PREFIXES}. "
                         f"Received: `token={token!r}`")
    try:
        number = int(value)
    except ValueError:
        number = None
    if number is None or str(number) != value or not -_OFFSET <= number < _OFFSET:
        raise ValueError(f"Token values should be canonical integers in [-2^47, 2^47). "
                         f"Received: `token={token!r}`")
    return (index << _VALUE_BITS) + number + _OFFSET


def decode_token(code: int) -> str:
    """The token string of a code (``encode_token``'s inverse)."""
    code = int(code)
    return f"{PREFIXES[code >> _VALUE_BITS]}{(code & ((1 << _VALUE_BITS) - 1)) - _OFFSET}"


class UserHistory(NamedTuple):
    """One user's token sets on one side at every snapshot.

    Attributes:
        user: User id.
        start: First snapshot at which the user is indexed (the earliest interval with any
            partial, even an empty one: such a user is indexed with an empty set).
        codes: int64 ``(t,)`` distinct token codes sorted by (first interval, code).
        first: int32 ``(t,)`` each token's first interval (non-decreasing, ``>= start``).
    """

    user: int
    start: int
    codes: np.ndarray
    first: np.ndarray

    def end(self, snapshot: int) -> int:
        """Size of the set at ``snapshot`` (its tokens are ``codes[:end(snapshot)]``)."""
        return int(np.searchsorted(self.first, snapshot, side="right"))


def build_history(user: int, parts: Iterable[Tuple[int, Iterable[str]]]) -> UserHistory:
    """``(interval, tokens)`` partials of one user and side → its ``UserHistory``.

    Raises:
        ValueError: No partials, a negative interval, or a bad token (``encode_token``).
    """
    first_seen: Dict[int, int] = {}
    start = None
    for interval, tokens in parts:
        interval = int(interval)
        if interval < 0:
            raise ValueError(f"Intervals should be non-negative. Received: {interval}")
        start = interval if start is None else min(start, interval)
        for token in tokens:
            code = encode_token(token)
            if code not in first_seen or interval < first_seen[code]:
                first_seen[code] = interval
    if start is None:
        raise ValueError(f"User {user} has no partial token sets.")
    codes = np.fromiter(first_seen, dtype=np.int64, count=len(first_seen))
    first = np.fromiter(first_seen.values(), dtype=np.int32, count=len(first_seen))
    order = np.lexsort((codes, first))
    return UserHistory(int(user), start, codes[order], first[order])


class Population(NamedTuple):
    """One snapshot's population of one (visibility, side), rows sorted by user id.

    Attributes:
        snapshot: ``k``.
        users: int64 ``(n,)`` user ids, ascending.
        index: The users' token sets at ``k`` (``TokenIndex``; ids are token codes' ranks).
        signatures: int64 ``(n, P)`` MinHash signatures at ``k``.
    """

    snapshot: int
    users: np.ndarray
    index: TokenIndex
    signatures: np.ndarray


def snapshot_populations(histories: Sequence[UserHistory], num_snapshots: int,
                         hasher: MinHasher, side: str) -> Iterator[Population]:
    """The populations of snapshots ``0 … num_snapshots − 1`` (those with at least one user).

    Args:
        histories: One per user (any order).
        num_snapshots: Number of snapshot boundaries.
        hasher: The MinHash functions.
        side: ``"search"`` or ``"feed"`` (keys ``token_hash``).

    Yields:
        ``Population`` per non-empty snapshot, in snapshot order. Holds one running signature
        per user, not one per snapshot.

    Raises:
        ValueError: Two histories of the same user.
    """
    histories = sorted(histories, key=lambda h: h.user)
    users = np.array([h.user for h in histories], dtype=np.int64)
    repeated = users[1:][users[1:] == users[:-1]]
    if repeated.size:
        raise ValueError(f"Each user should have one history. Received two of user {repeated[0]}")
    starts = np.array([h.start for h in histories], dtype=np.int64)
    signatures = np.tile(hasher.empty(), (len(histories), 1))
    ends = np.zeros(len(histories), dtype=np.int64)
    cache: Dict[int, int] = {}

    def hashes(codes: np.ndarray) -> np.ndarray:
        out = np.empty(codes.size, dtype=np.int64)
        for i, code in enumerate(codes.tolist()):
            value = cache.get(code)
            if value is None:
                value = cache[code] = token_hash(decode_token(code), side)
            out[i] = value
        return out

    for k in range(num_snapshots):
        for i, history in enumerate(histories):
            end = history.end(k)
            if end > ends[i]:
                new = hasher.signature(hashes(history.codes[ends[i]:end]))
                np.minimum(signatures[i], new, out=signatures[i])
                ends[i] = end
        rows = np.flatnonzero(starts <= k)
        if rows.size:
            index = TokenIndex.from_arrays(
                [histories[i].codes[:ends[i]] for i in rows.tolist()], check=False)
            yield Population(k, users[rows], index, signatures[rows])
