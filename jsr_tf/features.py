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
    query_words: ``[<= query_words]`` raw word ids of the target query (search only; empty for
        feed rows).
    negatives: raw item ids of the stored negatives: ``train_negatives`` on train rows,
        ``eval_negatives`` on valid and test rows. **Decision (DESIGN.md §3):** eval
        negatives are stored *inline* in the valid and test TFRecords, so those files are the
        candidate files of spec/evaluation.md §3 (positive = ``target_item``, i.e. candidate
        column 0). ``manifest.json`` records their row counts, sampler settings and SHA-256.

History fields (events strictly before ``target_ts`` — with ``PreprocessConfig.reference()``:
earlier in canonical order, so same-timestamp events can be history — the most recent
``feed_history`` / ``search_history`` kept, stored **oldest first**):
    feed_items, feed_ts, feed_rows: ``[<= feed_history]`` feed positives (``click == 1``).
    search_ts, search_rows, search_has_click: ``[<= search_history]`` search sessions.
    search_words + search_word_lengths: each session's query words (``<= query_words`` each),
        flattened, with one length per session.
    search_clicks + search_click_lengths: each session's clicked items (``<= session_clicks``
        each), flattened, with one length per session. A no-click session carries the fallback
        item (its first shown item) and ``search_has_click = 0``.

Evaluation fields (``EVAL_FEATURES``; valid and test rows only, absent on train rows; the reader
parses them only when an evaluation protocol asks, see ``jsr_tf/evaluation/protocols.py``):
    negatives_fair: ``[eval_negatives]`` raw item ids, the negatives of the ``sampled_fair``
        protocol: drawn from the popularity of the *same (task, split)'s positives* (so the
        candidate set carries no label signal for an item-only scorer), under the same
        exclusions as ``negatives`` (the positive, the session's clicks, the user's earlier items,
        items first seen at or after the target; first-seen times here include held-out events).
        Empty when the pool could not supply them (counted in ``stats.json``).
    impressions: ``[<= impressions]`` (search rows only) the items the target session showed
        and the user did not click, in file order, deduplicated: the hard negatives of the
        ``impressions`` protocol.
    other_clicks: ``[<= impressions]`` (search rows only) the target session's clicked items
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

import dataclasses
import enum
from typing import Dict, Mapping, NamedTuple, Optional, Tuple

import numpy as np

from jsr_tf import filenames

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

