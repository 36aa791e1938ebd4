"""Two-step training under MirroredStrategy (2 logical CPUs) and MultiWorkerMirroredStrategy
(2 worker processes on localhost), each in subprocesses so this process's TF state is untouched;
and ``make_strategy``'s errors (in process: they fail before touching devices)."""

import json
import os
import socket
import subprocess
import sys

import pytest

import jsr_tf  # noqa: F401
import tensorflow as tf

from jsr_tf import filenames as FN
from jsr_tf.training import strategy as strategy_lib
from tests import training_doubles as T

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT_S = 240


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return T.write_data(str(tmp_path_factory.mktemp("distribution")))


MODELS = [T.SAFE, T.UNISAR]  # a test double and the real UniSAR


def _command(data_dir, model_dir, strategy, model=T.SAFE):
    # SafeTinyModel: Keras Loss objects with AUTO reduction refuse to run under a strategy.
    return [sys.executable, "-m", "tests.training_doubles", "--data_dir", data_dir,
            "--model_dir", model_dir, "--model", model, "--strategy", strategy,
            "--epochs", "1", "--override", "train.steps_per_epoch=2", "--verbose", "2"]


def _env(**extra):
    env = dict(os.environ)
    env.pop("TF_CONFIG", None)
    env.update(PYTHONPATH=ROOT, **extra)
    return env


def _record(model_dir):
    with open(os.path.join(model_dir, FN.METRICS_FILE)) as f:
        return json.load(f)


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_mirrored_two_logical_cpus(data_dir, tmp_path, model):
    model_dir = str(tmp_path / "mirrored")
    result = subprocess.run(_command(data_dir, model_dir, "mirrored", model), cwd=ROOT,
                            env=_env(JSR_TEST_LOGICAL_CPUS="2"), capture_output=True, text=True,
                            timeout=TIMEOUT_S)
    assert result.returncode == 0, result.stderr[-4000:]
    record = _record(model_dir)
    assert record["strategy"] == "mirrored" and record["num_replicas"] == 2
    assert record["batch_sizes"] == {"feed": 2, "search": 2}  # search rounded up to 2 replicas
    assert record["epochs_run"] == 1 and "test" in record


def _free_ports(n):
    sockets = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("localhost", 0))
        sockets.append(s)
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_multi_worker_two_processes(data_dir, tmp_path, model):
    model_dir = str(tmp_path / "multi_worker")
    cluster = {"worker": [f"localhost:{port}" for port in _free_ports(2)]}
    workers, logs = [], []
    try:
        for index in range(2):
            tf_config = json.dumps({"cluster": cluster,
                                    "task": {"type": "worker", "index": index}})
            log = open(tmp_path / f"worker{index}.log", "w+")
            logs.append(log)
            workers.append(subprocess.Popen(
                _command(data_dir, model_dir, "multi_worker", model), cwd=ROOT,
                env=_env(TF_CONFIG=tf_config), stdout=log, stderr=subprocess.STDOUT, text=True))
        codes = [w.wait(timeout=TIMEOUT_S) for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()
    outputs = []
    for log in logs:
        log.seek(0)
        outputs.append(log.read())
        log.close()
    assert codes == [0, 0], "\n\n".join(o[-3000:] for o in outputs)
    record = _record(model_dir)  # written by the chief (worker 0)
    assert record["strategy"] == "multi_worker" and record["num_replicas"] == 2
    assert record["epochs_run"] == 1 and "test" in record


# -- make_strategy -------------------------------------------------------------------------------
def test_default_strategy():
    strategy = strategy_lib.make_strategy("default")
    assert strategy is tf.distribute.get_strategy()
    assert strategy_lib.is_chief(strategy)


def test_unknown_strategy():
    with pytest.raises(ValueError, match="`strategy` should be one of"):
        strategy_lib.make_strategy("parameter_server")


def test_multi_worker_needs_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="needs the TF_CONFIG"):
        strategy_lib.make_strategy("multi_worker")
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["localhost:1"]},
                                                "task": {"type": "worker", "index": 3}}))
    with pytest.raises(ValueError, match="outside its cluster"):
        strategy_lib.make_strategy("multi_worker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="TF_CONFIG should hold"):
        strategy_lib.make_strategy("multi_worker")


def test_tpu_without_a_tpu_fails_clearly(monkeypatch):
    monkeypatch.delenv("TPU_NAME", raising=False)
    with pytest.raises(RuntimeError, match="No TPU reachable"):
        strategy_lib.make_strategy("tpu")
