"""Preprocessing configuration: how raw KuaiSAR events become examples.

A frozen dataclass with ``validate()`` and a JSON round trip. Flags live only in the pipeline's
entry point (``pipelines/preprocess.py``), which builds one of these.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Dict

from jsr_tf import features
from jsr_tf.data.kuaisar_values import OPEN_PERIOD

# Valid timestamp range by default: any positive timestamp before 2100 (``OPEN_PERIOD``), so a log
# of any period keeps all its rows; the span it really covers is recorded in ``stats.json``.
# ``kuaisar_values.KUAISAR_PERIOD`` (both releases plus a day of slack) restricts it to KuaiSAR's.
DEFAULT_PERIOD_START_MS = OPEN_PERIOD.start_ms
DEFAULT_PERIOD_END_MS = OPEN_PERIOD.end_ms

FALLBACK_FIRST_SHOWN = "first_shown"
FALLBACK_NONE = "none"
HISTORY_BOTH = "both"
HISTORY_ANY = "any"
HISTORY_NONE = "none"


_DEFAULT_SHAPE = features.DataShape()  # the caps' defaults: the reference values


@dataclasses.dataclass(frozen=True)
class PreprocessConfig:
    """Settings of the KuaiSAR → examples transformation.

    Attributes:
        max_feed_history: Feed positives kept per history (most recent).
        max_search_history: Search sessions kept per history (most recent).
        max_query_words: Words kept per query (the first ones).
        max_session_clicks: Clicked items kept per history session (the first ones, file order).
        num_train_negatives: Stored negatives per train row.
        num_eval_negatives: Stored negatives per valid / test row.
        candidate_seed: Seed of every negative draw; never the model seed.
        no_click_fallback: ``"first_shown"``: a session without a click enters histories with its
            first shown item as its click (``has_click = 0``); ``"none"``: with no click.
        history_requirement: Which targets are eligible: ``"both"`` needs ≥ 1 earlier feed
            positive and ≥ 1 earlier search session (the reference); ``"any"`` needs ≥ 1 earlier
            event of either kind (default: rows without search or without feed history are
            kept, DESIGN.md §3); ``"none"`` keeps every target.
        min_targets_per_task: Users with fewer eligible targets in a task are dropped from it.
        mask_heldout_in_train_history: Train rows' histories drop every valid/test target.
        negatives_must_predate_target: Negatives must have been first seen before the target.
        strict_same_ts: Histories hold only events with ``ts < target_ts``. When False (the
            reference), events at the same timestamp that come earlier in canonical order
            ``(ts, kind, row)`` are history too. Default True: items of one feed delivery share a
            timestamp and their click order is unknown.
        period_start_ms: Earliest valid timestamp (inclusive); default 1 (any positive one).
        period_end_ms: Latest valid timestamp (exclusive); default 2100-01-01 UTC. Rows outside
            the period are dead-lettered (``timestamp_out_of_period``).
        num_shards: TFRecord shards per (split, task); 0 chooses from the data size.
    """

    max_feed_history: int = _DEFAULT_SHAPE.feed_history
    max_search_history: int = _DEFAULT_SHAPE.search_history
    max_query_words: int = _DEFAULT_SHAPE.query_words
    max_session_clicks: int = _DEFAULT_SHAPE.session_clicks
    num_train_negatives: int = _DEFAULT_SHAPE.train_negatives
    num_eval_negatives: int = _DEFAULT_SHAPE.eval_negatives
    candidate_seed: int = 20230601
    no_click_fallback: str = FALLBACK_FIRST_SHOWN
    history_requirement: str = HISTORY_ANY
    min_targets_per_task: int = 3
    mask_heldout_in_train_history: bool = True
    negatives_must_predate_target: bool = True
    strict_same_ts: bool = True
    period_start_ms: int = DEFAULT_PERIOD_START_MS
    period_end_ms: int = DEFAULT_PERIOD_END_MS
    num_shards: int = 0

    def validate(self) -> "PreprocessConfig":
        """Checks every field and cross-field rule; returns self."""
        for name in ("max_feed_history", "max_search_history", "max_query_words",
                     "max_session_clicks", "num_eval_negatives"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"`{name}` should be a positive integer. Received: `{name}={value!r}`")
        for name in ("num_train_negatives", "num_shards", "candidate_seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(
                    f"`{name}` should be a non-negative integer. Received: `{name}={value!r}`")
        if not isinstance(self.min_targets_per_task, int) or self.min_targets_per_task < 3:
            raise ValueError("`min_targets_per_task` should be an integer >= 3 (one train, one valid "
                             f"and one test target). Received: `{self.min_targets_per_task!r}`")
        if self.no_click_fallback not in (FALLBACK_FIRST_SHOWN, FALLBACK_NONE):
            raise ValueError("`no_click_fallback` should be 'first_shown' or 'none'. "
                             f"Received: `{self.no_click_fallback!r}`")
        if self.history_requirement not in (HISTORY_BOTH, HISTORY_ANY, HISTORY_NONE):
            raise ValueError("`history_requirement` should be 'both', 'any' or 'none'. "
                             f"Received: `{self.history_requirement!r}`")
        if self.period_start_ms >= self.period_end_ms:
            raise ValueError("`period_start_ms` should be before `period_end_ms`. Received: "
                             f"`{self.period_start_ms}` >= `{self.period_end_ms}`")
        return self

    def data_shape(self) -> features.DataShape:
        """The ``DataShape`` of the examples this config writes (``manifest.json``'s)."""
        return features.DataShape.from_preprocess(self.to_dict())

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "PreprocessConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"Unknown PreprocessConfig fields: {unknown}")
        return cls(**values).validate()

    @classmethod
    def reference(cls, **overrides: Any) -> "PreprocessConfig":
        """The UniSAR reference recipe (evaluation.md): for comparability with published numbers."""
        values = dict(history_requirement=HISTORY_BOTH, mask_heldout_in_train_history=False,
                      negatives_must_predate_target=False, strict_same_ts=False)
        values.update(overrides)
        return cls(**values).validate()