# Flattened per-session lists: values feature -> lengths feature (one length per session).
SESSION_LISTS: Mapping[str, str] = {
    SEARCH_WORDS: SEARCH_WORD_LENGTHS,
    SEARCH_CLICKS: SEARCH_CLICK_LENGTHS,
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
# The block sizes (K slots, Lf, Lq, Wn, Kn) are ``DataShape`` fields.


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
# The model inputs among them (a serving request's ``*_nbr`` signatures take exactly these).
NEIGHBOUR_INPUTS = (NBR_SIDE, NBR_SIM, NBR_REC_ITEMS, NBR_SRC_WORDS, NBR_SRC_CLICKS)


# ---------------------------------------------------------------------------------------------
# Shapes. Every size of an example and of a batch is a field of ``DataShape``. A data directory
# records its own in ``manifest.json`` (``data_shape``, written by ``jsr-preprocess`` from its
# ``PreprocessConfig``); the reader, the models, the export and the neighbour jobs read it from
# there (``DataShape.read``), so changing a cap is one value in one place: the preprocessing
# config. The defaults are the UniSAR reference values (spec/unisar.md §11).


@dataclasses.dataclass(frozen=True)
class DataShape:
    """The sizes of a data directory's examples and of every batch read from it.

    Attributes:
        feed_history: Feed positives per history (the most recent), ``Lf``-history.
        search_history: Search sessions per history (the most recent).
        query_words: Words per query (target query and each history session; the first ones).
        caption_words: Words per item caption (``vocab/items.tsv``; the first ones).
        session_clicks: Clicked items per history session (the first ones).
        train_negatives: Stored negatives per train row (may be 0).
        eval_negatives: Stored negatives per valid / test row (and ``negatives_fair``).
        impressions: Shown-but-not-clicked items (and other clicks) per target session.
        neighbour_slots: ``K``: neighbour slots per row (feed side first, then search side).
        nbr_feed_items: ``Lf``: feed positives per neighbour slot.
        nbr_search_sessions: ``Lq``: search sessions per neighbour slot.
        nbr_query_words: ``Wn``: words kept per neighbour session (the first ones).
        nbr_session_clicks: ``Kn``: items kept per neighbour session (the first ones).
    """

    feed_history: int = 30
    search_history: int = 30
    query_words: int = 50
    caption_words: int = 50
    session_clicks: int = 5
    train_negatives: int = 4
    eval_negatives: int = 99
    impressions: int = 99
    neighbour_slots: int = 10
    nbr_feed_items: int = 15
    nbr_search_sessions: int = 10
    nbr_query_words: int = 8
    nbr_session_clicks: int = 2

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            least = 0 if field.name == "train_negatives" else 1
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                kind = "non-negative" if least == 0 else "positive"
                raise ValueError(f"`{field.name}` should be a {kind} integer. "
                                 f"Received: `{field.name}={value!r}`")

    @property
    def eval_candidates(self) -> int:
        """Candidates per valid / test row: the positive and ``eval_negatives``."""
        return 1 + self.eval_negatives

    def to_dict(self) -> Dict[str, int]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, int]) -> "DataShape":
        """The shape of ``to_dict()``'s output (missing fields take their defaults).

        Raises:
            ValueError: On an unknown field or an invalid value.
        """
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"Unknown DataShape fields: {unknown}")
        return cls(**values)

    @classmethod
    def from_preprocess(cls, config: Mapping[str, object]) -> "DataShape":
        """The shape of the examples written under a ``PreprocessConfig`` (given as its dict)."""
        return cls(**{shape_name: config[config_name]
                      for config_name, shape_name in _PREPROCESS_CAPS.items()
                      if config_name in config})

    @classmethod
    def read(cls, data_dir: str) -> "DataShape":
        """The shape of a data directory's examples.

        ``manifest.json``'s ``data_shape``; for a directory written before it existed, the caps
        of its ``preprocess_config.json`` (then the defaults).

        Raises:
            FileNotFoundError: If ``data_dir`` has neither file.
        """
        import json
        import os

        import tensorflow as tf  # Deferred: Beam workers import this module without TF.

        manifest = os.path.join(data_dir, filenames.MANIFEST_FILE)
        if tf.io.gfile.exists(manifest):
            with tf.io.gfile.GFile(manifest) as f:
                recorded = json.load(f).get(DATA_SHAPE_KEY)
            if recorded is not None:
                return cls.from_dict(recorded)
        config = os.path.join(data_dir, filenames.PREPROCESS_CONFIG_FILE)
        if tf.io.gfile.exists(config):
            with tf.io.gfile.GFile(config) as f:
                return cls.from_preprocess(json.load(f))
        if tf.io.gfile.exists(manifest):
            return cls()
        raise FileNotFoundError(f"Neither {manifest!r} nor {config!r} exists: {data_dir!r} is "
                                "not a jsr-preprocess output directory (run jsr-preprocess).")

    def list_caps(self) -> Dict[str, int]:
        """Most values per row of each list feature (``LIST_FEATURES``) in the examples."""
        caps = {QUERY_WORDS: self.query_words, NEGATIVES: self.eval_negatives,
                SEARCH_WORDS: self.search_history * self.query_words,
                SEARCH_CLICKS: self.search_history * self.session_clicks}
        caps.update({name: self.feed_history for name in FEED_PARALLEL})
        caps.update({name: self.search_history for name in SEARCH_PARALLEL})
        return caps

    def slot_shapes(self) -> Dict[str, Tuple[int, ...]]:
        """Per-slot trailing shape of each neighbour field (``NEIGHBOUR_FEATURES``)."""
        lq = self.nbr_search_sessions
        shapes = {name: () for name in (NBR_SIDE, NBR_SIM, NBR_USERS, NBR_LAST_TS)}
        shapes.update({NBR_REC_ITEMS: (self.nbr_feed_items,),
                       NBR_SRC_WORDS: (lq, self.nbr_query_words),
                       NBR_SRC_CLICKS: (lq, self.nbr_session_clicks)})
        return shapes

    def slot_sizes(self) -> Dict[str, int]:
        """Values per slot of each flattened neighbour field (``NEIGHBOUR_FEATURES``)."""
        return {name: int(np.prod(inner, dtype=np.int64))
                for name, inner in self.slot_shapes().items()}

    def batch_fields(self, labels: bool = True, neighbours: bool = False,
                     eval_fields: bool = False) -> Dict[str, "BatchField"]:
        """The padded batch layout (the reader's output, a prepared serving request).

        Args:
            labels: Include the target fields, ``candidates`` and ``label``.
            neighbours: Include the five neighbour inputs (``NEIGHBOUR_INPUTS``).
            eval_fields: Include ``EVAL_FEATURES``.

        Returns:
            Name -> ``BatchField`` (shape after the batch axis, dtype, padding value).
        """
        ids, times = RAW_PAD_ID, 0
        fields = {USER_ID: BatchField((), INT64, ids)}
        if labels:
            fields.update({name: BatchField((), INT64, 0)
                           for name in SCALAR_FEATURES if name != USER_ID})
        fields.update({
            QUERY_WORDS: BatchField((self.query_words,), INT64, ids),
            FEED_ITEMS: BatchField((self.feed_history,), INT64, ids),
            FEED_TS: BatchField((self.feed_history,), INT64, times),
            SEARCH_TS: BatchField((self.search_history,), INT64, times),
            SEARCH_HAS_CLICK: BatchField((self.search_history,), INT64, 0),
            SEARCH_WORDS: BatchField((self.search_history, self.query_words), INT64, ids),
            SEARCH_CLICKS: BatchField((self.search_history, self.session_clicks), INT64, ids),
        })
        if labels:
            fields[CANDIDATES] = BatchField((None,), INT64, ids)
            fields[LABEL] = BatchField((None,), FLOAT32, 0)
        if neighbours:
            slots = self.slot_shapes()
            for name in NEIGHBOUR_INPUTS:
                fields[name] = BatchField((self.neighbour_slots, *slots[name]),
                                          FLOAT32 if name == NBR_SIM else INT64,
                                          0 if name in (NBR_SIDE, NBR_SIM) else ids)
        if eval_fields:
            fields[NEGATIVES_FAIR] = BatchField((self.eval_negatives,), INT64, ids)
            fields[IMPRESSIONS] = BatchField((self.impressions,), INT64, ids)
            fields[OTHER_CLICKS] = BatchField((self.impressions,), INT64, ids)
        return fields


