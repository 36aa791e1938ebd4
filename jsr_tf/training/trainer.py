"""``train(config, data_dir, model_dir)``: the training procedure of spec/unisar.md §10.

One call trains a model and leaves a complete run directory (DESIGN.md §5b)::

    <model_dir>/config.json          resolved ExperimentConfig (written once the inputs check out)
    <model_dir>/fingerprint.json     model name, config hash, vocabulary digest, variable shapes
    <model_dir>/best/weights*        weights of the best valid epoch (FN.BEST_WEIGHTS)
    <model_dir>/latest/weights*      weights after the latest epoch
    <model_dir>/backup/              BackupAndRestore state while training runs (removed at the end)
    <model_dir>/logs/                TensorBoard (train loss, val metrics, lr)
    <model_dir>/metrics.json         results record: training history + valid/test of the best model

Procedure: seed (``keras.utils.set_random_seed(train.seed)``; with ``train.deterministic``, the
default, every step and evaluation runs without Grappler's memory optimizer, so the same seed gives
the same weights: ``jsr_tf.training.determinism``), build the model from the factory
inside ``strategy.scope()`` and create its variables on one input batch, Adam with coupled L2 (the
model's ``train_step``) or AdamW (decoupled decay; the model's coupled L2 is then set to 0), then
``fit`` with, in this order: validation metrics, PyTorch-rule reduce-on-plateau, early stopping
(best more than ``early_stopping_patience`` epochs old), best-weights saver, history, the
resumable backup (every ``backup_steps`` steps and every epoch end), latest-epoch checkpoint and
TensorBoard. The best weights are restored at the end, the valid and test splits are evaluated
with them, and the results record is written.

Rerunning the same command after a crash resumes from the backup: mid-epoch, with the optimizer,
learning rate, plateau and early-stopping counters, best value and history of the killed run.
Nothing is written before the config, the data dir and the model dir check out
(``jsr_tf.training.run_dir``): a finished run, or an unfinished one with another config, is
refused unless ``overwrite``, which replaces it.
"""

from __future__ import annotations

import functools
import os
import time
from typing import Any, Dict, List, Optional, Sequence

import jsr_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TF loads)
import numpy as np
import tf_keras as keras
from absl import logging

from jsr_tf import features as F
from jsr_tf import filenames as FN
from jsr_tf.config import ExperimentConfig
from jsr_tf.data.vocab import load_vocab
from jsr_tf.layers.transformer import set_block_jit
from jsr_tf.models import base, factory
from jsr_tf.training import callbacks as cb
from jsr_tf.training import datasets, determinism, run_dir
from jsr_tf.training import strategy as strategy_lib
from jsr_tf.training.optimizers import FusedAdam

DEFAULT_BACKUP_STEPS = 500


def make_optimizer(config: ExperimentConfig, model: base.JsrModel) -> keras.optimizers.Optimizer:
    """Adam with the model's coupled L2, or AdamW with decoupled decay (model L2 set to 0).

    AdamW decays the same variables coupled L2 does (``base.decays``: not biases nor LayerNorm
    betas). Call after the model's variables exist.
    """
    train = config.train
    if train.optimizer == "adam":
        # adaptive_epsilon: eps is added to sqrt(v_hat), as in PyTorch's Adam (the reference).
        # FusedAdam: the same update as keras.optimizers.Adam, one kernel per dense variable.
        return FusedAdam(learning_rate=train.learning_rate, epsilon=train.adam_epsilon,
                         adaptive_epsilon=True)
    model.l2 = 0.0  # decoupled decay replaces the coupled L2 of JsrModel.train_step
    optimizer = keras.optimizers.AdamW(learning_rate=train.learning_rate,
                                       weight_decay=train.l2, epsilon=train.adam_epsilon)
    optimizer.exclude_from_weight_decay(
        var_list=[v for v in model.trainable_variables if not base.decays(v)])
    return optimizer




def profile_callback(model_dir: str, steps: Sequence[int]) -> keras.callbacks.TensorBoard:
    """A TensorBoard callback that traces steps ``first..last`` into ``<model_dir>/profile``.

    Raises:
        ValueError: Unless ``steps`` is two integers ``1 <= first <= last``.
    """
    steps = tuple(int(s) for s in steps)
    if len(steps) != 2 or not 1 <= steps[0] <= steps[1]:
        raise ValueError(f"profile steps should be FIRST,LAST with 1 <= FIRST <= LAST. "
                         f"Received: {steps}")
    return keras.callbacks.TensorBoard(os.path.join(model_dir, FN.PROFILE_DIR), histogram_freq=0,
                                       write_graph=False, profile_batch=steps)


def model_tasks(model: keras.Model) -> Sequence[int]:
    """Tasks a model trains on (``JsrModel.train_tasks``)."""
    return tuple(F.Task(t) for t in model.train_tasks)


