"""``jsr-dense-neighbours``: KuaiSAR CSVs + a trained model → dense (cosine) neighbour table.

The dense option of ``spec/similar_users.md`` §2 ("Dense option, ``retrieval: dense``") with the
leakage rules of §3 (rule 5: vectors from histories before ``T_k``, model trained on
train-visible data)::

    jsr-dense-neighbours --input_dir raw/ --model_dir runs/unisar --data_dir data/ \\
        --output_dir nb_dense/ [--k_search 5 --k_feed 5] [--snapshots ...] \\
        [--visibility train,test]

**A plain Python program, not a Beam pipeline**: the embedding step needs the trained model
in one process, and at KuaiSAR scale (≈ 25k users × ≈ 20 daily snapshots × 2 visibilities,
most of them sharing histories) the users × snapshots vectors and the brute-force top-k fit
one machine. The raw rows of ``rec_inter.csv`` and ``src_inter.csv`` are held in memory while
the timelines are built.

**Input** is read with the importer pieces of ``jsr-neighbours`` / ``jsr-preprocess``: the same
up-front file checks (``resolve_inputs``: missing or empty file, missing column →
``InputError``, exit code 2), the same row parser (``ReadKuaisarFile``, run in-process), the same
dead letters and the same per-user timelines (``build_timeline``) with the examples' own
``<data_dir>/preprocess_config.json``, hence the examples' targets and splits.

**Steps**, per visibility (``train``: no valid/test target of anyone; ``test``: no test
target; ``all``) and snapshot ``T_k`` (default: every Beijing midnight over the data, as
``jsr-neighbours``):

1. Per user, the visible events with ``ts < T_k`` → the history fields of the examples at the
   caps (the most recent 30 feed positives and 30 search sessions, ``history_fields``).
   Identical histories (same user, same events: e.g. a day without events, or a train and a
   test table that differ only later) are encoded once.
2. The model's ``encode_user`` → masked means of ``F_r`` (feed side) and ``F_s`` (search side),
   L2-normalised (``jsr_tf.neighbours.dense``). A user with no feed positive before ``T_k``
   has no feed vector (counted as ``users_empty``, no row), likewise for search.
3. Exact cosine top-k per (visibility, snapshot, side) with a TFRS ``BruteForce`` index
   (identifiers = user ids, the user excluded with ``query_with_exclusions``); ties to the
   smaller user id; ``k_search`` / ``k_feed`` kept. No similarity threshold: every indexed user
   gets ``min(k, n − 1)`` neighbours (n = users indexed on that side and snapshot).

**Outputs** under ``--output_dir``, the format of ``jsr-neighbours`` so that
``jsr-neighbour-features`` reads the directory unchanged:

- ``neighbours-SSSSS-of-NNNNN.jsonl``: ``NeighbourRow`` lines. In a dense table the field
  ``jaccards`` holds the **cosine similarities** (float32 values, in ``[-1, 1]``, descending) and
  ``num_tokens`` the number of that side's history events the model read (feed positives or
  search sessions, at most 30).
- ``neighbour_stats.json``: ``snapshots``, per-file row counts, per (visibility, side) totals and
  per-snapshot counters (users known / indexed / empty, rows, pairs emitted, users below k,
  users without neighbours), histories encoded, and reconciliation checks (including
  ``pairs_emitted = Σ min(k, n − 1)``, which exact retrieval must meet). A failed check raises
  ``ReconciliationError`` after the file is written.
- ``neighbour_config.json``: ``"neighbours"``: the ``NeighbourConfig`` fields that describe the
  table (``mode: "exact"``, ``k_search``, ``k_feed``, ``snapshot_hours``, ``snapshots``,
  ``visibilities``; the MinHash fields keep their defaults and are unused; ``min_jaccard`` is
  0 and not applied), so that ``NeighbourConfig.from_dict`` accepts it; ``"dense"``: the dense
  settings (``retrieval: "dense"``, ``model_dir``, ``data_dir``, ``model`` name, ...);
  ``"retrieval": "dense"``; ``"preprocess"``: ``<data_dir>/preprocess_config.json``.
- ``dead_letter/rejected-*.jsonl``: rejected CSV rows with their reasons.

**Leakage** (§3): snapshot ``k`` uses only events with ``ts < T_k`` of the visibility (the train
table never sees a valid or test target; the test table may see valid targets). The model
weights are fixed: they come from training on the train examples, so they reflect train
targets of the whole training period, including those after ``T_k`` (accepted by rule 5).
"""

