"""Output and input-group keys (``StrEnum``) shared by models, training, evaluation and export."""

from __future__ import annotations

import enum


class Inputs(enum.StrEnum):
    """Top-level keys of a training step's input dict: one batch per task."""

    FEED = "feed"
    SEARCH = "search"


class Outputs(enum.StrEnum):
    """Keys of the dict a model's ``call`` returns."""

    LOGITS = "logits"  # [B, C] float32, one logit per candidate
    FEED_LOGITS = "feed_logits"  # [B, C]
    SEARCH_LOGITS = "search_logits"  # [B, C]
    LOSS = "loss"
    FEED_LOSS = "feed_loss"
    SEARCH_LOSS = "search_loss"
    TRANSITION_ALIGNMENT = "transition_alignment_loss"
    QUERY_ITEM_ALIGNMENT = "query_item_alignment_loss"
