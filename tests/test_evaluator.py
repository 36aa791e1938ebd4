"""jsr_tf.evaluation.evaluator and scorers: metrics over the fixed candidate files.

Hand examples (spec/evaluation.md §8), the column permutation, the floors, and a model double on
the golden fixture (3 eval negatives, so C = 4 on valid/test and C = 2 on train).
"""

import json
import os
import shutil

import numpy as np
import pytest

import jsr_tf  # noqa: F401
import tensorflow as tf

from jsr_tf import features as F
from jsr_tf import filenames as FN
from jsr_tf.data import reader
from jsr_tf.data.vocab import load_vocab
from jsr_tf.evaluation import evaluator, metrics, scorers
from tests import golden_fixture as G
from tests.doubles import TinyModel
from tests.testing import read_examples

CONFIG = {"num_train_negatives": 1, "num_eval_negatives": 3}
C = 1 + CONFIG["num_eval_negatives"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluator")
    return G.preprocessed(root, CONFIG, out="data")


# -- scorers used as doubles ---------------------------------------------------------------------
class ConstantScorer:
    def score(self, batch, task, training=False):
        return tf.zeros_like(batch[reader.CANDIDATES], tf.float32)


class LabelScorer:
    """Scores each candidate by its label: a perfect scorer if labels travel with candidates."""

    def score(self, batch, task, training=False):
        return batch[reader.LABEL]


class ItemIdScorer:
    """Score depends only on the candidate's item id (any candidate order gives the same ranks)."""

    def __init__(self):
        self.traces = 0

    def score(self, batch, task, training=False):
        self.traces += 1  # Python side effect: runs once per trace, not per batch
        ids = batch[reader.CANDIDATES]
        return tf.cast(tf.math.floormod(ids * 7919 + 13 * int(task), 1009), tf.float32)


class ColumnZeroCheater:
    """Prefers whatever sits in column 0, where the files put the positive."""

    def score(self, batch, task, training=False):
        cands = batch[reader.CANDIDATES]
        return tf.one_hot(tf.zeros_like(cands[:, 0], tf.int32), tf.shape(cands)[1])


def _scalars(result):
    return {task: {k: v for k, v in m.items() if k != evaluator.PER_ROW}
            for task, m in result.items()}


# -- evaluate_scores on hand-made arrays --------------------------------------------------------
def test_hand_example_rank_three():
    """[0.9, 0.95, 0.1, 0.9], positive 0: one greater, one tie -> rank 3."""
    out = evaluator.evaluate_scores(np.array([[0.9, 0.95, 0.1, 0.9]]), return_rows=True)
    assert out["HR@1"] == 0.0
    assert out["HR@5"] == 1.0
    assert out["NDCG@5"] == pytest.approx(0.5)
    assert out["MRR"] == pytest.approx(1 / 3)
    assert out["rows"] == 1
    assert out["tie_fraction"] == 1.0
    np.testing.assert_array_equal(out[evaluator.PER_ROW]["rank"], [3])


def test_constant_scores_rank_last():
    out = evaluator.evaluate_scores(np.full([7, 100], 0.25, np.float32))
    assert out["HR@1"] == 0.0
    assert out["HR@50"] == 0.0
    assert out["MRR"] == pytest.approx(0.01)
    assert out["NDCG@50"] == 0.0
    assert out["tie_fraction"] == 1.0
    assert out["rows"] == 7


def test_label_scores_are_perfect():
    scores = np.zeros([5, 100])
    scores[:, 0] = 1.0
    out = evaluator.evaluate_scores(scores)
    for name in metrics.metric_names():
        assert out[name] == 1.0, name


def test_per_row_means_equal_the_aggregates():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, size=[50, 10]).astype(np.float32)  # many ties
    out = evaluator.evaluate_scores(scores, return_rows=True)
    for name in metrics.metric_names():
        assert np.mean(out[evaluator.PER_ROW][name]) == pytest.approx(out[name]), name
    assert out[evaluator.PER_ROW]["tie"].mean() == pytest.approx(out["tie_fraction"])


def test_evaluate_scores_rejects_bad_shapes():
    with pytest.raises(ValueError, match="Received"):
        evaluator.evaluate_scores(np.zeros([4]))
    with pytest.raises(ValueError, match="C >= 2"):
        evaluator.evaluate_scores(np.zeros([4, 1]))


# -- the permutation ----------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2, 17])
@pytest.mark.parametrize("num_columns", [2, 4, 100])
def test_column_permutation_moves_the_positive(num_columns, seed):
    perm = evaluator.column_permutation(num_columns, seed)
    assert sorted(perm.tolist()) == list(range(num_columns))
    assert perm[0] != 0
    np.testing.assert_array_equal(perm, evaluator.column_permutation(num_columns, seed))


