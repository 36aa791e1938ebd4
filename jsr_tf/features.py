"""The example contract: one source of truth for feature names, dtypes and caps.

Every producer and consumer of training data imports its names from here: the Beam pipeline that
writes ``tf.train.Example`` records, the ``tf.data`` reader that parses them, the TFDS builder and
(later) the serving signatures. ``tests/test_features.py`` asserts the invariants below.

One example is written per prediction *target* (a feed click or a clicked search session).

Target fields (scalars unless noted):
    user_id: raw KuaiSAR user id.
    task: ``Task.FEED`` (0) or ``Task.SEARCH`` (1).
    target_item: raw id of the positive item.
    target_ts: target time, unix ms.
    target_row: 0-based data-line index of the target in its source file (``rec_inter.csv`` for
        feed, the session's first row in ``src_inter.csv`` for search). Together with ``user_id``
        and ``task`` it identifies the target event; tests use it to prove the absence of leakage.
    query_words: ``[<= MAX_QUERY_WORDS]`` raw word ids of the target query (search only; empty for
        feed rows).
    negatives: raw item ids of the stored negatives: ``NUM_TRAIN_NEGATIVES`` on train rows,
        ``NUM_EVAL_NEGATIVES`` on valid and test rows. **Decision (DESIGN.md §3):** eval
        negatives are stored *inline* in the valid and test TFRecords, so those files are the
        candidate files of spec/evaluation.md §3 (positive = ``target_item``, i.e. candidate
        column 0). ``manifest.json`` records their row counts, sampler settings and SHA-256.

History fields (events strictly before ``target_ts`` — with ``PreprocessConfig.reference()``:
earlier in canonical order, so same-timestamp events can be history — the most recent
``MAX_FEED_HISTORY`` / ``MAX_SEARCH_HISTORY`` kept, stored **oldest first**):
    feed_items, feed_ts, feed_rows: ``[<= 30]`` feed positives (``click == 1``).
    search_ts, search_rows, search_has_click: ``[<= 30]`` search sessions.
    search_words + search_word_lengths: each session's query words (``<= 50`` each), flattened,
        with one length per session.
    search_clicks + search_click_lengths: each session's clicked items (``<= 5`` each), flattened,
        with one length per session. A no-click session carries the fallback item (its first
        shown item) and ``search_has_click = 0``.

Evaluation fields (``EVAL_FEATURES``; valid and test rows only, absent on train rows; the reader
parses them only when an evaluation protocol asks, see ``jsr_tf/evaluation/protocols.py``):
    negatives_fair: ``[NUM_EVAL_NEGATIVES]`` raw item ids, the negatives of the ``sampled_fair``
        protocol: drawn from the popularity of the *same (task, split)'s positives* (so the
        candidate set carries no label signal for an item-only scorer), under the same
        exclusions as ``negatives`` (the positive, the session's clicks, the user's earlier items,
        items first seen at or after the target; first-seen times here include held-out events).
        Empty when the pool could not supply them (counted in ``stats.json``).
    impressions: ``[<= MAX_IMPRESSIONS]`` (search rows only) the items the target session showed
        and the user did not click, in file order, deduplicated: the hard negatives of the
        ``impressions`` protocol.
    other_clicks: ``[<= MAX_IMPRESSIONS]`` (search rows only) the target session's clicked items
        other than the positive ("also relevant": never a negative under any protocol; the
        ``full`` protocol excludes them from the catalogue).

Ids in the files are raw KuaiSAR ids (int64, not contiguous, may exceed 2^31). The model maps
them to dense indices with lookup tables built from ``vocab/``.

Padding (issue #12: Kuaishou numbers users, items and words from 0):
    Every non-negative int64 is a valid raw id, 0 included. The padding value of every raw-id
    list is ``RAW_PAD_ID = -1``: the reader pads ``feed_items``, ``search_words``,
    ``search_clicks``, ``query_words``, ``negatives``, the evaluation lists and the neighbour
    payload's id blocks with it, the neighbour jobs write it into their fixed-size blocks, and a
    serving request pads id lists with it. ``IdLookup`` maps every negative raw id to the dense
    padding index ``PAD_ID = 0`` (the models' masks are computed on dense indices, after the
    lookup), raw ids of the vocabulary to ``2 + k`` and other raw ids to OOV (1).
    Compatibility: when raw id 0 is *not* in a vocabulary it also maps to the padding index, so
    data written before this change (0-padded lists) and 0-padded requests to such a model keep
    their meaning exactly. Timestamps keep 0 = empty slot: the importer rejects a timestamp of 0
    (``timestamp_out_of_period``). Item side features keep the format's own conventions
    (``author_id`` and category ids: 0 = unknown / missing).
"""

