"""jsr_tf.training.trainer end to end with TinyModel on the golden fixture, plus the input builder
and the CLI's config resolution."""

import json
import os

import numpy as np
import pytest

import jsr_tf  # noqa: F401
import tensorflow as tf
import tf_keras as keras

from jsr_tf import config as C
from jsr_tf import features as F
from jsr_tf.cli import train as cli
from jsr_tf.data.vocab import load_vocab
from jsr_tf.evaluation import evaluator
from jsr_tf.models import base, factory
from jsr_tf.training import datasets, trainer
from jsr_tf.training.optimizers import FusedAdam
from tests import training_doubles as T

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return T.write_data(str(tmp_path_factory.mktemp("trainer")))


@pytest.fixture(scope="module")
def run(data_dir, tmp_path_factory):
    model_dir = str(tmp_path_factory.mktemp("run") / "model")
    record = trainer.train(C.preset(T.TINY), data_dir, model_dir, verbose=0,
                           profile_steps=(2, 2))
    return model_dir, record


def _weights(prefix):
    reader = tf.train.load_checkpoint(prefix)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name.endswith("VARIABLE_VALUE") and not name.startswith("optimizer")}


# -- the run directory ---------------------------------------------------------------------------
def test_config_json_is_the_resolved_config(run):
    model_dir, _ = run
    assert factory.load_config(model_dir) == C.preset(T.TINY)


def test_metrics_json_keys(run):
    model_dir, record = run
    with open(os.path.join(model_dir, evaluator.METRICS_FILE)) as f:
        written = json.load(f)
    assert written == record
    for key in ("model", "preset", "config_sha256", "seed", "device", "data", "best_epoch",
                "epochs_run", "final_lr", "history", "wall_time_s", "train_wall_time_s",
                "stopped_early", "valid", "test"):
        assert key in written, key
    assert written["epochs_run"] == 3 and not written["stopped_early"]
    assert written["starts"] == [{"epoch": 1, "step": 0}]
    assert [h["epoch"] for h in written["history"]] == [1, 2, 3]
    for entry in written["history"]:
        for key in ("loss", "lr", "val_feed_ndcg@5", "val_search_ndcg@5", "val_mean_ndcg@5"):
            assert key in entry, key
    best = max(written["history"], key=lambda h: h["val_mean_ndcg@5"])
    assert written["best_epoch"] == best["epoch"]
    for split in ("valid", "test"):
        for task in ("feed", "search"):
            assert 0.0 <= written[split]["metrics"][task]["NDCG@5"] <= 1.0
    # The valid entry is the restored best model's: it repeats the best epoch's numbers.
    assert written["valid"]["metrics"]["feed"]["NDCG@5"] == pytest.approx(best["val_feed_ndcg@5"])


def test_run_dir_layout(run):
    model_dir, _ = run
    assert tf.io.gfile.glob(os.path.join(model_dir, factory.BEST_WEIGHTS) + ".index")
    assert tf.io.gfile.glob(os.path.join(model_dir, trainer.LATEST_WEIGHTS) + ".index")
    assert tf.io.gfile.glob(os.path.join(model_dir, trainer.LOGS_DIR, "train", "events.*"))
    assert not tf.io.gfile.exists(os.path.join(model_dir, trainer.BACKUP_DIR))
    # --profile 2,2: one traced step, in TensorBoard's profile layout
    assert tf.io.gfile.glob(os.path.join(model_dir, trainer.PROFILE_DIR, "plugins", "profile",
                                         "*", "*.xplane.pb"))


@pytest.mark.parametrize("steps", [(0, 1), (3, 2), (1, 2, 3)])
def test_profile_steps_are_checked(steps):
    with pytest.raises(ValueError, match="FIRST,LAST"):
        trainer.profile_callback("/tmp/unused", steps)


def test_best_weights_load_with_load_trained(run, data_dir):
    model_dir, record = run
    model, config = factory.load_trained(model_dir, data_dir)
    assert config.model.name == T.TINY
    results = evaluator.evaluate_model(model, data_dir, "test")
    for task in ("feed", "search"):
        assert results[task]["NDCG@5"] == pytest.approx(record["test"]["metrics"][task]["NDCG@5"])


def test_loss_decreases(run):
    _, record = run
    losses = [h["loss"] for h in record["history"]]
    assert losses[-1] < losses[0]


def test_same_seed_same_weights(data_dir, tmp_path):
    config = C.preset(T.TINY).override(["train.epochs=2", "train.steps_per_epoch=2"])
    prefixes = []
    for name in ("a", "b"):
        trainer.train(config, data_dir, str(tmp_path / name), verbose=0)
        prefixes.append(str(tmp_path / name / trainer.LATEST_WEIGHTS))
    a, b = (_weights(p) for p in prefixes)
    assert a and a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


# -- optimizer -----------------------------------------------------------------------------------
def _built_tiny(data_dir, config):
    model = factory.build_model(config, load_vocab(data_dir))
    batch = next(iter(datasets.make_train_input(config, data_dir).dataset))
    model.compute_loss(batch)
    return model


def test_adam_keeps_the_model_coupled_l2(data_dir):
    config = C.preset(T.TINY).override(["train.l2=0.01"])
    model = _built_tiny(data_dir, config)
    optimizer = trainer.make_optimizer(config, model)
    assert type(optimizer) is FusedAdam and model.l2 == pytest.approx(0.01)
    assert optimizer.adaptive_epsilon  # PyTorch's epsilon placement (the reference)
    assert optimizer.epsilon == pytest.approx(config.train.adam_epsilon)


