"""After the pipeline: reconcile the counters and write ``stats.json``, ``schema.json`` and
``manifest.json``. Also the JSON file helpers and the reconciliation checks (``Checks``,
``raise_unless_reconciled``) that the neighbour jobs use for their own stats.

Every row read is accounted for: ``rows_read = canonical + dropped_duplicate +
dropped_conflicting_id + rejected`` per file, and every target ends up in exactly one bucket (ineligible, user dropped, an example, or
dropped for lack of negatives). A mismatch raises: a pipeline that loses rows must fail loudly.
"""

from __future__ import annotations

import datetime
import json
from typing import Dict, List, Optional

from apache_beam.io.filesystems import FileSystems

import jsr_tf
from jsr_tf import features as F
from jsr_tf import filenames as FN
from jsr_tf.data.config import DEFAULT_PERIOD_END_MS, DEFAULT_PERIOD_START_MS, PreprocessConfig
from jsr_tf.pipelines import tfrecord_io
from jsr_tf.pipelines.transforms import FIRST_TS, ITEMS, LAST_TS, REC, SOCIAL, SRC, USERS



class ReconciliationError(RuntimeError):
    """Counts in and out do not add up; ``stats`` is the job's summary (printed by the CLI)."""

    def __init__(self, message: str, stats: Optional[Dict] = None) -> None:
        super().__init__(message)
        self.stats = stats


def read_json(path: str):
    """The JSON value in ``path`` (any ``FileSystems`` path)."""
    with FileSystems.open(path) as f:
        return json.loads(f.read().decode("utf-8"))


def write_json(obj, path: str) -> None:
    """Writes ``obj`` to ``path`` as indented JSON with sorted keys."""
    with FileSystems.create(path) as out:
        out.write(json.dumps(obj, indent=2, sort_keys=True).encode("utf-8"))


class Checks(list):
    """Reconciliation checks in call order: ``checks(label, left, right)`` appends
    ``{"check": label, "left": left, "right": right, "ok": left == right}``."""

    def __call__(self, label: str, left: int, right: int) -> None:
        self.append({"check": label, "left": left, "right": right, "ok": left == right})

    @property
    def reconciled(self) -> bool:
        return all(x["ok"] for x in self)


def raise_unless_reconciled(stats: Dict, what: str) -> None:
    """Raises ``ReconciliationError("<what> do not reconcile: [failed checks]")`` unless
    ``stats["reconciled"]``."""
    if not stats["reconciled"]:
        bad = [x for x in stats["checks"] if not x["ok"]]
        raise ReconciliationError(f"{what} do not reconcile: {bad}", stats)


def reconcile_line(stats: Dict) -> str:
    """The last line of every job's summary table: reconciled or not, checks, elapsed time."""
    return (f"counts reconcile: {'yes' if stats['reconciled'] else 'NO'} "
            f"({len(stats['checks'])} checks); {stats['elapsed_s']:.1f} s")


def utc_string(ts_ms: Optional[int]) -> Optional[str]:
    """``ts_ms`` as ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (None stays None)."""
    if ts_ms is None:
        return None
    moment = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc) + datetime.timedelta(
        milliseconds=int(ts_ms))
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def observed_span(counters: Dict[str, int]) -> Dict:
    """The time span of the accepted feed and search rows (the data's own period)."""
    firsts = [counters[f"{n}/{FIRST_TS}"] for n in (REC, SRC) if f"{n}/{FIRST_TS}" in counters]
    lasts = [counters[f"{n}/{LAST_TS}"] for n in (REC, SRC) if f"{n}/{LAST_TS}" in counters]
    first, last = (min(firsts) if firsts else None), (max(lasts) if lasts else None)
    return {"first_ts_ms": first, "last_ts_ms": last,
            "first_utc": utc_string(first), "last_utc": utc_string(last)}


