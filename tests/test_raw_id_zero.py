"""Raw id 0 end to end (issue #12): a KuaiSAR log with user 0, item 0 and word 0 preprocesses,
trains, evaluates and is scored by the serving signatures; -1 is the padding value."""

import json

import numpy as np
import pytest

import jsr_tf  # noqa: F401
import tensorflow as tf
import tf_keras as keras

from jsr_tf import config as C
from jsr_tf import features as F
from jsr_tf.data import reader
from jsr_tf.data.vocab import load_vocab
from jsr_tf.evaluation import evaluator
from jsr_tf.keys import Inputs
from jsr_tf.models import factory
from jsr_tf.training import trainer
from tests import golden_fixture as G
from tests.testing import item_row, read_examples, run_preprocess, user_row, write_kuaisar

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

# The golden fixture with user 1001 -> 0, item 501 -> 0 (a feed history item) and word 11 -> 0.
RENAME_USER, RENAME_ITEM, RENAME_WORD = {G.U1: 0}, {501: 0}, {"11": "0"}


def _write_raw(directory):
    rec = [[str(RENAME_USER.get(int(r[0]), r[0])), str(RENAME_ITEM.get(int(r[1]), r[1])), *r[2:]]
           for r in G.rec_rows()]
    src = []
    for r in G.src_rows():
        words = [RENAME_WORD.get(w.strip(), w.strip()) for w in r[4].strip("[]").split(",")]
        src.append([str(RENAME_USER.get(int(r[0]), r[0])), *r[1:4],
                    "[" + ", ".join(words) + "]", *r[5:]])
    items = [item_row(RENAME_ITEM.get(i, i), caption=(0, 40) if i == 501 else (i % 7 + 1, 40))
             for i in (501, 502, 503, 504, G.BIG_ITEM, 506, 508, 509, 510, 511, 601, 602, 603,
                       604)]
    users = [user_row(RENAME_USER.get(u, u)) for u in (G.U1, G.U2, G.U3)]
    return write_kuaisar(directory, rec, src, items, users)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("id_zero")
    config = root / "config.json"
    config.write_text(json.dumps({"num_train_negatives": 2, "num_eval_negatives": 3}))
    out = str(root / "data")
    stats = run_preprocess(_write_raw(str(root / "raw")), out, "--config", str(config))
    assert stats["reconciled"]
    return out


def test_ids_zero_reach_the_examples_and_the_vocabularies(data_dir):
    vocab = load_vocab(data_dir)
    assert 0 in vocab.user_ids and 0 in vocab.item_ids and 0 in vocab.word_ids
    rows = read_examples(data_dir, "train", F.Task.FEED) + read_examples(
        data_dir, "train", F.Task.SEARCH)
    assert any(int(r[F.USER_ID]) == 0 for r in rows)
    assert any(0 in r[F.FEED_ITEMS].tolist() for r in rows)
    assert any(0 in r[F.SEARCH_WORDS].tolist() or 0 in r[F.QUERY_WORDS].tolist() for r in rows)
    batch = next(iter(reader.make_dataset(data_dir, "train", F.Task.FEED, 8, shuffle_buffer=0)))
    padded = batch[F.FEED_ITEMS].numpy()
    assert (padded == F.RAW_PAD_ID).any()  # padding is -1, so 0 stays an item


SMALL = ["model.embedding_dim=8", "model.hidden_dim=8", "model.ffn_dim=8", "model.num_heads=1",
         "model.num_qi_negatives=2"]


def _request():
    """A request about user 0 with item 0 and word 0 in its history, padded with -1."""
    return {F.USER_ID: tf.constant([0], tf.int64),
            F.FEED_ITEMS: tf.constant([[0, 503, -1]], tf.int64),
            F.FEED_TS: tf.constant([[1, 2, 0]], tf.int64),
            F.SEARCH_TS: tf.constant([[3]], tf.int64),
            F.SEARCH_WORDS: tf.constant([[[0, 12, -1]]], tf.int64),
            F.SEARCH_CLICKS: tf.constant([[[602]]], tf.int64),
            reader.CANDIDATES: tf.constant([[0, 503, 999]], tf.int64)}


