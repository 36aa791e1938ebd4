"""The counters' way out of a job, on in-memory inputs: tagged ``stats`` outputs merged by
``neighbour_common.write_raw_stats`` and file counts by ``write_file_counts``, both written with
``pipelines/stats.py``'s ``write_json`` (``stats.py`` has no transform of its own) and read back
with ``read_json``; then ``stats.summarise`` reconciles the merged counters of ``ParseFile`` and
``BuildTimelines`` on a tiny world with a duplicate and a rejected row."""

from __future__ import annotations

import apache_beam as beam

from jsr_tf.data.config import PreprocessConfig
from jsr_tf.pipelines import neighbour_common as common
from jsr_tf.pipelines import stats
from jsr_tf.pipelines import transforms as tr
from tests import testing as T
from tests.pipelines import _fixtures as X


class _Split(beam.DoFn):
    """Even numbers to the main output; one ``stats`` dict per element."""

    def process(self, x):
        if x % 2 == 0:
            yield x
        yield beam.pvalue.TaggedOutput(tr.STATS, {"seen": 1, "odd" if x % 2 else "even": 1})


def test_write_raw_stats_merges_every_stats_output(tmp_path):
    path = str(tmp_path / "raw.json")
    with X.pipeline() as p:
        first = p | "A" >> beam.Create([1, 2, 3]) | "SplitA" >> beam.ParDo(_Split()).with_outputs(
            tr.STATS, main="main")
        second = p | "B" >> beam.Create([4]) | "SplitB" >> beam.ParDo(_Split()).with_outputs(
            tr.STATS, main="main")
        common.write_raw_stats([first[tr.STATS], second[tr.STATS]], path)
    assert stats.read_json(path) == {"even": 2, "odd": 2, "seen": 4}
    with open(path) as f:  # indented, sorted keys
        assert f.read() == '{\n  "even": 2,\n  "odd": 2,\n  "seen": 4\n}'


def test_write_file_counts_sorted_by_name(tmp_path):
    path = str(tmp_path / "counts.json")
    with X.pipeline() as p:
        common.write_file_counts(p | beam.Create([("b.gz", 2), ("a.gz", 0), ("c.gz", 7)]), path)
    assert stats.read_json(path) == {"a.gz": 0, "b.gz": 2, "c.gz": 7}
    with open(path) as f:
        assert [line.strip()[:6] for line in f.read().splitlines()[1:4]] == [
            '"a.gz"', '"b.gz"', '"c.gz"']


def test_parsed_and_timeline_counters_reconcile(tmp_path):
    rec, src = X.world_rows(1)
    rec.append(list(rec[0]))  # an exact duplicate feed row
    directory = T.write_kuaisar(str(tmp_path / "raw"), rec, src, [], [],
                                extra_lines={tr.SRC: [b"1,2,3"]})
    paths = {name: f"{directory}/{name}" for name in (tr.REC, tr.SRC)}
    path = str(tmp_path / "raw.json")
    with X.pipeline() as p:
        parsed, timelines = tr.parse_timelines(p, paths, PreprocessConfig())
        common.write_raw_stats([parsed[tr.REC].stats, parsed[tr.SRC].stats, timelines.stats],
                               path)
    summary = stats.summarise(stats.read_json(path))
    files = summary["files"]
    assert {name: (f["rows_read"], f["canonical"], f["dropped_duplicate"], f["rejected"])
            for name, f in files.items()} == {
        tr.REC: (7, 6, 1, {}), tr.SRC: (6, 5, 0, {"wrong_field_count": 1})}
    file_checks = [c for c in summary["checks"] if "rows_read" in c["check"]]
    assert [(c["left"], c["right"], c["ok"]) for c in file_checks] == [
        (7, 7, True), (6, 6, True)]
    assert summary["targets"]["feed"]["targets"] == 5
    assert summary["targets"]["search"]["users"] == 1
