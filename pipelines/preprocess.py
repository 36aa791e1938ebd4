"""``jsr-preprocess``: KuaiSAR CSVs (real or simulated) → TFRecords of examples, vocabularies, stats.

Runs on any Beam runner through standard ``PipelineOptions``::

    python -m jsr_tf.pipelines.preprocess --input_dir raw/ --output_dir data/      # in-memory
    python -m jsr_tf.pipelines.preprocess --input_dir gs://b/raw --output_dir gs://b/data \\
        --runner=DataflowRunner --project=... --region=... --setup_file ./setup.py

Without ``--runner`` the in-memory ``FnApiRunner`` is used (Beam's default ``DirectRunner`` first
tries Prism, which downloads a binary). Dataflow needs the ``[gcp]`` extra and ``gs://`` paths;
with ``--dry_run=True`` or ``--template_location`` it builds the job graph (or template) and runs
nothing (``pipelines/launch.py``; README, "Run on Dataflow").

Outputs under ``--output_dir``: ``{train,valid,test}-{feed,search}-SSSSS-of-NNNNN.tfrecord.gz``,
``vocab/{items,words,users,queries}.tsv``, ``dead_letter/``, ``stats.json``, ``schema.json``,
``manifest.json``, ``preprocess_config.json`` and ``jsr_owned_files.json`` (what the job owns).

Safety (``pipelines/outputs.py``): the job writes into a temporary sibling
(``<output_dir>.tmp-XXXXXXXX``) and swaps its files into ``--output_dir`` only when the counts
reconcile and the checks pass: at most ``--max_rejected_fraction`` of any input file's rows
rejected, and at least one feed and one search example. Otherwise it exits with status 2, prints
the summary table and one line naming the file or the task, and leaves ``--output_dir`` as it was
(the failed run's files, dead letters included, stay in the temporary sibling). Clean-up only
deletes files the job's previous run wrote there.

Period: without ``--period_start`` / ``--period_end`` (or the config's ``period_start_ms`` /
``period_end_ms``) every positive timestamp before 2100 is accepted, so a log keeps its own span,
which ``stats.json`` records under ``period``.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import time
from typing import Dict, List, Optional, Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from jsr_tf import features as F
from jsr_tf import filenames as FN
from jsr_tf.data import kuaisar
from jsr_tf.data.config import PreprocessConfig
from jsr_tf.pipelines import launch, outputs
from jsr_tf.pipelines import stats as stats_lib
from jsr_tf.pipelines import tfrecord_io
from jsr_tf.pipelines.cli import (DEFAULT_RUNNER, JobFailed,  # noqa: F401 (re-exported)
                                  console_main, fraction, pipeline_options, time_ms)
from jsr_tf.pipelines.sorted_text import WriteDeadLetters
from jsr_tf.pipelines.transforms import (OPTIONAL_FILES, REC, REQUIRED_FILES, SRC,
                                         KuaisarToExamples, SerializeExamples)

_SHARD_BYTES = 256 << 20  # ~one train shard per 256 MB of rec_inter.csv
# Files of a run from before ``jsr_owned_files.json`` existed, which a rerun may delete.
LEGACY_OUTPUTS = (rf"(train|valid|test)-(feed|search){outputs.SHARD}"
                  + re.escape(FN.TFRECORD_SUFFIX),
                  rf"{FN.DEAD_LETTER_DIR}/rejected{outputs.SHARD}\.jsonl")


def resolve_inputs(input_dir: str) -> Dict[str, str]:
    """Checks the input directory up front and returns ``file name -> path``.

    Fails at once, with the file named, if a required file is missing, has no header, misses a
    required column, or (feed/search logs) has no data row.
    """
    paths = {}
    for name in REQUIRED_FILES + OPTIONAL_FILES:
        path = FileSystems.join(input_dir, name)
        if not FileSystems.exists(path):
            if name in OPTIONAL_FILES:
                logging.warning("%s not found in %s: skipped (optional).", name, input_dir)
                continue
            raise kuaisar.InputError(f"Required input file {name} not found in {input_dir!r}.")
        with FileSystems.open(path) as stream:
            header = kuaisar.read_header(stream, name)
            kuaisar.check_header(name, header)
            if name in (REC, SRC) and not stream.readline():
                raise kuaisar.InputError(f"Input file {path!r} has a header but no data rows.")
        paths[name] = path
    return paths


def shards_by_size(path: str) -> int:
    """One shard per 256 MB of the file at ``path`` (``rec_inter.csv``), at most 64."""
    size = FileSystems.match([path])[0].metadata_list[0].size_in_bytes
    return max(1, min(64, size // _SHARD_BYTES + 1))


def choose_shards(paths: Dict[str, str], config: PreprocessConfig) -> Dict[str, int]:
    """Shards per split: from ``config.num_shards`` or the size of ``rec_inter.csv``."""
    train = config.num_shards or shards_by_size(paths[REC])
    return {F.Split.TRAIN.value: train, F.Split.VALID.value: 1, F.Split.TEST.value: 1}


class WriteShard(beam.DoFn):
    """``((split, task, shard), [((user, row), bytes), ...])`` → one sorted GZIP TFRecord file."""

    def __init__(self, output_dir: str, num_shards: Dict[str, int]) -> None:
        self._output_dir = output_dir
        self._num_shards = num_shards

    def process(self, element):
        (split, task, shard), values = element
        records = sorted(v for v in values if v is not None)
        name = (f"{F.shard_prefix(split, task)}-{shard:05d}-of-"
                f"{self._num_shards[split]:05d}{FN.TFRECORD_SUFFIX}")
        path = FileSystems.join(self._output_dir, name)
        count = tfrecord_io.write_gzip_tfrecords(path, (data for _, data in records))
        logging.info("wrote %s (%d examples)", name, count)
        yield name, count


def _write_tsv(rows: List, path: str, header: Sequence[str], row_fn) -> None:
    with FileSystems.create(path) as out:
        out.write(("\t".join(header) + "\n").encode("utf-8"))
        for row in sorted(rows, key=lambda r: r[0]):
            out.write(("\t".join(row_fn(row)) + "\n").encode("utf-8"))


def _item_tsv(row) -> List[str]:
    *scalars, caption = row
    return [str(v) for v in scalars] + [" ".join(str(w) for w in caption)]


def build_pipeline(pipeline: beam.Pipeline, paths: Dict[str, str], output_dir: str,
                   config: PreprocessConfig, num_shards: Dict[str, int]) -> None:
    """Adds the whole preprocessing graph to ``pipeline``."""
    out = pipeline | "Import" >> KuaisarToExamples(paths, config)
    serialized = out["examples"] | "Serialize" >> beam.ParDo(SerializeExamples(num_shards))
    vocab_dir = FileSystems.join(output_dir, FN.VOCAB_DIR)

    all_shards = [((split, int(task), shard), None)
                  for split, n in num_shards.items() for task in F.Task for shard in range(n)]
    written = ((serialized, pipeline | "ShardSkeleton" >> beam.Create(all_shards))
               | "WithEmptyShards" >> beam.Flatten()
               | "GroupShards" >> beam.GroupByKey()
               | "WriteShards" >> beam.ParDo(WriteShard(output_dir, num_shards)))
    (written | "ShardCounts" >> beam.combiners.ToList()
     | "WriteShardCounts" >> beam.Map(
         lambda pairs: stats_lib.write_json(dict(sorted(pairs)),
                                   FileSystems.join(output_dir, FN.SHARD_COUNTS_FILE))))

    (out["items"] | "ItemsList" >> beam.combiners.ToList()
     | "WriteItems" >> beam.Map(
         _write_tsv, FileSystems.join(vocab_dir, FN.ITEMS_VOCAB),
         FN.ItemsTsv.COLUMNS, _item_tsv))
    (out["words"] | "WordsList" >> beam.combiners.ToList()
     | "WriteWords" >> beam.Map(_write_tsv, FileSystems.join(vocab_dir, FN.WORDS_VOCAB),
                                FN.WordsTsv.COLUMNS, lambda r: [str(v) for v in r]))
    (out["queries"] | "QueriesList" >> beam.combiners.ToList()
     | "WriteQueries" >> beam.Map(
         _write_tsv, FileSystems.join(vocab_dir, FN.QUERIES_VOCAB), FN.QueriesTsv.COLUMNS,
         lambda r: [" ".join(str(w) for w in r[0]), str(r[1])]))
    (out["users"] | "UsersList" >> beam.combiners.ToList()
     | "WriteUsers" >> beam.Map(
         _write_tsv, FileSystems.join(vocab_dir, FN.USERS_VOCAB),
         FN.UsersTsv.COLUMNS, lambda r: [str(v) for v in r[:len(FN.UsersTsv.COLUMNS)]]))
    out["dead_letter"] | "DeadLetters" >> WriteDeadLetters(output_dir, FN.DEAD_LETTER_DIR)
    (out["stats"] | "WriteRawStats" >> beam.Map(
        stats_lib.write_json, FileSystems.join(output_dir, FN.RAW_COUNTERS_FILE)))


def run(argv: Optional[Sequence[str]] = None, save_main_session: bool = False) -> Dict:
    """Parses arguments, runs the pipeline, then writes stats, schema and manifest.

    Args:
        argv: Command-line arguments (pipeline options included).
        save_main_session: Passed to ``SetupOptions``.

    Returns:
        The final stats dict (also written to ``stats.json``).
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input_dir", required=True, help="Directory with the KuaiSAR CSVs.")
    parser.add_argument("--output_dir", required=True, help="Where to write examples and vocab.")
    parser.add_argument("--config", default=None, help="JSON file of PreprocessConfig fields.")
    parser.add_argument("--reference", action="store_true",
                        help="Use the UniSAR reference recipe (PreprocessConfig.reference()).")
    parser.add_argument("--candidate_seed", type=int, default=None)
    parser.add_argument("--num_shards", type=int, default=None,
                        help="Train shards per task (0 = from input size).")
    parser.add_argument("--period_start", type=time_ms("period_start"), default=None,
                        help="Earliest accepted timestamp (inclusive): ISO date or date-time "
                             "(UTC unless an offset is given) or unix ms. Default: any.")
    parser.add_argument("--period_end", type=time_ms("period_end"), default=None,
                        help="Latest accepted timestamp (exclusive), as --period_start. "
                             "Default: 2100-01-01.")
    parser.add_argument("--max_rejected_fraction", type=fraction("max_rejected_fraction"),
                        default=0.01,
                        help="Fail (exit 2, output dir untouched) when more than this fraction "
                             "of any input file's rows is dead-lettered. Default: 0.01.")
    args, beam_args = parser.parse_known_args(argv)

    values = {}
    if args.config:
        try:
            with FileSystems.open(args.config) as f:
                values = json.loads(f.read().decode("utf-8"))
        except (OSError, ValueError) as err:  # missing file, not UTF-8, not JSON
            raise kuaisar.InputError(f"--config {args.config!r} is not a readable JSON file of "
                                     f"PreprocessConfig fields: {err}") from None
        if not isinstance(values, dict):
            raise kuaisar.InputError(f"--config {args.config!r} should hold a JSON object of "
                                     f"PreprocessConfig fields. Received: {type(values).__name__}")
    if args.candidate_seed is not None:
        values["candidate_seed"] = args.candidate_seed
    if args.num_shards is not None:
        values["num_shards"] = args.num_shards
    if args.period_start is not None:
        values["period_start_ms"] = args.period_start
    if args.period_end is not None:
        values["period_end_ms"] = args.period_end
    try:
        config = (PreprocessConfig.reference(**values) if args.reference
                  else PreprocessConfig.from_dict(values))
    except (TypeError, ValueError) as err:
        raise kuaisar.InputError(f"Invalid preprocessing settings: {err}") from None

    options = pipeline_options(beam_args, save_main_session)
    launch.check_runner(options, {"input_dir": args.input_dir, "output_dir": args.output_dir})

    start = time.time()
    paths = resolve_inputs(args.input_dir)
    num_shards = choose_shards(paths, config)
    logging.info("preprocess: %s -> %s with %s", args.input_dir, args.output_dir, num_shards)

    def finalize(staging: str) -> Dict:
        stats = stats_lib.finalize(staging, config, num_shards, time.time() - start,
                                   input_dir=args.input_dir)
        problems = stats_lib.guard_problems(stats, args.max_rejected_fraction)
        if problems:
            raise JobFailed(f"jsr-preprocess refused its output: {'; '.join(problems)}", stats)
        return stats

    def produce(staging: str) -> Dict:
        return launch.run_job(
            options, lambda pipeline: build_pipeline(pipeline, paths, staging, config, num_shards),
            lambda: finalize(staging))

    return outputs.run_staged(args.output_dir, "jsr-preprocess", produce, LEGACY_OUTPUTS)


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Console entry point: runs and prints the stats table."""
    console_main(run, stats_lib.format_table, argv, force_logging=False)


if __name__ == "__main__":
    main()
