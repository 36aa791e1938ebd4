"""jsr_tf.training.trainer end to end with TinyModel on the golden fixture, plus the input builder
and the CLI's config resolution."""

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import jsr_tf  # noqa: F401
import tensorflow as tf
import tf_keras as keras
from absl import flags

from jsr_tf import config as C
from jsr_tf import features as F
from jsr_tf import filenames as FN
from jsr_tf.cli import errors, quiet
from jsr_tf.cli import evaluate as evaluate_cli
from jsr_tf.cli import train as cli
from jsr_tf.data.vocab import load_vocab
from jsr_tf.evaluation import evaluator, report
from jsr_tf.models import base, factory
from jsr_tf.training import datasets, run_dir, trainer
from jsr_tf.training.optimizers import FusedAdam
from tests import training_doubles as T
from tests.testing import tree_digest

SHAPE = F.DataShape()  # the reference shape of the fixtures' data

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
    with open(os.path.join(model_dir, FN.METRICS_FILE)) as f:
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
    assert tf.io.gfile.glob(os.path.join(model_dir, FN.BEST_WEIGHTS) + ".index")
    assert tf.io.gfile.glob(os.path.join(model_dir, FN.LATEST_WEIGHTS) + ".index")
    assert tf.io.gfile.glob(os.path.join(model_dir, FN.LOGS_DIR, "train", "events.*"))
    assert not tf.io.gfile.exists(os.path.join(model_dir, FN.BACKUP_DIR))
    # --profile 2,2: one traced step, in TensorBoard's profile layout
    assert tf.io.gfile.glob(os.path.join(model_dir, FN.PROFILE_DIR, "plugins", "profile",
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
        prefixes.append(str(tmp_path / name / FN.LATEST_WEIGHTS))
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
    assert model.l2_rows_in_batch is False  # the reference: L2 on every decayed entry


def test_factory_sets_the_rows_in_batch_deviation_from_the_config(data_dir):
    config = C.preset(T.TINY).override(["train.l2_rows_in_batch=true"])
    assert factory.build_model(config, load_vocab(data_dir)).l2_rows_in_batch is True


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
    assert spec["feed"][F.FEED_ITEMS].shape.as_list() == [2, SHAPE.feed_history]
    assert spec["search"][F.QUERY_WORDS].shape.as_list() == [1, SHAPE.query_words]
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
                                overrides=["train.batch_size=16", "train.precision=float32"],
                                jit_compile=True, precision="mixed_bfloat16")
    assert config.model.name == T.TINY  # from the preset
    assert config.train.learning_rate == 0.5  # from the file
    assert config.train.epochs == 4  # --epochs beats the file
    assert config.train.batch_size == 16  # --override last
    assert config.train.jit_compile
    assert config.train.precision == "mixed_bfloat16"  # --precision beats --override
    assert cli.resolve_config(T.TINY) == C.preset(T.TINY)
    with pytest.raises(ValueError, match="precision"):
        cli.resolve_config(T.TINY, overrides=["train.precision=float16"])


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
    state = cb.latest_backup_state(os.path.join(model_dir, FN.BACKUP_DIR))
    assert state["callbacks"]["early_stopping"]["stopped_epoch"] == 1

    record = trainer.train(config, data_dir, model_dir, verbose=0)
    assert [h["epoch"] for h in record["history"]] == [1, 2]  # no third epoch
    assert record["starts"] == [{"epoch": 1, "step": 0}, {"epoch": 3, "step": 0}]
    assert record["stopped_early"] and record["best_epoch"] == 1


# -- run-dir safety and clear errors (issue #12) ------------------------------------------------


def _copy(model_dir, tmp_path, name="copy"):
    target = str(tmp_path / name)
    shutil.copytree(model_dir, target)
    return target


def _train_cli(capsys, *args):
    """``jsr-train`` in-process through its error guard: (exit code, stderr lines)."""
    flags.FLAGS.unparse_flags()
    try:
        flags.FLAGS(["jsr-train", *args])
        with pytest.raises(SystemExit) as exit_info:
            errors.guard(cli.main, "jsr-train", lambda: [flags.FLAGS.data_dir])(["jsr-train"])
    finally:
        flags.FLAGS.unparse_flags()
    return exit_info.value.code, capsys.readouterr().err.strip().splitlines()


def _evaluate_cli(capsys, data_dir, model_dir):
    """``jsr-evaluate`` in-process through its error guard: (exit code, stderr lines)."""
    main = errors.guard(evaluate_cli.main, "jsr-evaluate", lambda: [data_dir])
    with pytest.raises(SystemExit) as exit_info:
        main(["jsr-evaluate", "--data_dir", data_dir, "--model_dir", model_dir])
    return exit_info.value.code, capsys.readouterr().err.strip().splitlines()


def test_a_failed_rerun_with_another_model_leaves_a_finished_run_untouched(run, tmp_path, capsys):
    model_dir, _ = run
    before = tree_digest(model_dir)
    code, err = _train_cli(capsys, "--data_dir", str(tmp_path / "missing"), "--model_dir",
                           model_dir, "--model", "sasrec")
    assert code == 1 and len(err) == 1, err
    assert err[0].startswith("jsr-train: error: ") and "finished" in err[0]
    assert "--overwrite" in err[0]
    assert tree_digest(model_dir) == before


def test_missing_data_writes_nothing(tmp_path):
    model_dir = tmp_path / "new_run"
    with pytest.raises(FileNotFoundError, match="run jsr-preprocess"):
        trainer.train(C.preset(T.TINY), str(tmp_path / "missing"), str(model_dir), verbose=0)
    assert not model_dir.exists()


def test_an_unfinished_run_resumes_only_with_its_own_config(tmp_path):
    model_dir = str(tmp_path / "run")
    config = C.preset(T.TINY)
    factory.save_config(config, model_dir)  # killed before its first backup
    assert run_dir.check_target(model_dir, config) == run_dir.Target.RESUME
    other = config.override(["train.epochs=9"])
    with pytest.raises(run_dir.RunDirError, match="differs in train.epochs"):
        run_dir.check_target(model_dir, other)
    assert run_dir.check_target(model_dir, other, overwrite=True) == run_dir.Target.REPLACE
    assert run_dir.check_target(str(tmp_path / "absent"), config) == run_dir.Target.NEW


def test_overwrite_replaces_only_the_run_files(run, data_dir, tmp_path):
    model_dir = _copy(run[0], tmp_path)
    with open(os.path.join(model_dir, "notes.txt"), "w") as f:
        f.write("the user's own file")
    config = C.preset(T.TINY).override(["train.epochs=1"])
    with pytest.raises(run_dir.RunDirError, match="finished"):
        trainer.train(config, data_dir, model_dir, verbose=0)
    record = trainer.train(config, data_dir, model_dir, verbose=0, overwrite=True)
    assert record["epochs_run"] == 1
    assert factory.load_config(model_dir) == config
    with open(os.path.join(model_dir, "notes.txt")) as f:
        assert f.read() == "the user's own file"


def test_fingerprint_records_model_config_vocab_and_variables(run, data_dir):
    model_dir, _ = run
    recorded = factory.load_fingerprint(model_dir)
    assert recorded["model"] == T.TINY
    assert recorded["vocab"] == factory.vocab_fingerprint(load_vocab(data_dir))
    assert any(shape == [1024, 8] for _, shape in recorded["variables"])


def test_evaluate_refuses_weights_that_do_not_fit_the_config(run, data_dir, tmp_path, capsys):
    model_dir = _copy(run[0], tmp_path)
    factory.save_config(C.preset("sasrec"), model_dir)  # what the failed rerun used to write
    code, err = _evaluate_cli(capsys, data_dir, model_dir)
    assert code == 1 and len(err) == 1 and "not the config" in err[0], err
    os.remove(os.path.join(model_dir, FN.FINGERPRINT_FILE))  # a run from before fingerprints
    with pytest.raises(factory.RunMismatchError, match="variables have no value"):
        factory.load_trained(model_dir, data_dir)


def test_a_run_written_before_a_field_rename_still_loads(run, data_dir, tmp_path):
    # `model.search_loss_weight` was `model.src_loss_weight`: a run's config.json and
    # fingerprint written then keep loading, with the same values.
    model_dir = _copy(run[0], tmp_path)
    path = os.path.join(model_dir, FN.CONFIG_FILE)
    with open(path) as f:
        written = json.load(f)
    written["model"]["src_loss_weight"] = written["model"].pop("search_loss_weight")
    with open(path, "w") as f:
        f.write(json.dumps(written, indent=2, sort_keys=True))
    fingerprint = factory.load_fingerprint(model_dir)
    fingerprint["config_sha256"] = report.config_hash(written)
    with open(os.path.join(model_dir, FN.FINGERPRINT_FILE), "w") as f:
        json.dump(fingerprint, f)
    config = factory.load_config(model_dir)
    assert config == factory.load_config(run[0])
    factory.load_trained(model_dir, data_dir)  # the fingerprint check accepts it
    written["model"]["dropout"] = 0.5  # ... but not a modified one
    with open(path, "w") as f:
        f.write(json.dumps(written, indent=2, sort_keys=True))
    with pytest.raises(factory.RunMismatchError, match="modified after training"):
        factory.load_trained(model_dir, data_dir)


def test_evaluate_refuses_data_with_another_vocabulary(run, data_dir, tmp_path, capsys):
    other = _copy(data_dir, tmp_path, "other_data")
    items = os.path.join(other, FN.VOCAB_DIR, FN.ITEMS_VOCAB)
    with open(items) as f:
        lines = f.read().splitlines()
    with open(items, "w") as f:
        f.write("\n".join(lines[:-1]) + "\n")  # one item fewer: ids map to other rows
    code, err = _evaluate_cli(capsys, other, run[0])
    assert code == 1 and len(err) == 1 and "another vocabulary" in err[0], err


def test_a_truncated_shard_is_named_in_one_line(run, data_dir, tmp_path, capsys):
    other = _copy(data_dir, tmp_path, "truncated_data")
    shard = sorted(tf.io.gfile.glob(os.path.join(other, "test-feed-*.tfrecord.gz")))[0]
    with open(shard, "rb") as f:
        data = f.read()
    with open(shard, "wb") as f:
        f.write(data[:len(data) // 2])
    code, err = _evaluate_cli(capsys, other, run[0])
    assert code == 1 and len(err) == 1, err
    assert shard in err[0] and "truncated" in err[0]


@pytest.mark.parametrize("override, message", [
    ("train.learning_rate=fast", "`train.learning_rate` expects a float. Received: `'fast'`"),
    ("train.steps_per_epoch=-5", "`steps_per_epoch` should be a non-negative integer"),
    ("model.tower_units=64", "`model.tower_units` expects a list of integers"),
])
def test_bad_overrides_fail_in_one_line(override, message, data_dir, tmp_path, capsys):
    model_dir = tmp_path / "run"
    code, err = _train_cli(capsys, "--data_dir", data_dir, "--model_dir", str(model_dir),
                           "--override", override)
    assert code == 1 and len(err) == 1 and message in err[0], err
    assert not model_dir.exists()


def test_commands_hide_tensorflow_logs_unless_asked(run, data_dir, tmp_path):
    model_dir = _copy(run[0], tmp_path)
    env = {k: v for k, v in os.environ.items() if k != quiet.ENV}
    # jsr-evaluate, with the test model family registered (jsr_tf.cli first, as the command does)
    code = ("import jsr_tf.cli; import tests.training_doubles; from jsr_tf.cli import evaluate; "
            "evaluate.run()")
    cmd = [sys.executable, "-c", code, "--data_dir", data_dir, "--model_dir", model_dir,
           "--protocol", "sampled"]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "HR@1" in done.stdout  # the results stay
    # TensorFlow's C++ lines ("file.cc:123]"); only the CUDA stub's, printed before TensorFlow
    # reads its settings, remain on machines without a GPU driver.
    cpp = [line for line in done.stderr.splitlines()
           if re.search(r"\.cc:\d+\]", line) and "cudart_stub.cc" not in line]
    assert not cpp, cpp


def test_verbosity_flag_is_read_before_tensorflow_loads(monkeypatch):
    assert quiet.requested_verbosity(["jsr-train", "--verbosity=1"]) == 1
    assert quiet.requested_verbosity(["jsr-train", "-v", "2", "--model", "x"]) == 2
    assert quiet.requested_verbosity(["jsr-train", "--model", "v"]) == 0
    monkeypatch.delenv(quiet.ENV, raising=False)
    quiet.configure_environment(["jsr-train"])
    assert os.environ[quiet.ENV] == quiet.QUIET_LEVEL
    quiet.configure_environment(["jsr-train", "-v", "1"])
    assert os.environ[quiet.ENV] == quiet.VERBOSE_LEVEL
