"""Parity of the UniSAR training computation with the values recorded before the speed work.

Issue 14 rewrites the training step for speed (fewer InfoNCE logits, caption words gathered
sparsely, attention in another layout, fused optimizer updates). The model must not change:
this test pins the loss terms, the scores and the gradient of every trainable variable on a
fixed small batch to values recorded from the implementation at commit f0650d1 (before any of
those rewrites), to 1e-5.

The setup is hand-seeded so it does not depend on variable creation order: every trainable
variable is overwritten with values drawn from a generator keyed by its name, dropout is 0 (the
step is then deterministic, InfoNCE negatives included: they are a stateless function of the
seed and the optimizer step), and the batch is built from a numpy generator. Each gradient is
summarised by its sum, its sum of squares and its dot product with a fixed random tensor, which
catches any change to any element.

Re-record only for an intended model change, never for a speed change:

    .venv/bin/python -m tests.models.test_unisar_parity
"""

from __future__ import annotations

import json
import os
import zlib
from typing import Dict

import numpy as np

import jsr_tf  # noqa: F401
import tensorflow as tf

from jsr_tf import features as F
from jsr_tf.config import preset
from jsr_tf.data import reader
from jsr_tf.data.vocab import Vocab
from jsr_tf.keys import Inputs
from jsr_tf.models.parts.losses import infonce_negatives
from jsr_tf.models.unisar import UniSAR

SHAPE = F.DataShape()  # the reference shape of the fixtures' data

GOLDEN = os.path.join(os.path.dirname(__file__), "unisar_parity.json")
ITEMS, WORDS, USERS = 300, 400, 20
TOLERANCE = 1e-5


def parity_vocab() -> Vocab:
    rng = np.random.default_rng(7)
    captions = rng.integers(1, WORDS + 1, size=(ITEMS, SHAPE.caption_words))
    lengths = rng.integers(0, SHAPE.caption_words + 1, size=ITEMS)
    captions[np.arange(SHAPE.caption_words)[None, :] >= lengths[:, None]] = 0
    categories = np.stack([rng.integers(1, 6, ITEMS), rng.integers(1, 9, ITEMS),
                           np.zeros(ITEMS, np.int64), np.zeros(ITEMS, np.int64)], axis=1)
    users = np.stack([rng.integers(0, 3, USERS), rng.integers(0, 2, USERS),
                      rng.integers(0, 4, USERS), rng.integers(0, 3, USERS)], axis=1)
    queries = rng.integers(1, WORDS + 1, size=(30, SHAPE.query_words))
    queries[:, 4:] = 0
    return Vocab(item_ids=np.arange(1, ITEMS + 1, dtype=np.int64),
                 item_feed_count=np.ones(ITEMS, np.int64),
                 item_search_count=np.ones(ITEMS, np.int64),
                 item_first_seen=np.zeros(ITEMS, np.int64), item_categories=categories,
                 item_captions=captions.astype(np.int64),
                 word_ids=np.arange(1, WORDS + 1, dtype=np.int64),
                 word_counts=np.ones(WORDS, np.int64),
                 user_ids=np.arange(1, USERS + 1, dtype=np.int64),
                 user_features=users.astype(np.int64), queries=queries.astype(np.int64))


def parity_batch(seed: int, rows: int, candidates: int, task: int) -> Dict[str, tf.Tensor]:
    """Raw-id batch with repeated items, empty slots, a row without feed and one without search
    history (and, for search, one session with a click but no words)."""
    rng = np.random.default_rng(seed)
    slots = np.arange(30)[None, :]
    feed_len = rng.integers(0, 31, rows)
    feed_len[0] = 0
    search_len = rng.integers(0, 31, rows)
    search_len[1] = 0
    feed = np.where(slots < feed_len[:, None], rng.integers(1, 60, (rows, 30)), 0)
    feed_ts = np.where(feed > 0, 1_000_000 + slots * 60_000 + rng.integers(0, 30_000, (rows, 1)),
                       0)
    search_ts = np.where(slots < search_len[:, None], 1_000_000 + slots * 60_000 + 30_000, 0)
    words = rng.integers(1, WORDS + 1, (rows, 30, SHAPE.caption_words))
    nwords = rng.integers(0, 7, (rows, 30))
    words[np.arange(SHAPE.caption_words)[None, None, :] >= nwords[..., None]] = 0
    words[search_ts == 0] = 0
    clicks = rng.integers(1, 80, (rows, 30, 5))
    nclicks = rng.integers(0, 4, (rows, 30))
    clicks[np.arange(5)[None, None, :] >= nclicks[..., None]] = 0
    clicks[search_ts == 0] = 0
    query = rng.integers(1, WORDS + 1, (rows, SHAPE.query_words))
    query[:, 4:] = 0
    if task == F.Task.FEED:
        query[:] = 0
    batch = {F.USER_ID: rng.integers(1, USERS + 1, rows),
             F.TARGET_TS: np.full(rows, 9_000_000),
             F.FEED_ITEMS: feed, F.FEED_TS: feed_ts, F.SEARCH_TS: search_ts,
             F.SEARCH_HAS_CLICK: (clicks > 0).any(-1).astype(np.int64),
             F.SEARCH_WORDS: words, F.SEARCH_CLICKS: clicks, F.QUERY_WORDS: query,
             reader.CANDIDATES: rng.integers(1, ITEMS + 1, (rows, candidates))}
    out = {k: tf.constant(np.asarray(v, np.int64)) for k, v in batch.items()}
    labels = np.zeros([rows, candidates], np.float32)
    labels[:, 0] = 1
    out[reader.LABEL] = tf.constant(labels)
    return out


