"""Training callbacks: validation metrics, PyTorch-rule plateau and early stopping, best weights,
and a resumable backup that carries their state across a killed run.

Epochs are 0-based inside callbacks (Keras's ``on_epoch_end(epoch)``) and 1-based in what the
trainer reports. Every selection decision reads ``val_mean_ndcg@5`` from ``logs`` and maximises it
(spec/evaluation.md §5).

Order in ``fit(callbacks=[...])`` matters, because each callback sees the ``logs`` the earlier
ones wrote: ``ValidationMetrics`` → ``TorchReduceLROnPlateau`` → ``PatienceEarlyStopping`` →
``BestWeights`` → ``EpochHistory`` → ``ResumableBackup`` → anything that only reads ``logs``
(``ModelCheckpoint``, ``TensorBoard``).

Stateful callbacks implement ``get_state() -> dict`` (JSON-able) and ``set_state(dict)``;
``ResumableBackup`` snapshots them next to every backup checkpoint, so a resumed run continues
with the plateau counter, the early-stopping age, the best value and the history it had.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import jsr_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TF loads)
import tensorflow as tf
import tf_keras as keras
from absl import logging

from jsr_tf import filenames as FN
from jsr_tf.training import strategy as strategy_lib

SELECTION_METRIC = "ndcg@5"
MONITOR = f"val_mean_{SELECTION_METRIC}"
LOGGED_METRICS = ("hr@1", "hr@5", "hr@10", "ndcg@5", "ndcg@10", "mrr")

EvaluateFn = Callable[[keras.Model], Mapping[str, Mapping[str, float]]]


def _is_better(current: float, best: float, threshold: float = 0.0) -> bool:
    """PyTorch ``mode="max", threshold_mode="rel"``: ``current > best * (1 + threshold)``."""
    return current > best * (1.0 + threshold)


def _monitored(logs: Optional[Mapping[str, Any]], monitor: str) -> Optional[float]:
    value = (logs or {}).get(monitor)
    if value is None:
        logging.warning("`%s` is not in the epoch logs (keys: %s): skipping.", monitor,
                        sorted(logs or {}))
        return None
    value = float(value)
    return None if math.isnan(value) else value


class ValidationMetrics(keras.callbacks.Callback):
    """Evaluates on the valid split at each epoch end and writes the metrics into ``logs``.

    For every task ``t`` the evaluator returns and every metric ``m`` of ``logged_metrics``
    (matched case-insensitively: ``NDCG@5`` → ``val_feed_ndcg@5``), writes ``val_{t}_{m}``, then
    ``val_mean_{selection_metric}``: the mean of the selection metric over the tasks present, i.e.
    returned with at least one row (a single-task model gets its own task's value).

    Args:
        evaluate_fn: ``model -> {"feed": {"NDCG@5": ...}, "search": {...}}``, e.g.
            ``evaluator.evaluate_model`` bound to the data dir and the ``valid`` split.
        selection_metric: The metric averaged into ``val_mean_*``.
        logged_metrics: Per-task metrics copied into ``logs`` (the selection metric always is).
    """

    def __init__(self, evaluate_fn: EvaluateFn, selection_metric: str = SELECTION_METRIC,
                 logged_metrics: Sequence[str] = LOGGED_METRICS) -> None:
        super().__init__()
        self.evaluate_fn = evaluate_fn
        self.selection_metric = selection_metric
        self.logged_metrics = tuple(logged_metrics)

    def on_epoch_end(self, epoch: int, logs: Optional[Dict[str, Any]] = None) -> None:
        if logs is None:
            return
        start = time.time()
        results = self.evaluate_fn(self.model)
        wanted = self.selection_metric.lower()
        selected = []
        for task, metrics in sorted(results.items()):
            if not isinstance(metrics, Mapping):
                continue
            values = {name.lower(): float(value) for name, value in metrics.items()
                      if isinstance(value, (int, float)) and not isinstance(value, bool)}
            for name in dict.fromkeys([m.lower() for m in self.logged_metrics] + [wanted]):
                if name in values:
                    logs[f"val_{task}_{name}"] = values[name]
            value = values.get(wanted)
            if value is not None and not math.isnan(value) and values.get("rows", 1) > 0:
                selected.append(value)
        if not selected:
            raise ValueError(f"The evaluator returned no `{self.selection_metric}` for any task "
                             f"with rows. Received: {results!r}")
        logs[f"val_mean_{wanted}"] = sum(selected) / len(selected)
        logs["val_seconds"] = time.time() - start


class TorchReduceLROnPlateau(keras.callbacks.Callback):
    """Reduce-on-plateau with PyTorch's rule (``torch.optim.lr_scheduler.ReduceLROnPlateau``).

    Maximises ``monitor``. An epoch improves iff ``current > best * (1 + threshold)`` (``rel``
    mode); otherwise it is bad. When the count of consecutive bad epochs exceeds ``patience``
    (``num_bad > patience``, not Keras's ``>=``) the learning rate becomes
    ``max(lr * factor, min_lr)`` and the count restarts. With ``patience=3`` the drop happens at
    the end of the 4th consecutive non-improving epoch. Writes ``lr`` (the rate the epoch ran
    with) into ``logs``, and keeps the rate training ended with in ``final_lr``.

    Args:
        monitor: Logged value to maximise.
        factor: LR multiplier, in (0, 1).
        patience: Bad epochs tolerated.
        threshold: Relative improvement that counts.
        min_lr: Floor of the learning rate.
    """

    def __init__(self, monitor: str = MONITOR, factor: float = 0.1, patience: int = 3,
                 threshold: float = 1e-4, min_lr: float = 1e-6) -> None:
        super().__init__()
        if not 0.0 < factor < 1.0:
            raise ValueError(f"`factor` should be in (0, 1). Received: `factor={factor}`")
        if patience < 0:
            raise ValueError(f"`patience` should be >= 0. Received: `patience={patience}`")
        self.monitor = monitor
        self.factor = factor
        self.patience = patience
        self.threshold = threshold
        self.min_lr = min_lr
        self.best = -math.inf
        self.num_bad_epochs = 0
        self.final_lr: Optional[float] = None

    def get_state(self) -> Dict[str, Any]:
        return {"best": self.best, "num_bad_epochs": self.num_bad_epochs,
                "lr": get_learning_rate(self.model) if self.model is not None else None}

    def set_state(self, state: Mapping[str, Any]) -> None:
        self.best = float(state["best"])
        self.num_bad_epochs = int(state["num_bad_epochs"])
        if state.get("lr") is not None and self.model is not None:
            set_learning_rate(self.model, float(state["lr"]))

    def on_epoch_end(self, epoch: int, logs: Optional[Dict[str, Any]] = None) -> None:
        lr = get_learning_rate(self.model)
        if logs is not None:
            logs["lr"] = lr
        current = _monitored(logs, self.monitor)
        if current is None:
            return
        if _is_better(current, self.best, self.threshold):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.num_bad_epochs > self.patience:
            new_lr = max(lr * self.factor, self.min_lr)
            if lr - new_lr > 1e-12:  # PyTorch's eps: no-op once at the floor
                set_learning_rate(self.model, new_lr)
                logging.info("Epoch %d: %s plateaued; learning rate %.3g -> %.3g.", epoch + 1,
                             self.monitor, lr, new_lr)
            self.num_bad_epochs = 0

    def on_train_end(self, logs: Optional[Dict[str, Any]] = None) -> None:
        # Read before BestWeights reloads the best checkpoint, whose optimizer state has the
        # learning rate of the best epoch.
        self.final_lr = get_learning_rate(self.model)


class PatienceEarlyStopping(keras.callbacks.Callback):
    """Stops training once the best epoch is ``patience`` epochs old (the reference's rule).

    Rule: after epoch ``e`` (any numbering), with ``b`` the last epoch whose ``monitor`` beat every
    earlier one (strictly greater), stop iff ``e - b >= patience``. This is the UniSAR reference's
    ``len(results) - argmax > early_stop`` (its log: best epoch 16, stopped after epoch 21, with
    patience 5). With ``patience=5`` and the best at epoch 2, training stops after epoch 7.
    Restoring the best weights is ``BestWeights``'s job, so it works across resumed runs too.

    Args:
        monitor: Logged value to maximise.
        patience: Epochs the best may age before training stops.
    """

    def __init__(self, monitor: str = MONITOR, patience: int = 5) -> None:
        super().__init__()
        if patience < 0:
            raise ValueError(f"`patience` should be >= 0. Received: `patience={patience}`")
        self.monitor = monitor
        self.patience = patience
        self.best = -math.inf
        self.best_epoch = -1
        self.stopped_epoch: Optional[int] = None

    def get_state(self) -> Dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch,
                "stopped_epoch": self.stopped_epoch}

    def set_state(self, state: Mapping[str, Any]) -> None:
        self.best = float(state["best"])
        self.best_epoch = int(state["best_epoch"])
        self.stopped_epoch = state.get("stopped_epoch")

    def on_epoch_end(self, epoch: int, logs: Optional[Dict[str, Any]] = None) -> None:
        current = _monitored(logs, self.monitor)
        if current is None:
            return
        if _is_better(current, self.best):
            self.best, self.best_epoch = current, epoch
        elif epoch - self.best_epoch >= self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True
            logging.info("Epoch %d: best %s was epoch %d; stopping.", epoch + 1, self.monitor,
                         self.best_epoch + 1)


class BestWeights(keras.callbacks.Callback):
    """Saves the weights of the best epoch and restores them when training ends.

    An epoch is best if its ``monitor`` is strictly greater than every earlier epoch's. Its
    weights go to ``path`` with ``model.save_weights`` (a TF checkpoint prefix; under a
    multi-worker strategy only the chief writes there). At ``on_train_end`` the model loads
    ``path`` back, so the test split is evaluated with the best epoch's weights. The checkpoint
    (TF format) also holds the optimizer, so its state, learning rate included, becomes the best
    epoch's too; ``TorchReduceLROnPlateau.final_lr`` keeps the last one.

    With ``defer_save=True`` the epoch end only records the decision and ``flush()`` writes the
    file; ``ResumableBackup`` calls ``flush()`` right after its backup, so the file never holds
    the weights of an epoch that a resumed run will redo.

    Args:
        path: Checkpoint prefix, e.g. ``os.path.join(model_dir, filenames.BEST_WEIGHTS)``.
        monitor: Logged value to maximise.
        defer_save: Wait for ``flush()`` instead of saving at the epoch end.
        restore_on_train_end: Load the best weights when training ends.
    """

    def __init__(self, path: str, monitor: str = MONITOR, defer_save: bool = False,
                 restore_on_train_end: bool = True) -> None:
        super().__init__()
        self.path = path
        self.monitor = monitor
        self.defer_save = defer_save
        self.restore_on_train_end = restore_on_train_end
        self.best = -math.inf
        self.best_epoch = -1
        self.pending = False

    def get_state(self) -> Dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "pending": self.pending}

    def set_state(self, state: Mapping[str, Any]) -> None:
        self.best = float(state["best"])
        self.best_epoch = int(state["best_epoch"])
        self.pending = bool(state["pending"])

    def on_epoch_end(self, epoch: int, logs: Optional[Dict[str, Any]] = None) -> None:
        current = _monitored(logs, self.monitor)
        if current is None or not _is_better(current, self.best):
            return
        self.best, self.best_epoch, self.pending = current, epoch, True
        if not self.defer_save:
            self.flush()

    def flush(self) -> None:
        """Writes the current weights if the last epoch was a new best."""
        if not self.pending:
            return
        strategy_lib.save_weights(self.model, self.path)
        self.pending = False

    def on_train_end(self, logs: Optional[Dict[str, Any]] = None) -> None:
        self.flush()
        if self.restore_on_train_end and self.best_epoch >= 0:
            strategy_lib.load_weights(self.model, self.path).expect_partial()
            logging.info("Restored the weights of epoch %d (%s = %.6f).", self.best_epoch + 1,
                         self.monitor, self.best)


class EpochHistory(keras.callbacks.Callback):
    """Per-epoch record of the logs (train loss, val metrics, lr) that survives resumed runs.

    Attributes:
        epochs: One dict per finished epoch: ``epoch`` (1-based), ``seconds`` and every numeric
            entry of the epoch's ``logs``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.epochs: List[Dict[str, Any]] = []
        self._epoch_start = 0.0

    def get_state(self) -> Dict[str, Any]:
        return {"epochs": self.epochs}

    def set_state(self, state: Mapping[str, Any]) -> None:
        self.epochs = list(state["epochs"])

    def on_epoch_begin(self, epoch: int, logs: Optional[Dict[str, Any]] = None) -> None:
        self._epoch_start = time.time()

    def on_epoch_end(self, epoch: int, logs: Optional[Dict[str, Any]] = None) -> None:
        record: Dict[str, Any] = {"epoch": epoch + 1,
                                  "seconds": round(time.time() - self._epoch_start, 3)}
        for key, value in (logs or {}).items():
            try:
                record[key] = float(value)
            except (TypeError, ValueError):
                continue
        self.epochs.append(record)


class ResumableBackup(keras.callbacks.BackupAndRestore):
    """``BackupAndRestore`` that also saves the other callbacks' state and backs up mid-epoch.

    What a backup holds: the TF checkpoint of ``BackupAndRestore`` (model weights, optimizer
    slots and iteration count, learning rate, the epoch and batch it was taken at), written to
    ``<backup_dir>/chief/ckpt-N``, plus ``<backup_dir>/state-N.json`` with ``get_state()`` of
    every ``stateful`` callback. The JSON is written *before* the checkpoint it belongs to, so the
    newest checkpoint always has its state file.

    When: every ``save_steps`` batches (not on an epoch's last batch) and at every epoch end,
    after the callbacks listed before this one have run. After each backup it calls every
    ``after_backup`` hook (``BestWeights.flush``).

    Resume: at ``on_train_begin`` the checkpoint is restored (Keras then starts ``fit`` at the
    saved epoch and the batch after the saved one, or at the next epoch after an epoch-end
    backup), the matching state file is loaded into the callbacks, and the ``after_backup``
    hooks run again (so a best epoch whose weights were not yet written gets them now). A
    restarted epoch draws its batches from a fresh input iterator, so a resumed run is not
    bit-identical to an uninterrupted one.

    ``delete_checkpoint=True``: the backup is removed when ``fit`` returns normally.

    Args:
        backup_dir: Directory used only by this callback.
        stateful: Callbacks with ``get_state``/``set_state``, keyed by a stable name.
        save_steps: Backup period in batches; 0 = epoch ends only.
        after_backup: Functions called after each backup and after a restore.
    """

    def __init__(self, backup_dir: str, stateful: Mapping[str, Any], save_steps: int = 0,
                 after_backup: Sequence[Callable[[], None]] = ()) -> None:
        if save_steps < 0:
            raise ValueError(f"`save_steps` should be >= 0. Received: `save_steps={save_steps}`")
        super().__init__(backup_dir, save_freq=save_steps or "epoch", delete_checkpoint=True)
        self.stateful = dict(stateful)
        self.save_steps = save_steps
        self.after_backup = list(after_backup)
        self.restored_from: Optional[str] = None
        self.starts: List[Dict[str, int]] = []

    def _state_path(self, number: int) -> str:
        return os.path.join(self.backup_dir, FN.BACKUP_STATE_FILE.format(number))

    def on_train_begin(self, logs: Optional[Dict[str, Any]] = None) -> None:
        super().on_train_begin(logs)
        latest = self._training_state.read_checkpoint_manager.latest_checkpoint
        if not latest:
            self.starts = [{"epoch": 1, "step": 0}]
            return
        path = self._state_path(int(latest.rsplit("-", 1)[1]))
        if not tf.io.gfile.exists(path):
            raise FileNotFoundError(f"Backup {latest!r} has no state file {path!r}: the backup "
                                    "directory is not from this trainer; delete it to restart.")
        with tf.io.gfile.GFile(path) as f:
            snapshot = json.load(f)
        for name, callback in self.stateful.items():
            callback.set_state(snapshot["callbacks"][name])
        self.restored_from = latest
        epoch, step = self._resume_point()
        self.starts = list(snapshot["starts"]) + [{"epoch": epoch + 1, "step": step}]
        logging.info("Resuming from %s at epoch %d, step %d.", latest, epoch + 1, step)
        for hook in self.after_backup:
            hook()

    def _resume_point(self) -> Tuple[int, int]:
        """0-based (epoch, step) where ``fit`` continues: Keras's rule for the restored counters."""
        epoch = int(self._training_state._ckpt_saved_epoch.numpy())
        batch = int(self._training_state._ckpt_saved_batch.numpy())
        steps = (self.params or {}).get("steps")
        if epoch < 0:
            return 0, 0
        if self.save_freq != "epoch" and batch >= 0 and (steps is None or batch < steps - 1):
            return epoch, batch + 1
        return epoch + 1, 0

    def on_train_batch_end(self, batch: int, logs: Optional[Dict[str, Any]] = None) -> None:
        steps = (self.params or {}).get("steps")
        if self.save_steps and steps and batch >= steps - 1:
            return  # the epoch-end backup covers the last batch, after the epoch-end callbacks
        super().on_train_batch_end(batch, logs)

    def on_epoch_end(self, epoch: int, logs: Optional[Dict[str, Any]] = None) -> None:
        if self.save_steps:  # the parent saves at epoch ends only in "epoch" mode
            self._batches_count = 0
            self._backup(epoch)
        else:
            super().on_epoch_end(epoch, logs)

    def _backup(self, epoch: int, batch: int = 0) -> None:
        manager = self._training_state.write_checkpoint_manager
        number = int(manager._checkpoint.save_counter.numpy()) + 1
        saved_batch = int(self._training_state._ckpt_saved_batch.numpy())
        snapshot = {"epoch": epoch, "batch": saved_batch, "starts": self.starts,
                    "callbacks": {name: cb.get_state() for name, cb in self.stateful.items()}}
        if strategy_lib.is_chief(self.model.distribute_strategy):
            write_json_atomic(self._state_path(number), snapshot)
        super()._backup(epoch, batch)
        if strategy_lib.is_chief(self.model.distribute_strategy):
            for old in tf.io.gfile.glob(os.path.join(self.backup_dir,
                                                     FN.BACKUP_STATE_FILE.format("*"))):
                if old != self._state_path(number):
                    tf.io.gfile.remove(old)
        for hook in self.after_backup:
            hook()

    def on_train_end(self, logs: Optional[Dict[str, Any]] = None) -> None:
        super().on_train_end(logs)
        if strategy_lib.is_chief(self.model.distribute_strategy):
            for old in tf.io.gfile.glob(os.path.join(self.backup_dir,
                                                     FN.BACKUP_STATE_FILE.format("*"))):
                tf.io.gfile.remove(old)
            if tf.io.gfile.isdir(self.backup_dir) and not tf.io.gfile.listdir(self.backup_dir):
                tf.io.gfile.rmtree(self.backup_dir)


def latest_backup_state(backup_dir: str) -> Optional[Dict[str, Any]]:
    """The state file of the newest backup in ``backup_dir`` (None when there is no backup).

    Keys: ``epoch`` (0-based epoch the backup was taken in), ``batch`` (last batch begun, -1 at
    an epoch-end backup in "epoch" mode), ``starts`` and ``callbacks`` (name -> ``get_state()``).
    """
    latest = tf.train.latest_checkpoint(os.path.join(backup_dir, "chief"))
    if not latest:
        return None
    path = os.path.join(backup_dir, f"state-{int(latest.rsplit('-', 1)[1])}.json")
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def write_json_atomic(path: str, obj: Any) -> None:
    """Writes JSON to ``path`` through a temporary file and a rename (no torn files)."""
    tf.io.gfile.makedirs(os.path.dirname(path))
    tmp = path + ".tmp"
    with tf.io.gfile.GFile(tmp, "w") as f:
        f.write(json.dumps(obj, indent=1, sort_keys=True, allow_nan=True))
    tf.io.gfile.rename(tmp, path, overwrite=True)


def get_learning_rate(model: keras.Model) -> float:
    """The optimizer's current learning rate."""
    return float(keras.backend.get_value(model.optimizer.learning_rate))


def set_learning_rate(model: keras.Model, value: float) -> None:
    """Assigns the optimizer's learning-rate variable."""
    model.optimizer.learning_rate = value
