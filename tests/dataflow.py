"""Shared pieces of the offline Dataflow checks (issue 13): the dry-run flags, the skip marker
when the ``[gcp]`` extra is absent, and the assertions on a job's graph-only summary.

A job run with ``DRY_RUN`` builds and translates its Dataflow job graph and the ``--setup_file``
package the workers would install, submits nothing and needs no network or credentials (a fake
project, region and bucket); it returns its graph-only summary (``pipelines/launch.py``).
"""

import os

import pytest

try:
    import apache_beam.runners.dataflow.internal.apiclient  # noqa: F401
    HAVE_GCP = True
except ImportError:
    HAVE_GCP = False

requires_gcp = pytest.mark.skipif(
    not HAVE_GCP, reason="the [gcp] extra (apache-beam[gcp]) is not installed: "
                         "pip install -e '.[gcp]' to build Dataflow job graphs")

SETUP = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "setup.py")
BUCKET = "gs://fake-bucket"
DRY_RUN = ("--runner=DataflowRunner", "--project=fake-project", "--region=us-central1",
           f"--temp_location={BUCKET}/tmp", "--dry_run=True", f"--setup_file={SETUP}",
           # No `pip freeze` of the test environment into the staged files.
           "--experiments=disable_logging_submission_environment")


def assert_dry_run(summary, steps) -> None:
    """The job built a Dataflow graph holding ``steps``, staged its package and ran nothing."""
    from jsr_tf.pipelines import launch  # pylint: disable=import-outside-toplevel

    assert summary[launch.GRAPH_ONLY] == "dry run"
    assert summary["runner"] == "DataflowRunner"
    assert "workflow.tar.gz" in summary["staged_files"]  # the --setup_file package
    missing = set(steps) - set(summary["transforms"])
    assert not missing, f"steps not in the job graph: {sorted(missing)}"
