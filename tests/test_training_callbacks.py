"""jsr_tf.training.callbacks on synthetic metric sequences (callbacks driven with fake logs)."""

import math

import numpy as np
import pytest

import jsr_tf  # noqa: F401
import tensorflow as tf
import tf_keras as keras

from jsr_tf.training import callbacks as cb

M = cb.MONITOR  # "val_mean_ndcg@5"


def _model(lr=1e-3):
    model = keras.Sequential([keras.layers.Dense(1, input_shape=(2,))])
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="mse")
    return model


def _drive(callback, values, model=None):
    """Runs epoch ends with ``logs = {M: v}``; returns the lr after each and the stop epoch."""
    model = model or _model()
    callback.set_model(model)
    lrs, stopped = [], None
    for epoch, value in enumerate(values):
        callback.on_epoch_end(epoch, {M: value})
        lrs.append(cb.get_learning_rate(model))
        if model.stop_training:
            stopped = epoch
            break
    return lrs, stopped


# -- reduce on plateau ---------------------------------------------------------------------------
def test_plateau_drops_after_the_fourth_bad_epoch_with_patience_3():
    # 0-based epoch 1 is best; epochs 2, 3, 4, 5 do not improve: the drop is at the end of epoch 5.
    values = [0.1, 0.2, 0.2, 0.19, 0.2, 0.1, 0.1, 0.1, 0.1, 0.1]
    lrs, _ = _drive(cb.TorchReduceLROnPlateau(patience=3), values)
    np.testing.assert_allclose(lrs[:5], 1e-3, rtol=1e-6)
    np.testing.assert_allclose(lrs[5:9], 1e-4, rtol=1e-5)  # count restarts after a drop
    np.testing.assert_allclose(lrs[9], 1e-5, rtol=1e-5)    # 4 more bad epochs: 6, 7, 8, 9


def test_plateau_improvement_resets_the_count():
    values = [0.1, 0.1, 0.1, 0.1, 0.2, 0.2, 0.2, 0.2, 0.2]
    lrs, _ = _drive(cb.TorchReduceLROnPlateau(patience=3), values)
    np.testing.assert_allclose(lrs[:8], 1e-3, rtol=1e-6)  # 3 bad, improve at 4, then 5..7 bad
    np.testing.assert_allclose(lrs[8], 1e-4, rtol=1e-5)


def test_plateau_relative_threshold():
    # 0.50004 < 0.5 * (1 + 1e-4): not an improvement; 0.50006 is.
    plateau = cb.TorchReduceLROnPlateau(patience=0, threshold=1e-4)
    lrs, _ = _drive(plateau, [0.5, 0.50004])
    np.testing.assert_allclose(lrs, [1e-3, 1e-4], rtol=1e-5)
    plateau = cb.TorchReduceLROnPlateau(patience=0, threshold=1e-4)
    lrs, _ = _drive(plateau, [0.5, 0.50006])
    np.testing.assert_allclose(lrs, [1e-3, 1e-3], rtol=1e-6)


def test_plateau_floors_at_min_lr():
    lrs, _ = _drive(cb.TorchReduceLROnPlateau(patience=0, min_lr=1e-6), [0.3, 0.2, 0.2, 0.2],
                    model=_model(lr=5e-6))
    np.testing.assert_allclose(lrs, [5e-6, 1e-6, 1e-6, 1e-6], rtol=1e-5)


def test_plateau_writes_the_epoch_lr_into_logs():
    plateau = cb.TorchReduceLROnPlateau(patience=0)
    plateau.set_model(_model())
    logs = {M: 0.1}
    plateau.on_epoch_end(0, logs)
    assert logs["lr"] == pytest.approx(1e-3)


