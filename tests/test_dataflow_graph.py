"""Offline Dataflow check (issue 13): every Beam job builds its Dataflow job graph without network
or credentials, and a classic template (of ``jsr-neighbours``) can be written to a local file.

Each job runs through its own ``run(argv)`` with ``--runner=DataflowRunner``, Beam's
``--dry_run=True`` and a fake project, region and bucket (``tests/dataflow.py``): Beam translates
the graph and builds the ``--setup_file`` package the workers would install, submits nothing, and
the job returns its graph-only summary (``pipelines/launch.py``) instead of reading back counters
that no worker wrote. This file covers ``jsr-preprocess``, ``jsr-neighbours`` and the TFDS
builder's transforms; ``jsr-neighbour-features`` and ``jsr-neighbour-serving-table`` are checked
in their own test files, on the inputs those files already build. The template test writes a
template and its staged files to local paths (a ``localhost`` Dataflow endpoint makes Beam skip
its service-side checks of GCS paths) and loads it back.

Skipped without the ``[gcp]`` extra (``pip install -e '.[gcp]'``; ``make test`` installs it).
"""

import json
import os
import tarfile

import pytest

from jsr_tf.pipelines import launch
from jsr_tf.pipelines import neighbours as nb
from jsr_tf.pipelines import preprocess
from tests.dataflow import BUCKET, DRY_RUN, SETUP, assert_dry_run, requires_gcp
from tests.neighbour_fixture import write_raw

pytestmark = requires_gcp


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    """The neighbour fixture's KuaiSAR CSVs."""
    return write_raw(str(tmp_path_factory.mktemp("dataflow") / "raw"))


def test_preprocess_dataflow_graph(raw):
    summary = preprocess.run(["--input_dir", raw, "--output_dir", f"{BUCKET}/data", *DRY_RUN])
    assert_dry_run(summary, [
        "Import/Parse rec_inter.csv", "Import/Parse src_inter.csv", "Import/GroupByUser",
        "Import/Timelines", "Import/Pools", "Import/FairPools", "Import/Examples", "Serialize",
        "GroupShards", "WriteShards", "WriteShardCounts", "WriteItems", "WriteWords",
        "WriteUsers", "WriteQueries", "DeadLetters/WriteDead/WriteShards", "WriteRawStats"])


# The neighbour retrieval's steps in the keyed layout with the window join (the defaults on a
# distributed runner, `jsr_tf.neighbours.resolve_layout`).
KEYED_WINDOW_STEPS = ("Retrieve/BandKeys", "Retrieve/GroupBuckets", "Retrieve/BucketMembers",
                      "Retrieve/GroupCandidates", "Retrieve/TopCandidates",
                      "Retrieve/JoinCandidateTokens", "Retrieve/ReRank")


def test_neighbours_dataflow_graph(raw):
    summary = nb.run(["--input_dir", raw, "--output_dir", f"{BUCKET}/nb", *DRY_RUN])
    assert_dry_run(summary, [
        "Parse rec_inter.csv", "Parse item_features.csv", "GroupByUser", "Snapshots", "Tokens",
        "JoinItems", "GroupPartials", "Signatures", *KEYED_WINDOW_STEPS,
        "WriteTable/GroupShards", "WriteTable/WriteShards",
        "DeadLetters/WriteDead/WriteShards", "WriteRawStats", "WriteSnapshots"])
    # `--lsh_layout auto` is the keyed layout on Dataflow: no bucket is grouped in one worker.
    assert not ({"Retrieve/Histories", "Retrieve/GroupSides", "Retrieve/LshInMemory"}
                & set(summary["transforms"]))


def test_tfds_builder_transforms_dataflow_graph(raw, tmp_path):
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from jsr_tf.pipelines.kuaisar_tfds import Kuaisar

    class ManualDir:  # the one attribute of TFDS's download manager the builder reads
        manual_dir = raw

    pipeline = beam.Pipeline(options=PipelineOptions(list(DRY_RUN)))
    splits = Kuaisar(data_dir=str(tmp_path / "tfds"))._split_generators(ManualDir(), pipeline)
    assert sorted(splits) == ["test", "train", "valid"]
    summary = launch.execute(pipeline)
    assert_dry_run(summary, ["KuaiSAR/Parse rec_inter.csv", "KuaiSAR/Examples",
                             "Split train/Keep", "Split valid/ToTfds", "Split test/ToTfds"])


def test_template_written_to_a_local_file(raw, tmp_path, capsys):
    template = str(tmp_path / "template.json")
    staging = str(tmp_path / "staging")
    os.makedirs(staging)
    nb.main(["--input_dir", raw, "--output_dir", f"{BUCKET}/nb",
             "--runner=DataflowRunner", "--project=fake-project", "--region=us-central1",
             f"--temp_location={tmp_path}", f"--staging_location={staging}",
             f"--template_location={template}", "--no_auth",
             "--dataflow_endpoint=http://localhost:1", f"--setup_file={SETUP}",
             "--experiments=disable_logging_submission_environment"])
    assert f"template written to {template}. Nothing ran" in capsys.readouterr().out
    with open(template) as f:
        job = json.load(f)
    assert job["type"] == "JOB_TYPE_BATCH"
    options = job["environment"]["sdkPipelineOptions"]["options"]
    assert (options["project"], options["region"], options["setup_file"]) == (
        "fake-project", "us-central1", SETUP)
    packages = {p["name"]: p["location"] for p in job["environment"]["workerPools"][0]["packages"]}
    assert packages == {"workflow.tar.gz": os.path.join(staging, "workflow.tar.gz")}
    with tarfile.open(packages["workflow.tar.gz"]) as package:  # what the workers pip-install
        names = {name.split("/", 1)[1] for name in package.getnames() if "/" in name}
    assert {"setup.py", "pipelines/launch.py", "pipelines/neighbours.py",
            "jsr_tf/neighbours/minhash.py"} <= names

    from apache_beam.portability.api import beam_runner_api_pb2

    with open(options["pipelineUrl"], "rb") as f:
        graph = beam_runner_api_pb2.Pipeline.FromString(f.read())
    labels = {t.unique_name for t in graph.components.transforms.values()}
    assert {"Signatures", *KEYED_WINDOW_STEPS, "WriteTable/WriteShards",
            "WriteRawStats"} <= labels
