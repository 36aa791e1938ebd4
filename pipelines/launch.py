"""Running a job's Beam pipeline on the runner its options name, and what came of the run.

Every Beam job (``jsr-preprocess``, ``jsr-neighbours``, ``jsr-neighbour-features``,
``jsr-neighbour-serving-table``) runs through ``run_job``: build the graph, ``execute`` it, then
read back and reconcile:

- A runner that executes the job (the in-memory ``FnApiRunner``, the multi-process direct
  runner, ``DaskRunner``, Dataflow) runs it to the end, and a run that does not end ``DONE``
  raises. On the multi-process and multi-threading direct runner, ``pipelines/beam_patches.py``
  first mends Beam 2.77's data plane, which silently dropped input chunks under load. The workers write the job's outputs *and its counters* with Beam's ``FileSystems``
  under the job's staging directory (``gs://`` on Dataflow); the launcher reads them back the
  same way and reconciles. Nothing is read from a launcher-local path a remote worker wrote.
- Dataflow with Beam's ``--dry_run=True`` (build and translate the job graph, submit nothing) or
  with ``--template_location`` (write a classic template, run nothing) executes nothing:
  ``execute`` returns a graph-only summary (``GRAPH_ONLY`` key; the job's transforms and the files
  Dataflow stages for the workers), and the job skips reconciliation and publication, so its
  ``--output_dir`` stays untouched.

``check_runner`` refuses, before anything runs, a Dataflow job whose inputs or outputs are on the
launcher's local disk (its workers, on other machines, would neither see nor write them), and
Beam 2.77's ``DaskRunner``, which cannot run these jobs: it sends a multi-output ``ParDo``'s
tagged outputs (dead letters, counters) into its main output, and computes only the last branch
of a graph with several sinks (README, "Run the Beam jobs on Dataflow", Dask;
``tests/test_dask_runner.py``).
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Dict, List, Mapping, Optional

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.portability.api import beam_runner_api_pb2
from apache_beam.options.pipeline_options import (GoogleCloudOptions, PipelineOptions,
                                                  StandardOptions, TestOptions)
from apache_beam.runners.runner import PipelineState

from jsr_tf.data import kuaisar
from jsr_tf.pipelines import beam_patches

GRAPH_ONLY = "graph_only"  # key of the summary of a run that executed nothing
_REMOTE_RUNNERS = ("DataflowRunner",)  # workers never share the launcher's disk
_UNSUPPORTED_RUNNERS = {
    "DaskRunner": "Beam 2.77's DaskRunner sends a ParDo's tagged outputs (dead letters, "
                  "counters) into its main output and computes only the last branch of the "
                  "graph (README, 'Run the Beam jobs on Dataflow', Dask). Use the in-memory "
                  "runner (no --runner) or Dataflow."}


def runner_name(options: PipelineOptions) -> str:
    """The runner's class name (``DataflowRunner``), whether given by name, path or class."""
    runner = options.view_as(StandardOptions).runner or StandardOptions.DEFAULT_RUNNER
    if not isinstance(runner, str):
        runner = type(runner).__name__ if not isinstance(runner, type) else runner.__name__
    return runner.rsplit(".", 1)[-1]


def graph_only_reason(options: PipelineOptions) -> Optional[str]:
    """``"dry run"`` or ``"template"`` when the runner will execute nothing, else None."""
    if runner_name(options) not in _REMOTE_RUNNERS:
        return None
    if options.view_as(TestOptions).dry_run:
        return "dry run"
    if options.view_as(GoogleCloudOptions).template_location:
        return "template"
    return None


def is_local_path(path: str) -> bool:
    """True for a path on the launcher's own disk (no scheme, or ``file://``)."""
    return FileSystems.get_scheme(path) in (None, "file")


