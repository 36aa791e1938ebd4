"""Loss helpers: ``mean_bce`` of a task batch, the stateless InfoNCE negative draw
``infonce_negatives`` (keyed by ``(seed, optimizer step)``), the joint ``joint_loss``
(``L_feed + search_loss_weight · L_search``, weight 1 for a search-only step) with
``check_joint_inputs``, and ``single_task_batch`` for the one-task models.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Mapping, Tuple

import jsr_tf  # noqa: F401
import tensorflow as tf
import tensorflow_recommenders as tfrs
import tf_keras as keras

from jsr_tf import features as F
from jsr_tf.data import reader
from jsr_tf.data.vocab import NUM_RESERVED
from jsr_tf.keys import Inputs
from jsr_tf.models.parts import Batch


def mean_bce(task: tfrs.tasks.Ranking, batch: Batch, logits: tf.Tensor,
             training: bool) -> tf.Tensor:
    """Mean BCE of ``logits (B, C)`` against the batch's labels over all ``B × C`` entries.

    Args:
        task: A ``bce_ranking_task`` (its metrics are updated when not training).
        batch: The task batch (``reader.LABEL`` float ``(B, C)``).
        logits: Float ``(B, C)``.
        training: Training step (no metric updates).
    """
    labels = batch[reader.LABEL]
    return tf.reduce_mean(task(labels=labels[..., None], predictions=logits[..., None],
                               compute_metrics=not training))


def optimizer_step(model: keras.Model) -> tf.Tensor:
    """The model optimizer's step counter, or 0 before ``compile``."""
    optimizer = getattr(model, "optimizer", None)
    return optimizer.iterations if optimizer is not None else tf.constant(0, tf.int64)


def infonce_negatives(seed: int, step: tf.Tensor, num_negatives: int, num_items: int,
                      queries: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """One query–item InfoNCE draw: uniform items and queries without replacement.

    Stateless and keyed by ``(seed, step)``: the same step draws the same negatives, also after
    a resume from a backup, and under XLA.

    Args:
        seed: The model's seed.
        step: Integer scalar, the optimizer step (``optimizer_step``).
        num_negatives: Draws of each kind (fewer when the pool is smaller).
        num_items: Rows of the item table (the reserved pad and OOV rows are never drawn).
        queries: int64 ``[num_queries, W]`` dense word indices (``query_table``).

    Returns:
        ``(items, queries)``: int64 ``(k_i,)`` dense item indices and int64 ``(k_q, W)``.
    """
    n_items = max(num_items - NUM_RESERVED, 1)
    n_queries = int(queries.shape[0])
    key = tf.stack([tf.constant(seed, tf.int64), tf.cast(step, tf.int64)])
    item_keys = tf.random.stateless_uniform([n_items], seed=key)
    items = tf.math.top_k(item_keys, k=min(num_negatives, n_items)).indices + NUM_RESERVED
    query_keys = tf.random.stateless_uniform([n_queries], seed=key + [1, 0])
    drawn = tf.gather(queries, tf.math.top_k(query_keys, k=min(num_negatives, n_queries)).indices)
    return tf.cast(items, tf.int64), drawn


def check_joint_inputs(inputs: Mapping[str, Batch]) -> None:
    """Raises ``ValueError`` unless ``inputs`` holds a feed or a search batch."""
    if Inputs.FEED not in inputs and Inputs.SEARCH not in inputs:
        raise ValueError(f"`inputs` should have the key `{Inputs.FEED.value}` or "
                         f"`{Inputs.SEARCH.value}`. Received: keys {sorted(inputs)}")


def joint_loss(inputs: Mapping[str, Batch], task_loss: Callable[..., Dict[str, tf.Tensor]],
               search_loss_weight: float, **kwargs: Any) -> tf.Tensor:
    """``L_feed + search_loss_weight · L_search`` over the task batches present.

    The search weight balances the two tasks; a search-only step keeps weight 1, so the coupled
    L2 is not relatively stronger. No batch at all gives 0 (see ``check_joint_inputs``).

    Args:
        inputs: ``{Inputs.FEED: batch, Inputs.SEARCH: batch}``, either may be absent.
        task_loss: ``task_loss(batch, task, **kwargs)`` → dict with the scalar ``total`` of one
            task's batch (a model's ``task_loss``).
        search_loss_weight: Weight of the search loss next to a feed loss.
        **kwargs: Passed to every ``task_loss`` call (``training``, shared negatives).
    """
    total = 0.0
    if Inputs.FEED in inputs:
        total += task_loss(inputs[Inputs.FEED], F.Task.FEED, **kwargs)["total"]
    if Inputs.SEARCH in inputs:
        weight = search_loss_weight if Inputs.FEED in inputs else 1.0
        total += weight * task_loss(inputs[Inputs.SEARCH], F.Task.SEARCH, **kwargs)["total"]
    return total


def single_task_batch(inputs: Mapping[str, Batch], key: Inputs, model_name: str) -> Batch:
    """The batch of a model that trains on one task only, or ``ValueError`` if it is absent."""
    if key not in inputs:
        raise ValueError(f"{model_name} trains on the {key.value} task only: `inputs` should "
                         f"have the key `{key.value}`. Received: keys {sorted(inputs)}")
    return inputs[key]
