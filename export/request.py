"""Request normalisation for the serving signatures: any history length in, the model's caps out.

A serving request carries raw ids in the example contract's layout (``jsr_tf/features.py``):
histories **oldest first**, padded at the end (ids with ``RAW_PAD_ID = -1``, timestamps with 0),
of any length. The model is built for
fixed caps (30 feed events, 30 search sessions, 50 words, 5 clicks). ``fit_history`` keeps the
**most recent** ``cap`` valid entries of each row (the last ones), as the pipeline does;
``fit_width`` cuts or pads an inner axis (words of a query, clicks of a session) to its cap,
keeping the first entries as the pipeline does.

Shapes: B rows, L history entries (any), W words, K clicks (any).
"""

from __future__ import annotations

from typing import Optional, Sequence

import tensorflow as tf


def pad_axis(values: tf.Tensor, axis: int, size: int, value=0) -> tf.Tensor:
    """Pads ``values`` with ``value`` at the end of ``axis`` up to at least ``size`` entries."""
    missing = tf.maximum(size - tf.shape(values)[axis], 0)
    paddings = tf.scatter_nd([[axis, 1]], [missing], [values.shape.rank, 2])
    return tf.pad(values, paddings, constant_values=tf.cast(value, values.dtype))


def fit_width(values: tf.Tensor, cap: int, value=0) -> tf.Tensor:
    """Cuts or pads (with ``value``) the last axis of ``values [..., W]`` to exactly ``cap``."""
    values = pad_axis(values, values.shape.rank - 1, cap, value)
    return values[..., :cap]


def fit_history(valid: tf.Tensor, fields: Sequence[tf.Tensor], cap: int,
                pads: Optional[Sequence] = None) -> list:
    """Keeps each row's most recent ``cap`` valid entries of parallel history fields.

    Args:
        valid: ``[B, L]`` bool, which slots hold an event (oldest first, then padding; a
            padding slot in the middle stays a masked slot, as in the model).
        fields: Tensors ``[B, L, ...]`` sharing the first two axes.
        cap: Slots the model reads.
        pads: Padding value of each field (default 0 for all; id fields use ``RAW_PAD_ID``).

    Returns:
        The fields as ``[B, cap, ...]``: slots ``max(n - cap, 0) .. n - 1`` of a row whose last
        valid slot is ``n - 1``, oldest first, then padding.

    Raises:
        tf.errors.InvalidArgumentError: Parallel fields disagree on ``[B, L]``.
    """
    checks = [tf.debugging.assert_equal(
        tf.shape(values)[:2], tf.shape(valid)[:2],
        message="parallel history inputs (e.g. feed_items and feed_ts, or search_ts, "
                "search_words and search_clicks) should have the same batch and history sizes")
        for values in fields]
    with tf.control_dependencies(checks):
        slots = tf.range(1, tf.shape(valid)[1] + 1)[None, :]
        # [B]; max over an empty axis is the lowest int32, hence the clamp.
        count = tf.maximum(tf.reduce_max(tf.where(valid, slots, tf.zeros_like(slots)), axis=1), 0)
    start = tf.maximum(count - cap, 0)
    positions = start[:, None] + tf.range(cap)[None, :]  # [B, cap]
    keep = positions < count[:, None]
    out = []
    for values, value in zip(fields, pads or [0] * len(fields)):
        padded = pad_axis(values, 1, cap, value)
        length = tf.shape(padded)[1]
        taken = tf.gather(padded, tf.minimum(positions, length - 1), batch_dims=1)
        mask = tf.reshape(keep, tf.concat([tf.shape(keep), tf.ones([tf.rank(taken) - 2],
                                                                   tf.int32)], 0))
        out.append(tf.where(mask, taken, tf.fill(tf.shape(taken), tf.cast(value, taken.dtype))))
    return out