def test_one_step_evaluate_and_score_with_id_zero(data_dir):
    from jsr_tf.export import serving as S

    vocab = load_vocab(data_dir)
    model = factory.build_model(C.preset("unisar").override(SMALL), vocab)
    lookup = model.item_lookup  # item 0 is a real row, -1 the padding row
    np.testing.assert_array_equal(lookup(tf.constant([-1, 0, 503])).numpy()[:1], [0])
    assert int(lookup(tf.constant([0]))[0]) >= 2
    inputs = {Inputs.FEED: next(iter(reader.make_dataset(data_dir, "train", F.Task.FEED, 4))),
              Inputs.SEARCH: next(iter(reader.make_dataset(data_dir, "train", F.Task.SEARCH, 4)))}
    optimizer = keras.optimizers.Adam(1e-3)
    with tf.GradientTape() as tape:
        loss = model.compute_loss(inputs, training=True)
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients([(g, v) for g, v in zip(grads, model.trainable_variables)
                               if g is not None])
    assert np.isfinite(float(loss))
    # The evaluator's path for one task (each task traces its own scoring function: the slow
    # test runs both through jsr-train's evaluation); the feed rows scored eagerly.
    results = evaluator.evaluate_model(model, data_dir, "test", tasks=[F.Task.SEARCH],
                                       batch_size=8)
    assert results["search"]["rows"] > 0 and 0.0 <= results["search"]["NDCG@5"] <= 1.0
    feed = next(iter(reader.make_dataset(data_dir, "test", F.Task.FEED, 8, shuffle_buffer=0)))
    ranks = evaluator.evaluate_scores(model.score(feed, F.Task.FEED).numpy())
    assert 0.0 <= ranks["NDCG@5"] <= 1.0
    module = S.ServingModule(model)
    assert module.zero_is_id
    scores = module.score(_request(), F.Task.FEED).numpy()
    want = model.score(S.fit_request(_request(), F.DataShape()), F.Task.FEED).numpy()
    np.testing.assert_allclose(scores, want, rtol=1e-5)
    assert scores.shape == (1, 3) and np.isfinite(scores).all()
    # Item 0 in the history is an event, not padding: dropping it changes the scores.
    without = dict(_request(), **{F.FEED_ITEMS: tf.constant([[-1, 503, -1]], tf.int64)})
    assert not np.allclose(module.score(without, F.Task.FEED).numpy(), scores)


@pytest.mark.slow
def test_jsr_train_run_is_reloaded_and_served_with_id_zero(data_dir, tmp_path):
    """The jsr-train path: trainer (train + evaluate both tasks), reload as jsr-evaluate and
    jsr-export do (fingerprint and vocabulary checks), and the serving module of the reloaded
    model. (Saving it as a SavedModel is the same code for every vocabulary and is covered by
    tests/test_export.py; the fast test above checks id 0 through the serving module.)"""
    from jsr_tf.export import serving as S

    config = C.preset("unisar").override([
        "train.epochs=1", "train.batch_size=2", "train.eval_batch_size=8",
        "train.steps_per_epoch=1", *SMALL])
    record = trainer.train(config, data_dir, str(tmp_path / "run"), verbose=0)
    for split in ("valid", "test"):
        for task in ("feed", "search"):
            assert 0.0 <= record[split]["metrics"][task]["NDCG@5"] <= 1.0
    model, _ = factory.load_trained(str(tmp_path / "run"), data_dir)
    module = S.ServingModule(model)
    assert module.zero_is_id
    scores = module.score(_request(), F.Task.FEED).numpy()
    want = model.score(S.fit_request(_request(), F.DataShape(), module.zero_is_id),
                       F.Task.FEED).numpy()
    np.testing.assert_allclose(scores, want, rtol=1e-5)
    assert scores.shape == (1, 3) and np.isfinite(scores).all()