from __future__ import annotations

import argparse
import bisect
import collections
import json
import logging
import time
from typing import Dict, List, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems

import jsr_tf
from jsr_tf import filenames as FN
from jsr_tf.data import kuaisar
from jsr_tf.data.config import PreprocessConfig
from jsr_tf.data.timeline import UserTimeline, build_timeline
from jsr_tf.features import EventKind
from jsr_tf.neighbours import (MODE_EXACT, NeighbourConfig, NeighbourRow, excluded_event_indices,
                               parse_snapshot)
from jsr_tf.neighbours.minhash import FEED, SEARCH, SIDES
from jsr_tf.pipelines import neighbour_common as common
from jsr_tf.pipelines import neighbours as nb
from jsr_tf.pipelines.cli import console_main
from jsr_tf.pipelines import outputs
from jsr_tf.pipelines.preprocess import resolve_inputs
from jsr_tf.pipelines.stats import (Checks, raise_unless_reconciled, read_json, reconcile_line,
                                    write_json)
from jsr_tf.pipelines.transforms import DEAD, REC, SRC, STATS, ReadKuaisarFile

TABLE_PREFIX = nb.TABLE_PREFIX
_COUNTERS = ("users_known", "users_indexed", "users_empty", "rows_written", "pairs_emitted",
             "users_below_k", "users_without_neighbours")

# (user, chosen event indices): a history as the model reads it.
HistoryKey = Tuple[int, Tuple[int, ...]]


# --------------------------------------------------------------------------- input


def read_timelines(paths: Dict[str, str], config: PreprocessConfig
                   ) -> Tuple[List[UserTimeline], Dict[str, int], List]:
    """The two interaction logs → per-user timelines, counters and rejections.

    Runs ``ReadKuaisarFile`` (the importer's DoFn) in-process and ``build_timeline`` per user,
    exactly as ``jsr-neighbours`` does on Beam.

    Returns:
        Timelines sorted by user id, merged counters, rejected rows (``Rejection``).
    """
    counters: Dict[str, int] = collections.Counter()
    dead: List = []
    rows: Dict[str, Dict[int, List]] = {REC: collections.defaultdict(list),
                                        SRC: collections.defaultdict(list)}
    reader_fn = ReadKuaisarFile(config)
    for name in (REC, SRC):
        for out in reader_fn.process((name, paths[name])):
            if isinstance(out, beam.pvalue.TaggedOutput):
                if out.tag == STATS:
                    counters.update(out.value)
                elif out.tag == DEAD:
                    dead.append(out.value)
            else:
                rows[name][out.user_id].append(out)
    timelines = []
    for user in sorted(set(rows[REC]) | set(rows[SRC])):
        counts: Dict[str, int] = {}
        timelines.append(build_timeline(user, rows[REC].pop(user, []), rows[SRC].pop(user, []),
                                        config, counts))
        counters.update(counts)
        counters["users/with_events"] += 1
    return timelines, dict(counters), dead


def choose_snapshots(timelines: Sequence[UserTimeline], config: NeighbourConfig) -> List[int]:
    """The configured boundaries, or every ``snapshot_hours`` from Beijing midnight (data span).

    Same rule as ``jsr-neighbours`` (``jsr_tf.pipelines.neighbours.choose_snapshots``).
    """
    spans = [span for t in timelines for span in nb.event_span(t)]
    return nb.choose_snapshots(nb.merge_spans(spans), config)


# --------------------------------------------------------------------------- histories