INT64 = "int64"
FLOAT32 = "float32"


class BatchField(NamedTuple):
    """One key of the padded batch layout (``DataShape.batch_fields``).

    Attributes:
        inner: Shape after the batch axis (``None``: free, e.g. the candidates).
        dtype: ``"int64"`` or ``"float32"``.
        pad: Value of empty slots.
    """

    inner: Tuple[Optional[int], ...]
    dtype: str
    pad: int


# PreprocessConfig field -> DataShape field (the caps a preprocessing run chooses).
_PREPROCESS_CAPS = {"max_feed_history": "feed_history", "max_search_history": "search_history",
                    "max_query_words": "query_words", "max_session_clicks": "session_clicks",
                    "num_train_negatives": "train_negatives",
                    "num_eval_negatives": "eval_negatives"}
DATA_SHAPE_KEY = "data_shape"  # manifest.json's key of the DataShape

# Keys a batch has beside the example's features.
CANDIDATES = "candidates"  # [B, C] raw item ids, column 0 the positive
LABEL = "label"  # [B, C] float32, 1.0 in column 0


def neighbour_feature_description(shape: DataShape) -> Dict[str, str]:
    """Human-readable schema of the neighbour fields (added to ``schema.json`` by the job)."""
    lf, lq = shape.nbr_feed_items, shape.nbr_search_sessions
    wn, kn = shape.nbr_query_words, shape.nbr_session_clicks
    desc = {
        NBR_SIDE: "int64 [n slots], 1 = feed-similar, 2 = search-similar; feed side first",
        NBR_SIM: "float [n], exact Jaccard of the user and the slot's neighbour",
        NBR_REC_ITEMS: f"int64 [n * {lf}], per slot the neighbour's last {lf} feed positives "
                       "before target_ts - payload_lag, oldest first, -1-padded",
        NBR_SRC_WORDS: f"int64 [n * {lq} * {wn}], per slot the last {lq} search "
                       f"sessions' first {wn} query words, -1-padded",
        NBR_SRC_CLICKS: f"int64 [n * {lq} * {kn}], the same sessions' first "
                        f"{kn} items (as in search_clicks), -1-padded",
        NBR_USERS: "int64 [n], the neighbours' raw user ids (audit only, not a model input)",
        NBR_LAST_TS: "int64 [n], ts of the slot's newest payload event, 0 if none (audit only)",
    }
    assert set(desc) == set(NEIGHBOUR_FEATURES)
    return desc


