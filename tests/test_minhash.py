"""MinHash, LSH banding and exact Jaccard (jsr_tf/neighbours/minhash.py): golden values and
seeded statistical checks with stated tolerances."""

import collections
import hashlib
import itertools
import math

import numpy as np
import pytest

from jsr_tf.neighbours import minhash as mh

P = 128


def _token_set(rng: np.random.Generator, n: int) -> set:
    return {f"i:{int(x)}" for x in rng.choice(10**9, size=n, replace=False)}


def _pair_with_jaccard(rng: np.random.Generator, union: int, shared: int):
    """Two token sets with exactly ``shared / union`` Jaccard."""
    tokens = sorted(_token_set(rng, union))
    rng.shuffle(tokens)
    only = union - shared
    a = set(tokens[:shared]) | set(tokens[shared:shared + only // 2])
    b = set(tokens[:shared]) | set(tokens[shared + only // 2:])
    assert mh.jaccard(a, b) == shared / union
    return a, b


# --------------------------------------------------------------------------- tokens and hashing


def test_token_hash_golden_values():
    # Pinned: a change here silently invalidates every stored signature and table.
    assert mh.token_hash("w:1", "search") == 36300902
    assert mh.token_hash("i:501", "search") == 1019367168
    assert mh.token_hash("i:501", "feed") == 1700687870
    assert mh.token_hash("c2:10", "feed") == 2003630510


def test_token_hash_is_keyed_blake2b_mod_p():
    digest = hashlib.blake2b(b"i:501", digest_size=4, key=b"feed").digest()
    assert mh.token_hash("i:501", "feed") == int.from_bytes(digest, "little") % (2**31 - 1)


def test_token_hash_is_side_keyed_and_kind_prefixed():
    assert mh.token_hash("i:7", "search") != mh.token_hash("i:7", "feed")
    assert mh.token_hash("i:7", "search") != mh.token_hash("w:7", "search")
    values = [mh.token_hash(f"i:{i}", side) for i in range(500) for side in mh.SIDES]
    assert min(values) >= 0 and max(values) < mh.PRIME
    assert len(set(values)) == 1000


def test_token_hash_rejects_unknown_side():
    with pytest.raises(ValueError, match="`side` should be one of"):
        mh.token_hash("i:1", "rec")


def test_hash_tokens_sorted_unique():
    hashes = mh.hash_tokens(["i:501", "w:1", "i:501"], "search")
    assert hashes.dtype == np.int64
    assert hashes.tolist() == [36300902, 1019367168]


def test_token_builders():
    assert mh.search_tokens([11, 12], [602]) == {"w:11", "w:12", "i:602"}
    assert mh.search_tokens([11], []) == {"w:11"}
    assert mh.feed_tokens([501, 502], [10, 0]) == {"i:501", "i:502", "c2:10"}  # 0 = absent


# --------------------------------------------------------------------------- signatures


def test_minhasher_coefficients_seeded_and_in_range():
    h = mh.MinHasher(4, seed=7)
    assert h.a.tolist() == [2029167940, 1342382292, 1469265226, 1926751965]
    assert h.b.tolist() == [1241873584, 1665772334, 1790251936, 483628757]
    big = mh.MinHasher(P, seed=3)
    assert big.a.min() >= 1 and big.a.max() < mh.PRIME
    assert big.b.min() >= 0 and big.b.max() < mh.PRIME
    assert np.array_equal(mh.MinHasher(P, seed=3).a, big.a)
    assert not np.array_equal(mh.MinHasher(P, seed=4).a, big.a)


@pytest.mark.parametrize("num_perm", [0, -1, 2.5, True])
def test_minhasher_rejects_bad_num_perm(num_perm):
    with pytest.raises(ValueError, match="`num_perm` should be a positive integer"):
        mh.MinHasher(num_perm)


def test_signature_equals_python_bigint_min():
    h = mh.MinHasher(16, seed=11)
    x = [0, 1, 12345, mh.PRIME - 1, 2**30 + 17]
    sig = h.signature(x)
    expected = [min((int(a) * v + int(b)) % mh.PRIME for v in x) for a, b in zip(h.a, h.b)]
    assert sig.tolist() == expected  # int64 arithmetic did not overflow at the top of the range
    assert sig.dtype == np.int64


def test_signature_rejects_out_of_range_hashes():
    with pytest.raises(ValueError, match=r"should lie in \[0, 2\^31 - 1\)"):
        mh.MinHasher(4).signature([mh.PRIME])


def test_empty_signature_is_identity_of_merge():
    h = mh.MinHasher(P, seed=1)
    empty = h.signature([])
    assert empty.tolist() == [mh.PRIME] * P
    sig = h.signature_of_tokens({"i:1", "i:2"}, "feed")
    assert np.array_equal(mh.merge_signatures(empty, sig), sig)


def test_signatures_are_mergeable():
    rng = np.random.default_rng(0)
    h = mh.MinHasher(P, seed=5)
    for _ in range(20):
        parts = [_token_set(rng, int(rng.integers(1, 40))) for _ in range(3)]
        union = set().union(*parts)
        merged = mh.merge_signatures(*(h.signature_of_tokens(p, "search") for p in parts))
        assert np.array_equal(merged, h.signature_of_tokens(union, "search"))
    # Chunking is an implementation detail.
    x = mh.hash_tokens(_token_set(rng, 50), "feed")
    assert np.array_equal(h.signature(x, chunk=3), h.signature(x))


def test_minhash_estimate_within_tolerance_of_exact_jaccard():
    """200 seeded pairs with J from 0.05 to 0.95, P = 128 functions, a fresh seed per pair.

    Tolerance: every pair has ``|est − J| ≤ 4·sqrt(J(1−J)/P) + 1/P`` (the binomial std of the
    estimate, 4 sigma, plus one slot of rounding), at least 90 % of pairs are within
    ``2·sqrt(J(1−J)/P) + 1/P`` (≈ 95 % expected), and the mean error (bias) is below
    ``3·sqrt(mean variance / 200)``.
    """
    rng = np.random.default_rng(2023)
    errors, sigmas = [], []
    for trial in range(200):
        union = int(rng.integers(40, 200))
        shared = int(round(union * rng.uniform(0.05, 0.95)))
        a, b = _pair_with_jaccard(rng, union, shared)
        j = shared / union
        h = mh.MinHasher(P, seed=1000 + trial)
        est = mh.estimate_jaccard(h.signature_of_tokens(a, "feed"),
                                  h.signature_of_tokens(b, "feed"))
        sigma = math.sqrt(j * (1 - j) / P)
        assert abs(est - j) <= 4 * sigma + 1 / P, (trial, j, est)
        errors.append(est - j)
        sigmas.append(sigma)
    errors, sigmas = np.array(errors), np.array(sigmas)
    assert np.mean(np.abs(errors) <= 2 * sigmas + 1 / P) >= 0.9
    assert abs(errors.mean()) <= 3 * math.sqrt(np.mean(sigmas**2) / len(errors))


def test_identical_and_disjoint_sets():
    h = mh.MinHasher(P, seed=9)
    a = {"w:1", "w:2", "i:3"}
    assert mh.estimate_jaccard(h.signature_of_tokens(a, "search"),
                               h.signature_of_tokens(set(a), "search")) == 1.0
    assert mh.estimate_jaccard(h.signature_of_tokens(a, "search"),
                               h.signature_of_tokens({"w:9", "i:8"}, "search")) == 0.0


# --------------------------------------------------------------------------- LSH


def test_band_keys_shapes_and_locality():
    h = mh.MinHasher(P, seed=2)
    sig = h.signature_of_tokens({"i:1", "i:2", "i:3"}, "feed")
    keys = mh.band_keys(sig, 64, 2)
    assert keys.shape == (64,) and keys.dtype == np.int64
    both = mh.band_keys(np.stack([sig, sig]), 64, 2)
    assert both.shape == (2, 64) and np.array_equal(both[0], keys) and np.array_equal(both[1], keys)
    changed = sig.copy()
    changed[5] += 1  # row 5 = band 2, row 1
    diff = np.flatnonzero(mh.band_keys(changed, 64, 2) != keys)
    assert diff.tolist() == [2]
    # Order within a band matters (keys are not sums): swapping two values changes the key.
    swapped = sig.copy()
    swapped[[0, 1]] = swapped[[1, 0]]
    assert mh.band_keys(swapped, 64, 2)[0] != keys[0] or sig[0] == sig[1]
    assert len(set(mh.band_keys(np.arange(128), 128, 1).tolist())) == 128


def test_band_keys_rejects_bad_banding():
    with pytest.raises(ValueError, match="`bands \\* rows` should equal the signature length"):
        mh.band_keys(np.zeros(128, dtype=np.int64), 60, 2)


def test_candidate_probability_golden():
    # spec §2a: b = 64, r = 2 -> 0.93 at J = 0.2, 0.47 at J = 0.1.
    assert mh.candidate_probability(0.2, 64, 2) == pytest.approx(0.92666, abs=1e-5)
    assert mh.candidate_probability(0.1, 64, 2) == pytest.approx(0.47440, abs=1e-5)
    assert mh.candidate_probability(0.0, 64, 2) == 0.0
    assert mh.candidate_probability(1.0, 64, 2) == 1.0


@pytest.mark.parametrize("j_shared,union", [(5, 100), (10, 100), (20, 100)])
def test_lsh_candidate_rate_matches_formula(j_shared, union):
    """Seeded experiment, 300 trials per J (new sets and hash seed each): the fraction of pairs
    sharing at least one band key (b = 64, r = 2) is within ``4·sqrt(p(1−p)/300) + 0.03`` of
    ``p = 1 − (1 − J²)^64``."""
    rng = np.random.default_rng(j_shared)
    trials = 300
    hits = 0
    for trial in range(trials):
        a, b = _pair_with_jaccard(rng, union, j_shared)
        h = mh.MinHasher(P, seed=trial)
        ka = mh.band_keys(h.signature_of_tokens(a, "search"), 64, 2)
        kb = mh.band_keys(h.signature_of_tokens(b, "search"), 64, 2)
        hits += bool(np.any(ka == kb))
    p = mh.candidate_probability(j_shared / union, 64, 2)
    assert abs(hits / trials - p) <= 4 * math.sqrt(p * (1 - p) / trials) + 0.03, (hits, p)


def _reference_candidates(keys, max_bucket, max_candidates):
    """Dict-of-buckets reference for ``lsh_candidates``."""
    collisions = collections.Counter()
    skipped = skipped_users = 0
    for band in range(keys.shape[1]):
        buckets = collections.defaultdict(list)
        for u in range(keys.shape[0]):
            buckets[int(keys[u, band])].append(u)
        for members in buckets.values():
            if len(members) > max_bucket:
                skipped, skipped_users = skipped + 1, skipped_users + len(members)
                continue
            for u, v in itertools.permutations(members, 2):
                collisions[(u, v)] += 1
    per_user = collections.defaultdict(dict)
    for (u, v), count in collisions.items():
        per_user[u][v] = count
    triples, truncated = [], 0
    for u in sorted(per_user):
        ranked = mh.top_candidates(per_user[u], max_candidates)
        truncated += len(per_user[u]) > max_candidates
        triples += [(u, v, per_user[u][v]) for v in ranked]
    return triples, skipped, skipped_users, truncated


def test_lsh_candidates_equal_bucket_reference():
    """Vectorised bucketing == a dict-of-buckets reference on 150 seeded random key tables
    (few distinct keys, so buckets of many sizes, skips and truncation all occur)."""
    rng = np.random.default_rng(7)
    seen_skip = seen_truncation = False
    for trial in range(150):
        n, b = int(rng.integers(0, 30)), int(rng.integers(1, 6))
        keys = rng.integers(0, 4, size=(n, b)).astype(np.int64)
        max_bucket, max_candidates = int(rng.integers(1, 10)), int(rng.integers(1, 6))
        found = mh.lsh_candidates(keys, max_bucket, max_candidates,
                                  compact_every=int(rng.integers(1, 50)))
        triples, skipped, skipped_users, truncated = _reference_candidates(
            keys, max_bucket, max_candidates)
        assert list(zip(found.left.tolist(), found.right.tolist(),
                        found.collisions.tolist())) == triples, trial
        assert (found.buckets_skipped, found.bucket_users_skipped, found.users_truncated) == (
            skipped, skipped_users, truncated), trial
        seen_skip |= skipped > 0
        seen_truncation |= truncated > 0
    assert seen_skip and seen_truncation


def test_lsh_candidates_golden():
    keys = np.array([[1, 5], [1, 6], [2, 6], [1, 6]], dtype=np.int64)
    found = mh.lsh_candidates(keys, max_bucket=3, max_candidates=2)
    # Band 0: {0, 1, 3}; band 1: {1, 2, 3}. 1-3 collide twice.
    assert list(zip(found.left.tolist(), found.right.tolist(), found.collisions.tolist())) == [
        (0, 1, 1), (0, 3, 1), (1, 3, 2), (1, 0, 1), (2, 1, 1), (2, 3, 1), (3, 1, 2), (3, 0, 1)]
    assert found.users_truncated == 2  # 1 and 3 had three candidates each
    skipped = mh.lsh_candidates(keys, max_bucket=2, max_candidates=2)
    assert (skipped.left.size, skipped.buckets_skipped, skipped.bucket_users_skipped) == (0, 2, 6)


# --------------------------------------------------------------------------- exact Jaccard


def test_jaccard_golden():
    assert mh.jaccard({1, 2, 3}, {2, 3, 4}) == 0.5
    assert mh.jaccard({"w:1", "i:2"}, {"w:1", "i:2"}) == 1.0
    assert mh.jaccard({"w:1"}, {"i:1"}) == 0.0
    assert mh.jaccard(set(), set()) == 0.0
    assert mh.jaccard({1, 2, 3, 4, 5}, {5}) == 0.2


def test_pairwise_jaccard_golden():
    sets = [{"a", "b", "c"}, {"b", "c", "d"}, {"x"}, set()]
    m = mh.pairwise_jaccard(sets)
    expected = np.array([[1.0, 0.5, 0.0, 0.0],
                         [0.5, 1.0, 0.0, 0.0],
                         [0.0, 0.0, 1.0, 0.0],
                         [0.0, 0.0, 0.0, 0.0]])
    assert np.array_equal(m, expected)


def test_pairwise_jaccard_equals_pairwise_python_floats():
    rng = np.random.default_rng(4)
    pool = [f"t:{i}" for i in range(60)]
    sets = [set(rng.choice(pool, size=int(rng.integers(1, 30)), replace=False))
            for _ in range(25)]
    m = mh.pairwise_jaccard(sets, block=7)  # several token blocks
    for i, a in enumerate(sets):
        for j, b in enumerate(sets):
            assert m[i, j] == mh.jaccard(a, b)  # bit-identical: ties compare equal across modes


# --------------------------------------------------------------------------- selection


def test_rank_neighbours_drops_self_threshold_and_breaks_ties_by_id():
    scored = [(5, 0.5), (3, 0.5), (1, 1.0), (9, 0.01), (4, 0.2), (2, 0.0), (7, 0.5)]
    kept, dropped = mh.rank_neighbours(1, scored, k=3, min_jaccard=0.02)
    assert kept == [(3, 0.5), (5, 0.5), (7, 0.5)]  # self (1) gone, ties to the smaller id
    assert dropped == 2  # 9 (below 0.02) and 2 (zero)
    kept, _ = mh.rank_neighbours(1, scored, k=10, min_jaccard=0.0)
    assert kept == [(3, 0.5), (5, 0.5), (7, 0.5), (4, 0.2), (9, 0.01)]  # J = 0 never kept
    kept, _ = mh.rank_neighbours(1, [(4, 0.3), (4, 0.3)], k=5, min_jaccard=0.02)
    assert kept == [(4, 0.3)]


def test_top_candidates_ranks_by_collisions_then_id():
    assert mh.top_candidates({7: 3, 2: 1, 5: 3, 9: 2}, 3) == [5, 7, 9]
    assert mh.top_candidates({7: 3, 2: 1}, 200) == [7, 2]
    assert mh.top_candidates({}, 5) == []
