"""How the ``retrieve`` head compares to ranking 100 candidates, on one data dir.

For every test row (both tasks) the two-tower head scores the **whole catalogue** (history items
excluded, as ``retrieve`` does with ``exclude_history``) and the rank of the held-out target gives
Recall@K and NDCG@K over the catalogue. The same model and a ranker (UniSAR) are also scored on
the rows' 100 stored candidates with the package evaluator, so the three numbers sit side by side:

- ranker on 100 candidates (the offline protocol of spec/evaluation.md);
- two-tower on the same 100 candidates;
- two-tower over the catalogue (what a first stage actually faces).

Usage::

    python benchmarks/eval_retrieval.py --data_dir D --retrieval_dir R --ranker_dir U \\
        [--split test] [--output bench_output/retrieval.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from typing import Dict

import jsr_tf  # noqa: F401
import numpy as np
import tensorflow as tf

from jsr_tf import features as F
from jsr_tf.data import reader
from jsr_tf.evaluation import evaluator
from jsr_tf.models import factory

KS = (10, 50, 100, 500)


def catalogue_ranks(model, data_dir: str, split: str, task: int, batch_size: int = 256):
    """0-based rank of each row's target among all catalogue items minus its history."""
    ids, vectors = (t.numpy() for t in model.catalogue())
    position = {int(item): i for i, item in enumerate(ids)}
    ranks = []
    for batch in reader.make_dataset(data_dir, split, task, batch_size, shuffle_buffer=0):
        users = model.user_vectors(model.prepare(batch), task).numpy()
        scores = users @ vectors.T
        seen = np.concatenate([batch[F.FEED_ITEMS].numpy(),
                               batch[F.SEARCH_CLICKS].numpy().reshape(len(users), -1)], axis=1)
        targets = batch[reader.CANDIDATES].numpy()[:, 0]
        for row in range(len(users)):
            excluded = np.isin(ids, seen[row]) & (ids != targets[row])
            row_scores = np.where(excluded, -np.inf, scores[row])
            target = position.get(int(targets[row]))
            if target is None:  # target not in the vocabulary: counts as a miss
                ranks.append(len(ids))
                continue
            ranks.append(int((row_scores > row_scores[target]).sum()))
    return np.asarray(ranks)


def summarise(ranks: np.ndarray) -> Dict[str, float]:
    out = {"rows": int(ranks.size)}
    for k in KS:
        hit = ranks < k
        out[f"Recall@{k}"] = float(hit.mean())
        out[f"NDCG@{k}"] = float(np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0).mean())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--retrieval_dir", required=True, help="jsr-train --model two_tower run")
    parser.add_argument("--ranker_dir", required=True, help="jsr-train run of the ranker")
    parser.add_argument("--split", default="test")
    parser.add_argument("--output", default=os.path.join("bench_output", "retrieval.json"))
    args = parser.parse_args()
    start = time.time()
    retriever, _ = factory.load_trained(args.retrieval_dir, args.data_dir)
    ranker, _ = factory.load_trained(args.ranker_dir, args.data_dir)
    catalogue = int(retriever.catalogue()[0].shape[0])
    result = {"data_dir": args.data_dir, "split": args.split, "catalogue": catalogue, "tasks": {}}
    for task in F.Task:
        name = F.task_name(task)
        over_catalogue = summarise(catalogue_ranks(retriever, args.data_dir, args.split, task))
        on_100 = {}
        for label, model in (("two_tower", retriever), ("ranker", ranker)):
            record = evaluator.evaluate_model(model, data_dir=args.data_dir, split=args.split,
                                              tasks=[task], batch_size=512)
            on_100[label] = record[name]
        result["tasks"][name] = {"catalogue": over_catalogue, "candidates_100": on_100}
        print(f"{name}: two-tower over {catalogue} items {over_catalogue}")
        for label, metrics in on_100.items():
            print(f"{name}: {label} on 100 candidates "
                  f"NDCG@10 {metrics.get('NDCG@10', math.nan):.4f} "
                  f"HR@10 {metrics.get('HR@10', math.nan):.4f}")
    result["wall_s"] = time.time() - start
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    tf.get_logger().setLevel("ERROR")
    main()