def summarise(counters: Dict[str, int]) -> Dict:
    """Structured stats plus the reconciliation checks from the flat counters."""
    c = counters.get
    files = {}
    for name in (REC, SRC, ITEMS, USERS, SOCIAL):
        if f"{name}/rows_read" not in counters:
            continue
        prefix = f"{name}/rejected/"
        rejected = {k[len(prefix):]: v for k, v in counters.items() if k.startswith(prefix)}
        note_prefix = f"{name}/note/"
        files[name] = {
            "rows_read": c(f"{name}/rows_read", 0),
            "canonical": c(f"{name}/canonical", 0),
            "dropped_duplicate": c(f"{name}/dropped_duplicate", 0),
            "dropped_conflicting_id": c(f"{name}/dropped_conflicting_id", 0),
            "rejected": rejected,
            "rejected_total": sum(rejected.values()),
            "notes": {k[len(note_prefix):]: v for k, v in counters.items()
                      if k.startswith(note_prefix)},
        }
    examples = {split.value: {F.task_name(t): c(f"examples/{split.value}/{F.task_name(t)}", 0)
                              for t in F.Task} for split in F.Split}
    targets = {}
    for task in F.Task:
        name = F.task_name(task)
        targets[name] = {
            "targets": c(f"{name}/targets", 0),
            "dropped_history_requirement": c(f"{name}/dropped_history_requirement", 0),
            "dropped_few_targets": c(f"{name}/dropped_few_targets", 0),
            "dropped_insufficient_negatives": c(f"{name}/dropped_insufficient_negatives", 0),
            "users": c(f"{name}/users", 0),
            "users_dropped_few_targets": c(f"{name}/users_dropped_few_targets", 0),
            "rows_without_feed_history": c(f"{name}/rows_without_feed_history", 0),
            "rows_without_search_history": c(f"{name}/rows_without_search_history", 0),
        }
    check = Checks()
    for name, f in files.items():
        check(f"{name}: rows_read = canonical + dropped_duplicate + dropped_conflicting_id"
              " + rejected", f["rows_read"],
              f["canonical"] + f["dropped_duplicate"] + f["dropped_conflicting_id"]
              + f["rejected_total"])
    for task in F.Task:
        name = F.task_name(task)
        t = targets[name]
        n_examples = sum(examples[s.value][name] for s in F.Split)
        check(f"{name}: targets = ineligible + few-target drops + examples + negative drops",
              t["targets"], t["dropped_history_requirement"] + t["dropped_few_targets"]
              + n_examples + t["dropped_insufficient_negatives"])
        for split in (F.Split.VALID.value, F.Split.TEST.value):
            check(f"{name}: users = {split} examples + {split} negative drops", t["users"],
                  examples[split][name]
                  + c(f"{name}/dropped_insufficient_negatives/{split}", 0))
        if f"{name}/fair_negatives/written" in counters or f"{name}/fair_negatives/short" in counters:
            n_eval = examples[F.Split.VALID.value][name] + examples[F.Split.TEST.value][name]
            check(f"{name}: valid + test examples = fair negatives written + short", n_eval,
                  c(f"{name}/fair_negatives/written", 0) + c(f"{name}/fair_negatives/short", 0))
    check("users in the vocabulary = users with events + users with features only",
          c("vocab/users", 0), c("users/with_events", 0) + c("users/without_events", 0))
    return {
        "files": files,
        "targets": targets,
        "examples": examples,
        "users": {"vocab": c("vocab/users", 0), "with_events": c("users/with_events", 0),
                  "without_events": c("users/without_events", 0)},
        "items": {"vocab": c("vocab/items", 0)},
        "words": {"vocab": c("vocab/words", 0)},
        "queries": {"vocab": c("vocab/queries", 0)},
        "search_sessions": {"total": c("search/sessions", 0),
                            "with_click": c("search/sessions_with_click", 0),
                            "rows_repaired": c("sessions/rows_repaired", 0)},
        "negatives": {"fallback_exhaustive": c("negatives/fallback_exhaustive", 0),
                      "fallback_uniform": c("negatives/fallback_uniform", 0)},
        "eval_candidates": {
            **{F.task_name(t): {key: c(f"{F.task_name(t)}/{key}", 0) for key in (
                "fair_negatives/written", "fair_negatives/short", "impressions/written",
                "impressions/empty")} for t in F.Task},
            "fair_fallback_exhaustive": c("fair_negatives/fallback_exhaustive", 0)},
        "period": {"observed": observed_span(counters)},
        "checks": list(check),
        "reconciled": check.reconciled,
        "counters": counters,
    }


