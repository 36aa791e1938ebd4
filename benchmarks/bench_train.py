"""UniSAR training and evaluation throughput at the reference configuration, on synthetic batches.

Reference configuration (issue: UniSAR in tf_keras): batch 1024 feed rows (+ 88 search rows),
1 + 4 candidates, 30 + 30 history, D = 64, KuaiSAR-scale vocabularies (673k items, 395k words,
50-word captions). The batches are synthetic (random ids with realistic fill: most history slots
used, 1–2 clicks per session, 3–6 query words), so the run needs no data; the cost per step does
not depend on the id values.

Variants are measured in the same process, one after another, and reported as examples/s and as
ratios to the first (the faithful default):

    .venv/bin/python benchmarks/bench_train.py --steps 10 --variants default,jit,no_l2,no_qi

The neighbour cost (issue 6) compares ``default`` with ``nbr`` (``unisar_nbr``: 10 full neighbour
slots per row, 15 items and 10 sessions each), ``sasrec`` with ``sasrec_nbr``, and ``eval`` with
``nbr_eval`` (scoring 512 × 100):

    .venv/bin/python benchmarks/bench_train.py --variants default,nbr,sasrec,sasrec_nbr,eval,nbr_eval

``--data_dir`` uses the first real batches (and neighbour payload) of a pipeline output and its
vocabulary instead: the synthetic payload's ids are all distinct, the worst case for the
per-unique-id item encoding; real payloads repeat popular items.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from typing import Dict

import jsr_tf  # noqa: F401
import numpy as np
import tensorflow as tf
import tf_keras as keras

from jsr_tf import features as F
from jsr_tf.config import preset
from jsr_tf.data import reader
from jsr_tf.data.vocab import Vocab
from jsr_tf.keys import Inputs
from jsr_tf.models import factory
from jsr_tf.models.unisar import UniSAR
from jsr_tf.training.trainer import model_tasks

ITEMS, WORDS, USERS = 673_414, 394_910, 22_698


def synthetic_vocab(rng: np.random.Generator) -> Vocab:
    captions = rng.integers(1, WORDS + 1, size=(ITEMS, F.MAX_CAPTION_WORDS), dtype=np.int64)
    lengths = rng.integers(0, F.MAX_CAPTION_WORDS + 1, size=ITEMS)
    captions[np.arange(F.MAX_CAPTION_WORDS)[None, :] >= lengths[:, None]] = F.RAW_PAD_ID
    categories = np.stack([rng.integers(1, 38, ITEMS), rng.integers(1, 297, ITEMS),
                           np.zeros(ITEMS, np.int64), np.zeros(ITEMS, np.int64)], axis=1)
    users = np.stack([rng.integers(0, 7, USERS), rng.integers(0, 4, USERS),
                      rng.integers(0, 8, USERS), rng.integers(0, 3, USERS)], axis=1)
    queries = rng.integers(1, WORDS + 1, size=(20_000, F.MAX_QUERY_WORDS), dtype=np.int64)
    queries[:, 6:] = F.RAW_PAD_ID
    return Vocab(item_ids=np.arange(1, ITEMS + 1, dtype=np.int64),
                 item_feed_count=np.ones(ITEMS, np.int64),
                 item_search_count=np.ones(ITEMS, np.int64),
                 item_first_seen=np.zeros(ITEMS, np.int64), item_categories=categories,
                 item_captions=captions, word_ids=np.arange(1, WORDS + 1, dtype=np.int64),
                 word_counts=np.ones(WORDS, np.int64),
                 user_ids=np.arange(1, USERS + 1, dtype=np.int64), user_features=users,
                 queries=queries)


def synthetic_batch(rng: np.random.Generator, rows: int, candidates: int,
                    task: int) -> Dict[str, tf.Tensor]:
    def ids(n, *shape):
        return rng.integers(1, n + 1, size=shape, dtype=np.int64)

    feed_len = rng.integers(20, 31, rows)
    search_len = rng.integers(10, 31, rows)
    slots = np.arange(30)[None, :]
    feed_items = np.where(slots < feed_len[:, None], ids(ITEMS, rows, 30), F.RAW_PAD_ID)
    feed_ts = np.where(feed_items >= 0, 1_684_700_000_000 + slots * 60_000, 0)
    search_ts = np.where(slots < search_len[:, None], 1_684_700_030_000 + slots * 60_000, 0)
    words = ids(WORDS, rows, 30, 50)
    words[:, :, 6:] = F.RAW_PAD_ID
    words[search_ts == 0] = F.RAW_PAD_ID
    clicks = ids(ITEMS, rows, 30, 5)
    clicks[:, :, 2:] = F.RAW_PAD_ID
    clicks[search_ts == 0] = F.RAW_PAD_ID
    query = ids(WORDS, rows, 50)
    query[:, 5:] = F.RAW_PAD_ID
    if task == F.Task.FEED:
        query[:] = F.RAW_PAD_ID
    batch = {
        F.USER_ID: ids(USERS, rows), F.TARGET_TS: np.full(rows, 1_684_800_000_000),
        F.FEED_ITEMS: feed_items, F.FEED_TS: feed_ts, F.SEARCH_TS: search_ts,
        F.SEARCH_HAS_CLICK: (search_ts > 0).astype(np.int64), F.SEARCH_WORDS: words,
        F.SEARCH_CLICKS: clicks, F.QUERY_WORDS: query,
        reader.CANDIDATES: ids(ITEMS, rows, candidates),
    }
    out = {k: tf.constant(v, tf.int64) for k, v in batch.items()}
    out[reader.LABEL] = tf.one_hot(tf.zeros([rows], tf.int32), candidates)
    return out


def synthetic_neighbours(rng: np.random.Generator, rows: int) -> Dict[str, tf.Tensor]:
    """Every slot filled: 5 feed-side + 5 search-side neighbours, 15 items and 10 sessions
    (4 words, 2 clicks) each, the worst case for the neighbour encoder."""
    k, lf, lq = F.MAX_NEIGHBOURS, F.NBR_FEED_ITEMS, F.NBR_SEARCH_SESSIONS
    words = rng.integers(1, WORDS + 1, size=(rows, k, lq, F.NBR_QUERY_WORDS), dtype=np.int64)
    words[..., 4:] = 0
    side = np.tile(np.repeat([F.NeighbourSide.FEED, F.NeighbourSide.SEARCH], k // 2), (rows, 1))
    return {
        F.NBR_SIDE: tf.constant(side, tf.int64),
        F.NBR_SIM: tf.constant(rng.uniform(0.02, 0.5, (rows, k)), tf.float32),
        F.NBR_REC_ITEMS: tf.constant(rng.integers(1, ITEMS + 1, (rows, k, lf)), tf.int64),
        F.NBR_SRC_WORDS: tf.constant(words, tf.int64),
        F.NBR_SRC_CLICKS: tf.constant(
            rng.integers(1, ITEMS + 1, (rows, k, lq, F.NBR_SESSION_CLICKS)), tf.int64),
    }


def real_batches(args):
    """Vocabulary, (feed, search, eval) batches without neighbour keys, and their neighbour
    tensors, from the first rows of ``args.data_dir`` (train feed/search, valid feed)."""
    from jsr_tf.data.vocab import load_vocab

    def first(split, task, rows):
        batch = next(iter(reader.make_dataset(args.data_dir, split, task, rows,
                                              shuffle_buffer=0, neighbours=True)))
        base = {k: v for k, v in batch.items() if k not in F.NEIGHBOUR_INPUTS}
        return base, {k: batch[k] for k in F.NEIGHBOUR_INPUTS}

    parts = [first("train", F.Task.FEED, args.batch_size),
             first("train", F.Task.SEARCH, args.search_batch_size),
             first("valid", F.Task.FEED, 512)]
    neighbours = dict(zip(("feed", "search", "eval"), (nbr for _, nbr in parts)))
    return load_vocab(args.data_dir), [base for base, _ in parts], neighbours


# variant -> (preset, overrides, uses neighbour inputs)
VARIANTS = {
    "default": ("unisar", [], False),
    "jit": ("unisar", ["train.jit_compile=true"], False),
    "no_l2": ("unisar", [], False),
    "no_qi": ("unisar", ["model.use_query_item_alignment=false"], False),
    "eval": ("unisar", [], False),
    "nbr": ("unisar_nbr", [], True),
    "nbr_eval": ("unisar_nbr", [], True),
    "sasrec": ("sasrec", [], False),
    "sasrec_nbr": ("sasrec_nbr", [], True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch_size", type=int, default=1024)
    parser.add_argument("--search_batch_size", type=int, default=88)
    parser.add_argument("--variants", default="default,jit,no_l2,no_qi,eval")
    parser.add_argument("--data_dir", default=None,
                        help="Use the first batches of this pipeline output (with its neighbour "
                             "payload, if any) and its vocabulary instead of synthetic ones.")
    parser.add_argument("--output", default=None)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    if args.data_dir:
        vocab, (feed, search, eval_batch), neighbours = real_batches(args)
    else:
        vocab = synthetic_vocab(rng)
        feed = synthetic_batch(rng, args.batch_size, 5, F.Task.FEED)
        search = synthetic_batch(rng, args.search_batch_size, 5, F.Task.SEARCH)
        eval_batch = synthetic_batch(rng, 512, 100, F.Task.FEED)
        neighbours = {"feed": synthetic_neighbours(rng, args.batch_size),
                      "search": synthetic_neighbours(rng, args.search_batch_size),
                      "eval": synthetic_neighbours(rng, 512)}
    results = []
    for variant in args.variants.split(","):
        name, overrides, with_nbr = VARIANTS[variant]
        config = preset(name).override(overrides)
        keras.utils.set_random_seed(1)
        if name == "unisar" or name == "unisar_nbr":
            model = UniSAR(config.model, vocab,
                           l2=0.0 if variant == "no_l2" else config.train.l2,
                           dynamic_shapes=not config.train.jit_compile)
        else:
            model = factory.build_model(config, vocab)

        def extra(key):
            return neighbours[key] if with_nbr else {}

        inputs = {Inputs.FEED.value: model.prepare({**feed, **extra("feed")}),
                  Inputs.SEARCH.value: model.prepare({**search, **extra("search")})}
        if F.Task.SEARCH not in model_tasks(model):
            inputs.pop(Inputs.SEARCH.value)  # feed-only baselines train on feed rows
        if variant.endswith("eval"):
            fn = tf.function(lambda b: model.score(b, F.Task.FEED))
            prepared = model.prepare({**eval_batch, **extra("eval")})
            step, rows = (lambda: fn(prepared)), 512
        else:
            model.compile(optimizer=keras.optimizers.Adam(1e-3, epsilon=1e-8),
                          jit_compile=config.train.jit_compile)
            model.compute_loss(inputs)
            train_fn = model.make_train_function()
            ds = tf.data.Dataset.from_tensors(inputs).repeat()
            iterator = iter(ds)
            step, rows = (lambda: train_fn(iterator)), args.batch_size
        for _ in range(args.warmup):
            out = step()
        tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, out)
        start = time.perf_counter()
        for _ in range(args.steps):
            out = step()
        tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, out)
        seconds = (time.perf_counter() - start) / args.steps
        row = {"variant": variant, "seconds_per_step": round(seconds, 3),
               "examples_per_s": round(rows / seconds, 1),
               "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
        results.append(row)
        print(json.dumps(row), flush=True)
        del model
    base = results[0]["examples_per_s"]
    for row in results:
        row["ratio_to_first"] = round(row["examples_per_s"] / base, 2)
    machine = {"machine": platform.platform(), "cpus": os.cpu_count(),
               "tensorflow": tf.__version__}
    print(json.dumps({"results": results, "machine": machine}))
    if args.output:
        with open(args.output, "w") as f:
            json.dump({"results": results, "machine": machine}, f, indent=2)


if __name__ == "__main__":
    main()
