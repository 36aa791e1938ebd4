"""`HistoryLayout`: global positions and every attention mask of the UniSAR history.

This is the one module that builds masks. All masks are in **Keras semantics: True = the query
slot may attend to the key slot**, shape `(B, query, key)`. (PyTorch masks mean *blocked*; a
literal port inverts every mask, spec/unisar.md §13.1.)

Shapes: `B` batch; `Lr` feed slots (30); `Ls` search slots (30); `L = Lr + Ls`.

Layout: the model keeps the slots as `concat[feed Lr; search Ls]` and never permutes them. The
reference merges the 60 slots by a stable sort on time (feed listed first, so feed wins ties;
pads sort last, feed pads before search pads); attention is permutation-equivariant, so the sort
only decides the global position of each slot:
`gpos = stable_rank(concat[feed_ts, search_ts])` with pads = +inf.

Masks (spec/unisar.md §4):

| key              | shape         | query slots        | may attend to                        |
|------------------|---------------|--------------------|--------------------------------------|
| `global_mask`    | `(B, L, L)`   | all 60             | valid slots of the *other* type      |
| `feed_mask`      | `(B, Lr, Lr)` | feed               | valid feed slots (r2r, feed decoder) |
| `search_mask`    | `(B, Ls, Ls)` | search             | valid search slots (s2s, search dec.)|

`global_mask[b, i, j] = type_i != type_j and valid_j`, so `G[:, :Lr]` is s2r (feed slots after
reading the searches) and `G[:, Lr:]` is r2s. With `causal_transitions=True` (a named deviation:
the reference has no causal mask) a slot also needs `gpos_j < gpos_i`, i.e. it reads only
strictly earlier behaviours of the other type; at equal timestamps the canonical order (feed
before search) decides, so a search session sees a feed event of the same millisecond and not
the reverse.

Rows with no allowed key (no history of the other type, or the earliest events under
`causal_transitions`) are legal; the attention blocks give them a zero attention update
(see `transformer.py`).
"""

from __future__ import annotations

import enum
from typing import Any, Dict, Optional

import tensorflow as tf
import tf_keras as keras

from jsr_tf.features import PAD_ID


class LayoutKey(enum.StrEnum):
    """Keys of the dict `HistoryLayout` returns."""

    GLOBAL_POSITIONS = "global_positions"  # int32 (B, L)
    GLOBAL_MASK = "global_mask"  # bool (B, L, L)
    FEED_MASK = "feed_mask"  # bool (B, Lr, Lr)
    SEARCH_MASK = "search_mask"  # bool (B, Ls, Ls)
    FEED_VALID = "feed_valid"  # bool (B, Lr)
    SEARCH_VALID = "search_valid"  # bool (B, Ls)


def stable_rank(keys: tf.Tensor) -> tf.Tensor:
    """Rank of each entry along the last axis under a stable ascending sort.

    `rank[i] = #{j : keys_j < keys_i} + #{j < i : keys_j == keys_i}`, computed as
    `argsort(argsort(keys, stable=True))` (the argsort of a permutation is its inverse).

    Args:
        keys: Tensor `(..., L)`, any sortable dtype.

    Returns:
        int32 tensor `(..., L)`, a permutation of `0 .. L-1` along the last axis.
    """
    order = tf.argsort(keys, axis=-1, stable=True)
    return tf.argsort(order, axis=-1, stable=True)


def other_type_mask(query_is_feed: tf.Tensor, key_is_feed: tf.Tensor,
                    key_valid: tf.Tensor) -> tf.Tensor:
    """`mask[b, i, j] = is_feed_i != is_feed_j and valid_j`: bool `(B, Q, K)`."""
    return tf.logical_and(
        tf.not_equal(query_is_feed[..., :, tf.newaxis], key_is_feed[..., tf.newaxis, :]),
        key_valid[..., tf.newaxis, :])


