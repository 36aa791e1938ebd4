"""``pipelines/beam_patches.py``: Beam's data plane lost input chunks on gRPC workers (issue 13).

The repro runs the shape of ``jsr-preprocess``'s ``WithEmptyShards`` -> ``GroupShards`` stages
(a Flatten of two stages' outputs, then a GroupByKey) on the multi-process runner with 2 workers.
Each worker is sent two chunks of the flattened input. The test widens the race window in the
runner (this process): the runner's periodic flush every 50 ms instead of every second, a flush
that takes 1 s to hand its data to the send queue, and 0.5 s between the two chunks a bundle's
input is written in. Without the fix the second chunk is written during the flush and erased by
it: each worker processes only its first chunk, every key loses the same share, and the run
still succeeds. With the fix nothing is lost.
"""

import json
import logging
import os
import threading
import time

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import fn_runner, worker_handlers
from apache_beam.runners.worker import data_plane

from jsr_tf.pipelines import beam_patches, launch
from tests.testing import MULTI_PROCESS

N = 3000  # elements per Flatten input; keys 0, 1, 2 get N * 2 / 3 each


def _write_count(keyed, out_dir):
    key, values = keyed
    with open(os.path.join(out_dir, f"{key}.json"), "w") as f:
        json.dump(len(list(values)), f)


def _run_flatten_gbk(out_dir):
    options = PipelineOptions(["--runner=FnApiRunner", *MULTI_PROCESS])
    with beam.Pipeline(options=options) as p:
        first = p | "A" >> beam.Create(range(N))
        second = p | "B" >> beam.Create(range(N, 2 * N))
        ((first, second) | beam.Flatten() | beam.Map(lambda i: (i % 3, i))
         | beam.GroupByKey() | beam.Map(_write_count, out_dir))
    return {name: json.load(open(os.path.join(out_dir, name))) for name in os.listdir(out_dir)}


@pytest.fixture
def widened_window(monkeypatch):
    """The runner's flush every 50 ms, a flush's hand-over 1 s long, and 0.5 s between the
    chunks of a bundle's input (see the module docstring)."""
    monkeypatch.setattr(worker_handlers, "DATA_BUFFER_TIME_LIMIT_MS", 50)
    send = fn_runner.BundleManager._send_input_to_worker
    enqueue = data_plane._GrpcDataChannel._enqueue_to_send

    def paced_send(self, bundle_id, transform_id, byte_streams):
        def paced():
            for index, chunk in enumerate(byte_streams or []):
                if index:
                    time.sleep(0.5)
                yield chunk
        return send(self, bundle_id, transform_id, paced())

    def slow_flush_enqueue(self, element):
        if isinstance(threading.current_thread(), data_plane.PeriodicThread):
            time.sleep(1.0)
        return enqueue(self, element)

    monkeypatch.setattr(fn_runner.BundleManager, "_send_input_to_worker", paced_send)
    monkeypatch.setattr(data_plane._GrpcDataChannel, "_enqueue_to_send", slow_flush_enqueue)


def test_without_the_fix_a_chunk_written_during_a_flush_is_lost(widened_window, tmp_path):
    counts = _run_flatten_gbk(str(tmp_path))
    assert sorted(counts) == ["0.json", "1.json", "2.json"]
    assert sum(counts.values()) < 2 * N  # lost, and the pipeline reported success
    assert len(set(counts.values())) == 1, counts  # the same share of every key


def test_with_the_fix_nothing_is_lost(widened_window, tmp_path):
    assert beam_patches.install_flush_fix()
    assert worker_handlers.DATA_BUFFER_TIME_LIMIT_MS == 0
    counts = _run_flatten_gbk(str(tmp_path))
    assert counts == {"0.json": 2 * N // 3, "1.json": 2 * N // 3, "2.json": 2 * N // 3}


def test_the_fix_is_idempotent_and_only_for_grpc_workers(monkeypatch):
    monkeypatch.setattr(worker_handlers, "DATA_BUFFER_TIME_LIMIT_MS", 1000)
    assert not beam_patches.install_for(PipelineOptions(["--runner=FnApiRunner"]))
    assert worker_handlers.DATA_BUFFER_TIME_LIMIT_MS == 1000
    for mode in ("multi_processing", "multi_threading"):
        options = PipelineOptions(["--runner=FnApiRunner", f"--direct_running_mode={mode}"])
        assert beam_patches.install_for(options)
        assert beam_patches.install_for(options)
        assert worker_handlers.DATA_BUFFER_TIME_LIMIT_MS == 0


def test_another_shape_of_beam_is_left_alone_with_a_warning(monkeypatch, caplog):
    monkeypatch.delattr(worker_handlers, "DATA_BUFFER_TIME_LIMIT_MS")
    with caplog.at_level(logging.WARNING):
        assert not beam_patches.install_flush_fix()
    assert "not installing the data-plane flush fix" in caplog.text
    assert not hasattr(worker_handlers, "DATA_BUFFER_TIME_LIMIT_MS")


def test_the_checked_beam_has_the_expected_shape():
    assert beam_patches.shape_problem() is None
    assert beam.__version__ in beam_patches.CHECKED_BEAM_VERSIONS


def test_launch_installs_the_fix_before_running(monkeypatch):
    seen = []
    monkeypatch.setattr(beam_patches, "install_for", lambda options: seen.append(options))
    pipeline = beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"]))
    _ = pipeline | beam.Create([1])
    assert launch.execute(pipeline) is None
    assert seen == [pipeline.options]
