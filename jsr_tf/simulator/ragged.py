"""Small helpers for ragged arrays stored as flat values plus per-row lengths or offsets."""

from __future__ import annotations

import numpy as np


def offsets(lengths: np.ndarray) -> np.ndarray:
    """Row lengths ``[n]`` -> offsets ``[n + 1]`` (int64, starting at 0)."""
    out = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out[1:])
    return out


def segment_ids(lengths: np.ndarray) -> np.ndarray:
    """Row lengths ``[n]`` -> the row index of every flat value ``[sum(lengths)]``."""
    return np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)


def positions(lengths: np.ndarray) -> np.ndarray:
    """Row lengths ``[n]`` -> the position of every flat value inside its row."""
    starts = offsets(lengths)[:-1]
    return np.arange(int(np.sum(lengths)), dtype=np.int64) - np.repeat(starts, lengths)


def gather_rows(values: np.ndarray, row_offsets: np.ndarray,
                rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Selects rows of a ragged array.

    Args:
        values: Flat values of the source array.
        row_offsets: ``[n + 1]`` offsets of the source array.
        rows: Indices of the rows to take (any order, repeats allowed).

    Returns:
        ``(flat values, lengths)`` of the selected rows, in the order of ``rows``.
    """
    starts = row_offsets[rows]
    lengths = row_offsets[rows + 1] - starts
    flat = np.repeat(starts, lengths) + positions(lengths)
    return values[flat], lengths


def first_in_group(keys: np.ndarray) -> np.ndarray:
    """For a sorted key array, True at the first element of every run of equal keys."""
    out = np.ones(len(keys), dtype=bool)
    if len(keys) > 1:
        out[1:] = keys[1:] != keys[:-1]
    return out
