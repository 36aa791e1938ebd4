"""Dense neighbour retrieval (``spec/similar_users.md`` §2 "Dense option", §3 rule 5): TF maths.

The command is ``pipelines/dense_neighbours.py`` (``jsr-dense-neighbours``); this module holds
the parts that need TensorFlow:

- ``history_batch``: (user, history events) → a reader-format batch (the history fields of the
  examples, ``jsr_tf.data.examples.history_fields``, serialised and parsed by
  ``jsr_tf.data.reader.parse_batch``, so the model sees exactly what it sees in training);
- ``UserVectorEncoder``: a trained model's ``encode_user`` → per user the masked means of
  ``F_r`` and ``F_s`` over the valid history slots, L2-normalised: ``feed = n(mean F_r)``,
  ``search = n(mean F_s)``, and ``joint = n(concat[mean F_r, mean F_s, U])`` (the spec's
  ``v_u``; computed, not used by the table, whose sides use ``feed`` and ``search`` alone);
- ``cosine_top_k``: exact cosine top-k of every user against the others with a
  ``tfrs.layers.factorized_top_k.BruteForce`` index (identifiers = user ids,
  ``query_with_exclusions`` removes the user itself), queried in blocks of rows.

**Ties** go to the smaller user id: candidates are indexed in increasing id order and
``tf.math.top_k`` returns equal values lowest index first (TFRS's exclusion step keeps that
order). Scores are float32 dot products of unit vectors, clipped to ``[-1, 1]``.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Dict, List, Sequence, Tuple

import jsr_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TF / TFRS load)
import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from jsr_tf import features as F
from jsr_tf.data import reader
from jsr_tf.data.config import PreprocessConfig
from jsr_tf.data.examples import history_fields
from jsr_tf.data.timeline import Event
from jsr_tf.layers.pooling import masked_mean
from jsr_tf.models.base import JsrModel
from jsr_tf.neighbours import (VIS_TEST, VIS_TRAIN, check_positive_ints,
                               check_snapshots_and_visibilities, config_dict)

__all__ = ["RETRIEVAL", "DenseConfig", "history_batch", "pooled_user_vectors",
           "UserVectorEncoder", "cosine_top_k"]

RETRIEVAL = "dense"
FEED_VECTOR = "feed"
SEARCH_VECTOR = "search"
JOINT_VECTOR = "joint"
_REQUIRED_SIDE_KEYS = ("F_r", "F_s", "feed_valid", "search_valid", "user")


@dataclasses.dataclass(frozen=True)
class DenseConfig:
    """Settings of ``jsr-dense-neighbours``.

    Attributes:
        model_dir: The trained base model (``jsr-train`` output; ``config.json`` + best weights).
            It should have been trained on train-visible data (§3 rule 5): the ``jsr-train``
            recipe trains on the train examples and picks the checkpoint on valid.
        data_dir: The ``jsr-preprocess`` output the model was trained on (vocabulary, and
            ``preprocess_config.json``, which decides targets, splits and history caps).
        k_search: Neighbours kept on the search side ``k_s``.
        k_feed: Neighbours kept on the feed side ``k_r``.
        snapshot_hours: Spacing of the default snapshots (as ``NeighbourConfig``).
        snapshots: Explicit boundaries (unix ms, strictly increasing); override the default.
        visibilities: Tables to build (``train``, ``test``, ``all``).
        batch_size: Histories per ``encode_user`` call.
        block_size: Query rows per top-k block (bounds the ``[block, users]`` score matrix).
    """

    model_dir: str = ""
    data_dir: str = ""
    k_search: int = 5
    k_feed: int = 5
    snapshot_hours: int = 24
    snapshots: Tuple[int, ...] = ()
    visibilities: Tuple[str, ...] = (VIS_TRAIN, VIS_TEST)
    batch_size: int = 256
    block_size: int = 4096

    def validate(self) -> "DenseConfig":
        """Checks every field; returns self."""
        check_positive_ints(self, ("k_search", "k_feed", "snapshot_hours", "batch_size",
                                   "block_size"))
        check_snapshots_and_visibilities(self.snapshots, self.visibilities)
        return self

    def to_dict(self) -> Dict[str, Any]:
        values = config_dict(self)
        values["retrieval"] = RETRIEVAL
        return values

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


# --------------------------------------------------------------------------- model inputs


def _int64_feature(example, name: str, values: Sequence[int]) -> None:
    example.features.feature[name].int64_list.value.extend(int(v) for v in values)


def history_batch(histories: Sequence[Tuple[int, int, Sequence[Event]]],
                  config: PreprocessConfig) -> Dict[str, tf.Tensor]:
    """A reader batch (no labels) of user histories.

    Args:
        histories: ``(user, as_of_ts, events)`` per row; ``events`` oldest first. The caps of
            ``config`` apply (the most recent ``max_feed_history`` feed positives and
            ``max_search_history`` sessions), as in the examples.
        config: The examples' preprocess config.

    Returns:
        The padded dense tensors of ``reader.parse_batch(..., with_labels=False)`` at the
        config's ``data_shape()``;
        ``target_ts`` holds ``as_of_ts``.
    """
    from tensorflow.core.example import example_pb2  # pylint: disable=g-import-not-at-top

    serialized = []
    for user, as_of_ts, events in histories:
        example = example_pb2.Example()
        _int64_feature(example, F.USER_ID, [user])
        _int64_feature(example, F.TARGET_TS, [as_of_ts])
        for name, values in history_fields(events, config).items():
            _int64_feature(example, name, values)
        serialized.append(example.SerializeToString())
    return reader.parse_batch(tf.constant(serialized, tf.string), config.data_shape(),
                              with_labels=False)


# --------------------------------------------------------------------------- vectors


def pooled_user_vectors(side: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """L2-normalised masked means of an ``encode_user`` output.

    Args:
        side: Needs ``F_r, F_s [B,L,D]``, ``feed_valid, search_valid [B,L]`` and ``user [B,D]``.

    Returns:
        ``feed = n(mean F_r)``, ``search = n(mean F_s)``, ``joint = n(concat[mean F_r,
        mean F_s, user])`` (``[B, ·]`` float32; a user without history on a side gets a zero
        vector there), and ``feed_count``, ``search_count`` ``[B]`` (valid slots, int32).
    """
    mean_r = masked_mean(side["F_r"], side["feed_valid"])
    mean_s = masked_mean(side["F_s"], side["search_valid"])
    joint = tf.concat([mean_r, mean_s, tf.cast(side["user"], mean_r.dtype)], axis=-1)
    return {FEED_VECTOR: tf.math.l2_normalize(mean_r, axis=-1),
            SEARCH_VECTOR: tf.math.l2_normalize(mean_s, axis=-1),
            JOINT_VECTOR: tf.math.l2_normalize(joint, axis=-1),
            "feed_count": tf.reduce_sum(tf.cast(side["feed_valid"], tf.int32), axis=1),
            "search_count": tf.reduce_sum(tf.cast(side["search_valid"], tf.int32), axis=1)}


class UserVectorEncoder:
    """Batched ``history_batch`` → ``encode_user`` → ``pooled_user_vectors`` of a trained model.

    Args:
        model: A model with ``encodes_user_sides``: ``encode_user`` of a prepared batch returns
            ``F_r``, ``F_s``, ``feed_valid``, ``search_valid`` and ``user`` (UniSAR).
        config: The examples' preprocess config (history caps).
        batch_size: Histories per call.

    Raises:
        ValueError: If the model has no such ``encode_user``.
    """

    def __init__(self, model, config: PreprocessConfig, batch_size: int = 256) -> None:
        if not isinstance(model, JsrModel) or not model.encodes_user_sides:
            raise ValueError(f"The dense option needs a model with `encode_user` (F_r, F_s, user):"
                             f" UniSAR. Received a {type(model).__name__}.")
        self.model = model
        self.config = config
        self.batch_size = int(batch_size)
        self._checked = False

        @tf.function(reduce_retracing=True)
        def encode(batch):
            return pooled_user_vectors(self.model.encode_user(self.model.prepare(batch),
                                                               training=False))

        self._encode = encode

    def _check(self, batch: Dict[str, tf.Tensor]) -> None:
        """One eager call: ``encode_user(batch, training=False)`` must give the needed keys."""
        name = type(self.model).__name__
        try:
            side = self.model.encode_user(self.model.prepare(batch), training=False)
        except TypeError as err:  # another signature (e.g. a `task` argument)
            raise ValueError(f"The dense option needs `encode_user(batch, training=False)` "
                             f"returning {list(_REQUIRED_SIDE_KEYS)} (UniSAR); {name}'s cannot "
                             f"be called so: {err}") from None
        missing = (list(_REQUIRED_SIDE_KEYS) if not isinstance(side, dict)
                   else [k for k in _REQUIRED_SIDE_KEYS if k not in side])
        if missing:
            raise ValueError(f"The dense option needs `encode_user` to return "
                             f"{list(_REQUIRED_SIDE_KEYS)} (UniSAR); {name}'s lacks {missing}.")
        self._checked = True

    def __call__(self, histories: Sequence[Tuple[int, int, Sequence[Event]]]
                 ) -> Dict[str, np.ndarray]:
        """Vectors of every history (see ``pooled_user_vectors``), as numpy, in input order."""
        parts: Dict[str, List[np.ndarray]] = {}
        for start in range(0, len(histories), self.batch_size):
            batch = history_batch(histories[start:start + self.batch_size], self.config)
            if not self._checked:
                self._check(batch)
            for name, value in self._encode(batch).items():
                parts.setdefault(name, []).append(value.numpy())
        if not parts:
            return {}
        return {name: np.concatenate(values, axis=0) for name, values in parts.items()}


# --------------------------------------------------------------------------- top-k


def cosine_top_k(vectors: np.ndarray, ids: Sequence[int], k: int, block_size: int = 4096
                 ) -> Tuple[List[List[int]], List[List[float]]]:
    """Exact cosine top-k neighbours of every row among the other rows.

    Args:
        vectors: ``[N, D]`` float (normalised here; a zero row stays zero, cosine 0).
        ids: ``N`` distinct integer identifiers (user ids).
        k: Neighbours per row; rows get ``min(k, N - 1)``.
        block_size: Query rows per BruteForce call.

    Returns:
        ``(neighbour ids, sims)`` per row in input order: best first, ties to the smaller id,
        never the row itself, sims in ``[-1, 1]``.

    Raises:
        ValueError: Bad shapes, duplicate ids or ``k < 1``.
    """
    vectors = np.asarray(vectors, np.float32)
    ids = np.asarray(ids, np.int64)
    if vectors.ndim != 2 or ids.shape != (vectors.shape[0],):
        raise ValueError(f"Need vectors [N, D] and N ids. Received: {vectors.shape}, {ids.shape}")
    if len(np.unique(ids)) != len(ids):
        raise ValueError("`ids` should be distinct.")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"`k` should be a positive integer. Received: `k={k!r}`")
    n = len(ids)
    k_eff = min(int(k), n - 1)
    if k_eff <= 0:
        return [[] for _ in range(n)], [[] for _ in range(n)]
    order = np.argsort(ids, kind="stable")  # candidates in id order: top_k ties → smaller id
    unit = tf.math.l2_normalize(tf.constant(vectors[order]), axis=-1)
    sorted_ids = tf.constant(ids[order])
    index = tfrs.layers.factorized_top_k.BruteForce(k=k_eff)
    index.index(candidates=unit, identifiers=sorted_ids)

    @tf.function(reduce_retracing=True)
    def query(q, exclude):
        return index.query_with_exclusions(q, exclude, k=k_eff)

    out_ids: List[List[int]] = [None] * n  # type: ignore[list-item]
    out_sims: List[List[float]] = [None] * n  # type: ignore[list-item]
    for start in range(0, n, block_size):
        rows = order[start:start + block_size]
        scores, found = query(unit[start:start + block_size],
                              sorted_ids[start:start + block_size, None])
        scores = np.clip(scores.numpy(), -1.0, 1.0)
        found = found.numpy()
        for j, row in enumerate(rows):
            out_ids[row] = [int(v) for v in found[j]]
            out_sims[row] = [float(s) for s in scores[j]]
    return out_ids, out_sims
