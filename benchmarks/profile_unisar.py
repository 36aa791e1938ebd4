"""Where a UniSAR training step spends its time: parts timed with ``tf.function`` on one batch.

Same synthetic reference-scale setup as ``bench_train.py`` (InfoNCE off, so the rest is visible;
the InfoNCE's share comes from bench_train's variant table).

    .venv/bin/python benchmarks/profile_unisar.py
"""

from __future__ import annotations

import time

import jsr_tf  # noqa: F401
import numpy as np
import tensorflow as tf

from benchmarks.bench_train import synthetic_batch, synthetic_vocab
from jsr_tf import features as F
from jsr_tf.config import preset
from jsr_tf.data import reader
from jsr_tf.models.unisar import UniSAR


def timed(name: str, fn, repeats: int = 3) -> None:
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    print(f"{name:<55}{(time.perf_counter() - start) / repeats:8.3f} s", flush=True)


def main() -> None:
    rng = np.random.default_rng(0)
    config = preset("unisar").override(["model.use_query_item_alignment=false"])
    model = UniSAR(config.model, synthetic_vocab(rng), l2=0.0)
    batch = model.prepare(synthetic_batch(rng, 1024, 5, F.Task.FEED))
    ids = tf.concat([tf.reshape(batch[k], [-1])
                     for k in (F.FEED_ITEMS, F.SEARCH_CLICKS, reader.CANDIDATES)], 0)
    unique, _ = tf.unique(ids)
    print(f"distinct items in the batch: {int(unique.shape[0]):,}")
    x = tf.random.normal([1024, 60, 64])
    mask = tf.ones([1024, 60, 60], tf.bool)
    block = model.global_encoder[0]

    def grad_of(fn, variables):
        @tf.function
        def run():
            with tf.GradientTape() as tape:
                y = fn()
            return tape.gradient(y, variables)
        return run

    timed("item encoder, forward + backward", grad_of(
        lambda: tf.reduce_sum(model.item_encoder(unique)), model.item_encoder.trainable_variables))
    timed("query encoder on history queries, forward + backward", grad_of(
        lambda: tf.reduce_sum(model.query_encoder(batch[F.SEARCH_WORDS])),
        model.query_encoder.trainable_variables))
    timed("one encoder block (1024 x 60 x 64), forward + backward", grad_of(
        lambda: tf.reduce_sum(block(x, attention_mask=mask, training=True)),
        block.trainable_variables))
    timed("user side (encode_user), forward + backward", grad_of(
        lambda: sum(tf.reduce_sum(v) for k, v in model.encode_user(batch, [], True).items()
                    if k in ("F_r", "F_s")), model.trainable_variables))
    timed("whole loss without InfoNCE, forward + backward", grad_of(
        lambda: model.loss_prepared({"feed": batch}, training=True), model.trainable_variables))


if __name__ == "__main__":
    main()