def test_plateau_state_round_trip_continues_the_count():
    model = _model()
    first = cb.TorchReduceLROnPlateau(patience=3)
    _drive(first, [0.2, 0.1, 0.1, 0.1], model)  # 3 bad epochs so far
    state = first.get_state()
    second = cb.TorchReduceLROnPlateau(patience=3)
    second.set_model(_model(lr=0.5))
    second.set_state(state)  # also restores the lr
    assert cb.get_learning_rate(second.model) == pytest.approx(1e-3)
    second.on_epoch_end(4, {M: 0.1})  # the 4th bad epoch
    assert cb.get_learning_rate(second.model) == pytest.approx(1e-4)


def test_plateau_invalid_arguments():
    with pytest.raises(ValueError, match="`factor` should be in"):
        cb.TorchReduceLROnPlateau(factor=1.0)
    with pytest.raises(ValueError, match="`patience` should be >= 0"):
        cb.TorchReduceLROnPlateau(patience=-1)


# -- early stopping ------------------------------------------------------------------------------
def test_early_stopping_stops_when_best_is_patience_epochs_old():
    # 1-based: best at epoch 2; epoch 7 is 5 old -> stop after epoch 7 (the reference's rule:
    # best 16, stop after 21).
    values = [0.1, 0.5, 0.4, 0.3, 0.5, 0.2, 0.1, 0.1, 0.1, 0.1]
    early = cb.PatienceEarlyStopping(patience=5)
    _, stopped = _drive(early, values)
    assert stopped + 1 == 7
    assert early.stopped_epoch == stopped
    assert early.best_epoch + 1 == 2 and early.best == 0.5  # a tie (epoch 5) is no improvement


def test_early_stopping_age_restarts_on_improvement():
    values = [0.1, 0.2, 0.2, 0.3, 0.3, 0.3, 0.3]  # best at 1-based epoch 4; patience 2 -> stop at 6
    _, stopped = _drive(cb.PatienceEarlyStopping(patience=2), values)
    assert stopped + 1 == 6


def test_early_stopping_never_stops_while_improving():
    _, stopped = _drive(cb.PatienceEarlyStopping(patience=0), [0.1, 0.2, 0.3, 0.4])
    assert stopped is None


def test_missing_or_nan_metric_is_skipped():
    early = cb.PatienceEarlyStopping(patience=0)
    early.set_model(_model())
    early.on_epoch_end(0, {M: 0.5})
    early.on_epoch_end(1, {M: math.nan})
    early.on_epoch_end(2, {"loss": 1.0})
    assert not early.model.stop_training and early.best_epoch == 0


# -- best weights --------------------------------------------------------------------------------
def _set_all(model, value):
    model.set_weights([np.full_like(w, value) for w in model.get_weights()])


def test_best_weights_restores_the_best_epoch(tmp_path):
    model = _model()
    best = cb.BestWeights(str(tmp_path / "best" / "weights"))
    best.set_model(model)
    values = [0.1, 0.4, 0.3, 0.2]  # best: epoch index 1
    for epoch, value in enumerate(values):
        _set_all(model, float(epoch + 1))
        best.on_epoch_end(epoch, {M: value})
    assert best.best_epoch == 1
    _set_all(model, -7.0)
    best.on_train_end()
    for w in model.get_weights():
        np.testing.assert_array_equal(w, np.full_like(w, 2.0))
    assert tf.io.gfile.glob(str(tmp_path / "best" / "weights") + ".index")


def test_best_weights_deferred_save_waits_for_flush(tmp_path):
    path = str(tmp_path / "best" / "weights")
    best = cb.BestWeights(path, defer_save=True)
    best.set_model(_model())
    best.on_epoch_end(0, {M: 0.3})
    assert best.pending and not tf.io.gfile.glob(path + "*")
    best.flush()
    assert not best.pending and tf.io.gfile.glob(path + ".index")


# -- validation metrics --------------------------------------------------------------------------
def _validation(results):
    callback = cb.ValidationMetrics(lambda model: results)
    callback.set_model(_model())
    logs = {"loss": 1.0}
    callback.on_epoch_end(0, logs)
    return logs