from __future__ import annotations

import enum
from typing import Dict, Mapping

import numpy as np

from jsr_tf import filenames

# ---------------------------------------------------------------------------------------------
# Caps (UniSAR reference values, spec/unisar.md §11).
MAX_FEED_HISTORY = 30
MAX_SEARCH_HISTORY = 30
MAX_QUERY_WORDS = 50
MAX_CAPTION_WORDS = 50
MAX_SESSION_CLICKS = 5
NUM_TRAIN_NEGATIVES = 4
NUM_EVAL_NEGATIVES = 99
NUM_EVAL_CANDIDATES = 1 + NUM_EVAL_NEGATIVES
MAX_IMPRESSIONS = 99  # shown-but-not-clicked items kept per target session (evaluation only)

# Padding: raw id lists are padded with ``RAW_PAD_ID`` (raw 0 is a valid id); the model's lookups
# map it (every negative raw id) to the dense padding index ``PAD_ID``; dense index 1 is OOV.
RAW_PAD_ID = -1
PAD_ID = 0  # dense padding index (after ``IdLookup``)


class Task(enum.IntEnum):
    """Prediction task of an example."""

    FEED = 0
    SEARCH = 1


class BehaviorType(enum.IntEnum):
    """Type of a slot in the merged 60-slot history (spec/unisar.md §3)."""

    PAD = 0
    FEED = 1
    SEARCH = 2


class EventKind(enum.IntEnum):
    """Kind of a canonical event; the tie-break of the canonical order ``(ts, kind, row)``."""

    FEED = 0
    SEARCH = 1


class Split(str, enum.Enum):
    """Output splits. The value is the file prefix."""

    TRAIN = "train"
    VALID = "valid"
    TEST = "test"


# ---------------------------------------------------------------------------------------------
# Feature names.
USER_ID = "user_id"
TASK = "task"
TARGET_ITEM = "target_item"
TARGET_TS = "target_ts"
TARGET_ROW = "target_row"
QUERY_WORDS = "query_words"
NEGATIVES = "negatives"

FEED_ITEMS = "feed_items"
FEED_TS = "feed_ts"
FEED_ROWS = "feed_rows"

SEARCH_TS = "search_ts"
SEARCH_ROWS = "search_rows"
SEARCH_HAS_CLICK = "search_has_click"
SEARCH_WORDS = "search_words"
SEARCH_WORD_LENGTHS = "search_word_lengths"
SEARCH_CLICKS = "search_clicks"
SEARCH_CLICK_LENGTHS = "search_click_lengths"

SCALAR_FEATURES = (USER_ID, TASK, TARGET_ITEM, TARGET_TS, TARGET_ROW)
LIST_FEATURES = (
    QUERY_WORDS, NEGATIVES,
    FEED_ITEMS, FEED_TS, FEED_ROWS,
    SEARCH_TS, SEARCH_ROWS, SEARCH_HAS_CLICK,
    SEARCH_WORDS, SEARCH_WORD_LENGTHS, SEARCH_CLICKS, SEARCH_CLICK_LENGTHS,
)
ALL_FEATURES = SCALAR_FEATURES + LIST_FEATURES

