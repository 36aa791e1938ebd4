"""Negative sampling: exclusions, first-seen rule, weighting, seeding and fallbacks."""

import collections

import numpy as np

from jsr_tf.data.negatives import NegativePool, NegativeSampler, derived_seed


def _pool(n=50, seen_at=0):
    counts = {1000 + i: (i % 5) + 1 for i in range(n)}
    first_seen = {item: seen_at + i for i, item in enumerate(counts)}
    return NegativePool.build(counts, first_seen)


def test_derived_seed_is_stable_and_distinct():
    assert derived_seed(1, 0, "train", 42) == derived_seed(1, 0, "train", 42)
    assert derived_seed(1, 0, "train", 42) != derived_seed(1, 1, "train", 42)
    assert 0 <= derived_seed(1, 0, "train", 42) < 2**64


def test_exclusions_distinctness_and_predating():
    pool = _pool()
    sampler = NegativeSampler(pool, seed=3)
    exclude = {1000, 1001, 1002}
    negatives = sampler.sample(20, exclude, target_ts=40)
    assert len(negatives) == len(set(negatives)) == 20
    assert not set(negatives) & exclude
    assert all(item - 1000 < 40 for item in negatives)  # first_seen = index < target_ts


def test_same_seed_same_draws():
    a = NegativeSampler(_pool(), seed=9).sample(10, set(), 100)
    b = NegativeSampler(_pool(), seed=9).sample(10, set(), 100)
    c = NegativeSampler(_pool(), seed=10).sample(10, set(), 100)
    assert a == b and a != c


def test_draws_follow_popularity():
    counts = {1: 1, 2: 9}
    pool = NegativePool.build(counts, {1: 0, 2: 0})
    sampler = NegativeSampler(pool, seed=0)
    drawn = collections.Counter(sampler.sample(1, set(), 10)[0] for _ in range(2000))
    assert 0.85 < drawn[2] / 2000 < 0.95


def test_fallbacks_are_counted_and_exhaustion_returns_none():
    pool = NegativePool.build({1: 1, 2: 1}, {1: 0, 2: 0, 3: 0, 4: 0})
    counters = {}
    negatives = NegativeSampler(pool, seed=0).sample(3, {1}, 10, counters)
    assert sorted(negatives) == [2, 3, 4]
    assert counters == {"negatives/fallback_exhaustive": 1, "negatives/fallback_uniform": 1}
    assert NegativeSampler(pool, seed=0).sample(5, set(), 10, {}) is None
    # Items first seen at or after the target never qualify.
    assert NegativeSampler(pool, seed=0).sample(1, set(), 0, {}) is None
