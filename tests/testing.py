"""Shared test harness: hand-written KuaiSAR fixtures and pipeline helpers."""

from __future__ import annotations

import csv
import datetime
import glob
import gzip
import hashlib
import io
import json
import os
from typing import Dict, Iterable, List, Sequence

from jsr_tf import features as F

# Beam's multi-process direct runner: the in-memory FnApiRunner's stages run in 2 worker
# processes, so a job that keeps state in one process's memory writes other output.
MULTI_PROCESS = ("--direct_running_mode=multi_processing", "--direct_num_workers=2")

BEIJING = datetime.timezone(datetime.timedelta(hours=8))
# 2023-05-23 00:00 Beijing: every fixture time is T0 + minutes.
T0_MS = int(datetime.datetime(2023, 5, 23, tzinfo=BEIJING).timestamp() * 1000)

REC_HEADER = ["user_id", "item_id", "playing_time", "duration_ms", "time", "timestamp", "click",
              "forward", "like", "follow", "search", "search_item_related"]
SRC_HEADER = ["user_id", "search_session_id", "search_session_time", "search_session_timestamp",
              "keyword", "search_source", "item_id", "click_cnt", "item_type"]
ITEM_HEADER = ["item_id", "caption", "author_id", "item_type", "upload_time", "upload_type"] + [
    f"{lvl}_level_category_{suffix}" for lvl in ("first", "second", "third", "fourth")
    for suffix in ("id", "name", "name_en")]
USER_HEADER = ["user_id", "search_active_level", "rec_active_level", "onehot_feat1",
               "onehot_feat2"]
SOCIAL_HEADER = ["user_id", "user_follow_id"]


def ts(minutes: float) -> int:
    """Fixture time: T0 + ``minutes``, in unix ms."""
    return T0_MS + int(minutes * 60_000)


def _time_string(ms: int) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000, BEIJING).strftime("%Y-%m-%d %H:%M:%S")


def rec_row(user: int, item: int, minutes: float, click: int = 1, search: int = 0,
            related: int = 0) -> List[str]:
    ms = ts(minutes)
    return [str(user), str(item), "1000.0", "2000.0", _time_string(ms), f"{float(ms)}",
            str(click), "0", "0", "0", str(search), str(related)]


def src_row(user: int, session: int, minutes: float, words: Sequence[int], item: int,
            click: int, item_type: str = "VIDEO") -> List[str]:
    ms = ts(minutes)
    keyword = "[" + ", ".join(str(w) for w in words) + "]"
    return [str(user), str(session), _time_string(ms), f"{float(ms)}", keyword, "USER_INPUT",
            str(item), str(click), item_type]


def item_row(item: int, caption: Sequence[int] = (), cat1: int = 1, cat2: int = 10) -> List[str]:
    cap = "[" + ", ".join(str(w) for w in caption) + "]"
    return [str(item), cap, "7", "NORMAL", "2023-05-01", "LongImport",
            str(cat1), "类", "cat", str(cat2), "子类", "sub", "0", "空", "empty", "0", "空", "empty"]


def user_row(user: int) -> List[str]:
    return [str(user), "3", "2", "1", "4"]


def csv_text(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(row)
    return buf.getvalue()


def write_kuaisar(directory: str, rec: Sequence[Sequence[str]], src: Sequence[Sequence[str]],
                  items: Sequence[Sequence[str]], users: Sequence[Sequence[str]],
                  social: Sequence[Sequence[str]] = (), extra_lines: Dict[str, List[bytes]] = None
                  ) -> str:
    """Writes the five CSVs; ``extra_lines`` appends raw byte lines to a file (dirty input)."""
    os.makedirs(directory, exist_ok=True)
    texts = {"rec_inter.csv": csv_text(REC_HEADER, rec), "src_inter.csv": csv_text(SRC_HEADER, src),
             "item_features.csv": csv_text(ITEM_HEADER, items),
             "user_features.csv": csv_text(USER_HEADER, users),
             "social_network.csv": csv_text(SOCIAL_HEADER, social)}
    for name, text in texts.items():
        data = text.encode("utf-8")
        for line in (extra_lines or {}).get(name, []):
            data += line + b"\n"
        with open(os.path.join(directory, name), "wb") as f:
            f.write(data)
    return directory


def read_examples(data_dir: str, split: str, task: int) -> List[Dict]:
    """Every example of one (split, task) as ``features.to_example_dict`` dicts, in file order."""
    from tensorflow.core.example import example_pb2

    from jsr_tf.pipelines import tfrecord_io

    out = []
    for path in sorted(glob.glob(os.path.join(data_dir, F.file_pattern(split, task)))):
        for data in tfrecord_io.read_gzip_tfrecords(path):
            example = example_pb2.Example()
            example.ParseFromString(data)
            out.append(F.to_example_dict(example))
    return out


def run_preprocess(input_dir: str, output_dir: str, *extra: str) -> Dict:
    """Runs the pipeline in memory and returns its stats."""
    from jsr_tf.pipelines import preprocess

    return preprocess.run(["--input_dir", input_dir, "--output_dir", output_dir,
                           "--runner=FnApiRunner", *extra])


def sessions_of(example: Dict) -> List[Dict]:
    """Unflattens an example's search history into per-session dicts."""
    out = []
    w = c = 0
    for i, ts_ in enumerate(example[F.SEARCH_TS]):
        nw = int(example[F.SEARCH_WORD_LENGTHS][i])
        nc = int(example[F.SEARCH_CLICK_LENGTHS][i])
        out.append({"ts": int(ts_), "row": int(example[F.SEARCH_ROWS][i]),
                    "words": [int(x) for x in example[F.SEARCH_WORDS][w:w + nw]],
                    "clicks": [int(x) for x in example[F.SEARCH_CLICKS][c:c + nc]],
                    "has_click": int(example[F.SEARCH_HAS_CLICK][i])})
        w += nw
        c += nc
    return out


def tree_digest(directory: str) -> Dict[str, str]:
    """SHA-256 of every file under ``directory`` (relative path -> hex)."""
    out = {}
    for root, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, directory)] = hashlib.sha256(f.read()).hexdigest()
    return out


def output_digest(directory: str) -> Dict[str, str]:
    """``tree_digest`` of a job's output, with ``elapsed_s`` left out of its JSON files (the only
    field that may differ between two runs of a job on the same input)."""
    out = tree_digest(directory)
    for name in out:
        if name.endswith(".json"):
            with open(os.path.join(directory, name)) as f:
                value = json.load(f)
            if isinstance(value, dict) and "elapsed_s" in value:
                value.pop("elapsed_s")
                out[name] = hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()
    return out
