"""Evaluation: rank metrics over the shared candidate files (spec/evaluation.md)."""

from jsr_tf.evaluation.metrics import (HR_KS, NDCG_KS, candidate_ranks, expected_metrics,
                                       metric_names, metrics_from_ranks, per_row_metrics,
                                       positive_ranks, rank_metrics, tie_mask)

__all__ = ["HR_KS", "NDCG_KS", "candidate_ranks", "expected_metrics", "metric_names",
           "metrics_from_ranks", "per_row_metrics", "positive_ranks", "rank_metrics", "tie_mask"]