class _DenseModel(base.JsrModel):
    def __init__(self):
        super().__init__(l2=0.01)
        self.dense = keras.layers.Dense(3)
        self.norm = keras.layers.LayerNormalization()

    def call(self, x):
        return self.norm(self.dense(x))


def test_adamw_decays_decoupled_and_zeroes_the_model_l2():
    config = C.preset(T.TINY).override(["train.l2=0.01", "train.optimizer=adamw"])
    model = _DenseModel()
    model(tf.zeros([1, 2]))
    optimizer = trainer.make_optimizer(config, model)
    assert isinstance(optimizer, keras.optimizers.AdamW) and model.l2 == 0.0
    assert optimizer.weight_decay == pytest.approx(0.01)
    decayed = {v.name.split("/")[-1]: optimizer._use_weight_decay(v)
               for v in model.trainable_variables}
    assert decayed == {"kernel:0": True, "bias:0": False, "gamma:0": True, "beta:0": False}


# -- the joint input -----------------------------------------------------------------------------
def test_search_batch_size_formula():
    # floor(n_src / (floor(n_rec / B) + 1)) + 1
    assert datasets.search_batch_size(10_000, 3_000, 1024) == 3_000 // 10 + 1
    assert datasets.search_batch_size(4, 1, 2) == 1
    assert datasets.search_batch_size(4, 0, 2) == 1


def test_joint_input_shapes_and_steps(data_dir):
    config = C.preset(T.TINY).override(["train.steps_per_epoch=0"])
    joint = datasets.make_train_input(config, data_dir)
    assert joint.num_examples == {"feed": 4, "search": 1}
    assert joint.batch_sizes == {"feed": 2, "search": 1}
    assert joint.steps_per_epoch == 2  # one pass over the 4 feed rows
    spec = joint.dataset.element_spec
    assert set(spec) == {"feed", "search"}
    assert spec["feed"][F.FEED_ITEMS].shape.as_list() == [2, F.MAX_FEED_HISTORY]
    assert spec["search"][F.QUERY_WORDS].shape.as_list() == [1, F.MAX_QUERY_WORDS]
    for element in joint.dataset.take(5):  # both streams repeat
        assert element["search"][F.TASK].numpy().tolist() == [F.Task.SEARCH]


def test_input_rounds_search_batch_to_replicas_and_checks_feed(data_dir):
    joint = datasets.make_train_input(C.preset(T.TINY), data_dir, num_replicas=2)
    assert joint.batch_sizes == {"feed": 2, "search": 2}
    with pytest.raises(ValueError, match="multiple of the replica count"):
        datasets.make_train_input(C.preset(T.TINY), data_dir, num_replicas=4)


def test_feed_only_input(data_dir):
    joint = datasets.make_train_input(C.preset(T.TINY), data_dir, tasks=(F.Task.FEED,))
    assert set(joint.dataset.element_spec) == {"feed"}
    assert joint.batch_sizes == {"feed": 2}


def test_input_without_a_full_batch_fails(data_dir):
    config = C.preset(T.TINY).override(["train.batch_size=8", "train.steps_per_epoch=0"])
    with pytest.raises(ValueError, match="no full batch"):
        datasets.make_train_input(config, data_dir)


# -- CLI config resolution -----------------------------------------------------------------------
def test_cli_config_order(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"train": {"batch_size": 8, "epochs": 9, "learning_rate": 0.5}}))
    config = cli.resolve_config(T.TINY, str(path), epochs=4,
                                overrides=["train.batch_size=16"], jit_compile=True)
    assert config.model.name == T.TINY  # from the preset
    assert config.train.learning_rate == 0.5  # from the file
    assert config.train.epochs == 4  # --epochs beats the file
    assert config.train.batch_size == 16  # --override last
    assert config.train.jit_compile
    assert cli.resolve_config(T.TINY) == C.preset(T.TINY)


# -- resume after early stopping had decided -----------------------------------------------------
def test_rerun_after_a_kill_at_the_end_finishes_without_training(data_dir, tmp_path, monkeypatch):
    from jsr_tf.training import callbacks as cb

    def scripted(data_dir, tasks, batch_size):
        scores = iter([0.5, 0.4, 0.3, 0.2])
        return lambda model: {"feed": {"NDCG@5": next(scores), "rows": 2}}

    monkeypatch.setattr(trainer, "_validation_fn", scripted)
    config = C.preset(T.TINY).override(["train.early_stopping_patience=0", "train.epochs=4"])
    model_dir = str(tmp_path / "model")

    def die(self, logs=None):
        raise RuntimeError("killed before the backup was deleted")

    with monkeypatch.context() as patch:
        patch.setattr(cb.ResumableBackup, "on_train_end", die)
        with pytest.raises(RuntimeError, match="killed"):
            trainer.train(config, data_dir, model_dir, verbose=0)
    state = cb.latest_backup_state(os.path.join(model_dir, trainer.BACKUP_DIR))
    assert state["callbacks"]["early_stopping"]["stopped_epoch"] == 1

    record = trainer.train(config, data_dir, model_dir, verbose=0)
    assert [h["epoch"] for h in record["history"]] == [1, 2]  # no third epoch
    assert record["starts"] == [{"epoch": 1, "step": 0}, {"epoch": 3, "step": 0}]
    assert record["stopped_early"] and record["best_epoch"] == 1
