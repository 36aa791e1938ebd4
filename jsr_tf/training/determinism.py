"""Repeatable gradient sums: ``tf.function`` calls without Grappler's memory optimizer.

Why: Grappler's memory optimizer (on by default, ``RewriterConfig.memory_optimization``) has a
scheduling pass that rewrites an ``AddN`` of three or more inputs into a temporary variable that
each input is ``AssignAdd``-ed into *as it arrives*, whenever its static estimate of the graph's
peak memory exceeds 80% of the device's. A variable read more than twice in a step (UniSAR's
query encoder serves history queries, target queries and item captions) has its gradients summed
by such an ``AddN``, so the sum's order, and its float32 round-off, then depends on thread timing:
two runs of the same seed part after the first step, and the gap grows with training (issue 18:
up to 0.0093 in a weight after 30 steps of the demo's UniSAR). Neither
``keras.utils.set_random_seed`` nor ``tf.config.experimental.enable_op_determinism`` turns the
rewrite off, and ``tf.config.optimizer.set_experimental_options`` has no key for it.

``repeatable_sums()`` sets ``memory_optimization = NO_MEM_OPT`` in the function-call options of
the calling thread (the ``config_proto`` every ``tf.function`` call carries to the runtime, which
instantiates and optimizes a function once per distinct config), runs the block and restores the
previous options. Every other Grappler pass keeps its default. On a CPU the memory optimizer does
nothing else by default (its swapping pass is for GPUs, its recomputation pass is off); on a GPU
the swapping of large activations to the host is lost too.

Scope: the calling thread only. Keras ``fit``, ``evaluate`` and ``predict`` call their functions
from the thread that called them; ``tf.data`` functions are not affected (the input pipeline does
no gradient sums). Op-level determinism on GPUs (scatter and segment kernels) is a separate
switch, ``tf.config.experimental.enable_op_determinism()``, which the package leaves to the user:
it is process-wide and irreversible.

The options live in ``tensorflow.python.eager.context`` (TensorFlow has no public setter for
them); if that API is missing, ``repeatable_sums`` raises rather than train unrepeatably.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import jsr_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TF loads)
from tensorflow.core.protobuf import config_pb2, rewriter_config_pb2

try:
    from tensorflow.python.eager import context as _context
except ImportError:  # pragma: no cover - depends on the TensorFlow build
    _context = None

NO_MEM_OPT = rewriter_config_pb2.RewriterConfig.NO_MEM_OPT


def _function_call_options():
    if _context is None or not hasattr(_context, "FunctionCallOptions"):
        raise RuntimeError(
            "train.deterministic needs tensorflow.python.eager.context.FunctionCallOptions, which "
            "this TensorFlow build lacks; set train.deterministic=false to train without it.")
    return _context.context().function_call_options


def current_memory_optimization() -> int:
    """The ``RewriterConfig.memory_optimization`` of this thread's ``tf.function`` calls."""
    config = config_pb2.ConfigProto.FromString(_function_call_options().config_proto_serialized)
    return config.graph_options.rewrite_options.memory_optimization


@contextlib.contextmanager
def repeatable_sums(enabled: bool = True) -> Iterator[None]:
    """Runs the block with Grappler's memory optimizer off for this thread's ``tf.function`` calls.

    Args:
        enabled: False runs the block unchanged (TensorFlow's defaults).

    Yields:
        None. The previous function-call options are restored on exit, also on an exception
        (unless a ``tf.config`` setter inside the block has replaced the thread's options).

    Raises:
        RuntimeError: ``enabled`` and this TensorFlow build has no function-call options.
    """
    if not enabled:
        yield
        return
    previous = _function_call_options()
    config = config_pb2.ConfigProto.FromString(previous.config_proto_serialized)
    config.graph_options.rewrite_options.memory_optimization = NO_MEM_OPT
    ctx = _context.context()
    ours = _context.FunctionCallOptions(executor_type=previous.executor_type, config_proto=config)
    ctx.function_call_options = ours
    try:
        yield
    finally:
        # A config setter called inside the block (soft placement, optimizer options) drops the
        # thread's options for new ones built from the context's config: those then stand.
        if ctx.function_call_options is ours:
            ctx.function_call_options = previous