def test_validation_metrics_write_task_and_mean_keys():
    logs = _validation({"feed": {"NDCG@5": 0.4, "HR@1": 0.25, "rows": 3},
                        "search": {"NDCG@5": 0.2, "HR@1": 0.5, "rows": 2}})
    assert logs["val_feed_ndcg@5"] == 0.4 and logs["val_search_ndcg@5"] == 0.2
    assert logs["val_feed_hr@1"] == 0.25
    assert logs[M] == pytest.approx(0.3)
    assert logs["loss"] == 1.0


def test_validation_metrics_single_task_mean_is_that_task():
    assert _validation({"feed": {"NDCG@5": 0.4, "rows": 3}})[M] == pytest.approx(0.4)
    # A task with no rows (NaN metrics) is not "present".
    logs = _validation({"feed": {"NDCG@5": 0.4, "rows": 3},
                        "search": {"NDCG@5": math.nan, "rows": 0}})
    assert logs[M] == pytest.approx(0.4)


def test_validation_metrics_without_the_selection_metric_fails():
    with pytest.raises(ValueError, match="no `ndcg@5`"):
        _validation({"feed": {"HR@1": 0.4, "rows": 3}})


# -- resumable backup (in process: an exception stands in for the kill) --------------------------
class _Interrupt(keras.callbacks.Callback):
    def __init__(self, epoch, batch):
        super().__init__()
        self.at = (epoch, batch)
        self.epoch = -1

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            raise RuntimeError("interrupted")


def _fit(backup_dir, best_path, extra=(), epochs=4):
    model = _model()
    model(np.zeros([1, 2], np.float32))
    scores = iter([0.1, 0.3, 0.2, 0.25, 0.2, 0.2])
    validation = cb.ValidationMetrics(lambda m: {"feed": {"NDCG@5": next(scores), "rows": 1}})
    plateau = cb.TorchReduceLROnPlateau(patience=0)
    early = cb.PatienceEarlyStopping(patience=5)
    best = cb.BestWeights(best_path, defer_save=True)
    history = cb.EpochHistory()
    backup = cb.ResumableBackup(backup_dir, {"plateau": plateau, "early_stopping": early,
                                             "best": best, "history": history},
                                save_steps=2, after_backup=[best.flush])
    x = tf.data.Dataset.from_tensors((np.ones([4, 2], np.float32),
                                      np.ones([4, 1], np.float32))).repeat()
    model.fit(x, epochs=epochs, steps_per_epoch=5, verbose=0,
              callbacks=[validation, plateau, early, best, history, *extra, backup])
    return model, validation, plateau, best, history, backup


def test_resumable_backup_resumes_mid_epoch_with_callback_state(tmp_path):
    backup_dir, best_path = str(tmp_path / "backup"), str(tmp_path / "best" / "weights")
    with pytest.raises(RuntimeError, match="interrupted"):
        # Backups at batches 1, 3 and the end of epoch 0, then batch 1 of epoch 1; dies at 2.
        _fit(backup_dir, best_path, extra=[_Interrupt(epoch=1, batch=2)])
    state = cb.latest_backup_state(backup_dir)
    assert (state["epoch"], state["batch"]) == (1, 1)
    assert [h["epoch"] for h in state["callbacks"]["history"]["epochs"]] == [1]

    # The resumed run's validation scores start again at the head of the script; what matters
    # is that the history and counters carried over.
    _, _, plateau, best, history, backup = _fit(backup_dir, best_path)
    assert backup.starts == [{"epoch": 1, "step": 0}, {"epoch": 2, "step": 2}]
    assert [h["epoch"] for h in history.epochs] == [1, 2, 3, 4]
    assert [h[M] for h in history.epochs] == [0.1, 0.1, 0.3, 0.2]
    assert best.best_epoch == 2  # 0-based epoch 2 scored 0.3
    # Epoch 0 (0.1) best; resumed epoch 1 (0.1) bad -> drop; 2 (0.3) good; 3 (0.2) bad -> drop.
    assert history.epochs[-1]["lr"] == pytest.approx(1e-4)
    assert plateau.final_lr == pytest.approx(1e-5)
    assert not tf.io.gfile.exists(backup_dir)  # removed after a normal end