class _UserView:
    """One user's events visible to one table, by kind, for prefix queries."""

    def __init__(self, timeline: UserTimeline, visibility: str) -> None:
        excluded = excluded_event_indices(timeline, visibility)
        self.indices = {FEED: [], SEARCH: []}
        self.ts = {FEED: [], SEARCH: []}
        for i, event in enumerate(timeline.events):
            if i in excluded:
                continue
            side = FEED if event.kind == EventKind.FEED else SEARCH
            self.indices[side].append(i)
            self.ts[side].append(event.ts)

    def before(self, side: str, t: int, cap: int) -> Tuple[int, ...]:
        """Indices of the last ``cap`` visible events of ``side`` with ``ts < t``."""
        stop = bisect.bisect_left(self.ts[side], t)
        return tuple(self.indices[side][max(0, stop - cap):stop])


def plan_histories(timelines: Sequence[UserTimeline], snapshots: Sequence[int],
                   config: NeighbourConfig, preprocess: PreprocessConfig):
    """Which history each (visibility, snapshot, user) uses.

    Returns:
        ``plan``: ``{(visibility, k): [(user, HistoryKey, n_feed, n_search)]}`` for users with
        at least one visible event before ``T_k``; ``histories``: ``{HistoryKey: (user, T,
        events)}``, each distinct history once (``T`` = the first snapshot that uses it).
    """
    plan: Dict[Tuple[str, int], List] = collections.defaultdict(list)
    histories: Dict[HistoryKey, Tuple[int, int, List]] = {}
    caps = {FEED: preprocess.max_feed_history, SEARCH: preprocess.max_search_history}
    for timeline in timelines:
        user = timeline.user_id
        for visibility in config.visibilities:
            view = _UserView(timeline, visibility)
            for k, t in enumerate(snapshots):
                feed = view.before(FEED, t, caps[FEED])
                search = view.before(SEARCH, t, caps[SEARCH])
                if not feed and not search:
                    continue
                key = (user, tuple(sorted(feed + search)))
                if key not in histories:
                    histories[key] = (user, t, [timeline.events[i] for i in key[1]])
                plan[(visibility, k)].append((user, key, len(feed), len(search)))
    return plan, histories


# --------------------------------------------------------------------------- retrieval


def counter_name(visibility: str, snapshot: int, side: str, name: str) -> str:
    return f"{visibility}/{snapshot}/{side}/{name}"


def retrieve(plan, vectors: Dict[HistoryKey, Dict[str, object]], snapshots: Sequence[int],
             config: NeighbourConfig, block_size: int) -> Tuple[List[NeighbourRow], Dict]:
    """Top-k rows of every (visibility, snapshot, side) and their counters."""
    from jsr_tf.neighbours import dense  # TF: imported when needed

    rows: List[NeighbourRow] = []
    counts: Dict[str, int] = collections.Counter()
    for visibility in config.visibilities:
        for k, t in enumerate(snapshots):
            entries = sorted(plan.get((visibility, k), []), key=lambda e: e[0])
            for side in SIDES:
                def c(name: str, side: str = side) -> str:
                    return counter_name(visibility, k, side, name)

                counts[c("users_known")] += len(entries)
                indexed = [(user, key, n_feed if side == FEED else n_search)
                           for user, key, n_feed, n_search in entries
                           if (n_feed if side == FEED else n_search) > 0]
                counts[c("users_indexed")] += len(indexed)
                counts[c("users_empty")] += len(entries) - len(indexed)
                if not indexed:
                    continue
                matrix = np.stack([vectors[key][side] for _, key, _ in indexed])
                ids, sims = dense.cosine_top_k(matrix, [u for u, _, _ in indexed],
                                               config.k(side), block_size)
                for (user, _, used), found, sim in zip(indexed, ids, sims):
                    rows.append(NeighbourRow(visibility, k, t, side, user, used, tuple(found),
                                             tuple(sim)))
                    counts[c("rows_written")] += 1
                    counts[c("pairs_emitted")] += len(found)
                    if len(found) < config.k(side):
                        counts[c("users_below_k")] += 1
                    if not found:
                        counts[c("users_without_neighbours")] += 1
    return rows, dict(counts)


# --------------------------------------------------------------------------- outputs