def check_runner(options: PipelineOptions, paths: Mapping[str, str]) -> None:
    """Refuses a runner that cannot run the jobs, and local ``paths`` (flag name → path) that a
    remote runner's workers read or write.

    Raises:
        InputError: ``DaskRunner`` (see the module docstring); a local path on Dataflow, for a
            run that executes (a dry run or a template only logs a warning: nothing runs now).
    """
    runner = runner_name(options)
    if runner in _UNSUPPORTED_RUNNERS:
        raise kuaisar.InputError(f"{runner} cannot run this job: {_UNSUPPORTED_RUNNERS[runner]}")
    if runner not in _REMOTE_RUNNERS:
        return
    local = {flag: path for flag, path in paths.items() if is_local_path(path)}
    if not local:
        return
    listed = ", ".join(f"`{flag}={path}`" for flag, path in sorted(local.items()))
    reason = graph_only_reason(options)
    if reason:
        logging.warning("%s %s: the workers of a real run would not see the local paths %s.",
                        runner, reason, listed)
        return
    raise kuaisar.InputError(
        f"{runner} workers run on other machines: every input and output path should be on a "
        f"shared filesystem (e.g. gs://bucket/...). Received: {listed}")


def staged_files(job_proto) -> List[str]:
    """Names under which Dataflow stages files for the workers (``workflow.tar.gz`` = the
    ``--setup_file`` package, ``requirements.txt``, ...), from a pipeline proto."""
    names = set()
    for env in job_proto.components.environments.values():
        for dep in env.dependencies:
            try:
                names.add(beam_runner_api_pb2.ArtifactStagingToRolePayload.FromString(
                    dep.role_payload).staged_name)
            except Exception:  # pylint: disable=broad-except  (another role: no staged name)
                continue
    return sorted(n for n in names if n)


def graph_summary(pipeline: beam.Pipeline, result, reason: str) -> Dict:
    """The graph-only summary: the runner's own translated graph when it kept one."""
    options = pipeline.options
    job = getattr(result, "job", None) or getattr(pipeline.runner, "job", None)
    proto = getattr(job, "proto_pipeline", None)
    if proto is None:
        proto = pipeline.to_runner_api()
    return {GRAPH_ONLY: reason,
            "runner": runner_name(options),
            "job_name": getattr(getattr(job, "proto", None), "name", "") or "",
            "template_location": options.view_as(GoogleCloudOptions).template_location,
            "transforms": sorted(t.unique_name for t in proto.components.transforms.values()),
            "staged_files": staged_files(proto)}


def execute(pipeline: beam.Pipeline) -> Optional[Dict]:
    """Runs ``pipeline`` to the end; returns None, or the graph-only summary (see module doc).

    On the local runner with gRPC workers (multi-process, multi-threading) it first installs
    ``beam_patches``' fix for Beam's data plane, which lost input chunks under load (issue 13).

    Raises:
        RuntimeError: The run ended in another state than ``DONE``.
    """
    reason = graph_only_reason(pipeline.options)
    beam_patches.install_for(pipeline.options)
    result = pipeline.run()
    if reason:
        summary = graph_summary(pipeline, result, reason)
        logging.info("%s %s: job graph of %d transforms; nothing ran.", summary["runner"],
                     reason, len(summary["transforms"]))
        return summary
    state = result.wait_until_finish()
    if state is not None and state != PipelineState.DONE:
        raise RuntimeError(f"The {runner_name(pipeline.options)} job ended in state {state}.")
    return None


def run_job(options: PipelineOptions, build: Callable[[beam.Pipeline], None],
            finalize: Callable[[], Dict]) -> Dict:
    """``build`` a pipeline with ``options``, ``execute`` it, then return ``finalize()`` (the job's
    stats, read back from what the workers wrote), or the graph-only summary if nothing ran."""
    start = time.time()
    pipeline = beam.Pipeline(options=options)
    build(pipeline)
    graph = execute(pipeline)
    if graph:
        graph["elapsed_s"] = round(time.time() - start, 2)
        return graph
    return finalize()


def format_summary(summary: Dict) -> str:
    """The console lines of a graph-only run."""
    where = (f"; template written to {summary['template_location']}"
             if summary[GRAPH_ONLY] == "template" else "")
    return (f"{summary['runner']} {summary[GRAPH_ONLY]}: job graph of "
            f"{len(summary['transforms'])} transforms, staged for the workers: "
            f"{', '.join(summary['staged_files']) or 'nothing'}{where}. Nothing ran; the "
            f"output directory is untouched.")
