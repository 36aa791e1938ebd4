"""A fix for Beam's local runner on gRPC workers: it lost input chunks under load (issue 13).

Beam's ``FnApiRunner`` with ``--direct_running_mode=multi_processing`` or ``multi_threading``
sends each bundle's input to an SDK worker over the gRPC data plane. In Beam 2.77 the runner
creates its data plane with ``worker_handlers.DATA_BUFFER_TIME_LIMIT_MS = 1000``, so every
stream it writes is a ``data_plane.TimeBasedBufferingClosableOutputStream``: a
``PeriodicThread`` calls ``flush()`` every second, and ``flush()`` runs
``self._flush_callback(self.get())`` and only then ``self._clear()``. Other threads run in
between, all the longer as the callback waits while the channel's send queue is full (100 MB).
Meanwhile the bundle's thread keeps writing the input's chunks into the same stream
(``fn_runner.BundleManager._send_input_to_worker``, no lock): a chunk written between the
flusher's ``get()`` and its ``_clear()`` is erased and never sent. The worker processes the
rest and reports success, so the loss is silent; it is a whole chunk of the runner's buffer
(about 10 MB of elements of every key), so every key loses about the same fraction.

It happens only when writing one bundle's input takes longer than the flush period, i.e. large
inputs of several chunks on a loaded machine. ``jsr-preprocess`` on ``medium`` (2 workers)
lost two ~10 MB chunks of the 37 one worker was sent in the stage that feeds ``GroupShards``
(BENCHMARKS.md §1); ``small`` and the test fixtures lost nothing. With ``multi_threading`` the
workers' own output streams are time-buffered too, and a flush there can also cut an element in
two (the next stage then fails to decode its input).

The fix sets ``DATA_BUFFER_TIME_LIMIT_MS`` to 0 in the launching process before the job runs:
the runner's streams (and those of in-process gRPC workers) are then size-buffered, with no
flusher thread, which is what the SDK workers of ``multi_processing`` already use (their
``data_buffer_time_limit_ms`` defaults to 0). A bundle's input then leaves in one message when
it is closed, as a one-chunk input already did. Only the launching process's own module state
changes; nothing under ``site-packages`` is edited.

Checked against Beam 2.77.0 (``CHECKED_BEAM_VERSIONS``). On another version the fix is applied
if the code still has the shape it relies on (with a warning that it was not checked there);
if not, it does nothing and logs a warning.
"""

from __future__ import annotations

import inspect
import logging
from typing import Optional

import apache_beam as beam
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions

CHECKED_BEAM_VERSIONS = ("2.77.0",)
GRPC_RUNNING_MODES = ("multi_processing", "multi_threading")
_CONSTANT = "DATA_BUFFER_TIME_LIMIT_MS"


def uses_grpc_workers(options: PipelineOptions) -> bool:
    """True when the options ask the local runner for SDK workers over gRPC (the modes the fix
    is for); Dataflow and the other runners ignore ``direct_running_mode``."""
    return options.view_as(DirectOptions).direct_running_mode in GRPC_RUNNING_MODES


def shape_problem() -> Optional[str]:
    """Why the installed Beam does not look like the code the fix was written for, or None.

    The fix needs ``worker_handlers.DATA_BUFFER_TIME_LIMIT_MS`` to exist and to be what the
    runner's gRPC data plane (``GrpcServer``) and in-process gRPC workers
    (``EmbeddedGrpcWorkerHandler``) read when they are created.
    """
    from apache_beam.runners.portability.fn_api_runner import worker_handlers

    if not isinstance(getattr(worker_handlers, _CONSTANT, None), int):
        return f"worker_handlers.{_CONSTANT} is missing or not an int"
    for cls in (worker_handlers.GrpcServer, worker_handlers.EmbeddedGrpcWorkerHandler):
        try:
            source = inspect.getsource(cls.__init__)
        except (OSError, TypeError):
            return f"the source of {cls.__name__}.__init__ cannot be read"
        if _CONSTANT not in source:
            return f"{cls.__name__}.__init__ no longer reads {_CONSTANT}"
    return None


def install_flush_fix() -> bool:
    """Sets ``worker_handlers.DATA_BUFFER_TIME_LIMIT_MS = 0`` (see the module docstring).

    Idempotent. Must run before the pipeline starts (the runner reads the value when it creates
    its gRPC server and workers).

    Returns:
        True if the fix is in place, False if the installed Beam's code has another shape (then
        nothing is changed and a warning is logged).
    """
    from apache_beam.runners.portability.fn_api_runner import worker_handlers

    problem = shape_problem()
    if problem:
        logging.warning("Beam %s: not installing the data-plane flush fix (issue 13): %s. A "
                        "multi-process or multi-threading run may lose elements under load; "
                        "check pipelines/beam_patches.py against this Beam.",
                        beam.__version__, problem)
        return False
    if getattr(worker_handlers, _CONSTANT) != 0:
        if beam.__version__ not in CHECKED_BEAM_VERSIONS:
            logging.warning("Beam %s: applying the data-plane flush fix (issue 13), checked "
                            "only on Beam %s.", beam.__version__, ", ".join(CHECKED_BEAM_VERSIONS))
        setattr(worker_handlers, _CONSTANT, 0)
        logging.info("Beam data plane: time-based flushing off (issue 13 fix).")
    return True


def install_for(options: PipelineOptions) -> bool:
    """``install_flush_fix()`` if ``options`` run on gRPC workers; returns whether it is in
    place (False for runs that do not need it)."""
    return uses_grpc_workers(options) and install_flush_fix()