def eval_feature_description(shape: DataShape) -> Dict[str, str]:
    """Human-readable schema of the optional evaluation fields (``schema.json``)."""
    return {
        NEGATIVES_FAIR: (f"int64 [{shape.eval_negatives}] on valid/test rows (absent on train "
                         "rows; empty if the pool ran short): negatives of the sampled_fair "
                         "protocol, popularity-weighted over the same (task, split)'s positives"),
        IMPRESSIONS: (f"int64 [<= {shape.impressions}] on valid/test search rows: items the target "
                      "session showed and the user did not click, file order, deduplicated"),
        OTHER_CLICKS: (f"int64 [<= {shape.impressions}] on valid/test search rows: the target "
                       "session's clicked items other than the positive"),
    }


def feature_description(shape: DataShape) -> Dict[str, str]:
    """Human-readable schema: name -> description. Written to ``schema.json`` by the pipeline."""
    desc = {
        USER_ID: "int64 scalar, raw user id",
        TASK: "int64 scalar, 0 = feed, 1 = search",
        TARGET_ITEM: "int64 scalar, raw id of the positive item (candidate column 0)",
        TARGET_TS: "int64 scalar, unix ms",
        TARGET_ROW: "int64 scalar, 0-based data-line index of the target in its source file",
        QUERY_WORDS: f"int64 [<= {shape.query_words}], raw word ids (search rows only)",
        NEGATIVES: (f"int64 [{shape.train_negatives}] on train rows, [{shape.eval_negatives}] on "
                    "valid/test rows, raw item ids"),
        FEED_ITEMS: f"int64 [<= {shape.feed_history}], feed positives, oldest first",
        FEED_TS: "int64, parallel to feed_items, unix ms",
        FEED_ROWS: "int64, parallel to feed_items, row index in rec_inter.csv",
        SEARCH_TS: f"int64 [<= {shape.search_history}], search sessions, oldest first, unix ms",
        SEARCH_ROWS: "int64, parallel to search_ts, first row index of the session in src_inter.csv",
        SEARCH_HAS_CLICK: "int64 0/1, parallel to search_ts",
        SEARCH_WORDS: f"int64 flattened query words (<= {shape.query_words} per session)",
        SEARCH_WORD_LENGTHS: "int64, parallel to search_ts, words per session",
        SEARCH_CLICKS: f"int64 flattened clicked items (<= {shape.session_clicks} per session)",
        SEARCH_CLICK_LENGTHS: "int64, parallel to search_ts, clicks per session",
    }
    assert set(desc) == set(ALL_FEATURES)
    return desc