def check_written(stats: Dict, shard_counts: Dict[str, int]) -> None:
    """Adds one check per (split, task) to ``stats``: the records the shards hold (as their
    writers counted them) = the examples counted when they were made. A runner that loses
    elements between the two (Beam 2.77's multi-process runner did, on ``medium``, before
    ``pipelines/beam_patches.py``: BENCHMARKS.md §1) fails the run instead of publishing short
    files."""
    check = Checks(stats["checks"])
    for split in F.Split:
        for task in F.Task:
            prefix = F.shard_prefix(split.value, task) + "-"
            written = sum(n for name, n in shard_counts.items() if name.startswith(prefix))
            check(f"{split.value}/{F.task_name(task)}: examples written to the shards = examples "
                  f"made", written, stats["examples"][split.value][F.task_name(task)])
    stats["checks"] = list(check)
    stats["reconciled"] = check.reconciled


def finalize(output_dir: str, config: PreprocessConfig, num_shards: Dict[str, int],
             elapsed_s: float, input_dir: str = "") -> Dict:
    """Writes ``stats.json``, ``schema.json``, ``manifest.json`` and the config; returns stats.

    Raises:
        ReconciliationError: If any count check fails (after ``stats.json`` is written).
    """
    counters = read_json(FileSystems.join(output_dir, FN.RAW_COUNTERS_FILE))
    shard_counts = read_json(FileSystems.join(output_dir, FN.SHARD_COUNTS_FILE))
    stats = summarise(counters)
    check_written(stats, shard_counts)
    stats["elapsed_s"] = round(elapsed_s, 2)
    stats["input_dir"] = input_dir
    stats["period"]["accepted"] = {
        "start_ms": config.period_start_ms, "end_ms": config.period_end_ms,
        "start_utc": utc_string(config.period_start_ms), "end_utc": utc_string(config.period_end_ms),
        "default": (config.period_start_ms, config.period_end_ms) == (
            DEFAULT_PERIOD_START_MS, DEFAULT_PERIOD_END_MS)}
    stats["jsr_tf_version"] = jsr_tf.__version__

    files = {}
    for name, rows in sorted(shard_counts.items()):
        path = FileSystems.join(output_dir, name)
        files[name] = {"rows": rows, "sha256": tfrecord_io.sha256_of(path),
                       "records_sha256": tfrecord_io.records_sha256(path)}
    shape = config.data_shape()
    manifest = {
        F.DATA_SHAPE_KEY: shape.to_dict(),
        "files": files,
        "num_shards": num_shards,
        "sampler": {
            "candidate_seed": config.candidate_seed,
            "num_train_negatives": config.num_train_negatives,
            "num_eval_negatives": config.num_eval_negatives,
            "weights": "train-target count of the item in the same task",
            "negatives_must_predate_target": config.negatives_must_predate_target,
            "exclusions": "positive, session clicks, user's items before the target",
            "seeding": "blake2b(candidate_seed, task, split, user) -> PCG64",
        },
        "sampler_fair": {
            "field": F.NEGATIVES_FAIR,
            "num_negatives": config.num_eval_negatives,
            "weights": ("count of the item among the same task and split's positives / number "
                        "of that task and split's rows allowed to draw it (exclusion-corrected)"),
            "negatives_must_predate_target": config.negatives_must_predate_target,
            "first_seen": "every exposure, held-out targets included",
            "exclusions": "positive, session clicks, user's items before the target",
            "fallback": ("a weighted exhaustive pass, then none (a row the pool cannot fill gets "
                         "an empty list, counted)"),
            "seeding": "blake2b(candidate_seed, 'fair', task, split, user) -> PCG64",
        },
        "impressions": {"field": F.IMPRESSIONS, "max": shape.impressions,
                        "items": "shown and not clicked in the target session (search rows)",
                        "other_clicks": F.OTHER_CLICKS},
        "eval_candidates": "inline: candidates = [target_item] + negatives (jsr_tf/features.py)",
    }
    schema = {"features": F.feature_description(shape),
              "eval_features": F.eval_feature_description(shape),
              "caps": {"feed_history": config.max_feed_history,
                       "search_history": config.max_search_history,
                       "query_words": config.max_query_words,
                       "session_clicks": config.max_session_clicks},
              "file_pattern": {f"{s.value}/{F.task_name(t)}": F.file_pattern(s.value, t)
                               for s in F.Split for t in F.Task}}
    write_json(stats, FileSystems.join(output_dir, FN.STATS_FILE))
    write_json(manifest, FileSystems.join(output_dir, FN.MANIFEST_FILE))
    write_json(schema, FileSystems.join(output_dir, FN.SCHEMA_FILE))
    write_json(config.to_dict(), FileSystems.join(output_dir, FN.PREPROCESS_CONFIG_FILE))
    FileSystems.delete([FileSystems.join(output_dir, FN.RAW_COUNTERS_FILE),
                        FileSystems.join(output_dir, FN.SHARD_COUNTS_FILE)])
    raise_unless_reconciled(stats, "Counts")
    return stats