def test_column_permutation_depends_on_seed_and_validates():
    perms = {tuple(evaluator.column_permutation(100, s)) for s in range(5)}
    assert len(perms) == 5
    with pytest.raises(ValueError, match="num_columns=1"):
        evaluator.column_permutation(1, 0)


@pytest.mark.parametrize("scorer_fn", [ItemIdScorer, TinyModel], ids=["item_id", "tiny_model"])
def test_metrics_do_not_depend_on_the_permutation(data_dir, scorer_fn):
    scorer = scorer_fn()
    reference = evaluator.score_split(scorer, data_dir, "test", F.Task.FEED,
                                      permutation_seed=None)
    results = [_scalars(evaluator.evaluate_model(scorer, data_dir, "test", permutation_seed=s))
               for s in (None, 0, 1, 2, 3)]
    for other in results[1:]:
        assert other == results[0]
    for seed in (0, 5):
        scored = evaluator.score_split(scorer, data_dir, "test", F.Task.FEED,
                                       permutation_seed=seed)
        np.testing.assert_allclose(scored.scores, reference.scores, rtol=1e-6)


def test_cheater_on_column_zero_is_caught_by_the_permutation(data_dir):
    """Unpermuted, the cheater is perfect; permuted, it is exactly a constant scorer."""
    cheater = ColumnZeroCheater()
    unpermuted = evaluator.evaluate_model(cheater, data_dir, "test", permutation_seed=None)
    assert unpermuted["feed"]["HR@1"] == 1.0
    constant = _scalars(evaluator.evaluate_model(ConstantScorer(), data_dir, "test"))
    for seed in (0, 1, 2):
        permuted = evaluator.evaluate_model(cheater, data_dir, "test", permutation_seed=seed)
        for task in ("feed", "search"):
            assert permuted[task]["HR@1"] == 0.0
            assert permuted[task]["MRR"] == pytest.approx(1 / C)
            for name in metrics.metric_names():
                assert permuted[task][name] == pytest.approx(constant[task][name]), name


def test_constant_and_label_scorers_on_files(data_dir):
    constant = evaluator.evaluate_model(ConstantScorer(), data_dir, "valid")
    for task in ("feed", "search"):
        assert constant[task]["HR@1"] == 0.0
        assert constant[task]["MRR"] == pytest.approx(1 / C)
        assert constant[task]["tie_fraction"] == 1.0
    for seed in (0, 1, 2, 3):  # labels are permuted with the candidates, scores un-permuted
        label = evaluator.evaluate_model(LabelScorer(), data_dir, "valid", permutation_seed=seed)
        for task in ("feed", "search"):
            for name in metrics.metric_names():
                assert label[task][name] == 1.0, (seed, task, name)


def test_scoring_is_traced_once_per_task(data_dir):
    scorer = ItemIdScorer()
    out = evaluator.evaluate_model(scorer, data_dir, "test", batch_size=1)  # 2 batches per task
    assert out["feed"]["rows"] == out["search"]["rows"] == 2
    assert scorer.traces == 2


# -- floors -------------------------------------------------------------------------------------
def test_popularity_scores_and_ranks_by_hand(data_dir):
    """Feed train counts: 503, 504, 508, 509 have w = 1; everything else w = 0."""
    pop = scorers.PopularityScorer(load_vocab(data_dir))
    train = read_examples(data_dir, "train", F.Task.FEED)
    assert [[int(e[F.TARGET_ITEM]), *e[F.NEGATIVES].tolist()] for e in train] == [
        [503, 502], [504, 601], [508, 503], [509, 504]]
    scored = evaluator.score_split(pop, data_dir, "train", F.Task.FEED)
    np.testing.assert_array_equal(scored.scores, [[1, 0], [1, 0], [1, 1], [1, 1]])
    out = evaluator.evaluate_model(pop, data_dir, "train", tasks=[F.Task.FEED],
                                   return_rows=True)["feed"]
    # w+ > w-: rank 1; a tie at w = 1 counts against the positive: rank 2.
    np.testing.assert_array_equal(out[evaluator.PER_ROW]["rank"], [1, 1, 2, 2])
    assert out["HR@1"] == 0.5
    assert out["MRR"] == pytest.approx(0.75)

    valid = read_examples(data_dir, "valid", F.Task.FEED)
    assert [[int(e[F.TARGET_ITEM]), *e[F.NEGATIVES].tolist()] for e in valid] == [
        [G.BIG_ITEM, 601, 604, 502], [510, 503, 504, 603]]
    scored = evaluator.score_split(pop, data_dir, "valid", F.Task.FEED)
    np.testing.assert_array_equal(scored.scores, [[0, 0, 0, 0], [0, 1, 1, 0]])
    out = evaluator.evaluate_model(pop, data_dir, "valid", tasks=[F.Task.FEED],
                                   return_rows=True)["feed"]
    # Row 1: three ties -> rank 4. Row 2: two greater + one tie -> rank 4.
    np.testing.assert_array_equal(out[evaluator.PER_ROW]["rank"], [4, 4])


