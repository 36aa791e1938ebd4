"""``pipelines/sorted_text.py``: text shards whose bytes do not depend on the runner."""

import apache_beam as beam
import pytest

from jsr_tf.pipelines.sorted_text import WriteSortedText, shard_file_name


def test_sorted_text_shards_every_shard_in_key_order(tmp_path):
    lines = [(1, (2, "b"), "x"), (0, (1, "z"), "first"), (1, (1, "a"), "y"), (0, (0, "q"), "0")]
    with beam.Pipeline("FnApiRunner") as pipeline:
        written = (pipeline | beam.Create(lines)
                   | WriteSortedText(str(tmp_path), "sub/t", ".jsonl", 3))
        written | beam.combiners.ToList() | beam.Map(
            lambda pairs: (tmp_path / "counts").write_text(repr(sorted(pairs))))
    assert (tmp_path / "counts").read_text() == repr([(shard_file_name("sub/t", s, 3, ".jsonl"), n)
                                                      for s, n in ((0, 2), (1, 2), (2, 0))])
    assert (tmp_path / "sub" / "t-00000-of-00003.jsonl").read_text() == "0\nfirst\n"
    assert (tmp_path / "sub" / "t-00001-of-00003.jsonl").read_text() == "y\nx\n"
    assert (tmp_path / "sub" / "t-00002-of-00003.jsonl").read_text() == ""
    with pytest.raises(ValueError, match="`num_shards` should be a positive integer"):
        WriteSortedText(str(tmp_path), "t", ".jsonl", 0)