def guard_problems(stats: Dict, max_rejected_fraction: float) -> List[str]:
    """What makes a finished preprocessing run unusable, one phrase per problem (empty if none).

    - an input file whose rejected rows exceed ``max_rejected_fraction`` of the rows read (a
      wrong period, a wrong file, a broken export: dead-lettering most of a file silently
      would train on the rest);
    - a task (feed or search) without a single example.
    """
    problems = []
    for name, f in stats["files"].items():
        read, rejected = f["rows_read"], f["rejected_total"]
        if read and rejected / read > max_rejected_fraction:
            top = max(f["rejected"].items(), key=lambda kv: kv[1])[0]
            problems.append(f"{name}: {rejected:,} of {read:,} rows rejected "
                            f"({rejected / read:.1%}, mostly {top}) > --max_rejected_fraction="
                            f"{max_rejected_fraction:g}")
    for task in F.Task:
        name = F.task_name(task)
        if not sum(stats["examples"][s.value][name] for s in F.Split):
            problems.append(f"no {name} examples (targets: {stats['targets'][name]['targets']:,})")
    return problems


def format_table(stats: Dict) -> str:
    """A plain-text table of the main counts."""
    lines = ["", f"{'file':<22}{'read':>12}{'used':>12}{'duplicate':>11}{'rejected':>10}"]
    for name, f in stats["files"].items():
        lines.append(f"{name:<22}{f['rows_read']:>12,}{f['canonical']:>12,}"
                     f"{f['dropped_duplicate']:>11,}{f['rejected_total']:>10,}")
        for reason, n in sorted(f["rejected"].items()):
            lines.append(f"{'':<4}rejected: {reason:<30}{n:>10,}")
    lines.append("")
    lines.append(f"{'examples':<22}{'train':>12}{'valid':>12}{'test':>11}{'users':>10}")
    for task in ("feed", "search"):
        e = stats["examples"]
        lines.append(f"{task:<22}{e['train'][task]:>12,}{e['valid'][task]:>12,}"
                     f"{e['test'][task]:>11,}{stats['targets'][task]['users']:>10,}")
    lines.append("")
    lines.append(f"vocab: {stats['users']['vocab']:,} users, {stats['items']['vocab']:,} items, "
                 f"{stats['words']['vocab']:,} words")
    period = stats.get("period", {})
    observed, accepted = period.get("observed", {}), period.get("accepted", {})
    if observed.get("first_utc"):
        lines.append(f"period: data {observed['first_utc'][:19]} .. {observed['last_utc'][:19]} UTC; "
                     + ("accepted: any timestamp (default)" if accepted.get("default", True) else
                        f"accepted: {accepted['start_utc'][:19]} .. {accepted['end_utc'][:19]}"))
    lines.append(reconcile_line(stats))
    return "\n".join(lines)