# Optional evaluation-only lists of valid/test rows (see the module docstring).
NEGATIVES_FAIR = "negatives_fair"
IMPRESSIONS = "impressions"
OTHER_CLICKS = "other_clicks"
EVAL_FEATURES = (NEGATIVES_FAIR, IMPRESSIONS, OTHER_CLICKS)

# Label-like fields that a serving request does not carry.
LABEL_FEATURES = (TARGET_ITEM, TARGET_ROW, NEGATIVES, TASK)

# Per-list caps (the flattened lists are capped per session, see ``SESSION_LIST_CAPS``).
LIST_CAPS: Mapping[str, int] = {
    QUERY_WORDS: MAX_QUERY_WORDS,
    NEGATIVES: NUM_EVAL_NEGATIVES,
    FEED_ITEMS: MAX_FEED_HISTORY,
    FEED_TS: MAX_FEED_HISTORY,
    FEED_ROWS: MAX_FEED_HISTORY,
    SEARCH_TS: MAX_SEARCH_HISTORY,
    SEARCH_ROWS: MAX_SEARCH_HISTORY,
    SEARCH_HAS_CLICK: MAX_SEARCH_HISTORY,
    SEARCH_WORD_LENGTHS: MAX_SEARCH_HISTORY,
    SEARCH_CLICK_LENGTHS: MAX_SEARCH_HISTORY,
    SEARCH_WORDS: MAX_SEARCH_HISTORY * MAX_QUERY_WORDS,
    SEARCH_CLICKS: MAX_SEARCH_HISTORY * MAX_SESSION_CLICKS,
}

# Flattened per-session lists: values feature -> (lengths feature, per-session cap).
SESSION_LIST_CAPS: Mapping[str, tuple] = {
    SEARCH_WORDS: (SEARCH_WORD_LENGTHS, MAX_QUERY_WORDS),
    SEARCH_CLICKS: (SEARCH_CLICK_LENGTHS, MAX_SESSION_CLICKS),
}

# History lists that must have one entry per session or per feed event.
FEED_PARALLEL = (FEED_ITEMS, FEED_TS, FEED_ROWS)
SEARCH_PARALLEL = (SEARCH_TS, SEARCH_ROWS, SEARCH_HAS_CLICK, SEARCH_WORD_LENGTHS,
                   SEARCH_CLICK_LENGTHS)


# ---------------------------------------------------------------------------------------------
# Neighbour payload (spec/similar_users.md §4): optional fields written by
# ``pipelines/neighbour_features.py`` (``jsr-neighbour-features``) onto a copy of the examples.
# Absent fields mean "no neighbours"; the reader parses them only when asked (``neighbours=True``)
# and gives padding (ids ``RAW_PAD_ID``, ``nbr_side``/``nbr_sim`` 0) for examples without them.
#
# One *slot* per neighbour of the example's user at list snapshot ``k(target_ts)``: the feed-side
# neighbours first (best first), then the search-side ones. Per slot, the neighbour's most recent
# events with ``ts < target_ts - payload_lag`` from the events the example's split may see, each
# block oldest first and right-padded with ``RAW_PAD_ID`` to its fixed size, so a slot's values have a fixed
# length and the lists below are ``slots x size`` long, row-major.
MAX_NEIGHBOURS = 10            # K = k_feed + k_search slots in the reader (default 5 + 5)
NBR_FEED_ITEMS = 15            # Lf: feed positives per neighbour
NBR_SEARCH_SESSIONS = 10       # Lq: search sessions per neighbour
NBR_QUERY_WORDS = 8            # Wn: words kept per session (the first ones)
NBR_SESSION_CLICKS = 2         # Kn: items kept per session (as in the user's own history)


class NeighbourSide(enum.IntEnum):
    """Why a slot's user is a neighbour; ``EMPTY`` marks padding slots (reader only)."""

    EMPTY = 0
    FEED = 1
    SEARCH = 2


