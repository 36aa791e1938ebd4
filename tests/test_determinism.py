"""jsr_tf.training.determinism: the function-call options it sets, restores and keeps, and the
trainer's use of it (``train.deterministic``)."""

import numpy as np
import pytest

import jsr_tf  # noqa: F401
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2, rewriter_config_pb2
from tensorflow.python.eager import context

from jsr_tf import config as C
from jsr_tf.training import determinism, trainer

RewriterConfig = rewriter_config_pb2.RewriterConfig


def _thread_config() -> config_pb2.ConfigProto:
    options = context.context().function_call_options
    return config_pb2.ConfigProto.FromString(options.config_proto_serialized)


def test_sets_no_mem_opt_inside_and_restores_the_default_after():
    assert determinism.current_memory_optimization() == RewriterConfig.DEFAULT_MEM_OPT
    with determinism.repeatable_sums():
        assert determinism.current_memory_optimization() == RewriterConfig.NO_MEM_OPT
    assert determinism.current_memory_optimization() == RewriterConfig.DEFAULT_MEM_OPT


def test_disabled_changes_nothing():
    before = context.context().function_call_options
    with determinism.repeatable_sums(enabled=False):
        assert context.context().function_call_options is before
        assert determinism.current_memory_optimization() == RewriterConfig.DEFAULT_MEM_OPT


def test_restores_after_an_exception():
    with pytest.raises(KeyError):
        with determinism.repeatable_sums():
            raise KeyError("boom")
    assert determinism.current_memory_optimization() == RewriterConfig.DEFAULT_MEM_OPT


def test_nested_blocks_restore_in_order():
    with determinism.repeatable_sums():
        with determinism.repeatable_sums():
            assert determinism.current_memory_optimization() == RewriterConfig.NO_MEM_OPT
        assert determinism.current_memory_optimization() == RewriterConfig.NO_MEM_OPT
    assert determinism.current_memory_optimization() == RewriterConfig.DEFAULT_MEM_OPT


def test_only_the_memory_optimizer_changes():
    before = _thread_config()
    executor = context.context().function_call_options.executor_type
    with determinism.repeatable_sums():
        inside = _thread_config()
        assert context.context().function_call_options.executor_type == executor
    expected = config_pb2.ConfigProto()
    expected.CopyFrom(before)
    expected.graph_options.rewrite_options.memory_optimization = RewriterConfig.NO_MEM_OPT
    assert inside == expected and inside != before


def test_a_tf_config_setter_inside_the_block_wins():
    """A setter replaces the thread's options; leaving the block must not undo it."""
    soft = tf.config.get_soft_device_placement()
    try:
        with determinism.repeatable_sums():
            tf.config.set_soft_device_placement(not soft)  # drops the thread's options
            replaced = context.context().function_call_options
        assert context.context().function_call_options is replaced
        assert determinism.current_memory_optimization() == RewriterConfig.DEFAULT_MEM_OPT
    finally:
        tf.config.set_soft_device_placement(soft)


def _executed_ops_and_value(fn, x):
    ctx = context.context()
    ctx.enable_run_metadata()
    try:
        value = fn(x).numpy()
        metadata = ctx.export_run_metadata()
    finally:
        ctx.disable_run_metadata()
    ops = {node.op for graphs in metadata.function_graphs for graph in graphs.partition_graphs
           for node in graph.node}
    return ops, value


def test_functions_called_inside_run_without_the_accumulate_rewrite():
    """A variable read three times gets its gradients summed by an AddN. At this size (128 MB per
    gradient input) TensorFlow's default rewrites that AddN into a temporary variable that each
    input is AssignAdd-ed into as it arrives (the nondeterministic order); inside
    ``repeatable_sums`` the executed graph keeps the AddN. Both give the exact sum here."""
    rows = 500_000
    w = tf.Variable(tf.ones([64, 4]))

    @tf.function
    def gradient(x):
        with tf.GradientTape() as tape:
            y = sum(tf.reduce_sum(tf.matmul(x * float(k), w)) for k in (1, 2, 3))
        return tape.gradient(y, w)

    x = tf.ones([rows, 64])
    default_ops, default_value = _executed_ops_and_value(gradient, x)
    with determinism.repeatable_sums():
        ops, value = _executed_ops_and_value(gradient, x)
    assert {"TemporaryVariable", "AssignAdd"} <= default_ops, (
        "TensorFlow no longer rewrites this AddN by default: revisit jsr_tf.training.determinism")
    assert "AddN" in ops and not {"TemporaryVariable", "AssignAdd"} & ops
    # d/dw sum_k sum(k x w) = (1 + 2 + 3) x^T 1: 6 * rows in every entry (exact in float32).
    np.testing.assert_array_equal(value, np.full([64, 4], 6.0 * rows, np.float32))
    np.testing.assert_array_equal(default_value, value)


@pytest.mark.parametrize("deterministic, expected", [
    (True, RewriterConfig.NO_MEM_OPT), (False, RewriterConfig.DEFAULT_MEM_OPT)])
def test_train_runs_its_body_under_the_configured_options(monkeypatch, deterministic, expected):
    seen = []
    monkeypatch.setattr(trainer, "_train", lambda *args: seen.append(
        (determinism.current_memory_optimization(), args[0].train.deterministic)) or {})
    config = C.preset("unisar").override([f"train.deterministic={str(deterministic).lower()}"])
    assert trainer.train(config, "data", "model") == {}
    assert seen == [(expected, deterministic)]
    assert determinism.current_memory_optimization() == RewriterConfig.DEFAULT_MEM_OPT


def test_deterministic_must_be_a_bool():
    with pytest.raises(ValueError, match="deterministic"):
        C.preset("unisar").override(["train.deterministic=3"])