def test_popularity_uses_the_task_counts(data_dir):
    """Search counts: 602 and 620 have w = 1 (their feed counts are 0)."""
    pop = scorers.PopularityScorer(load_vocab(data_dir))
    scored = evaluator.score_split(pop, data_dir, "train", F.Task.SEARCH)
    np.testing.assert_array_equal(scored.scores, [[1, 1]])  # 602 vs 620
    feed_view = pop.score({reader.CANDIDATES: tf.constant([[602, 620]], tf.int64)}, F.Task.FEED)
    np.testing.assert_array_equal(feed_view.numpy(), [[0, 0]])


def test_random_scorer_hits_k_over_c():
    """Spec §8: a random scorer over many rows gives HR@10 ≈ 0.10 (and MRR ≈ H_100 / 100)."""
    batch = {reader.CANDIDATES: tf.ones([4000, 100], tf.int64)}
    scores = scorers.RandomScorer(seed=7).score(batch, F.Task.FEED).numpy()
    out = evaluator.evaluate_scores(scores)
    assert out["HR@10"] == pytest.approx(0.10, abs=0.015)
    assert out["HR@50"] == pytest.approx(0.50, abs=0.03)
    assert out["MRR"] == pytest.approx(np.sum(1 / np.arange(1, 101)) / 100, abs=0.006)
    assert out["tie_fraction"] < 0.01
    again = scorers.RandomScorer(seed=7).score(batch, F.Task.FEED).numpy()
    np.testing.assert_array_equal(scores, again)


def test_random_scorer_validates_seed():
    with pytest.raises(ValueError, match="seed=0.5"):
        scorers.RandomScorer(seed=0.5)


# -- a model on the golden fixture --------------------------------------------------------------
def test_tiny_model_on_golden_fixture(data_dir):
    out = evaluator.evaluate_model(TinyModel(), data_dir, "test", return_rows=True)
    assert set(out) == {"feed", "search"}
    for task in F.Task:
        name = F.task_name(task)
        examples = read_examples(data_dir, "test", task)
        assert out[name]["rows"] == len(examples) == 2
        for key in metrics.metric_names() + ("tie_fraction",):
            assert np.isfinite(out[name][key]) and 0.0 <= out[name][key] <= 1.0, (name, key)
        rows = out[name][evaluator.PER_ROW]
        assert rows["user_id"].tolist() == [int(e[F.USER_ID]) for e in examples]
        assert rows["target_row"].tolist() == [int(e[F.TARGET_ROW]) for e in examples]
        assert all(len(v) == 2 for v in rows.values())
        assert set(rows["rank"].tolist()) <= set(range(1, C + 1))


# -- broken candidate files ---------------------------------------------------------------------
def _copy_data(data_dir, tmp_path):
    out = str(tmp_path / "data")
    shutil.copytree(data_dir, out)
    return out


def _example(values):
    feature = {name: tf.train.Feature(int64_list=tf.train.Int64List(
        value=np.atleast_1d(values[name]).tolist())) for name in F.ALL_FEATURES}
    return tf.train.Example(features=tf.train.Features(feature=feature))


def test_short_rows_are_an_error(data_dir, tmp_path):
    data = _copy_data(data_dir, tmp_path)
    examples = read_examples(data, "test", F.Task.FEED)
    examples[1][F.NEGATIVES] = examples[1][F.NEGATIVES][:2]  # one negative lost
    path, = tf.io.gfile.glob(os.path.join(data, F.file_pattern("test", F.Task.FEED)))
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for e in examples:
            writer.write(_example(e).SerializeToString())
    with pytest.raises(ValueError, match="fewer than 4 candidates"):
        evaluator.evaluate_model(ItemIdScorer(), data, "test", tasks=[F.Task.FEED])


def test_rows_must_match_the_manifest(data_dir, tmp_path):
    data = _copy_data(data_dir, tmp_path)
    path = os.path.join(data, FN.MANIFEST_FILE)
    manifest = json.loads(open(path).read())
    manifest["sampler"]["num_eval_negatives"] = 99
    with open(path, "w") as f:
        json.dump(manifest, f)
    assert evaluator.expected_num_candidates(data, "test") == 100
    with pytest.raises(ValueError, match="should have 100 candidates"):
        evaluator.evaluate_model(ItemIdScorer(), data, "test")


def test_bad_score_shape_is_an_error(data_dir):
    class Wrong:
        def score(self, batch, task, training=False):
            return tf.zeros([tf.shape(batch[reader.CANDIDATES])[0], 3])

    with pytest.raises(tf.errors.InvalidArgumentError, match=r"\[B, C\]"):
        evaluator.evaluate_model(Wrong(), data_dir, "test")


def test_missing_files_are_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="jsr-preprocess"):
        evaluator.evaluate_model(ItemIdScorer(), str(tmp_path), "test")
