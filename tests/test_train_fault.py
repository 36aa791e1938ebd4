"""Fault tolerance: SIGKILL ``jsr-train`` mid-epoch, rerun the same command, and it resumes."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from jsr_tf import filenames as FN
from jsr_tf.training import callbacks as cb
from tests import training_doubles as T

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 1500        # steps per epoch: several seconds of TinyModel steps, so the kill is mid-epoch
BACKUP_STEPS = 100


def _command(data_dir, model_dir):
    return [sys.executable, "-m", "tests.training_doubles", "--data_dir", data_dir,
            "--model_dir", model_dir, "--model", T.TINY, "--epochs", "2",
            "--override", f"train.steps_per_epoch={STEPS}", "--backup_steps", str(BACKUP_STEPS),
            "--verbose", "0"]


def _wait_for_mid_epoch_backup(process, backup_dir, timeout_s=180.0):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if process.poll() is not None:
            pytest.fail(f"training exited (rc {process.returncode}) before a backup was seen")
        try:
            state = cb.latest_backup_state(backup_dir)
        except (ValueError, OSError):  # caught mid-write
            state = None
        if state is not None and state["epoch"] == 0 and state["batch"] >= 0:
            return state
        time.sleep(0.05)
    pytest.fail("no BackupAndRestore checkpoint appeared in time")


def test_killed_run_resumes_mid_epoch(tmp_path):
    data_dir = T.write_data(str(tmp_path / "fixture"))
    model_dir = str(tmp_path / "model")
    backup_dir = os.path.join(model_dir, FN.BACKUP_DIR)
    env = dict(os.environ, PYTHONPATH=ROOT)
    log = open(tmp_path / "first.log", "wb")
    first = subprocess.Popen(_command(data_dir, model_dir), cwd=ROOT, env=env, stdout=log,
                             stderr=subprocess.STDOUT)
    try:
        _wait_for_mid_epoch_backup(first, backup_dir)
        os.kill(first.pid, signal.SIGKILL)
        assert first.wait(timeout=30) == -signal.SIGKILL
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
        log.close()
    killed_at = cb.latest_backup_state(backup_dir)
    assert killed_at is not None and killed_at["epoch"] == 0, killed_at
    assert not os.path.exists(os.path.join(model_dir, FN.METRICS_FILE))

    second = subprocess.run(_command(data_dir, model_dir), cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-4000:]
    assert "Resuming from" in second.stderr

    with open(os.path.join(model_dir, FN.METRICS_FILE)) as f:
        record = json.load(f)
    first_start, resumed = record["starts"]
    assert first_start == {"epoch": 1, "step": 0}
    # Resumed in epoch 1 right after the newest backup (at least the first one), not at step 0.
    assert resumed["epoch"] == 1 and resumed["step"] >= killed_at["batch"] + 1 >= BACKUP_STEPS
    assert [h["epoch"] for h in record["history"]] == [1, 2]
    assert record["epochs_run"] == 2 and "test" in record
    assert not os.path.exists(backup_dir)