def _name_seed(name: str) -> int:
    return zlib.crc32(name.encode())


def parity_model() -> UniSAR:
    config = preset("unisar").override(["model.dropout=0.0", "model.num_qi_negatives=64"])
    model = UniSAR(config.model, parity_vocab(), l2=config.train.l2, seed=3)
    model.compute_loss({Inputs.FEED: parity_batch(1, 2, 5, F.Task.FEED),
                        Inputs.SEARCH: parity_batch(2, 2, 5, F.Task.SEARCH)})
    for variable in model.trainable_variables:
        rng = np.random.default_rng(_name_seed(variable.name))
        values = rng.normal(0.0, 0.15, variable.shape)
        if "temperature" in variable.name:
            values = np.full(variable.shape, 0.5)
        elif variable.name.endswith("gamma:0"):
            values = 1.0 + values
        variable.assign(values.astype(np.float32))
    return model


def compute_parity() -> Dict[str, object]:
    """Loss terms, scores and gradient summaries of the fixed setup (see the module docstring)."""
    model = parity_model()
    feed = parity_batch(11, 6, 5, F.Task.FEED)
    search = parity_batch(12, 4, 5, F.Task.SEARCH)
    negatives = infonce_negatives(model.seed, tf.constant(0, tf.int64),
                                  model.config.num_qi_negatives, model.num_items, model._queries)
    out: Dict[str, object] = {}
    for name, batch, task in (("feed", feed, F.Task.FEED), ("search", search, F.Task.SEARCH)):
        terms = model.task_loss(model.prepare(batch), task, *negatives, training=True)
        out[f"{name}_terms"] = {k: float(v) for k, v in terms.items() if k != "logits"}
        out[f"{name}_scores"] = model.score(parity_batch(20 + task, 3, 7, task), task)\
            .numpy().round(7).tolist()
    with tf.GradientTape() as tape:
        loss = model.compute_loss({Inputs.FEED: feed, Inputs.SEARCH: search}, training=True)
    out["loss"] = float(loss)
    gradients = tape.gradient(loss, model.trainable_variables)
    summaries = {}
    for variable, grad in zip(model.trainable_variables, gradients):
        grad = np.zeros(variable.shape, np.float64) if grad is None else \
            tf.convert_to_tensor(grad).numpy().astype(np.float64)
        probe = np.random.default_rng(_name_seed(variable.name) + 1).normal(size=grad.shape)
        summaries[variable.name] = [float(grad.sum()), float((grad ** 2).sum()),
                                    float((grad * probe).sum())]
    out["gradients"] = summaries
    return out


def _close(actual, expected, path):
    if isinstance(expected, dict):
        assert set(actual) == set(expected), path
        for key in expected:
            _close(actual[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, list):
        np.testing.assert_allclose(np.asarray(actual, np.float64),
                                   np.asarray(expected, np.float64),
                                   rtol=TOLERANCE, atol=TOLERANCE, err_msg=path)
    else:
        np.testing.assert_allclose(actual, expected, rtol=TOLERANCE, atol=TOLERANCE,
                                   err_msg=path)


def test_training_computation_matches_the_recorded_values():
    with open(GOLDEN) as f:
        expected = json.load(f)
    actual = compute_parity()
    # The probe would be trivially equal on all-zero gradients: the setup must reach every
    # variable that trains (captions, both alignments, both heads).
    assert sum(1 for s in actual["gradients"].values() if s[1] > 0) >= 0.9 * len(
        actual["gradients"])
    _close(actual, expected, "parity")


if __name__ == "__main__":
    with open(GOLDEN, "w") as f:
        json.dump(compute_parity(), f, indent=1, sort_keys=True)
    print(f"wrote {GOLDEN}")


def test_mixed_bfloat16_precision_runs_blocks_and_infonce_in_bfloat16():
    """``train.precision=mixed_bfloat16``: the blocks and the InfoNCE compute in bfloat16 with
    float32 variables; the loss and every gradient are float32, finite and close to float32's
    (bfloat16 keeps 8 bits of mantissa)."""
    expected = compute_parity()["loss"]
    config = preset("unisar").override(["model.dropout=0.0", "model.num_qi_negatives=64",
                                        "train.precision=mixed_bfloat16"])
    reference = parity_model()
    model = UniSAR(config.model, parity_vocab(), l2=config.train.l2, seed=3,
                   precision=config.train.precision)
    feed = parity_batch(11, 6, 5, F.Task.FEED)
    search = parity_batch(12, 4, 5, F.Task.SEARCH)
    model.compute_loss({Inputs.FEED: feed, Inputs.SEARCH: search})
    model.set_weights(reference.get_weights())
    assert model.global_encoder[0].compute_dtype == "bfloat16"
    assert model.query_item_alignment.compute_dtype == "bfloat16"
    assert model.item_encoder.compute_dtype == "float32"
    assert all(v.dtype == tf.float32 for v in model.trainable_variables)
    with tf.GradientTape() as tape:
        loss = model.compute_loss({Inputs.FEED: feed, Inputs.SEARCH: search}, training=True)
    gradients = tape.gradient(loss, model.trainable_variables)
    assert loss.dtype == tf.float32 and np.isfinite(float(loss))
    assert all(g is None or (g.dtype == tf.float32 and np.isfinite(
        tf.convert_to_tensor(g).numpy()).all()) for g in gradients)
    np.testing.assert_allclose(float(loss), expected, rtol=0.05)