def key_valid_mask(key_valid: tf.Tensor, num_queries: int) -> tf.Tensor:
    """`mask[b, i, j] = valid_j` for `num_queries` query slots: bool `(B, num_queries, K)`."""
    key_valid = key_valid[:, tf.newaxis, :]
    return tf.repeat(key_valid, num_queries, axis=1)


@keras.saving.register_keras_serializable(package="jsr_tf")
class HistoryLayout(keras.layers.Layer):
    """Computes the global positions and the attention masks of the history.

    Args:
        causal_transitions: If True, the global (transition) mask also requires the key to be
            strictly earlier than the query in the canonical order (feed before search at equal
            timestamps). False (the default) is the reference behaviour: attend to every
            behaviour of the other type, earlier or later.
        **kwargs: Base `Layer` arguments.

    Call arguments:
        feed_ts: Integer tensor `(B, Lr)` of feed event times (ms), 0 for padding.
        search_ts: Integer tensor `(B, Ls)` of search session times (ms), 0 for padding.
        feed_valid: Optional bool tensor `(B, Lr)`; defaults to `feed_ts != 0`.
        search_valid: Optional bool tensor `(B, Ls)`; defaults to `search_ts != 0`.

    Returns:
        Dict keyed by `LayoutKey`: `global_positions` int32 `(B, L)`, `global_mask` bool
        `(B, L, L)`, `feed_mask` bool `(B, Lr, Lr)`, `search_mask` bool `(B, Ls, Ls)`,
        `feed_valid` bool `(B, Lr)`, `search_valid` bool `(B, Ls)`.
    """

    def __init__(self, causal_transitions: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(causal_transitions, bool):
            raise ValueError(
                "`causal_transitions` should be a bool. "
                f"Received: `causal_transitions={causal_transitions!r}`")
        self.causal_transitions = causal_transitions

    def call(
        self,
        feed_ts: tf.Tensor,
        search_ts: tf.Tensor,
        feed_valid: Optional[tf.Tensor] = None,
        search_valid: Optional[tf.Tensor] = None,
    ) -> Dict[str, tf.Tensor]:
        feed_ts = tf.cast(feed_ts, tf.int64)
        search_ts = tf.cast(search_ts, tf.int64)
        if feed_valid is None:
            feed_valid = tf.not_equal(feed_ts, PAD_ID)
        if search_valid is None:
            search_valid = tf.not_equal(search_ts, PAD_ID)
        feed_valid = tf.cast(feed_valid, tf.bool)
        search_valid = tf.cast(search_valid, tf.bool)
        num_feed = feed_ts.shape[1] if feed_ts.shape[1] is not None else tf.shape(feed_ts)[1]
        num_search = (search_ts.shape[1] if search_ts.shape[1] is not None
                      else tf.shape(search_ts)[1])

        ts = tf.concat([feed_ts, search_ts], axis=1)  # (B, L)
        valid = tf.concat([feed_valid, search_valid], axis=1)
        keys = tf.where(valid, ts, tf.constant(tf.int64.max, tf.int64))  # Pads = +inf.
        positions = stable_rank(keys)

        is_feed = tf.concat([tf.ones_like(feed_valid), tf.zeros_like(search_valid)], axis=1)
        global_mask = other_type_mask(is_feed, is_feed, valid)
        if self.causal_transitions:
            earlier = tf.less(positions[:, tf.newaxis, :], positions[:, :, tf.newaxis])
            global_mask = tf.logical_and(global_mask, earlier)
        return {
            LayoutKey.GLOBAL_POSITIONS: positions,
            LayoutKey.GLOBAL_MASK: global_mask,
            LayoutKey.FEED_MASK: key_valid_mask(feed_valid, num_feed),
            LayoutKey.SEARCH_MASK: key_valid_mask(search_valid, num_search),
            LayoutKey.FEED_VALID: feed_valid,
            LayoutKey.SEARCH_VALID: search_valid,
        }

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update({"causal_transitions": self.causal_transitions})
        return config