def parse_spec(labels: bool = True, neighbours: bool = False, eval_fields: bool = False,
               request: bool = False) -> Dict[str, object]:
    """``tf.io.parse_example`` spec of the examples (every list ragged, uncapped).

    Args:
        labels: Include ``LABEL_FEATURES`` (the training and evaluation spec).
        neighbours: Include the neighbour inputs (``NEIGHBOUR_INPUTS``).
        eval_fields: Include ``EVAL_FEATURES``.
        request: The serving Examples' spec: ``user_id`` and ``candidates`` (the items to score)
            as lists, no target fields (``labels`` is then ignored).

    Returns:
        Dict of feature name -> ``tf.io.FixedLenFeature`` / ``tf.io.RaggedFeature``.
    """
    import tensorflow as tf  # Deferred: Beam workers import this module without TF.

    spec: Dict[str, object] = {}
    if request:
        spec.update({USER_ID: tf.io.RaggedFeature(tf.int64),
                     CANDIDATES: tf.io.RaggedFeature(tf.int64)})
    else:
        spec.update({name: tf.io.FixedLenFeature([], tf.int64) for name in SCALAR_FEATURES
                     if labels or name not in LABEL_FEATURES})
    lists = [QUERY_WORDS, FEED_ITEMS, FEED_TS, SEARCH_TS, SEARCH_HAS_CLICK]
    if labels and not request:
        lists.append(NEGATIVES)
    spec.update({name: tf.io.RaggedFeature(tf.int64) for name in lists})
    for values, lengths in SESSION_LISTS.items():
        spec[values] = tf.io.RaggedFeature(
            tf.int64, value_key=values, partitions=[tf.io.RaggedFeature.RowLengths(lengths)])
    if neighbours:
        spec.update({name: tf.io.RaggedFeature(tf.float32 if name == NBR_SIM else tf.int64)
                     for name in NEIGHBOUR_INPUTS})
    if eval_fields:
        spec.update({name: tf.io.RaggedFeature(tf.int64) for name in EVAL_FEATURES})
    return spec


def neighbour_blocks(parsed: Mapping[str, object], shape: DataShape) -> Dict[str, object]:
    """Parsed (ragged ``[B, None]``, flattened) neighbour inputs → dense ``[B, K, ...]`` blocks.

    Each stored slot occupies ``shape.slot_sizes()[name]`` values, so padding or truncating a
    row to ``K * size`` values and reshaping gives the slots; rows with more than ``K`` slots keep
    their first ``K`` (feed side first, best first); rows without the fields are all padding.
    """
    import tensorflow as tf  # Deferred: Beam workers import this module without TF.

    fields, sizes = shape.batch_fields(labels=False, neighbours=True), shape.slot_sizes()
    out = {}
    for name in NEIGHBOUR_INPUTS:
        inner, _, pad = fields[name]
        dense = parsed[name].to_tensor(default_value=pad, shape=[None, inner[0] * sizes[name]])
        out[name] = tf.reshape(dense, [-1, *inner])
    return out


def pad_batch(parsed: Mapping[str, object], shape: DataShape, neighbours: bool = False,
              eval_fields: bool = False) -> Dict[str, object]:
    """``parse_example`` output (``parse_spec``) → the padded batch layout at ``shape``.

    Lists longer than a cap keep their first values (the pipeline never writes more); the
    candidates are ``[target_item, negatives...]`` with ``label`` 1.0 in column 0 when the
    target fields were parsed.
    """
    import tensorflow as tf  # Deferred: Beam workers import this module without TF.

    labels = NEGATIVES in parsed
    out = {name: parsed[name] for name in SCALAR_FEATURES if name in parsed}
    for name, (inner, _, pad) in shape.batch_fields(labels=False, eval_fields=eval_fields).items():
        if name in parsed and inner:
            out[name] = parsed[name].to_tensor(default_value=pad, shape=[None, *inner])
    if labels:
        negatives = parsed[NEGATIVES].to_tensor(default_value=RAW_PAD_ID)
        out[CANDIDATES] = tf.concat([parsed[TARGET_ITEM][:, None], negatives], axis=1)
        out[LABEL] = tf.one_hot(tf.zeros_like(parsed[TARGET_ITEM], tf.int32),
                                tf.shape(out[CANDIDATES])[1], dtype=tf.float32)
    if neighbours:
        out.update(neighbour_blocks(parsed, shape))
    return out


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