def _validation_fn(data_dir: str, tasks: Sequence[int], batch_size: int):
    from jsr_tf.evaluation import evaluator

    return functools.partial(evaluator.evaluate_model, data_dir=data_dir,
                             split=F.Split.VALID.value, tasks=tasks, batch_size=batch_size)


def make_callbacks(config: ExperimentConfig, model_dir: str, evaluate_fn: cb.EvaluateFn,
                   backup_steps: int) -> Dict[str, keras.callbacks.Callback]:
    """The training callbacks by name, in ``fit`` order (see the module docstring)."""
    train = config.train
    plateau = cb.TorchReduceLROnPlateau(factor=train.plateau_factor,
                                        patience=train.plateau_patience,
                                        threshold=train.plateau_threshold,
                                        min_lr=train.min_learning_rate)
    early = cb.PatienceEarlyStopping(patience=train.early_stopping_patience)
    best = cb.BestWeights(os.path.join(model_dir, FN.BEST_WEIGHTS), defer_save=True)
    history = cb.EpochHistory()
    backup = cb.ResumableBackup(
        os.path.join(model_dir, FN.BACKUP_DIR),
        stateful={"plateau": plateau, "early_stopping": early, "best": best,
                  "history": history},
        save_steps=backup_steps, after_backup=[best.flush])
    out = {
        "validation": cb.ValidationMetrics(evaluate_fn),
        "plateau": plateau,
        "early_stopping": early,
        "best": best,
        "history": history,
        "backup": backup,
        "latest": keras.callbacks.ModelCheckpoint(os.path.join(model_dir, FN.LATEST_WEIGHTS),
                                                  save_weights_only=True, save_freq="epoch"),
    }
    if _tensorboard_installed():
        out["tensorboard"] = keras.callbacks.TensorBoard(os.path.join(model_dir, FN.LOGS_DIR))
    else:
        logging.warning("The `tensorboard` package is not installed: no TensorBoard logs "
                        "(pip install tensorboard). metrics.json still has the history.")
    return out


def _tensorboard_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


def train(config: ExperimentConfig, data_dir: str, model_dir: str,
          strategy_name: str = "default", verbose: int = 1,
          backup_steps: Optional[int] = None,
          protocol_list: Optional[Sequence[str]] = None,
          full: Optional[Any] = None, overwrite: bool = False,
          profile_steps: Optional[Sequence[int]] = None) -> Dict[str, Any]:
    """Trains ``config`` on ``data_dir`` into ``model_dir`` (resuming a killed run there).

    Args:
        config: The resolved experiment config.
        data_dir: Pipeline output directory.
        model_dir: Run directory (created).
        strategy_name: ``default | mirrored | multi_worker | tpu``.
        verbose: ``fit`` verbosity (0 silent, 1 progress bar, 2 one line per epoch).
        backup_steps: Backup period in steps (besides every epoch end); default
            ``min(500, steps_per_epoch)``; 0 = epoch ends only.
        protocol_list: Evaluation protocols of the final test evaluation
            (``jsr_tf.evaluation.protocols``; default ``sampled`` only). Valid is evaluated under
            ``sampled`` (the selection protocol).
        full: ``evaluator.FullOptions`` of the ``full`` protocol.
        overwrite: Replace a finished run, or an unfinished one with another config, in
            ``model_dir`` (its run files only) instead of refusing.
        profile_steps: ``(first, last)`` steps (1-based, of the first epoch) to trace with the
            TensorFlow profiler into ``<model_dir>/profile`` (open with TensorBoard's Profile
            tab); None traces nothing.

    Returns:
        The results record written to ``<model_dir>/metrics.json``.

    Raises:
        run_dir.RunDirError: ``model_dir`` holds a run this call must not modify.
        FileNotFoundError, ValueError: Bad inputs (checked before anything is written).
    """
    config = config.validate()
    with determinism.repeatable_sums(config.train.deterministic):
        return _train(config, data_dir, model_dir, strategy_name, verbose, backup_steps,
                      protocol_list, full, overwrite, profile_steps)


