"""Fuzz test of the CSV importer at the file level (issue #12): random files of valid and garbled
rows through ``jsr_tf.pipelines.transforms.ReadKuaisarFile``. Every row is either parsed (a valid
row exactly as written) or dead-lettered, never both, never lost, and the file's counts
reconcile."""

import os
import tempfile

import apache_beam as beam
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jsr_tf.data.config import PreprocessConfig
from jsr_tf.data.kuaisar import FILE_COLUMNS
from jsr_tf.pipelines.transforms import DEAD, STATS, ReadKuaisarFile
from tests.test_kuaisar_parser import csv_line, fuzz_lines, valid_rows

VALID_ROW = 11  # the row index ``valid_rows`` puts in its expected records


def _lines():
    valid = valid_rows().map(lambda c: (c[0], csv_line([c[1][k] for k in FILE_COLUMNS[c[0]]]),
                                        c[2]))
    garbled = fuzz_lines().filter(lambda c: "\n" not in c[1] and "\r" not in c[1]).map(
        lambda c: (c[0], c[1], None))
    return st.lists(st.one_of(valid, garbled), min_size=1, max_size=12)


def _read(file_name: str, lines) -> tuple:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, file_name)
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(",".join(FILE_COLUMNS[file_name]) + "\n")
            f.writelines(line + "\n" for line in lines)
        out = list(ReadKuaisarFile(PreprocessConfig()).process((file_name, path)))
    dead = [o.value for o in out if isinstance(o, beam.pvalue.TaggedOutput) and o.tag == DEAD]
    stats = [o.value for o in out if isinstance(o, beam.pvalue.TaggedOutput) and o.tag == STATS]
    records = [o if hasattr(o, "row") else o[1]._replace(**{}) for o in out
               if not isinstance(o, beam.pvalue.TaggedOutput)]
    rows = [o.row if hasattr(o, "row") else o[0] for o in out
            if not isinstance(o, beam.pvalue.TaggedOutput)]
    return dict(zip(rows, records)), {d.row: d for d in dead}, stats


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.filter_too_much])
@given(_lines())
def test_every_row_is_parsed_or_dead_lettered_and_counts_reconcile(cases):
    for file_name in sorted({c[0] for c in cases}):
        mine = [c for c in cases if c[0] == file_name]
        records, dead, stats = _read(file_name, [line for _, line, _ in mine])
        assert len(stats) == 1
        counts = stats[0]
        rejected = sum(v for k, v in counts.items() if k.startswith(f"{file_name}/rejected/"))
        assert counts[f"{file_name}/rows_read"] == len(mine)  # no row lost or invented
        assert rejected == len(dead) and len(records) + len(dead) == len(mine)
        assert set(records) | set(dead) == set(range(len(mine)))  # each row once, by index
        assert not set(records) & set(dead)
        for row, (_, _, expected) in enumerate(mine):
            if expected is not None:  # a valid row parses to exactly its values
                record = records[row]
                if hasattr(expected, "row"):
                    record = record._replace(row=VALID_ROW)
                assert record == expected