def write_table(rows: Sequence[NeighbourRow], output_dir: str, num_shards: int) -> List[str]:
    """Rows (sorted by visibility, snapshot, side, user) into ``num_shards`` JSONL shards."""
    rows = sorted(rows, key=lambda r: (r.visibility, r.snapshot, r.side, r.user))
    per = -(-len(rows) // num_shards) if rows else 0
    paths = []
    for shard in range(num_shards):
        path = FileSystems.join(output_dir, f"{TABLE_PREFIX}-{shard:05d}-of-{num_shards:05d}"
                                            f"{FN.JSONL_SUFFIX}")
        part = rows[shard * per:(shard + 1) * per]
        with FileSystems.create(path) as out:
            out.write("".join(r.to_json() + "\n" for r in part).encode("utf-8"))
        paths.append(path)
    return paths


def write_dead_letters(dead: Sequence, output_dir: str) -> None:
    path = FileSystems.join(output_dir, FN.DEAD_LETTER_DIR,
                            f"rejected-00000-of-00001{FN.JSONL_SUFFIX}")
    with FileSystems.create(path) as out:
        out.write("".join(json.dumps(r._asdict(), sort_keys=True) + "\n"
                          for r in dead).encode("utf-8"))


def summarise(counters: Dict[str, int], snapshots: List[int], config: NeighbourConfig) -> Dict:
    """Structured stats and reconciliation checks (the layout of ``jsr-neighbours``)."""
    c = counters.get
    check = Checks()

    files = nb.file_counts(counters, (REC, SRC), check, conflicting_id=False)

    def fill(row: Dict, visibility: str, side: str, k: int) -> None:
        row.update({n: c(counter_name(visibility, k, side, n), 0) for n in _COUNTERS})
        where = f"{visibility}/{side}/snapshot {k}"
        n = row["users_indexed"]
        check(f"{where}: users_indexed + users_empty = users_known",
              n + row["users_empty"], row["users_known"])
        check(f"{where}: rows_written = users_indexed", row["rows_written"], n)
        check(f"{where}: pairs_emitted = users_indexed * min(k, users_indexed - 1)",
              row["pairs_emitted"], n * min(config.k(side), max(n - 1, 0)))

    tables = nb.snapshot_tables(snapshots, config, _COUNTERS, fill)
    return {
        "snapshots": nb.snapshot_entries(snapshots),
        "files": files,
        "histories": {"planned": c("histories/planned", 0), "encoded": c("histories/encoded", 0)},
        "tables": tables,
        "checks": list(check),
        "reconciled": check.reconciled,
        "counters": counters,
    }


def format_table(stats: Dict) -> str:
    """A plain-text summary: per visibility and side, totals over snapshots."""
    lines = ["", f"{len(stats['snapshots'])} snapshots, retrieval dense, "
                 f"{stats['histories']['encoded']:,} histories encoded",
             f"{'table':<16}{'indexed':>10}{'empty':>10}{'pairs':>10}{'< k':>10}"]
    for visibility, sides in stats["tables"].items():
        for side, table in sides.items():
            t = table["totals"]
            lines.append(f"{visibility + '/' + side:<16}{t['users_indexed']:>10,}"
                         f"{t['users_empty']:>10,}{t['pairs_emitted']:>10,}"
                         f"{t['users_below_k']:>10,}")
    lines.append(reconcile_line(stats))
    return "\n".join(lines)


def table_config(dense_config, neighbour_config: NeighbourConfig,
                 preprocess: PreprocessConfig, model_name: str) -> Dict:
    """``neighbour_config.json``: readable by ``NeighbourConfig.from_dict`` (see docstring)."""
    neighbours = neighbour_config.to_dict()
    fields = set(neighbours)
    dense_section = dict(dense_config.to_dict(), model=model_name)
    for name in ("retrieval", "model_dir"):  # if NeighbourConfig ever gains these fields
        if name in fields:
            neighbours[name] = dense_section[name]
    return {"neighbours": neighbours, "dense": dense_section, "retrieval": dense_section[
        "retrieval"], "preprocess": preprocess.to_dict()}


# --------------------------------------------------------------------------- entry points


def check_inputs(input_dir: str, model_dir: str, data_dir: str, output_dir: str
                 ) -> Tuple[Dict[str, str], PreprocessConfig]:
    """Up-front checks; returns the raw paths and the examples' preprocess config.

    Raises:
        InputError: With the file or directory named.
    """
    common.check_output_dir(output_dir, (("input_dir", input_dir), ("model_dir", model_dir),
                                         ("data_dir", data_dir)))
    paths = resolve_inputs(input_dir)
    pre_path = FileSystems.join(data_dir, FN.PREPROCESS_CONFIG_FILE)
    if not FileSystems.exists(pre_path):
        raise kuaisar.InputError(f"{FN.PREPROCESS_CONFIG_FILE} not found in {data_dir!r}: "
                                 "--data_dir should be the jsr-preprocess output the model was "
                                 "trained on.")
    for name in (FN.ITEMS_VOCAB, FN.WORDS_VOCAB, FN.USERS_VOCAB, FN.QUERIES_VOCAB):
        if not FileSystems.exists(FileSystems.join(data_dir, FN.VOCAB_DIR, name)):
            raise kuaisar.InputError(f"Vocabulary file {FN.VOCAB_DIR}/{name} not found in "
                                     f"{data_dir!r}: is it a jsr-preprocess output?")
    if not FileSystems.exists(FileSystems.join(model_dir, FN.CONFIG_FILE)):
        raise kuaisar.InputError(f"{FN.CONFIG_FILE} not found in {model_dir!r}: "
                                 "--model_dir should be a jsr-train model dir.")
    if not FileSystems.match([FileSystems.join(model_dir, FN.BEST_WEIGHTS) + "*"]
                             )[0].metadata_list:
        raise kuaisar.InputError(f"No best weights in {model_dir!r} "
                                 f"({FN.BEST_WEIGHTS}*): training has not finished.")
    try:
        preprocess = PreprocessConfig.from_dict(read_json(pre_path))
    except (ValueError, TypeError) as err:
        raise kuaisar.InputError(f"Bad {pre_path!r}: {err}") from None
    return paths, preprocess


def parse_args(argv: Optional[Sequence[str]]):
    from jsr_tf.neighbours.dense import DenseConfig  # pylint: disable=g-import-not-at-top

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input_dir", required=True, help="Directory with the KuaiSAR CSVs.")
    parser.add_argument("--model_dir", required=True, help="A jsr-train model dir (UniSAR).")
    parser.add_argument("--data_dir", required=True,
                        help="The jsr-preprocess output the model was trained on.")
    parser.add_argument("--output_dir", required=True, help="Where to write the table.")
    parser.add_argument("--k_search", type=int, default=5, help="Search-side neighbours.")
    parser.add_argument("--k_feed", type=int, default=5, help="Feed-side neighbours.")
    parser.add_argument("--snapshot_hours", type=int, default=24,
                        help="Spacing of the default snapshots (from Beijing midnight).")
    parser.add_argument("--snapshots", default=None,
                        help="Comma-separated boundaries: unix ms or Beijing 'YYYY-MM-DD[ HH:MM]'.")
    parser.add_argument("--visibility", default="train,test",
                        help="Comma-separated tables to build: train, test, all.")
    parser.add_argument("--batch_size", type=int, default=256, help="Histories per encode call.")
    parser.add_argument("--block_size", type=int, default=4096, help="Query rows per top-k call.")
    parser.add_argument("--num_shards", type=int, default=1, help="Table shards.")
    args = parser.parse_args(argv)
    try:
        snapshots = tuple(parse_snapshot(t) for t in (args.snapshots or "").split(",")
                          if t.strip())
        dense_config = DenseConfig(
            model_dir=args.model_dir, data_dir=args.data_dir, k_search=args.k_search,
            k_feed=args.k_feed, snapshot_hours=args.snapshot_hours, snapshots=snapshots,
            visibilities=tuple(v.strip() for v in args.visibility.split(",") if v.strip()),
            batch_size=args.batch_size, block_size=args.block_size).validate()
        if args.num_shards < 1:
            raise ValueError(f"`num_shards` should be positive. Received: {args.num_shards}")
    except ValueError as err:
        parser.error(str(err))  # exits with status 2, like any bad flag
    neighbour_config = NeighbourConfig(
        mode=MODE_EXACT, k_search=dense_config.k_search, k_feed=dense_config.k_feed,
        min_jaccard=0.0, snapshot_hours=dense_config.snapshot_hours,
        snapshots=dense_config.snapshots, visibilities=dense_config.visibilities).validate()
    return args, dense_config, neighbour_config


def run(argv: Optional[Sequence[str]] = None) -> Dict:
    """Parses arguments, builds the table, writes and returns the stats.

    Raises:
        InputError: Unusable inputs (checked before any work).
        ReconciliationError: If a count check fails (after the stats are written).
    """
    args, dense_config, config = parse_args(argv)
    start = time.time()
    paths, preprocess = check_inputs(args.input_dir, args.model_dir, args.data_dir,
                                     args.output_dir)
    from jsr_tf.models import factory  # pylint: disable=g-import-not-at-top
    from jsr_tf.neighbours import dense  # pylint: disable=g-import-not-at-top

    model, model_config = factory.load_trained(args.model_dir, args.data_dir)
    if not model.encodes_user_sides:
        raise kuaisar.InputError(f"--model_dir holds a `{model_config.model.name}` model: the "
                                 "dense option needs one with `encode_user` (F_r, F_s): unisar.")
    logging.info("dense_neighbours: %s + %s -> %s, visibilities %s", args.input_dir,
                 args.model_dir, args.output_dir, list(config.visibilities))

    timelines, counters, dead = read_timelines(paths, preprocess)
    counters = collections.Counter(counters)
    snapshots = choose_snapshots(timelines, config)
    plan, histories = plan_histories(timelines, snapshots, config, preprocess)
    counters["histories/planned"] += sum(len(v) for v in plan.values())
    counters["histories/encoded"] += len(histories)
    logging.info("dense_neighbours: %d users, %d snapshots, %d distinct histories to encode",
                 len(timelines), len(snapshots), len(histories))

    encoder = dense.UserVectorEncoder(model, preprocess, dense_config.batch_size)
    keys = list(histories)
    try:
        out = encoder([histories[key] for key in keys])
    except ValueError as err:
        raise kuaisar.InputError(str(err)) from None
    vectors = {key: {FEED: out[dense.FEED_VECTOR][i], SEARCH: out[dense.SEARCH_VECTOR][i]}
               for i, key in enumerate(keys)}
    rows, retrieval_counts = retrieve(plan, vectors, snapshots, config, dense_config.block_size)
    counters.update(retrieval_counts)

    stats = summarise(dict(sorted(counters.items())), snapshots, config)
    stats.update(elapsed_s=round(time.time() - start, 2), input_dir=args.input_dir,
                 model_dir=args.model_dir, data_dir=args.data_dir, mode=config.mode,
                 retrieval=dense.RETRIEVAL, jsr_tf_version=jsr_tf.__version__)

    def produce(staging: str) -> Dict:
        write_table(rows, staging, args.num_shards)
        write_dead_letters(dead, staging)
        write_json(stats, FileSystems.join(staging, FN.NEIGHBOUR_STATS_FILE))
        write_json(table_config(dense_config, config, preprocess, model_config.model.name),
                   FileSystems.join(staging, FN.NEIGHBOUR_CONFIG_FILE))
        raise_unless_reconciled(stats, "Dense neighbour counts")
        return stats

    outputs.run_staged(args.output_dir, "jsr-dense-neighbours", produce, nb.LEGACY_OUTPUTS)
    logging.info("dense_neighbours: done in %.1f s", stats["elapsed_s"])
    return stats


def main(argv: Optional[Sequence[str]] = None) -> None:
    """``jsr-dense-neighbours`` entry point: runs and prints the summary table."""
    console_main(run, format_table, argv)


if __name__ == "__main__":
    main()
