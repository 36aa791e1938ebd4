"""Rank metrics (spec/evaluation.md §4, tests of §8)."""

import numpy as np
import pytest

from jsr_tf.evaluation import metrics as M


def test_hand_example_rank_three():
    scores = np.array([[0.9, 0.95, 0.1, 0.9]])
    assert M.positive_ranks(scores).tolist() == [3]  # one greater, one tie
    out = M.rank_metrics(scores)
    assert out["HR@1"] == 0.0
    assert out["HR@5"] == 1.0
    assert out["NDCG@5"] == pytest.approx(0.5)
    assert out["MRR"] == pytest.approx(1 / 3)
    assert out["tie_fraction"] == 1.0
    assert out["positive_tie_fraction"] == 1.0


def test_constant_scorer_ranks_last():
    out = M.rank_metrics(np.zeros((7, 100)))
    assert out["HR@1"] == 0.0
    assert out["HR@50"] == 0.0
    assert out["MRR"] == pytest.approx(0.01)
    assert out["tie_fraction"] == 1.0


def test_label_scorer_is_perfect():
    scores = np.zeros((5, 100))
    scores[:, 0] = 1.0
    out = M.rank_metrics(scores)
    for name in M.metric_names():
        assert out[name] == 1.0, name
    assert out["tie_fraction"] == 1.0  # the 99 negatives tie among themselves
    assert out["positive_tie_fraction"] == 0.0


def test_random_scorer_hits_k_over_c():
    rng = np.random.default_rng(0)
    out = M.rank_metrics(rng.random((20000, 100)))
    assert out["HR@10"] == pytest.approx(0.10, abs=0.01)
    assert out["HR@50"] == pytest.approx(0.50, abs=0.015)
    assert out["MRR"] == pytest.approx(np.mean(1 / np.arange(1, 101)), abs=0.004)
    assert out["tie_fraction"] == 0.0


def test_column_permutation_invariance():
    rng = np.random.default_rng(1)
    scores = np.round(rng.normal(size=(300, 100)), 1)  # rounding creates ties
    perm = rng.permutation(100)
    moved = scores[:, perm]
    positive = int(np.flatnonzero(perm == 0)[0])
    assert M.rank_metrics(moved, positive_index=positive) == M.rank_metrics(scores)
    np.testing.assert_array_equal(M.candidate_ranks(moved), M.candidate_ranks(scores)[:, perm])


def test_candidate_ranks_match_positive_ranks_in_every_column():
    rng = np.random.default_rng(2)
    scores = rng.integers(0, 5, size=(50, 12)).astype(float)
    ranks = M.candidate_ranks(scores)
    for col in range(12):
        np.testing.assert_array_equal(ranks[:, col], M.positive_ranks(scores, col))


def test_ndcg_values():
    ranks = np.array([1, 2, 5, 6, 60])
    per_row = M.per_row_metrics(ranks)
    np.testing.assert_allclose(per_row["NDCG@5"], [1, 1 / np.log2(3), 1 / np.log2(6), 0, 0])
    np.testing.assert_allclose(per_row["NDCG@50"][:4], 1 / np.log2(ranks[:4] + 1))
    assert per_row["NDCG@50"][4] == 0.0
    np.testing.assert_allclose(per_row["MRR"], 1 / ranks)


def test_nan_scores_rank_last():
    scores = np.array([[np.nan, 0.1, 0.2], [0.5, np.nan, 0.1]])
    assert M.positive_ranks(scores).tolist() == [3, 1]


def test_expected_metrics():
    rng = np.random.default_rng(3)
    scores = rng.random((40, 100))
    one_hot = np.zeros_like(scores)
    one_hot[:, 0] = 1.0
    assert M.expected_metrics(scores, one_hot) == pytest.approx(
        M.metrics_from_ranks(M.positive_ranks(scores)))
    uniform = np.ones_like(scores)  # normalised inside
    out = M.expected_metrics(scores, uniform)
    assert out["HR@10"] == pytest.approx(0.10)
    assert out["HR@1"] == pytest.approx(0.01)
    # Sorting by the posterior itself is optimal in expectation.
    posterior = rng.random((40, 100)) ** 4
    best = M.expected_metrics(posterior, posterior)
    worse = M.expected_metrics(scores, posterior)
    assert best["NDCG@5"] > worse["NDCG@5"]
    assert best["HR@10"] >= worse["HR@10"]


@pytest.mark.parametrize("bad", [np.zeros(5), np.zeros((3, 1)), np.zeros((2, 3, 4))])
def test_invalid_shapes_raise(bad):
    with pytest.raises(ValueError, match="scores"):
        M.rank_metrics(bad)


def test_invalid_posterior_raises():
    with pytest.raises(ValueError, match="posterior"):
        M.expected_metrics(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="posterior"):
        M.expected_metrics(np.zeros((2, 3)), -np.ones((2, 3)))