def _train(config: ExperimentConfig, data_dir: str, model_dir: str, strategy_name: str,
           verbose: int, backup_steps: Optional[int], protocol_list: Optional[Sequence[str]],
           full: Optional[Any], overwrite: bool,
           profile_steps: Optional[Sequence[int]]) -> Dict[str, Any]:
    """``train``'s body, run inside ``determinism.repeatable_sums`` when configured."""
    from jsr_tf.evaluation import evaluator, report

    start = time.time()
    keras.utils.set_random_seed(config.train.seed)
    strategy = strategy_lib.make_strategy(strategy_name)
    chief = strategy_lib.is_chief(strategy)
    profiler = None if profile_steps is None else profile_callback(model_dir, profile_steps)
    target = run_dir.check_target(model_dir, config, overwrite)
    vocab = load_vocab(data_dir)

    with strategy.scope():
        model = factory.build_model(config, vocab)
        if config.train.block_jit_compile:
            set_block_jit(model, True)
        if strategy_name == "tpu":
            model.use_fixed_shapes()  # TPUs compile the step: fixed shapes only
        tasks = model_tasks(model)
        train_input = datasets.make_train_input(config, data_dir, tasks,
                                                strategy.num_replicas_in_sync)
        # Variables come from one batch of a separate, unshuffled input (a second iterator of
        # train_input.dataset would make its order irreproducible).
        sample = next(iter(datasets.make_train_input(
            config, data_dir, tasks, strategy.num_replicas_in_sync, shuffle=False).dataset))
        model.compute_loss(sample, training=False)  # creates every variable the loss uses
        model.built = True  # a subclassed model is "built" by __call__, which fit never needs
        del sample
        model.compile(optimizer=make_optimizer(config, model),
                      jit_compile=config.train.jit_compile)
    if chief:  # every input has been read: only now touch the model dir
        if target == run_dir.Target.REPLACE:
            logging.info("--overwrite: replacing the run in %s", model_dir)
            run_dir.clear(model_dir)
        factory.save_config(config, model_dir)
        factory.save_fingerprint(model, config, vocab, model_dir)
    # Raw batches: ``JsrModel.fit`` runs the id lookups (which XLA cannot compile) in the input
    # pipeline.
    train_dataset = train_input.dataset
    steps = train_input.steps_per_epoch
    if backup_steps is None:
        backup_steps = min(DEFAULT_BACKUP_STEPS, steps)
    trained_tasks = [t for t in tasks if F.task_name(t) in train_input.batch_sizes]
    callbacks = make_callbacks(config, model_dir,
                               _validation_fn(data_dir, trained_tasks,
                                              config.train.eval_batch_size),
                               backup_steps)
    fit_callbacks = list(callbacks.values())
    if profiler is not None:
        fit_callbacks.append(profiler)
    epochs = config.train.epochs
    resumed = cb.latest_backup_state(os.path.join(model_dir, FN.BACKUP_DIR))
    if resumed is not None:
        stopped = resumed["callbacks"]["early_stopping"].get("stopped_epoch")
        if stopped is not None:  # killed after early stopping decided: finish without training
            epochs = min(epochs, int(stopped) + 1)
        logging.info("Found a backup taken in epoch %d: resuming.", resumed["epoch"] + 1)
    logging.info("Training %s: %d steps/epoch, batches %s, %d replica(s), up to %d epochs.",
                 config.model.name, steps, train_input.batch_sizes,
                 strategy.num_replicas_in_sync, epochs)
    model.fit(train_dataset, epochs=epochs, steps_per_epoch=steps,
              callbacks=fit_callbacks, verbose=verbose)
    # BestWeights.on_train_end has restored the best epoch's weights.

    best, early, history = callbacks["best"], callbacks["early_stopping"], callbacks["history"]
    history_epochs: List[Dict[str, Any]] = history.epochs
    training = {
        "strategy": strategy_name,
        "num_replicas": strategy.num_replicas_in_sync,
        "best_epoch": best.best_epoch + 1,
        "best_val_mean_ndcg@5": best.best,
        "epochs_run": len(history_epochs),
        "stopped_early": early.stopped_epoch is not None,
        "final_lr": callbacks["plateau"].final_lr,
        "steps_per_epoch": steps,
        "batch_sizes": train_input.batch_sizes,
        "train_examples": train_input.num_examples,
        "params": int(sum(np.prod(v.shape) for v in model.trainable_variables)),
        "starts": callbacks["backup"].starts,
        "history": history_epochs,
        "train_wall_time_s": time.time() - start,
    }
    record = report.results_record(model=config.model.name, preset=config.preset, config=config,
                                   data_dir=data_dir, seed=config.train.seed, splits={},
                                   **training)
    if not chief:  # the chief evaluates and writes the record
        return record
    cb.write_json_atomic(os.path.join(model_dir, FN.METRICS_FILE), record)
    for split in (F.Split.VALID.value, F.Split.TEST.value):
        is_test = split == F.Split.TEST.value
        record = evaluator.evaluate_run(
            model_dir, data_dir, split, model=model, batch_size=config.train.eval_batch_size,
            write=False, protocol_list=protocol_list if is_test else None,
            full=full or evaluator.FullOptions())
        record.update(training)
        record["wall_time_s"] = time.time() - start
        record = report.jsonable(record)
        cb.write_json_atomic(os.path.join(model_dir, FN.METRICS_FILE), record)
    logging.info("Best epoch %d of %d; test NDCG@5 %s", training["best_epoch"],
                 len(history_epochs),
                 {t: m.get("NDCG@5") for t, m in record.get("test", {}).get("metrics", {}).items()})
    return record
