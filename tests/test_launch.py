"""``pipelines/launch.py``: which runs execute, and the guard against local paths on Dataflow."""

import os

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from jsr_tf.data import kuaisar
from jsr_tf.pipelines import launch, preprocess

DATAFLOW = ["--runner=DataflowRunner", "--project=p", "--region=r",
            "--temp_location=gs://b/tmp"]


@pytest.mark.parametrize("args, name, reason", [
    ([], "FnApiRunner", None),
    (["--runner=FnApiRunner", "--direct_running_mode=multi_processing"], "FnApiRunner", None),
    (["--runner=apache_beam.runners.dask.dask_runner.DaskRunner"], "DaskRunner", None),
    (DATAFLOW, "DataflowRunner", None),
    (DATAFLOW + ["--dry_run=True"], "DataflowRunner", "dry run"),
    (DATAFLOW + ["--template_location=gs://b/t.json"], "DataflowRunner", "template"),
    (["--runner=FnApiRunner", "--dry_run=True"], "FnApiRunner", None),  # runs in memory
])
def test_runner_name_and_graph_only_reason(args, name, reason):
    options = PipelineOptions(args or ["--runner=FnApiRunner"])
    assert launch.runner_name(options) == name
    assert launch.graph_only_reason(options) == reason


def test_local_paths_are_refused_on_dataflow_only(caplog):
    paths = {"input_dir": "gs://b/raw", "output_dir": "/home/me/data"}
    with pytest.raises(kuaisar.InputError, match=r"DataflowRunner workers run on other machines"
                       r".*Received: `output_dir=/home/me/data`"):
        launch.check_runner(PipelineOptions(DATAFLOW), paths)
    launch.check_runner(PipelineOptions(DATAFLOW), {"output_dir": "gs://b/data"})
    launch.check_runner(PipelineOptions(["--runner=FnApiRunner"]), paths)
    launch.check_runner(PipelineOptions(DATAFLOW + ["--dry_run=True"]), paths)
    assert "would not see the local paths `output_dir=/home/me/data`" in caplog.text


def test_dask_runner_is_refused_with_the_reason():
    options = PipelineOptions(["--runner=apache_beam.runners.dask.dask_runner.DaskRunner"])
    with pytest.raises(kuaisar.InputError, match="DaskRunner cannot run this job: .*tagged "
                       "outputs .* only the last branch"):
        launch.check_runner(options, {"output_dir": "/tmp/x"})


def test_preprocess_on_dataflow_with_a_local_output_exits_2(tmp_path, caplog):
    with pytest.raises(SystemExit) as exit_info:
        preprocess.main(["--input_dir", "gs://b/raw", "--output_dir", str(tmp_path / "data"),
                         *DATAFLOW])
    assert exit_info.value.code == 2
    assert f"Received: `output_dir={tmp_path / 'data'}`" in caplog.text
    assert not os.listdir(tmp_path)


def test_format_summary():
    summary = {launch.GRAPH_ONLY: "template", "runner": "DataflowRunner",
               "template_location": "gs://b/t.json", "transforms": ["A", "B"],
               "staged_files": ["workflow.tar.gz"]}
    assert launch.format_summary(summary) == (
        "DataflowRunner template: job graph of 2 transforms, staged for the workers: "
        "workflow.tar.gz; template written to gs://b/t.json. Nothing ran; the output "
        "directory is untouched.")