NBR_SIDE = "nbr_side"                # int64 [n]: NeighbourSide (1 or 2)
NBR_SIM = "nbr_sim"                  # float [n]: exact Jaccard of the two users' token sets
NBR_REC_ITEMS = "nbr_rec_items"      # int64 [n * Lf]
NBR_SRC_WORDS = "nbr_src_words"      # int64 [n * Lq * Wn]
NBR_SRC_CLICKS = "nbr_src_clicks"    # int64 [n * Lq * Kn]
NBR_USERS = "nbr_users"              # int64 [n]: audit only, never a model input
NBR_LAST_TS = "nbr_last_ts"          # int64 [n]: audit only, newest payload event (0 if none)

NEIGHBOUR_FEATURES = (NBR_SIDE, NBR_SIM, NBR_REC_ITEMS, NBR_SRC_WORDS, NBR_SRC_CLICKS,
                      NBR_USERS, NBR_LAST_TS)
# Per-slot block sizes of the flattened lists (values per slot).
NEIGHBOUR_SLOT_SIZES: Mapping[str, int] = {
    NBR_SIDE: 1, NBR_SIM: 1, NBR_USERS: 1, NBR_LAST_TS: 1,
    NBR_REC_ITEMS: NBR_FEED_ITEMS,
    NBR_SRC_WORDS: NBR_SEARCH_SESSIONS * NBR_QUERY_WORDS,
    NBR_SRC_CLICKS: NBR_SEARCH_SESSIONS * NBR_SESSION_CLICKS,
}
# The model inputs among them (a serving request's ``*_nbr`` signatures take exactly these).
NEIGHBOUR_INPUTS = (NBR_SIDE, NBR_SIM, NBR_REC_ITEMS, NBR_SRC_WORDS, NBR_SRC_CLICKS)


def neighbour_feature_description() -> Dict[str, str]:
    """Human-readable schema of the neighbour fields (added to ``schema.json`` by the job)."""
    lf, lq = NBR_FEED_ITEMS, NBR_SEARCH_SESSIONS
    desc = {
        NBR_SIDE: "int64 [n slots], 1 = feed-similar, 2 = search-similar; feed side first",
        NBR_SIM: "float [n], exact Jaccard of the user and the slot's neighbour",
        NBR_REC_ITEMS: f"int64 [n * {lf}], per slot the neighbour's last {lf} feed positives "
                       "before target_ts - payload_lag, oldest first, -1-padded",
        NBR_SRC_WORDS: f"int64 [n * {lq} * {NBR_QUERY_WORDS}], per slot the last {lq} search "
                       f"sessions' first {NBR_QUERY_WORDS} query words, -1-padded",
        NBR_SRC_CLICKS: f"int64 [n * {lq} * {NBR_SESSION_CLICKS}], the same sessions' first "
                        f"{NBR_SESSION_CLICKS} items (as in search_clicks), -1-padded",
        NBR_USERS: "int64 [n], the neighbours' raw user ids (audit only, not a model input)",
        NBR_LAST_TS: "int64 [n], ts of the slot's newest payload event, 0 if none (audit only)",
    }
    assert set(desc) == set(NEIGHBOUR_FEATURES)
    return desc


def eval_feature_description() -> Dict[str, str]:
    """Human-readable schema of the optional evaluation fields (``schema.json``)."""
    return {
        NEGATIVES_FAIR: (f"int64 [{NUM_EVAL_NEGATIVES}] on valid/test rows (absent on train "
                         "rows; empty if the pool ran short): negatives of the sampled_fair "
                         "protocol, popularity-weighted over the same (task, split)'s positives"),
        IMPRESSIONS: (f"int64 [<= {MAX_IMPRESSIONS}] on valid/test search rows: items the target "
                      "session showed and the user did not click, file order, deduplicated"),
        OTHER_CLICKS: (f"int64 [<= {MAX_IMPRESSIONS}] on valid/test search rows: the target "
                       "session's clicked items other than the positive"),
    }


