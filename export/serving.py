"""``ServingModule``: the ``tf.Module`` whose signatures TF Serving loads.

Each signature's inputs (names, dtypes, order), outputs, the ``ServingModule`` method that
answers it and when it is exported are registered in ``jsr_tf.export.signatures``; ``signatures()``
builds one concrete function per registered signature the module exports.

Signatures (all ids are raw KuaiSAR int64 ids, 0 included; histories oldest first, any length,
id lists padded with ``RAW_PAD_ID = -1`` and timestamps with 0; unknown ids map to the OOV bucket,
negative ids are padding; a model whose item and word vocabularies lack raw id 0 also reads 0 as
padding, as before id 0 was supported; B and N are free):

``feed``
    ``user_id [B]``, ``feed_items [B, Lr]``, ``feed_ts [B, Lr]`` (ms), ``search_ts [B, Ls]``,
    ``search_words [B, Ls, W]``, ``search_clicks [B, Ls, K]`` (the items clicked in each
    session; -1 = none), ``candidates [B, N]``
    → ``scores [B, N]`` float32 (feed-head logits).
``search``
    the same plus ``query_words [B, Wq]`` → ``scores [B, N]`` (search-head logits).
``serving_default``
    ``examples [B]`` serialized ``tf.train.Example`` in the training schema (labels, if present,
    are ignored) with the candidates in an int64 list feature ``candidates`` (required: a batch
    where no Example has it is an error)
    → ``feed_scores [B, N]``, ``search_scores [B, N]`` (N = the longest candidate list; the
    columns past a shorter list score padding and should be ignored).
``feed_nbr``, ``search_nbr`` (only for rankers built with neighbours, e.g. ``unisar_nbr``)
    the ``feed`` / ``search`` inputs plus the user's similar-user payload, as the neighbour
    table's serving export holds it (``features.py``, ``spec/similar_users.md`` §5):
    ``nbr_side [B, K]`` (0 empty, 1 feed-similar, 2 search-similar), ``nbr_sim [B, K]`` float32,
    ``nbr_rec_items [B, K, Lf]``, ``nbr_src_words [B, K, Lq, Wn]``,
    ``nbr_src_clicks [B, K, Lq, Kn]`` (any sizes: cut or padded to the model's
    ``DataShape``: K slots, the most recent Lf items and Lq sessions, the first Wn words and Kn
    clicks; by default 10, 15, 10, 8, 2)
    → ``scores [B, N]``. All-zero neighbour inputs (a user without a table row) give exactly
    the ``feed`` / ``search`` scores; those base signatures run such a ranker with no neighbours.
``retrieve`` (when a two-tower head is exported)
    the ``feed`` inputs without ``candidates``, plus ``query_words [B, Wq]`` and
    ``exclude_history [B]`` bool → ``item_ids [B, k]`` int64, ``scores [B, k]`` float32.
    Rows with an all-padding query use the feed tower, others the search tower. With
    ``exclude_history`` the row's feed items and search clicks (the whole request, not just the
    capped part) are removed from the results. ``k = min(top_k, catalogue size)``; a slot left
    empty after exclusions has item id ``RAW_PAD_ID`` (-1) and score ``EMPTY_SCORE``.

Histories longer than the caps keep their most recent entries (``jsr_tf.export.request``).

Request limits (``RequestLimits``, set at export: ``jsr-export --max_rows --max_candidates
--max_scores``): at most ``max_rows`` rows B (default 1,024), ``max_candidates`` candidates N
(default 10,000) and ``max_scores`` scores B × N (default 262,144) per request; a larger request
fails with an ``InvalidArgumentError`` that names the limit (TF Serving: HTTP 400) instead of
taking memory in proportion (UniSAR: about 7 KB per score, so 10^6 candidates took 7 GB).
``retrieve`` checks B only.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Dict, Optional

import jsr_tf  # noqa: F401
import tensorflow as tf
import tensorflow_recommenders as tfrs

from jsr_tf import features as F
from jsr_tf.keys import Outputs
from jsr_tf.models.base import JsrModel
from jsr_tf.export import request
from jsr_tf.export import signatures as SG
from jsr_tf.export.signatures import (CANDIDATES, EXCLUDE_HISTORY, FEED_SCORES, ITEM_IDS, SCORES,
                                      SEARCH_SCORES)

EMPTY_SCORE = -1.0e9
_I64 = tf.int64


@dataclasses.dataclass(frozen=True)
class RequestLimits:
    """Largest request the signatures take (see the module docstring).

    Attributes:
        max_rows: Rows B per request.
        max_candidates: Candidates N per row.
        max_scores: B × N per request.
    """

    max_rows: int = 1024
    max_candidates: int = 10_000
    max_scores: int = 262_144

    def __post_init__(self) -> None:
        for name, value in dataclasses.asdict(self).items():
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"`{name}` should be a positive integer. "
                                 f"Received: `{name}={value!r}`")

    def check(self, rows: tf.Tensor, candidates: Optional[tf.Tensor] = None) -> list:
        """Assertions that a request of ``rows`` (and ``candidates`` per row) is within limits."""
        hint = "(a limit set at export: jsr-export --max_rows/--max_candidates/--max_scores)"
        checks = [tf.debugging.assert_less_equal(
            tf.cast(rows, _I64), tf.constant(self.max_rows, _I64),
            message=f"A request has at most {self.max_rows} rows {hint}")]
        if candidates is not None:
            checks.append(tf.debugging.assert_less_equal(
                tf.cast(candidates, _I64), tf.constant(self.max_candidates, _I64),
                message=f"A request has at most {self.max_candidates} candidates per row {hint}"))
            checks.append(tf.debugging.assert_less_equal(
                tf.cast(rows, _I64) * tf.cast(candidates, _I64),
                tf.constant(self.max_scores, _I64),
                message=f"A request has at most {self.max_scores} scores (rows x candidates) "
                        f"{hint}"))
        return checks


def within_limits(limits: RequestLimits, inputs: Dict[str, tf.Tensor],
            rows_of: str) -> Dict[str, tf.Tensor]:
    """``inputs`` after checking the request size (``rows_of`` gives B; candidates give N)."""
    candidates = inputs.get(CANDIDATES)
    checks = limits.check(tf.shape(inputs[rows_of])[0],
                          None if candidates is None else tf.shape(candidates)[1])
    with tf.control_dependencies(checks):
        return {name: tf.identity(value) for name, value in inputs.items()}


def is_id(ids: tf.Tensor, zero_is_id: bool = True) -> tf.Tensor:
    """Which raw ids of a request are ids (not padding): ``ids >= 0``, or ``ids > 0`` for a model
    whose vocabularies lack raw id 0 (0-padded requests keep their meaning there)."""
    return ids >= 0 if zero_is_id else ids > 0


def fit_neighbours(inputs: Dict[str, tf.Tensor], shape: F.DataShape, zero_is_id: bool = True,
                   pad: int = F.RAW_PAD_ID) -> Dict[str, tf.Tensor]:
    """A request's neighbour tensors (any sizes) → the reader's ``[B, K, ...]`` layout.

    Slots beyond ``K`` are dropped (the table lists the best first); each slot keeps its most
    recent ``Lf`` items and ``Lq`` sessions, and the first ``Wn`` words and ``Kn`` clicks of a
    session, as the pipeline does (the sizes of ``shape``). ``zero_is_id`` and ``pad``: see
    ``fit_request``.
    """
    fields = shape.batch_fields(labels=False, neighbours=True)
    k, lf = fields[F.NBR_REC_ITEMS].inner
    _, lq, wn = fields[F.NBR_SRC_WORDS].inner
    kn = fields[F.NBR_SRC_CLICKS].inner[-1]
    side = request.fit_width(tf.cast(inputs[F.NBR_SIDE], _I64), k)
    sim = request.fit_width(tf.cast(inputs[F.NBR_SIM], tf.float32), k)
    rows = tf.shape(side)[0]
    with tf.control_dependencies([tf.debugging.assert_equal(
            tf.shape(inputs[F.NBR_SIDE]), tf.shape(inputs[F.NBR_SIM]),
            message="nbr_side and nbr_sim should have the same shape [B, K]")]):
        items = tf.identity(inputs[F.NBR_REC_ITEMS])

    def slots(values: tf.Tensor) -> tf.Tensor:  # [B, any, ...] -> [B * K, ...]
        values = request.pad_axis(values, 1, k)[:, :k]
        return tf.reshape(values, tf.concat([[rows * k], tf.shape(values)[2:]], 0))

    items = slots(items)
    (items,) = request.fit_history(is_id(items, zero_is_id), [items], lf, [pad])
    words = slots(request.fit_width(inputs[F.NBR_SRC_WORDS], wn, pad))
    clicks = slots(request.fit_width(inputs[F.NBR_SRC_CLICKS], kn, pad))
    valid = (tf.reduce_any(is_id(words, zero_is_id), axis=-1)
             | tf.reduce_any(is_id(clicks, zero_is_id), axis=-1))
    words, clicks = request.fit_history(valid, [words, clicks], lq, [pad, pad])
    fitted = {F.NBR_SIDE: side, F.NBR_SIM: sim, F.NBR_REC_ITEMS: items, F.NBR_SRC_WORDS: words,
              F.NBR_SRC_CLICKS: clicks}
    return {name: tf.reshape(value, [-1, *fields[name].inner])
            for name, value in fitted.items()}


def fit_request(inputs: Dict[str, tf.Tensor], shape: F.DataShape, zero_is_id: bool = True,
                pad: int = F.RAW_PAD_ID) -> Dict[str, tf.Tensor]:
    """A request's raw tensors → the model's batch layout at the caps (most recent kept).

    ``shape``: the model's ``DataShape`` (``JsrModel.data_shape``), whose
    ``batch_fields(labels=False)`` is the output layout.
    ``zero_is_id``: see ``is_id`` (``ServingModule`` passes ``JsrModel.zero_is_id``).
    ``pad``: the padding id of the inputs, and of the output. Raw requests pad with
    ``RAW_PAD_ID``; a request already mapped to dense indices (``JsrModel.prepare``, padding 0,
    ids > 0) is fitted with ``zero_is_id=False, pad=0`` and gives the same batch, prepared.
    """
    fields = shape.batch_fields(labels=False)
    (feed,) = fields[F.FEED_ITEMS].inner
    searches, words_cap = fields[F.SEARCH_WORDS].inner
    clicks_cap = fields[F.SEARCH_CLICKS].inner[-1]
    out = {F.USER_ID: tf.cast(inputs[F.USER_ID], _I64)}
    out[F.FEED_ITEMS], out[F.FEED_TS] = request.fit_history(
        is_id(inputs[F.FEED_ITEMS], zero_is_id), [inputs[F.FEED_ITEMS], inputs[F.FEED_TS]],
        feed, [pad, 0])
    words = request.fit_width(inputs[F.SEARCH_WORDS], words_cap, pad)
    clicks = request.fit_width(inputs[F.SEARCH_CLICKS], clicks_cap, pad)
    # Sessions of a request list the items actually clicked (none: all -1). An Example in the
    # training schema carries ``search_has_click`` (its no-click sessions hold a fallback item).
    has_click = inputs.get(F.SEARCH_HAS_CLICK)
    if has_click is None:
        has_click = tf.cast(tf.reduce_any(is_id(clicks, zero_is_id), axis=-1), _I64)
    (out[F.SEARCH_TS], out[F.SEARCH_WORDS], out[F.SEARCH_CLICKS],
     out[F.SEARCH_HAS_CLICK]) = request.fit_history(
        tf.not_equal(inputs[F.SEARCH_TS], 0), [inputs[F.SEARCH_TS], words, clicks, has_click],
        searches, [0, pad, pad, 0])
    if F.QUERY_WORDS in inputs:
        out[F.QUERY_WORDS] = request.fit_width(inputs[F.QUERY_WORDS], words_cap, pad)
    out = {name: tf.ensure_shape(value, [None, *fields[name].inner])
           for name, value in out.items()}
    if CANDIDATES in inputs:
        out[CANDIDATES] = inputs[CANDIDATES]
    if F.NBR_SIDE in inputs:
        out.update(fit_neighbours(inputs, shape, zero_is_id, pad))
    return out


def parse_examples(serialized: tf.Tensor, shape: F.DataShape,
                   neighbours: bool = False) -> Dict[str, tf.Tensor]:
    """Serialized serving Examples → dense request tensors (uncapped; ``fit_request`` caps).

    With ``neighbours`` the Examples' ``nbr_*`` fields (the training layout, ``shape``'s slots;
    absent = none) are parsed too.
    """
    parsed = tf.io.parse_example(serialized, F.parse_spec(neighbours=neighbours, request=True))
    nbr = F.neighbour_blocks(parsed, shape) if neighbours else {}
    times = (F.FEED_TS, F.SEARCH_TS, F.SEARCH_HAS_CLICK)
    out = {name: value.to_tensor(default_value=0 if name in times else F.RAW_PAD_ID)
           for name, value in parsed.items() if name not in F.NEIGHBOUR_INPUTS}
    out.update(nbr)
    out[F.USER_ID] = pad_first(out[F.USER_ID])
    # Examples without the flag (older writers): derive it from the clicks, as for requests.
    has_click = tf.cast(tf.reduce_any(
        request.pad_axis(out[F.SEARCH_CLICKS], 2, 1, F.RAW_PAD_ID) >= 0, axis=-1), _I64)
    flag = request.pad_axis(out[F.SEARCH_HAS_CLICK], 1, tf.shape(has_click)[1])
    out[F.SEARCH_HAS_CLICK] = tf.where(tf.shape(out[F.SEARCH_HAS_CLICK])[1] > 0,
                                       flag[:, :tf.shape(has_click)[1]], has_click)
    with tf.control_dependencies([tf.debugging.assert_positive(
            tf.shape(out[CANDIDATES])[1],
            message=f"serving_default Examples need an int64 list feature `{CANDIDATES}` "
                    "(the items to score); none of the Examples has one")]):
        out[CANDIDATES] = tf.identity(out[CANDIDATES])
    return out


BUCKETS = tuple(2 ** i for i in range(21))  # compiled sizes of every axis under ``jit_compile``


def bucket(size: tf.Tensor) -> tf.Tensor:
    """The smallest ``BUCKETS`` entry >= ``size``, elementwise (int32, ``size``'s shape)."""
    buckets = tf.constant(BUCKETS, tf.int32)
    size = tf.cast(size, tf.int32)
    index = tf.searchsorted(buckets, tf.reshape(size, [-1]), side="left")
    return tf.reshape(tf.gather(buckets, tf.minimum(index, len(BUCKETS) - 1)), tf.shape(size))


def min_sizes(shape: F.DataShape) -> Dict[str, tuple]:
    """The smallest padded size of each axis after the first, per request field: the model's
    caps (``shape``'s batch layout), so that every request within the caps compiles to one
    shape (the XLA path pads the raw request before fitting it, since its inner sizes are free).
    """
    fields = shape.batch_fields(labels=False, neighbours=True)
    return {name: field.inner for name, field in fields.items() if field.inner}

# Parallel request fields: equal [B, L] (``fit_history`` checks them too, but XLA drops asserts).
_NOT_IDS = (F.FEED_TS, F.SEARCH_TS, F.SEARCH_HAS_CLICK, F.NBR_SIDE, F.NBR_SIM)  # padded with 0
_PARALLEL = ((F.FEED_ITEMS, F.FEED_TS),
             (F.SEARCH_TS, F.SEARCH_WORDS, F.SEARCH_CLICKS, F.SEARCH_HAS_CLICK),
             (F.NBR_SIDE, F.NBR_SIM))


def pad_to_buckets(values: tf.Tensor, min_sizes=(), value=0) -> tf.Tensor:
    """Pads every axis of ``values`` at its end with ``value`` up to ``bucket(size)``; an axis
    ``i >= 1`` first to at least ``min_sizes[i - 1]`` (where given)."""
    shape = tf.shape(values, out_type=tf.int32)
    floor = list(min_sizes)[:values.shape.rank - 1]
    floor = tf.constant([1] + floor + [1] * (values.shape.rank - 1 - len(floor)), tf.int32)
    target = bucket(tf.maximum(shape, floor))
    return tf.pad(values, tf.stack([tf.zeros_like(shape), target - shape], axis=1),
                  constant_values=tf.cast(value, values.dtype))


def parallel_checks(inputs: Dict[str, tf.Tensor]) -> list:
    """Assertions that parallel history fields of a request agree on ``[B, L]``."""
    checks = []
    for group in _PARALLEL:
        present = [name for name in group if name in inputs]
        for name in present[1:]:
            checks.append(tf.debugging.assert_equal(
                tf.shape(inputs[name])[:2], tf.shape(inputs[present[0]])[:2],
                message=f"parallel history inputs {present} should have the same batch and "
                        "history sizes"))
    return checks


def pad_first(values: tf.Tensor) -> tf.Tensor:
    """``[B, <=1]`` → ``[B]``: the first entry, ``RAW_PAD_ID`` where the list is empty."""
    return request.pad_axis(values, 1, 1, F.RAW_PAD_ID)[:, 0]


class ServingModule(tf.Module):
    """Holds the trained ranker (and optionally a two-tower head with its index).

    Args:
        ranker: A trained ``JsrModel`` with ``score(batch, task)`` and ``call`` returning both
            heads' logits.
        retriever: Optional trained ``TwoTower`` (``jsr_tf.models.two_tower``).
        top_k: Results per ``retrieve`` row.
        cache_items: Freeze the ranker's item encoder into a table of every item's vector
            (``UniSAR.cache_item_vectors``), so requests gather item vectors instead of encoding
            captions; same scores, less latency, a larger SavedModel (``items × D`` floats).
        jit_compile: Run the ranker (after the id lookups) as an XLA-compiled function. Batch
            rows and candidates are padded up to powers of two (``BUCKETS``) so that at most a
            few shapes are ever compiled. TF Serving then needs
            ``--xla_cpu_compilation_enabled=true`` on CPU.
        limits: ``RequestLimits``: the largest request the signatures take.
    """

    def __init__(self, ranker: JsrModel, retriever: Optional[JsrModel] = None,
                 top_k: int = 100, cache_items: bool = True, jit_compile: bool = False,
                 limits: RequestLimits = RequestLimits()) -> None:
        super().__init__(name="jsr_serving")
        self.limits = limits
        if cache_items:
            ranker.cache_item_vectors()  # a no-op for a ranker without ``caches_items``
        if jit_compile and ranker.dynamic_shapes and ranker.item_cache is None:
            # (with the cached table, gathers replace the per-unique-id encoding)
            if ranker.caches_items:
                raise ValueError("`jit_compile=True` needs `cache_items=True` (or a ranker "
                                 "built with fixed shapes).")
            ranker.use_fixed_shapes()  # e.g. SASRec: its fixed-shape path gives the same values
        self.jit_compile = bool(jit_compile)
        if self.jit_compile:
            self._compiled = {
                "score": [tf.function(functools.partial(self._compiled_score, task=t),
                                      jit_compile=True) for t in F.Task],
                "both": tf.function(self._compiled_both, jit_compile=True)}
        self._min_sizes = min_sizes(ranker.data_shape)
        # Whether ``ranker.prepare`` maps the request to dense indices (padding 0): the XLA
        # path then pads and fits the prepared request.
        self._dense = ranker.prepares_ids
        self.ranker = ranker
        self.retriever = retriever
        self.zero_is_id = ranker.zero_is_id
        self.index = None
        if retriever is not None:
            item_ids, vectors = retriever.catalogue()
            self.top_k = int(min(top_k, int(item_ids.shape[0])))
            self.index = tfrs.layers.factorized_top_k.BruteForce(k=self.top_k, name="index")
            self.index.index(vectors, item_ids)

    # -- the model calls, shared by every signature ---------------------------------------------
    def _plain_score(self, batch: Dict[str, tf.Tensor], task: int) -> tf.Tensor:
        return self.ranker.score(batch, task, training=False)

    def _compiled_score(self, padded: Dict[str, tf.Tensor], task: int) -> tf.Tensor:
        return self.ranker.score_prepared(self._fitted(padded), task, training=False)

    def _compiled_both(self, padded: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        return self._both_scores(self.ranker.call_prepared(self._fitted(padded), training=False))

    def _plain_both(self, batch: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        return self._both_scores(self.ranker(batch, training=False))

    @staticmethod
    def _both_scores(logits: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        return {FEED_SCORES: logits[Outputs.FEED_LOGITS],
                SEARCH_SCORES: logits[Outputs.SEARCH_LOGITS]}

    def _run(self, inputs: Dict[str, tf.Tensor], plain, compiled):
        """``plain(batch)`` on the fitted request; or, under ``jit_compile``, the id lookups on
        the raw request (the hash tables cannot be compiled), every axis padded to a bucket,
        and ``compiled()`` (one XLA function: fitting to the caps and scoring) cut back."""
        inputs = within_limits(self.limits, inputs, F.USER_ID)
        if not self.jit_compile:
            return plain(fit_request(inputs, self.ranker.data_shape, self.zero_is_id))
        with tf.control_dependencies(parallel_checks(inputs)):
            prepared = self.ranker.prepare(inputs)
        rows, cols = tf.shape(inputs[F.USER_ID])[0], tf.shape(inputs[CANDIDATES])[1]
        padded = {name: pad_to_buckets(value, self._min_sizes.get(name, ()),
                                       0 if self._dense or name in _NOT_IDS else F.RAW_PAD_ID)
                  for name, value in prepared.items()}
        out = compiled()(padded)
        return tf.nest.map_structure(lambda x: x[:rows, :cols], out)

    def _fitted(self, padded: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        """The bucket-padded prepared request fitted to the caps, inside the XLA function."""
        if not self._dense:  # ``prepare`` is the identity: raw ids
            return fit_request(padded, self.ranker.data_shape, self.zero_is_id)
        return fit_request(padded, self.ranker.data_shape, zero_is_id=False, pad=F.PAD_ID)

    def score(self, inputs: Dict[str, tf.Tensor], task: int) -> tf.Tensor:
        """``[B, N]`` logits of ``task``'s head for a raw request (the ``feed`` / ``search``
        signatures and their ``*_nbr`` variants)."""
        return self._run(inputs, functools.partial(self._plain_score, task=task),
                         lambda: self._compiled["score"][int(task)])

    def _both(self, inputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        return self._run(inputs, self._plain_both, lambda: self._compiled["both"])

    def score_examples(self, examples: tf.Tensor) -> Dict[str, tf.Tensor]:
        """Both heads' logits for serialized serving Examples (``serving_default``)."""
        return self._both(parse_examples(examples, self.ranker.data_shape,
                                         neighbours=self.ranker.uses_neighbours))

    def retrieve(self, inputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        """The two-tower head's top ``k`` items for a raw request (``retrieve``)."""
        exclude_history = inputs[EXCLUDE_HISTORY]
        inputs = {name: value for name, value in inputs.items() if name != EXCLUDE_HISTORY}
        inputs = within_limits(self.limits, inputs, F.USER_ID)
        users = self.retriever.request_vectors(self.retriever.prepare(
            fit_request(inputs, self.retriever.data_shape, self.retriever.zero_is_id)))
        rows = tf.shape(users)[0]
        exclusions = tf.concat([tf.reshape(inputs[F.FEED_ITEMS], [rows, -1]),
                                tf.reshape(inputs[F.SEARCH_CLICKS], [rows, -1])], axis=1)
        exclusions = tf.where(exclude_history[:, None], exclusions,
                              tf.fill(tf.shape(exclusions), tf.constant(F.RAW_PAD_ID, _I64)))
        catalogue = tf.shape(self.index._identifiers)[0]
        k_total = tf.minimum(self.top_k + tf.shape(exclusions)[1], catalogue)
        scores, ids = self.index(users, k=k_total)
        excluded = tf.reduce_any(tf.equal(ids[:, :, None], exclusions[:, None, :]), axis=-1)
        adjusted = tf.where(excluded, tf.fill(tf.shape(scores), float("-inf")), scores)
        _, order = tf.math.top_k(adjusted, k=self.top_k)
        kept_ids = tf.gather(ids, order, batch_dims=1)
        kept_scores = tf.gather(scores, order, batch_dims=1)
        empty = tf.gather(excluded, order, batch_dims=1)
        return {ITEM_IDS: tf.where(empty, tf.fill(tf.shape(kept_ids),
                                                  tf.constant(F.RAW_PAD_ID, _I64)), kept_ids),
                SCORES: tf.where(empty, tf.fill(tf.shape(kept_scores), EMPTY_SCORE),
                                 kept_scores)}

    # -- signatures --------------------------------------------------------------------------
    def signatures(self) -> Dict[str, tf.types.experimental.ConcreteFunction]:
        """The concrete functions to pass to ``tf.saved_model.save(signatures=...)``: one per
        ``jsr_tf.export.signatures`` entry this module exports (neighbour signatures for a ranker
        built with neighbours, ``retrieve`` with a retriever)."""
        exported = SG.exported_signatures(neighbours=self.ranker.uses_neighbours,
                                          retriever=self.index is not None)
        return {sig.name: SG.concrete_function(sig, self) for sig in exported}
