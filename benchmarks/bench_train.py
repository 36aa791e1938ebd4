"""UniSAR training and evaluation throughput at the reference configuration, on synthetic batches.

Reference configuration (issue: UniSAR in tf_keras): batch 1024 feed rows (+ 88 search rows),
1 + 4 candidates, 30 + 30 history, D = 64, KuaiSAR-scale vocabularies (673k items, 395k words,
50-word captions). The batches are synthetic (random ids with realistic fill: most history slots
used, 1–2 clicks per session, 3–6 query words), so the run needs no data; the cost per step does
not depend on the id values.

Variants are measured in the same process, one after another, and reported as examples/s and as
ratios to the first (the faithful default). Each runs its steps as the trainer does, inside
``determinism.repeatable_sums(train.deterministic)``; ``nondeterministic`` is the default with
TensorFlow's own graph optimizer settings (issue 18):

    .venv/bin/python benchmarks/bench_train.py --steps 10 --variants default,jit,no_l2,no_qi

The neighbour cost (issue 6) compares ``default`` with ``nbr`` (``unisar_nbr``: 10 full neighbour
slots per row, 15 items and 10 sessions each), ``sasrec`` with ``sasrec_nbr``, and ``eval`` with
``nbr_eval`` (scoring 512 × 100):

    .venv/bin/python benchmarks/bench_train.py --variants default,nbr,sasrec,sasrec_nbr,eval,nbr_eval

UDITSR (issue 16) against UniSAR, alternately in one process (a variant may repeat):

    .venv/bin/python benchmarks/bench_train.py \
        --variants default,uditsr,default,uditsr,eval,uditsr_eval,eval,uditsr_eval

``--baseline_ref REF`` measures against another commit in the same run: each round runs the
``--baseline_variants`` (default: ``default``) of ``REF`` (its own ``bench_train.py``, from a
detached git worktree) and then this tree's variants, each in a fresh child process, and
reports the median examples/s of each and its ratio to the baseline's median of the same kind
(``eval`` variants to its ``eval``; issue 14: today's default = ``f0650d1``):

    .venv/bin/python benchmarks/bench_train.py --baseline_ref f0650d1 --rounds 2 \
        --variants default,no_qi --output bench_output/train.json

``--data_dir`` uses the first real batches (and neighbour payload) of a pipeline output and its
vocabulary instead: the synthetic payload's ids are all distinct, the worst case for the
per-unique-id item encoding; real payloads repeat popular items.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import jsr_tf  # noqa: F401
import numpy as np
import tensorflow as tf
import tf_keras as keras

from jsr_tf import features as F
from jsr_tf.config import preset
from jsr_tf.data import reader
from jsr_tf.data.vocab import Vocab
from jsr_tf.keys import Inputs
from jsr_tf.layers.transformer import set_block_jit
from jsr_tf.models import factory
from jsr_tf.models.unisar import UniSAR
from jsr_tf.training.determinism import repeatable_sums
from jsr_tf.training.trainer import make_optimizer, model_tasks

from benchmarks.machine import machine_info

ITEMS, WORDS, USERS = 673_414, 394_910, 22_698
SHAPE = F.DataShape()  # the reference configuration's sizes


def synthetic_vocab(rng: np.random.Generator) -> Vocab:
    width = SHAPE.caption_words
    captions = rng.integers(1, WORDS + 1, size=(ITEMS, width), dtype=np.int64)
    lengths = rng.integers(0, width + 1, size=ITEMS)
    captions[np.arange(width)[None, :] >= lengths[:, None]] = F.RAW_PAD_ID
    categories = np.stack([rng.integers(1, 38, ITEMS), rng.integers(1, 297, ITEMS),
                           np.zeros(ITEMS, np.int64), np.zeros(ITEMS, np.int64)], axis=1)
    users = np.stack([rng.integers(0, 7, USERS), rng.integers(0, 4, USERS),
                      rng.integers(0, 8, USERS), rng.integers(0, 3, USERS)], axis=1)
    queries = rng.integers(1, WORDS + 1, size=(20_000, SHAPE.query_words), dtype=np.int64)
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
    k, lf, lq = SHAPE.neighbour_slots, SHAPE.nbr_feed_items, SHAPE.nbr_search_sessions
    words = rng.integers(1, WORDS + 1, size=(rows, k, lq, SHAPE.nbr_query_words), dtype=np.int64)
    words[..., 4:] = 0
    side = np.tile(np.repeat([F.NeighbourSide.FEED, F.NeighbourSide.SEARCH], k // 2), (rows, 1))
    return {
        F.NBR_SIDE: tf.constant(side, tf.int64),
        F.NBR_SIM: tf.constant(rng.uniform(0.02, 0.5, (rows, k)), tf.float32),
        F.NBR_REC_ITEMS: tf.constant(rng.integers(1, ITEMS + 1, (rows, k, lf)), tf.int64),
        F.NBR_SRC_WORDS: tf.constant(words, tf.int64),
        F.NBR_SRC_CLICKS: tf.constant(
            rng.integers(1, ITEMS + 1, (rows, k, lq, SHAPE.nbr_session_clicks)), tf.int64),
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
    "uditsr": ("uditsr", [], False),
    "uditsr_eval": ("uditsr", [], False),
    # Named deviations (issue 14): measured, off by default, not part of the exact path.
    "qi256": ("unisar", ["model.num_qi_negatives=256"], False),
    "l2_rows": ("unisar", ["train.l2_rows_in_batch=true"], False),
    "block_jit": ("unisar", ["train.block_jit_compile=true"], False),
    "bf16": ("unisar", ["train.precision=mixed_bfloat16"], False),
    # TensorFlow's default graph optimizer (its AddN rewrite included): not repeatable (issue 18).
    "nondeterministic": ("unisar", ["train.deterministic=false"], False),
}
# Variants that only change TensorFlow's thread pools (run alone in a fresh process).
THREADS = {"inter1": 1}


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
    parser.add_argument("--baseline_ref", default=None,
                        help="Git commit whose default variant every round measures first, in a "
                             "fresh child process like each variant (see the module docstring).")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--baseline_variants", default="default",
                        help="Variants of --baseline_ref measured each round (e.g. default,eval).")
    args = parser.parse_args()
    if args.baseline_ref:
        against_baseline(args)
        return
    threads = [THREADS[v] for v in args.variants.split(",") if v in THREADS]
    if threads:  # before TensorFlow creates its thread pools
        tf.config.threading.set_inter_op_parallelism_threads(threads[0])

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
        name, overrides, with_nbr = VARIANTS["default" if variant in THREADS else variant]
        config = preset(name).override(overrides)
        keras.utils.set_random_seed(1)
        if name == "unisar" or name == "unisar_nbr":
            model = UniSAR(config.model, vocab,
                           l2=0.0 if variant == "no_l2" else config.train.l2,
                           dynamic_shapes=not config.train.jit_compile,
                           precision=config.train.precision)
        else:
            model = factory.build_model(config, vocab)
        set_block_jit(model, config.train.block_jit_compile)
        model.configure_training(config.train)  # as factory.build_model does

        def extra(key):
            return neighbours[key] if with_nbr else {}

        inputs = {Inputs.FEED.value: model.prepare({**feed, **extra("feed")}),
                  Inputs.SEARCH.value: model.prepare({**search, **extra("search")})}
        if F.Task.SEARCH not in model_tasks(model):
            inputs.pop(Inputs.SEARCH.value)  # feed-only baselines train on feed rows
        if variant.endswith("eval"):
            fn = tf.function(lambda b: model.score_prepared(b, F.Task.FEED))
            prepared = model.prepare({**eval_batch, **extra("eval")})
            step, rows = (lambda: fn(prepared)), 512
        else:
            model.compile(optimizer=make_optimizer(config, model),  # the trainer's own
                          jit_compile=config.train.jit_compile)
            model.loss_prepared(inputs)  # creates the variables
            train_fn = model.make_train_function()
            ds = tf.data.Dataset.from_tensors(inputs).repeat()
            iterator = iter(ds)
            step, rows = (lambda: train_fn(iterator)), args.batch_size
        with repeatable_sums(config.train.deterministic):  # as the trainer runs its steps
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
    report = {"results": results, "machine": machine_info()}
    print(json.dumps(report))
    if args.output:
        with open(args.output, "w") as f:
            json.dump(report, f, indent=2)


def baseline_worktree(ref: str) -> str:
    """A detached worktree of ``ref`` under the system temp dir (reused when it exists)."""
    commit = subprocess.run(["git", "rev-parse", ref], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout.strip()
    path = os.path.join(tempfile.gettempdir(), f"jsr-bench-baseline-{commit[:12]}")
    if not os.path.isdir(path):
        subprocess.run(["git", "worktree", "add", "--detach", path, commit], cwd=ROOT,
                       check=True, capture_output=True)
    return path


def child_run(tree: str, variant: str, args) -> Dict:
    """One variant of ``tree``'s bench_train.py in a fresh process: its result row."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        output = f.name
    cmd = [sys.executable, os.path.join(tree, "benchmarks", "bench_train.py"),
           "--variants", variant, "--steps", str(args.steps), "--warmup", str(args.warmup),
           "--batch_size", str(args.batch_size),
           "--search_batch_size", str(args.search_batch_size), "--output", output]
    env = dict(os.environ, PYTHONPATH=tree)
    done = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{variant} in {tree} failed:\n{done.stderr[-3000:]}")
    with open(output) as f:
        row = json.load(f)["results"][0]
    os.unlink(output)
    return row