def feature_description() -> Dict[str, str]:
    """Human-readable schema: name -> description. Written to ``schema.json`` by the pipeline."""
    desc = {
        USER_ID: "int64 scalar, raw user id",
        TASK: "int64 scalar, 0 = feed, 1 = search",
        TARGET_ITEM: "int64 scalar, raw id of the positive item (candidate column 0)",
        TARGET_TS: "int64 scalar, unix ms",
        TARGET_ROW: "int64 scalar, 0-based data-line index of the target in its source file",
        QUERY_WORDS: f"int64 [<= {MAX_QUERY_WORDS}], raw word ids (search rows only)",
        NEGATIVES: (f"int64 [{NUM_TRAIN_NEGATIVES}] on train rows, [{NUM_EVAL_NEGATIVES}] on "
                    "valid/test rows, raw item ids"),
        FEED_ITEMS: f"int64 [<= {MAX_FEED_HISTORY}], feed positives, oldest first",
        FEED_TS: "int64, parallel to feed_items, unix ms",
        FEED_ROWS: "int64, parallel to feed_items, row index in rec_inter.csv",
        SEARCH_TS: f"int64 [<= {MAX_SEARCH_HISTORY}], search sessions, oldest first, unix ms",
        SEARCH_ROWS: "int64, parallel to search_ts, first row index of the session in src_inter.csv",
        SEARCH_HAS_CLICK: "int64 0/1, parallel to search_ts",
        SEARCH_WORDS: f"int64 flattened query words (<= {MAX_QUERY_WORDS} per session)",
        SEARCH_WORD_LENGTHS: "int64, parallel to search_ts, words per session",
        SEARCH_CLICKS: f"int64 flattened clicked items (<= {MAX_SESSION_CLICKS} per session)",
        SEARCH_CLICK_LENGTHS: "int64, parallel to search_ts, clicks per session",
    }
    assert set(desc) == set(ALL_FEATURES)
    return desc


def parse_spec(with_labels: bool = True) -> Dict[str, object]:
    """``tf.io.parse_example`` spec for the example contract.

    Args:
        with_labels: If False, omit ``LABEL_FEATURES`` (the serving spec).

    Returns:
        Dict of feature name -> ``tf.io.FixedLenFeature`` / ``tf.io.VarLenFeature``.
    """
    import tensorflow as tf  # Deferred: Beam workers import this module without TF.

    spec: Dict[str, object] = {}
    for name in SCALAR_FEATURES:
        spec[name] = tf.io.FixedLenFeature([], tf.int64)
    for name in LIST_FEATURES:
        spec[name] = tf.io.VarLenFeature(tf.int64)
    if not with_labels:
        for name in LABEL_FEATURES:
            spec.pop(name)
    return spec


def to_example_dict(example) -> Dict[str, np.ndarray]:
    """Decodes a ``tf.train.Example`` proto into name -> int64 numpy array (for tests/tools)."""
    out = {}
    for name in ALL_FEATURES:
        values = np.asarray(example.features.feature[name].int64_list.value, dtype=np.int64)
        out[name] = values[0] if name in SCALAR_FEATURES and values.size else values
    for name in EVAL_FEATURES:  # optional: present on valid/test rows only
        if name in example.features.feature:
            out[name] = np.asarray(example.features.feature[name].int64_list.value,
                                   dtype=np.int64)
    return out


# ---------------------------------------------------------------------------------------------
# Shard file names of the data dir (the file names themselves: jsr_tf/filenames.py).


def task_name(task: int) -> str:
    """``Task.FEED`` -> ``"feed"``, ``Task.SEARCH`` -> ``"search"``."""
    return Task(task).name.lower()


def shard_prefix(split: str, task: int) -> str:
    """File prefix of one (split, task): shards are ``<prefix>-SSSSS-of-NNNNN.tfrecord.gz``."""
    return f"{Split(split).value}-{task_name(task)}"


def file_pattern(split: str, task: int) -> str:
    """Glob (relative to ``data_dir``) matching every shard of one (split, task)."""
    return f"{shard_prefix(split, task)}-*{filenames.TFRECORD_SUFFIX}"
