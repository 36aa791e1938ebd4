"""Output and input-group keys (``StrEnum``) shared by models, training, evaluation and export."""

from __future__ import annotations

import enum


class Inputs(enum.StrEnum):
    """Top-level keys of a training step's input dict: one batch per task."""

    FEED = "feed"
    SEARCH = "search"


class Outputs(enum.StrEnum):
    """Keys of the dict a model's ``call`` returns: both heads' logits of the batch's
    candidates."""

    FEED_LOGITS = "feed_logits"  # [B, C] float32, one logit per candidate
    SEARCH_LOGITS = "search_logits"  # [B, C]
