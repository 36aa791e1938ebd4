"""Serving latency of the ``jsr-export`` SavedModel, measured in-process on CPU.

Builds a UniSAR ranker and a two-tower retrieval head for a pipeline output (``medium`` by
default) without training them (latency does not depend on the weight values): the variables are
created by one ``compute_loss`` on a reader batch, saved as the run's best weights with its
``config.json``, and both runs are exported with ``jsr_tf.export.exporter.export_run``. The
SavedModel is then loaded with ``tf.saved_model.load`` in this process and its signatures are called
the way a client of the loaded model calls them: ``loaded.signatures[name](**inputs)`` followed by
``.numpy()`` of every output, timed one call at a time with ``time.perf_counter`` after warm-up
calls.

Requests are real rows of the valid split (``jsr_tf.export.warmup.sample_requests``): 1 or 64 users
with their 100 evaluation candidates (1 positive + 99 negatives); ``retrieve`` takes the search rows
with ``exclude_history`` true and ``k = top_k`` over the whole catalogue. The inputs are
``tf.Tensor`` s built once before timing, so the figures leave out request decoding and the network
(what TF Serving adds on top).

With ``--exports`` (e.g. ``default,xla``) every listed export variant is written once and
each is then loaded and timed in a fresh child process (the way a server starts), the variants
alternating over ``--rounds`` rounds so that a slow spell of a shared machine hits them alike:

    .venv/bin/python benchmarks/bench_serving.py --exports default,xla --rounds 2 \
        --output bench_output/serving_exports.json

Also timed: a trivial signature with the same inputs (the fixed cost of calling a loaded
signature); the in-process Keras ``model.score`` under ``tf.function`` for 1 × 100, with two of its
parts (id lookups; lookups + user side + candidate item vectors); and, in a child process each
(TF's thread pools are fixed once the runtime starts), the same calls under other
``tf.config.threading`` settings. The export record also counts the graph ops per signature.

    .venv/bin/python benchmarks/bench_serving.py --output bench_output/serving.json

``--compare_rankers unisar,uditsr`` instead exports each ranker alone (no retrieval head, cached
item vectors) and times their ``feed`` and ``search`` signatures at 1 × 100 alternately, ranker
after ranker, for ``--rounds`` rounds of ``--calls_1`` calls each in one process; it reports the
median over rounds of each p50 / p99 and the ratio of each ranker to the first (issue 16):

    .venv/bin/python benchmarks/bench_serving.py --data_dir DATA --compare_rankers unisar,uditsr \
        --rounds 5 --output bench_output/serving_rankers.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import jsr_tf  # noqa: F401,E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks.machine import machine_info  # noqa: E402
from jsr_tf import filenames as FN  # noqa: E402

EXPORT_VARIANTS = {  # name -> export_run keyword arguments
    "default": {"cache_items": True},  # jsr-export's default: cached item vectors, no XLA
    "xla": {"cache_items": True, "jit_compile": True},  # jsr-export --jit_compile
    "uncached": {"cache_items": False},  # jsr-export --nocache_item_vectors
}

THREAD_VARIANTS = {  # name -> (inter_op, intra_op); 0 = TF's default (one per core)
    "default": (0, 0),
    "inter1": (1, 0),
    "inter1_intra1": (1, 1),
}


def machine() -> Dict[str, Any]:
    return machine_info()


def threading_info() -> Dict[str, int]:
    return {"inter_op_parallelism_threads": tf.config.threading.get_inter_op_parallelism_threads(),
            "intra_op_parallelism_threads": tf.config.threading.get_intra_op_parallelism_threads()}


def dir_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path)
               for f in files)


def time_calls(fn: Callable[[], Any], warmup: int, calls: int) -> Dict[str, float]:
    """Latency of ``fn`` (which must finish its work, e.g. ``.numpy()`` its outputs) in ms."""
    for _ in range(warmup):
        fn()
    times = np.empty(calls)
    for i in range(calls):
        start = time.perf_counter()
        fn()
        times[i] = time.perf_counter() - start
    ms = times * 1e3
    return {"calls": calls, "p50_ms": float(np.percentile(ms, 50)),
            "p90_ms": float(np.percentile(ms, 90)), "p99_ms": float(np.percentile(ms, 99)),
            "max_ms": float(ms.max()), "mean_ms": float(ms.mean()),
            "requests_per_s": float(calls / times.sum())}


def numpy_outputs(fn: Callable[..., Dict[str, tf.Tensor]], inputs: Dict[str, tf.Tensor]):
    def call():
        return {k: v.numpy() for k, v in fn(**inputs).items()}

    return call


# -- building the run dirs and the export ---------------------------------------------------------
def build_runs(data_dir: str, work_dir: str, batch_size: int,
               names: Sequence[str] = ("unisar", "two_tower")) -> Dict[str, str]:
    """Untrained run dirs (config.json + best weights) of the presets ``names`` (default: UniSAR
    and the two-tower head) under ``work_dir``."""
    import tf_keras as keras

    from jsr_tf import features as F
    from jsr_tf.config import preset
    from jsr_tf.data import reader
    from jsr_tf.data.vocab import load_vocab
    from jsr_tf.keys import Inputs
    from jsr_tf.filenames import BEST_WEIGHTS
    from jsr_tf.models.factory import build_model, save_config

    vocab = load_vocab(data_dir)
    feed = next(iter(reader.make_dataset(data_dir, "train", F.Task.FEED, batch_size,
                                         shuffle_buffer=0)))
    search = next(iter(reader.make_dataset(data_dir, "train", F.Task.SEARCH, batch_size,
                                           shuffle_buffer=0)))
    runs = {}
    for name in names:
        keras.utils.set_random_seed(1)
        config = preset(name)
        model = build_model(config, vocab)
        model.compute_loss({Inputs.FEED: feed, Inputs.SEARCH: search})  # creates the variables
        run_dir = os.path.join(work_dir, name)
        if os.path.exists(run_dir):
            shutil.rmtree(run_dir)
        model.save_weights(os.path.join(run_dir, BEST_WEIGHTS))
        save_config(config, run_dir)
        runs[name] = run_dir
    return runs


def save_trivial(path: str) -> None:
    """A SavedModel whose ``feed``-shaped signature only sums the candidates: the call overhead."""
    from jsr_tf.export import signatures as SG

    class Trivial(tf.Module):
        @tf.function(input_signature=list(SG.BY_NAME[SG.FEED_SIGNATURE].inputs.values()))
        def feed(self, *args):
            return {SG.SCORES: tf.cast(args[-1], tf.float32) + 1.0}

    module = Trivial()
    tf.saved_model.save(module, path,
                        signatures={SG.FEED_SIGNATURE: module.feed.get_concrete_function()})


# -- measuring ---------------------------------------------------------------------------------
def request_sets(data_dir: str, rows: int) -> Dict[str, Dict[str, Dict[str, tf.Tensor]]]:
    """signature -> "1x100" / "64x100" -> input tensors (first row, first ``rows`` rows)."""
    from jsr_tf.export import signatures as SG
    from jsr_tf.export import warmup

    requests = warmup.sample_requests(data_dir, rows=rows)
    out: Dict[str, Dict[str, Dict[str, tf.Tensor]]] = {}
    for signature in (SG.FEED_SIGNATURE, SG.SEARCH_SIGNATURE, SG.RETRIEVE_SIGNATURE,
                      SG.DEFAULT_SIGNATURE):
        inputs = requests[signature]
        got = {len(v) for v in inputs.values()}
        if got != {rows}:
            raise ValueError(f"{signature}: expected {rows} rows, got {got}")
        if SG.CANDIDATES in inputs and inputs[SG.CANDIDATES].shape[1] != 100:
            raise ValueError(f"{signature}: {inputs[SG.CANDIDATES].shape[1]} candidates, not 100")
        out[signature] = {
            "1": {k: tf.constant(v[:1]) for k, v in inputs.items()},
            f"{rows}": {k: tf.constant(v) for k, v in inputs.items()}}
    return out


def measure(path: str, trivial_path: str, data_dir: str, args) -> List[Dict[str, Any]]:
    from jsr_tf.export import signatures as SG

    sets = request_sets(data_dir, args.rows)
    start = time.perf_counter()
    loaded = tf.saved_model.load(path)
    load_s = time.perf_counter() - start
    trivial = tf.saved_model.load(trivial_path)
    results = []

    def add(label, signature, rows, candidates, fn, calls):
        row = {"case": label, "signature": signature, "rows": rows, "candidates": candidates,
               **time_calls(fn, args.warmup, calls)}
        row["rows_per_s"] = row["requests_per_s"] * rows
        results.append(row)
        print(json.dumps(row), flush=True)

    feed_inputs = {k: v for k, v in sets[SG.FEED_SIGNATURE]["1"].items()}
    add("trivial signature (same inputs), 1 × 100", "trivial", 1, 100,
        numpy_outputs(trivial.signatures["feed"], feed_inputs), args.calls_1)
    for signature in (SG.FEED_SIGNATURE, SG.SEARCH_SIGNATURE):
        fn = loaded.signatures[signature]
        add(f"{signature}, 1 × 100", signature, 1, 100,
            numpy_outputs(fn, sets[signature]["1"]), args.calls_1)
        add(f"{signature}, {args.rows} × 100", signature, args.rows, 100,
            numpy_outputs(fn, sets[signature][str(args.rows)]), args.calls_64)
    if SG.RETRIEVE_SIGNATURE in loaded.signatures:
        fn = loaded.signatures[SG.RETRIEVE_SIGNATURE]
        add("retrieve, 1 user, k = 100, exclude_history", "retrieve", 1, None,
            numpy_outputs(fn, sets[SG.RETRIEVE_SIGNATURE]["1"]), args.calls_retrieve)
        add(f"retrieve, {args.rows} users, k = 100, exclude_history", "retrieve", args.rows,
            None, numpy_outputs(fn, sets[SG.RETRIEVE_SIGNATURE][str(args.rows)]),
            args.calls_64)
    if args.serving_default:
        fn = loaded.signatures[SG.DEFAULT_SIGNATURE]
        add("serving_default (tf.Example, both heads), 1 × 100", "serving_default", 1, 100,
            numpy_outputs(fn, sets[SG.DEFAULT_SIGNATURE]["1"]), args.calls_1)
        add(f"serving_default (tf.Example, both heads), {args.rows} × 100", "serving_default",
            args.rows, 100, numpy_outputs(fn, sets[SG.DEFAULT_SIGNATURE][str(args.rows)]),
            args.calls_64)
    for row in results:
        row["load_s"] = load_s
    return results


def reference_score(run_dir: str, data_dir: str, args) -> Dict[str, Any]:
    """The in-process Keras ``model.score`` under ``tf.function``, 1 × 100 feed."""
    from jsr_tf import features as F
    from jsr_tf.data import reader
    from jsr_tf.models import factory

    model, _ = factory.load_trained(run_dir, data_dir)
    batch = next(iter(reader.make_dataset(data_dir, "valid", F.Task.FEED, 1, shuffle_buffer=0)))
    batch = {k: v for k, v in batch.items() if k != reader.LABEL}

    def encode(b):  # the candidate-independent user side + the candidates' item vectors
        b = model.prepare(b)
        side = model.encode_user(b, [b[reader.CANDIDATES]], training=False)
        return [t for t in tf.nest.flatten(side) if t.dtype.is_floating]

    parts = (
        ("in-process model.prepare only (id lookups), 1 × 100",
         tf.function(lambda b: tf.nest.flatten(model.prepare(b)))),
        ("in-process prepare + encode_user (with the 100 candidate items), 1 × 100",
         tf.function(encode)),
        ("in-process model.score (tf.function), feed 1 × 100",
         tf.function(lambda b: model.score(b, F.Task.FEED, training=False))))
    rows = []
    for label, fn in parts:
        call = (lambda fn=fn: [t.numpy() for t in tf.nest.flatten(fn(batch))])
        row = {"case": label, "signature": "score", "rows": 1,
               "candidates": int(batch[reader.CANDIDATES].shape[1]),
               **time_calls(call, args.warmup, args.calls_1)}
        row["rows_per_s"] = row["requests_per_s"]
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def graph_ops(loaded) -> Dict[str, int]:
    """Nodes per signature, nested function bodies included, without Const/Placeholder/Identity
    (a rough count of the kernels the executor runs per call, before Grappler's rewrites)."""
    skip = {"Const", "Placeholder", "Identity", "NoOp"}
    out = {}
    for name, fn in loaded.signatures.items():
        graph_def = fn.graph.as_graph_def()
        library = {f.signature.name: f for f in graph_def.library.function}

        def count(nodes):
            n = 0
            for node in nodes:
                n += node.op not in skip
                if "f" in node.attr and node.attr["f"].func.name in library:
                    n += count(library[node.attr["f"].func.name].node_def)
            return n

        out[name] = count(graph_def.node)
    return out


def markdown(results: List[Dict[str, Any]]) -> str:
    lines = ["| threads | case | p50 ms | p90 ms | p99 ms | mean ms | requests/s | rows/s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.get('threads', 'default')} | {r['case']} | {r['p50_ms']:.2f} | "
                     f"{r['p90_ms']:.2f} | {r['p99_ms']:.2f} | {r['mean_ms']:.2f} | "
                     f"{r['requests_per_s']:.0f} | {r['rows_per_s']:.0f} |")
    return "\n".join(lines)


def compare_rankers(args) -> None:
    """``--compare_rankers``: 1 × 100 ``feed`` / ``search`` latency of several rankers, timed
    alternately in this process (see the module docstring)."""
    import statistics

    from jsr_tf.export import signatures as SG
    from jsr_tf.export.exporter import export_run

    names = args.compare_rankers.split(",")
    runs = build_runs(args.data_dir, args.work_dir, batch_size=32, names=names)
    loaded = {}
    for name in names:
        path = export_run(runs[name], os.path.join(args.work_dir, f"export_{name}"),
                          data_dir=args.data_dir, version=1, overwrite=True)
        loaded[name] = tf.saved_model.load(path)
    sets = request_sets(args.data_dir, args.rows)
    rounds: Dict[str, List[Dict[str, float]]] = {}
    for round_ in range(args.rounds):
        for name in names:
            for signature in (SG.FEED_SIGNATURE, SG.SEARCH_SIGNATURE):
                row = time_calls(numpy_outputs(loaded[name].signatures[signature],
                                               sets[signature]["1"]), args.warmup, args.calls_1)
                rounds.setdefault(f"{name} {signature}", []).append(row)
                print(json.dumps({"round": round_, "ranker": name, "signature": signature,
                                  **{k: round(v, 3) for k, v in row.items()}}), flush=True)
    summary = []
    for key, rows in rounds.items():
        name, signature = key.split(" ")
        first = rounds[f"{names[0]} {signature}"]
        entry = {"ranker": name, "signature": signature, "case": "1 × 100"}
        for stat in ("p50_ms", "p99_ms", "mean_ms"):
            entry[stat] = round(statistics.median(r[stat] for r in rows), 3)
            entry[f"{stat}_ratio_to_{names[0]}"] = round(
                entry[stat] / statistics.median(r[stat] for r in first), 2)
        summary.append(entry)
    report = {"summary": summary, "rounds": rounds, "calls_per_round": args.calls_1,
              "data_dir": args.data_dir, "machine": machine(), **threading_info()}
    print(json.dumps({"summary": summary}, indent=1))
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w") as f:
            json.dump(report, f, indent=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", default="bench_output/medium/data")
    parser.add_argument("--work_dir", default="bench_output/serving",
                        help="Run dirs and the export go here (replaced).")
    parser.add_argument("--rows", type=int, default=64, help="Users of the batched requests.")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--calls_1", type=int, default=300, help="Timed calls, 1-user requests.")
    parser.add_argument("--calls_64", type=int, default=100, help="Timed calls, batched requests.")
    parser.add_argument("--calls_retrieve", type=int, default=200,
                        help="Timed calls, 1-user retrieve.")
    parser.add_argument("--top_k", type=int, default=100)
    parser.add_argument("--threads", default=None,
                        help=f"Thread variants, from {sorted(THREAD_VARIANTS)}; the first runs "
                             "in this process, the others in child processes (default "
                             "default,inter1,inter1_intra1). With --exports, every export is "
                             "timed under each variant in its own fresh process (default: "
                             "default only).")
    parser.add_argument("--serving_default", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--cache_items", action=argparse.BooleanOptionalAction, default=None,
                        help="Passed to export_run only when given (exporters that have it).")
    parser.add_argument("--jit_compile", action="store_true",
                        help="Export with XLA-compiled ranker functions (export_run jit_compile).")
    parser.add_argument("--exports", default=None,
                        help=f"Comma-separated export variants from {sorted(EXPORT_VARIANTS)}: "
                             "each is exported, then loaded and timed in a fresh process per "
                             "round (the --threads/--cache_items/--jit_compile flags are then "
                             "unused).")
    parser.add_argument("--rounds", type=int, default=None,
                        help="Rounds of --exports (default 2) or --compare_rankers (default 5).")
    parser.add_argument("--reuse_exports", action="store_true",
                        help="--exports: time the exports already in --work_dir (from an "
                             "earlier run of the same tree) instead of writing them again.")
    parser.add_argument("--output", default="bench_output/serving.json")
    parser.add_argument("--compare_rankers", default=None,
                        help="Comma-separated ranker presets timed alternately at 1 × 100 "
                             "(feed, search) instead of the full measurement.")
    # Internal: a child process that only loads and measures.
    parser.add_argument("--measure_only", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--export_dir", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rounds is None:
        args.rounds = 5 if args.compare_rankers else 2
    if args.threads is None:
        args.threads = "default" if args.exports else "default,inter1,inter1_intra1"
    if args.exports and not args.measure_only:
        return compare_exports(args)

    if args.compare_rankers:
        compare_rankers(args)
        return
    variants = args.threads.split(",")
    first = args.measure_only or variants[0]
    inter, intra = THREAD_VARIANTS[first]
    if inter:
        tf.config.threading.set_inter_op_parallelism_threads(inter)
    if intra:
        tf.config.threading.set_intra_op_parallelism_threads(intra)

    export_dir = args.export_dir or os.path.join(args.work_dir, "export", "jsr", "1")
    trivial_dir = os.path.join(args.work_dir, "trivial")
    if args.measure_only:
        results = measure(export_dir, trivial_dir, args.data_dir, args)
        for row in results:
            row["threads"] = first
            row.update(threading_info())
        print("CHILD_RESULTS " + json.dumps(results), flush=True)
        return

    from jsr_tf.export.exporter import export_run
    from jsr_tf.data.vocab import load_vocab

    os.makedirs(args.work_dir, exist_ok=True)
    start = time.perf_counter()
    runs = build_runs(args.data_dir, args.work_dir, batch_size=32)
    build_s = time.perf_counter() - start
    start = time.perf_counter()
    extra = {} if args.cache_items is None else {"cache_items": args.cache_items}
    if args.jit_compile:
        extra["jit_compile"] = True
    path = export_run(runs["unisar"], os.path.join(args.work_dir, "export"),
                      data_dir=args.data_dir, retrieval_dir=runs["two_tower"], top_k=args.top_k,
                      version=1, overwrite=True, **extra)
    export_s = time.perf_counter() - start
    if os.path.exists(trivial_dir):
        shutil.rmtree(trivial_dir)
    save_trivial(trivial_dir)
    export = {"path": path, "export_s": round(export_s, 1), "build_runs_s": round(build_s, 1),
              "saved_model_mib": round(dir_bytes(path) / 2**20, 1),
              "variables_mib": round(dir_bytes(os.path.join(path, "variables")) / 2**20, 1),
              "saved_model_pb_mib": round(
                  os.path.getsize(os.path.join(path, "saved_model.pb")) / 2**20, 1),
              "catalogue_items": int(len(load_vocab(args.data_dir).item_ids)),
              "top_k": args.top_k, "graph_ops": graph_ops(tf.saved_model.load(path))}
    with open(os.path.join(path, FN.EXTRA_DIR, FN.EXPORT_INFO_FILE)) as f:
        export["export_info"] = json.load(f)
    print(json.dumps(export), flush=True)

    results = measure(path, trivial_dir, args.data_dir, args)
    for row in results:
        row["threads"] = first
        row.update(threading_info())
    try:
        for ref in reference_score(runs["unisar"], args.data_dir, args):
            ref["threads"] = first
            ref.update(threading_info())
            results.append(ref)
    except Exception as err:  # a reference only; the serving figures stand without it
        print(f"model.score reference skipped: {err!r}", flush=True)

    for variant in variants[1:]:
        results.extend(measure_in_child(args, variant))
    write_report(args, results, export)


def measure_in_child(args, threads: str, export_dir: str = None) -> List[Dict[str, Any]]:
    """Loads and times an export in a fresh process (``--measure_only``); [] if it failed."""
    cmd = [sys.executable, os.path.abspath(__file__), "--measure_only", threads,
           "--data_dir", args.data_dir, "--work_dir", args.work_dir, "--rows", str(args.rows),
           "--warmup", str(args.warmup), "--calls_1", str(args.calls_1), "--calls_64",
           str(args.calls_64), "--calls_retrieve", str(args.calls_retrieve),
           "--serving_default" if args.serving_default else "--no-serving_default"]
    if export_dir:
        cmd += ["--export_dir", export_dir]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    line = next((l for l in done.stdout.splitlines() if l.startswith("CHILD_RESULTS ")), None)
    if done.returncode or line is None:
        print(f"measurement {threads} {export_dir or ''} failed:\n{done.stderr[-3000:]}",
              flush=True)
        return []
    child = json.loads(line[len("CHILD_RESULTS "):])
    for row in child:
        print(json.dumps(row), flush=True)
    return child


def write_report(args, results: List[Dict[str, Any]], export: Dict[str, Any]) -> None:
    for row in results:
        for key, value in row.items():
            if isinstance(value, float):
                row[key] = round(value, 3)
    report = {"results": results, "export": export, "machine": machine(),
              "load_average": os.getloadavg(),
              "request_inputs": "tf.constant tensors built before timing; every output .numpy()"}
    print(markdown(results))
    print(json.dumps({"export": export, "machine": report["machine"]}))
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w") as f:
            json.dump(report, f, indent=2)


def compare_exports(args) -> None:
    """``--exports``: every variant exported once, then each timed in a fresh process per round,
    the variants alternating."""
    from jsr_tf.export.exporter import export_run

    names = args.exports.split(",")
    unknown = sorted(set(names) - set(EXPORT_VARIANTS))
    if unknown:
        raise SystemExit(f"unknown --exports {unknown}; choose from {sorted(EXPORT_VARIANTS)}")
    os.makedirs(args.work_dir, exist_ok=True)
    export, paths = {"load_average_at_start": os.getloadavg()}, {}
    if args.reuse_exports:
        names_paths = {n: os.path.join(args.work_dir, f"export_{n}", "jsr", "1") for n in names}
        missing = [p for p in names_paths.values() if not os.path.isdir(p)]
        if missing:
            raise SystemExit(f"--reuse_exports: no export at {missing}")
        paths.update(names_paths)
        names_to_write = []
    else:
        runs = build_runs(args.data_dir, args.work_dir, batch_size=32)
        trivial_dir = os.path.join(args.work_dir, "trivial")
        if os.path.exists(trivial_dir):
            shutil.rmtree(trivial_dir)
        save_trivial(trivial_dir)
        names_to_write = names
    for name in names_to_write:
        start = time.perf_counter()
        paths[name] = export_run(runs["unisar"], os.path.join(args.work_dir, f"export_{name}"),
                                 data_dir=args.data_dir, retrieval_dir=runs["two_tower"],
                                 top_k=args.top_k, version=1, overwrite=True,
                                 **EXPORT_VARIANTS[name])
        export[name] = {"path": paths[name], "export_s": round(time.perf_counter() - start, 1),
                        "saved_model_mib": round(dir_bytes(paths[name]) / 2**20, 1),
                        **EXPORT_VARIANTS[name]}
        print(json.dumps({name: export[name]}), flush=True)
    for name in names:
        export.setdefault(name, {"path": paths[name], **EXPORT_VARIANTS[name],
                                 "saved_model_mib": round(dir_bytes(paths[name]) / 2**20, 1)})
    threads = args.threads.split(",")
    unknown = sorted(set(threads) - set(THREAD_VARIANTS))
    if unknown:
        raise SystemExit(f"unknown --threads {unknown}; choose from {sorted(THREAD_VARIANTS)}")
    results = []
    for round_ in range(args.rounds):
        for name in names:
            for variant in threads:
                label = name if variant == "default" else f"{name}, {variant}"
                for row in measure_in_child(args, variant, paths[name]):
                    row.update({"export": name, "round": round_ + 1,
                                "case": f"[{label}] {row['case']}"})
                    results.append(row)
    write_report(args, results, export)


if __name__ == "__main__":
    main()