def against_baseline(args) -> None:
    """Rounds of (baseline default, this tree's variants), each in a fresh child process."""
    tree = baseline_worktree(args.baseline_ref)
    runs: Dict[str, List[Dict]] = {}
    labels = [(f"{variant}@{args.baseline_ref}", tree, variant)
              for variant in args.baseline_variants.split(",")]
    labels += [(variant, ROOT, variant) for variant in args.variants.split(",")]
    for round_ in range(args.rounds):
        for label, where, variant in labels:
            row = child_run(where, variant, args)
            runs.setdefault(label, []).append(row)
            print(json.dumps({"round": round_, "label": label, **row}), flush=True)
    medians = {label: statistics.median(r["examples_per_s"] for r in rows)
               for label, rows in runs.items()}
    summary = []
    for label, rows in runs.items():
        # Ratio to the baseline of the same kind (training variants to its default, eval
        # variants to its eval), when the baseline measured one.
        kind = "eval" if label.split("@")[0].endswith("eval") else "default"
        base = medians.get(f"{kind}@{args.baseline_ref}")
        summary.append({"variant": label, "examples_per_s_median": round(medians[label], 1),
                        "examples_per_s_runs": [r["examples_per_s"] for r in rows],
                        "peak_rss_mib_max": max(r["peak_rss_mib"] for r in rows),
                        "ratio_to_baseline": round(medians[label] / base, 2) if base else None})
    report = {"baseline_ref": args.baseline_ref, "rounds": args.rounds, "steps": args.steps,
              "summary": summary, "runs": runs, "machine": machine_info()}
    print(json.dumps({"summary": summary, "machine": report["machine"]}, indent=1))
    if args.output:
        with open(args.output, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
