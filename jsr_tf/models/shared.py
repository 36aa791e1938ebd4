"""What the model families share: vocabulary tables, encoder and task builders, loss helpers.

Shapes: B rows; Lr = Ls = 30 history slots; W = 50 words; K = 5 clicks per session; C
candidates; d = ``hidden_dim``.

- **Vocabulary tables** (numpy, dense-index order: row 0 = pad, row 1 = OOV): ``dense_rows``,
  ``ItemTables`` (item captions and categories), ``user_feature_table``, ``query_table``.
- **Builders**: ``id_lookups``, ``build_query_encoder`` / ``build_item_encoder`` (UniSAR's
  ``QueryEncoder`` and ``ItemEncoder``, or a plain id table), ``transformer_stack``,
  ``bce_ranking_task``, ``coupled_l2``, ``build_seeded`` (the UniSAR / SESRec registry builder)
  and ``check_item_features``. Each creates its layers in the order the models always did, so a
  seeded model initialises exactly as before (unseeded Keras initialisers take their seeds in
  creation order).
- **Forward helpers**: ``item_vectors`` (id-only tables give exact zeros for padding),
  ``encode_unique`` (one encoder pass per distinct id), ``item_table`` (every item encoded once,
  for inference), ``user_rows``, ``request_vector``, and
  ``EncodedSideMixin`` (``score``, ``call``, ``compute_loss`` and ``L_qi`` of the models that
  encode the user side once).
- **Neighbours** (spec/similar_users.md §4): ``neighbour_inputs`` (the ``nbr_*`` tensors of a
  batch, zeros where absent), ``neighbour_session_mask``, ``build_neighbour_encoder`` and
  ``build_neighbour_fusion``.
- **Losses**: ``mean_bce`` of a task batch, the stateless InfoNCE negative draw
  ``infonce_negatives`` (keyed by ``(seed, optimizer step)``) and the joint
  ``joint_loss`` (``L_feed + src_loss_weight · L_search``, weight 1 for a search-only step) with
  ``check_joint_inputs``; ``single_task_batch`` for the one-task models.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Type

import jsr_tf  # noqa: F401
import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs
import tf_keras as keras

from jsr_tf import features as F
from jsr_tf.config import ExperimentConfig, ModelConfig
from jsr_tf.data import reader
from jsr_tf.data.vocab import NUM_RESERVED, Vocab
from jsr_tf.keys import Inputs, Outputs
from jsr_tf.layers.id_lookup import IdLookup
from jsr_tf.layers.item_encoder import ItemEncoder
from jsr_tf.layers.neighbour_encoder import NeighbourEncoder
from jsr_tf.layers.neighbour_fusion import NeighbourFusion
from jsr_tf.layers.query_encoder import QueryEncoder
from jsr_tf.layers.transformer import TransformerEncoderBlock

ITEM_FEATURES = ("unisar", "id_only")
NUM_USER_FEATURES = 4  # onehot_feat1, onehot_feat2, search_active_level, rec_active_level

Batch = Dict[str, tf.Tensor]


# ---------------------------------------------------------------------------------------------
# Vocabulary tables.
def dense_rows(raw: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Maps raw ids to dense indices of a vocabulary.

    The same mapping as ``IdLookup`` (``jsr_tf/layers/id_lookup.py``), in numpy.

    Args:
        raw: Integer array of raw ids, any shape; negative = padding (``F.RAW_PAD_ID``), and 0
            too when ``ids`` does not hold it.
        ids: The vocabulary's raw ids, in dense order (``ids[k]`` has index ``k + 2``).

    Returns:
        int64 array shaped like ``raw``: 0 for padding, 1 (OOV) for ids not in ``ids``.
    """
    order = np.argsort(ids)
    sorted_ids = ids[order]
    pos = np.searchsorted(sorted_ids, raw)
    pos = np.minimum(pos, max(len(ids) - 1, 0))
    found = (len(ids) > 0) & (sorted_ids[pos] == raw) if len(ids) else np.zeros_like(raw, bool)
    dense = np.where(found, order[pos] + NUM_RESERVED, 1)
    padding = (raw < 0) | ((raw == 0) & ~found)
    return np.where(padding, F.PAD_ID, dense).astype(np.int64)


class ItemTables:
    """Item side-feature tables in dense-index order (row 0 = pad, row 1 = OOV).

    Args:
        vocab: Vocabularies from the pipeline.

    Attributes:
        captions: int64 ``[num_items, W]`` dense word indices of each item's caption.
        categories: int64 ``[num_items, 2]`` first- and second-level category.
        category_sizes: Rows of the two category tables.
    """

    def __init__(self, vocab: Vocab) -> None:
        n = vocab.num_items
        self.captions = np.zeros([n, vocab.shape.caption_words], np.int64)
        self.captions[NUM_RESERVED:] = dense_rows(vocab.item_captions, vocab.word_ids)
        self.categories = np.zeros([n, 2], np.int64)
        self.categories[NUM_RESERVED:] = vocab.item_categories[:, :2]
        self.category_sizes = tuple(int(self.categories[:, k].max(initial=0)) + 1 for k in range(2))


def user_feature_table(vocab: Vocab) -> Tuple[np.ndarray, Tuple[int, ...]]:
    """The user side features in dense-index order and the sizes of the user tables.

    Args:
        vocab: Vocabularies from the pipeline.

    Returns:
        ``(table, sizes)``: int64 ``[num_users, 4]`` (rows 0 and 1 all zero) and the number of
        values of the user id and of each of the four features (5 sizes).
    """
    table = np.zeros([vocab.num_users, NUM_USER_FEATURES], np.int64)
    table[NUM_RESERVED:] = vocab.user_features
    sizes = (vocab.num_users,) + tuple(
        int(table[:, k].max(initial=0)) + 1 for k in range(NUM_USER_FEATURES))
    return table, sizes


def query_table(vocab: Vocab) -> np.ndarray:
    """The train-visible queries as dense word indices (the InfoNCE negative pool).

    Returns:
        int64 ``[num_queries, W]``; one all-padding query when the vocabulary has none.
    """
    if len(vocab.queries):
        return dense_rows(vocab.queries, vocab.word_ids)
    return np.zeros([1, vocab.shape.query_words], np.int64)


# ---------------------------------------------------------------------------------------------
# Builders.
def coupled_l2(config: ExperimentConfig) -> float:
    """The model's coupled L2 coefficient: ``train.l2`` with Adam, 0 otherwise."""
    return config.train.l2 if config.train.optimizer == "adam" else 0.0


def build_seeded(model_class: Type[keras.Model], config: ExperimentConfig,
                 vocab: Vocab) -> keras.Model:
    """The registered builder of the models with per-step InfoNCE draws (UniSAR, SESRec).

    ``model_class(config.model, vocab, l2=coupled_l2(config), dynamic_shapes=not
    train.jit_compile, seed=train.seed, precision=train.precision)``: XLA needs the fixed-shape
    path.
    """
    return model_class(config.model, vocab, l2=coupled_l2(config),
                       dynamic_shapes=not config.train.jit_compile, seed=config.train.seed,
                       precision=config.train.precision)


def precision_kwargs(precision: str) -> Dict[str, Any]:
    """Layer arguments of the layers that follow ``train.precision``: ``{}`` for float32,
    ``{"dtype": Policy(precision)}`` otherwise."""
    return {} if precision == "float32" else {"dtype": keras.mixed_precision.Policy(precision)}


def check_item_features(item_features: str) -> str:
    """Returns ``item_features`` if it is one of ``ITEM_FEATURES``, else raises ``ValueError``."""
    if item_features not in ITEM_FEATURES:
        raise ValueError(f"`item_features` should be one of {ITEM_FEATURES}. "
                         f"Received: `item_features={item_features!r}`")
    return item_features


def id_lookups(vocab: Vocab, *kinds: str) -> List[IdLookup]:
    """``IdLookup`` layers named ``{kind}_lookup`` over ``vocab.{kind}_ids``, in order.

    Args:
        vocab: Vocabularies from the pipeline.
        *kinds: ``"item"``, ``"word"`` and / or ``"user"``.
    """
    return [IdLookup(getattr(vocab, f"{kind}_ids"), name=f"{kind}_lookup") for kind in kinds]


def build_query_encoder(config: ModelConfig, vocab: Vocab) -> QueryEncoder:
    """UniSAR's ``QueryEncoder`` ``Q`` (word table ``embedding_dim`` → ``hidden_dim``)."""
    return QueryEncoder(vocab.num_words, config.embedding_dim, config.hidden_dim,
                        name="query_encoder")


def build_item_encoder(config: ModelConfig, vocab: Vocab, item_features: str = "unisar",
                       query_encoder: Optional[QueryEncoder] = None) -> keras.layers.Layer:
    """The item representation ``I``: dense item indices → ``hidden_dim`` vectors.

    Args:
        config: Model hyper-parameters (``embedding_dim``, ``hidden_dim``).
        vocab: Vocabularies (item count and side features).
        item_features: ``"unisar"``: UniSAR's ``ItemEncoder`` (id + caption + two categories),
            named ``item_encoder``; ``"id_only"``: a plain glorot-normal id table
            ``[num_items, hidden_dim]`` named ``item_embeddings`` (see ``item_vectors``).
        query_encoder: The ``QueryEncoder`` that reads captions (shared with the model's query
            side); None builds a private one first. Unused with ``"id_only"``.
    """
    if item_features != "unisar":
        return keras.layers.Embedding(vocab.num_items, config.hidden_dim,
                                      embeddings_initializer="glorot_normal",
                                      name="item_embeddings")
    if query_encoder is None:
        query_encoder = build_query_encoder(config, vocab)
    tables = ItemTables(vocab)
    return ItemEncoder(
        vocab.num_items, config.embedding_dim, config.hidden_dim, query_encoder=query_encoder,
        caption_length=vocab.shape.caption_words, category_sizes=tables.category_sizes,
        caption_words=tables.captions, item_categories=tables.categories, name="item_encoder")


def transformer_stack(config: ModelConfig, name: str,
                      block: Type[keras.layers.Layer] = TransformerEncoderBlock,
                      activation: Optional[Callable[[], Any]] = None,
                      **kwargs: Any) -> List[keras.layers.Layer]:
    """``num_layers`` transformer blocks named ``{name}_{i}``.

    Args:
        config: Model hyper-parameters (``num_heads``, ``ffn_dim``, ``dropout``, ``num_layers``).
        name: Name prefix of the blocks.
        block: ``TransformerEncoderBlock`` or ``TransformerDecoderBlock``.
        activation: Optional factory of the FFN activation, called once per block (each block
            gets its own instance); None keeps the block's default.
        **kwargs: More block arguments (e.g. ``layer_norm_epsilon``).
    """
    blocks = []
    for i in range(config.num_layers):
        extra = dict(kwargs) if activation is None else {"activation": activation(), **kwargs}
        blocks.append(block(config.num_heads, config.ffn_dim, dropout=config.dropout,
                            name=f"{name}_{i}", **extra))
    return blocks


def bce_ranking_task() -> tfrs.tasks.Ranking:
    """A ``tfrs.tasks.Ranking`` with per-entry BCE on logits.

    Reduction NONE: Keras's AUTO reduction is refused under a ``tf.distribute`` strategy; the
    mean over all ``B × C`` entries is taken by ``mean_bce``.
    """
    return tfrs.tasks.Ranking(loss=keras.losses.BinaryCrossentropy(
        from_logits=True, reduction=keras.losses.Reduction.NONE))


# ---------------------------------------------------------------------------------------------
# Forward helpers.
def item_vectors(encoder: keras.layers.Layer, dense_ids: tf.Tensor,
                 item_features: str) -> tf.Tensor:
    """``encoder(dense_ids)``: float ``(..., d)``; with ``"id_only"`` exactly 0 for padding."""
    vectors = encoder(dense_ids)
    if item_features == "id_only":
        vectors *= tf.cast(tf.not_equal(dense_ids, F.PAD_ID), vectors.dtype)[..., tf.newaxis]
    return vectors


def encode_unique(encode: Callable[[tf.Tensor], tf.Tensor], dense_ids: Sequence[tf.Tensor],
                  width: int) -> List[tf.Tensor]:
    """``encode`` over several id tensors, each distinct id encoded once (dynamic shapes).

    Args:
        encode: Dense item indices ``(N,)`` → float ``(N, width)``.
        dense_ids: int64 tensors of dense item indices, any shapes.
        width: The vector width ``d``.

    Returns:
        Float tensors ``(*shape, d)``, one per input.
    """
    flat = tf.concat([tf.reshape(ids, [-1]) for ids in dense_ids], axis=0)
    unique, index = tf.unique(flat)
    vectors = tf.gather(encode(unique), index)
    out = []
    for ids, part in zip(dense_ids, tf.split(vectors, [tf.size(ids) for ids in dense_ids])):
        out.append(tf.reshape(part, tf.concat([tf.shape(ids), [width]], 0)))
    return out


def item_table(encode: Callable[[tf.Tensor], tf.Tensor], num_items: int,
               chunk: int = 8192) -> tf.Tensor:
    """``encode`` of every dense item index ``0 .. num_items - 1`` in chunks: ``[num_items, d]``
    (the inference-time item table of ``cache_item_vectors``)."""
    ids = np.arange(num_items, dtype=np.int64)
    return tf.concat([encode(tf.constant(ids[i:i + chunk])) for i in range(0, num_items, chunk)],
                     axis=0)


def user_rows(user_features: tf.Tensor, user_index: tf.Tensor) -> tf.Tensor:
    """int64 ``(B, 5)``: each row's dense user index, then its four features.

    Args:
        user_features: int64 ``[num_users, 4]`` (``user_feature_table``).
        user_index: int64 ``(B,)`` dense user indices.
    """
    return tf.concat([user_index[:, None], tf.gather(user_features, user_index)], axis=1)


def request_vector(query_encoder: QueryEncoder, empty_query: tf.Variable, batch: Batch,
                   task: int) -> tf.Tensor:
    """``Q(query_words)`` for the search task, the learned ``empty_query`` for feed: ``(B, d)``."""
    if F.Task(task) == F.Task.SEARCH:
        return query_encoder(batch[F.QUERY_WORDS])
    rows = tf.shape(batch[F.FEED_ITEMS])[0]
    return tf.tile(empty_query[tf.newaxis], [rows, 1])


class EncodedSideMixin:
    """``score``, ``call``, ``compute_loss`` and the query–item InfoNCE term of the models that
    encode the user side once per row and score candidates against it (UniSAR, SESRec). Mix in
    before ``JsrModel``.

    The model provides ``prepare(batch)``, ``encode_user(batch, extra_items, training)`` (a dict
    with ``queries [B,Ls,d]``, ``clicks [B,Ls,K,d]``, ``click_ids [B,Ls,K]`` and, under
    ``extra``, the vectors of the dense item tensors ``extra_items`` in order),
    ``candidate_features(side, candidates, training)`` (the task-independent head input, computed
    once when ``call`` scores both heads), ``head(features, candidates, query_words, task,
    training)``, ``task_loss(batch, task, negative_items, negative_queries, training)``,
    ``query_encoder``, ``config``, ``dynamic_shapes``, ``seed``,
    ``num_items``, ``_queries`` (``query_table``) and, with ``use_query_item_alignment``,
    ``query_item_alignment``; ``build_input_side`` creates the input-side ones.
    """

    def score(self, batch: Batch, task: int, training: bool = False) -> tf.Tensor:
        """Logits ``[B, C]`` of one task's head (the search head reads ``query_words``)."""
        batch = self.prepare(batch)
        side = self.encode_user(batch, [batch[reader.CANDIDATES]], training)
        return self.score_encoded(side, side["extra"][0], batch.get(F.QUERY_WORDS), task,
                                  training)

    def call(self, batch: Batch, training: bool = False) -> Dict[str, tf.Tensor]:
        """Both heads' logits ``[B, C]``; the user side and the candidates are encoded once.

        The search head reads ``query_words`` (an all-padding query gives ``Q`` of no words).
        """
        batch = self.prepare(batch)
        side = self.encode_user(batch, [batch[reader.CANDIDATES]], training)
        candidates = side["extra"][0]
        features = self.candidate_features(side, candidates, training)  # once for both heads
        return {Outputs.FEED_LOGITS: self.head(features, candidates, None, F.Task.FEED,
                                               training),
                Outputs.SEARCH_LOGITS: self.head(features, candidates, batch[F.QUERY_WORDS],
                                                 F.Task.SEARCH, training)}

    def score_encoded(self, side: Dict[str, tf.Tensor], candidates: tf.Tensor,
                      query_words: Optional[tf.Tensor], task: int,
                      training: bool = False) -> tf.Tensor:
        """Logits ``[B, C]`` of candidate vectors ``[B, C, d]`` against an encoded user side."""
        return self.head(self.candidate_features(side, candidates, training), candidates,
                         query_words, task, training)

    def build_input_side(self, vocab: Vocab, item_features: str = "unisar") -> Tuple[int, ...]:
        """Creates what turns a raw batch into vectors, in this order (seeded initialisation
        depends on it): the item, word and user ``IdLookup`` layers, ``num_items``, the user
        feature and query tables, ``query_encoder`` and ``item_encoder`` (``build_item_encoder``
        sharing ``query_encoder``). Call from ``__init__`` after setting ``config``.

        Returns:
            The sizes of the user tables (``user_feature_table``).
        """
        self.item_lookup, self.word_lookup, self.user_lookup = id_lookups(vocab, "item", "word",
                                                                          "user")
        self.num_items = vocab.num_items
        user_features, user_sizes = user_feature_table(vocab)
        self._user_features = tf.constant(user_features)
        self._queries = tf.constant(query_table(vocab))
        self.query_encoder = build_query_encoder(self.config, vocab)
        self.item_encoder = build_item_encoder(self.config, vocab, item_features,
                                               self.query_encoder)
        return user_sizes

    def _negatives(self) -> Tuple[tf.Tensor, tf.Tensor]:
        """This step's InfoNCE negatives: ``infonce_negatives`` keyed by ``(seed, optimizer
        step)``, so a step draws the same ones also after a resume and under XLA."""
        return infonce_negatives(self.seed, optimizer_step(self), self.config.num_qi_negatives,
                                 self.num_items, self._queries)

    def compute_loss(self, inputs: Mapping[str, Batch], training: bool = False) -> tf.Tensor:
        """``L_feed + src_loss_weight · L_src`` (``joint_loss`` of the model's ``task_loss``)
        with one InfoNCE negative draw shared by both batches (none without the query–item
        alignment).

        Args:
            inputs: ``{Inputs.FEED: batch, Inputs.SEARCH: batch}``, either may be absent.
            training: Training step.
        """
        check_joint_inputs(inputs)
        negative_items, negative_queries = (self._negatives()
                                            if self.config.use_query_item_alignment
                                            else (None, None))
        return joint_loss(inputs, self.task_loss, self.config.src_loss_weight,
                          negative_items=negative_items, negative_queries=negative_queries,
                          training=training)

    def with_query_item_loss(self, out: Dict[str, tf.Tensor], total: tf.Tensor,
                             side: Dict[str, tf.Tensor],
                             negative_queries: Optional[tf.Tensor]) -> Dict[str, tf.Tensor]:
        """Completes a ``task_loss`` dict: ``qi`` (if enabled) and ``total``.

        Args:
            out: The task's loss terms so far (updated in place and returned).
            total: The task's loss so far.
            side: ``encode_user`` output; with the alignment on, ``extra[1]`` holds the vectors
                of the negative items.
            negative_queries: int64 ``[k_q, W]`` dense word indices of the negative queries.

        Returns:
            ``out`` with ``qi`` (``L_qi`` of the history's (query, click) pairs; the layer
            scores each session's and each distinct clicked item's negatives once) and ``total = total + q_i_cl_weight · L_qi``, or just
            ``total`` when the alignment is off.
        """
        c = self.config
        if c.use_query_item_alignment:
            click_ids = side["click_ids"]
            qi = self.query_item_alignment(side["queries"], side["clicks"],
                                           tf.not_equal(click_ids, F.PAD_ID),
                                           side["extra"][1], self.query_encoder(negative_queries),
                                           item_ids=click_ids)
            out["qi"] = qi
            total += c.q_i_cl_weight * qi
        out["total"] = total
        return out


# ---------------------------------------------------------------------------------------------
# Neighbours (spec/similar_users.md §4).
def neighbour_inputs(batch: Batch, shape: F.DataShape) -> Batch:
    """The five neighbour inputs (``features.NEIGHBOUR_INPUTS``) of a batch.

    A key the batch lacks is all zeros (``[B, K, ...]`` as ``shape.batch_fields`` lays it out, K
    = ``shape.neighbour_slots`` unless ``nbr_side`` says otherwise): every slot empty, so the
    fusion is an exact identity and the model scores like its base. Present keys are returned as
    they are (dense ids if prepared).
    """
    out = {}
    rows = tf.shape(batch[F.FEED_ITEMS])[0]
    slots = batch[F.NBR_SIDE].shape[1] if F.NBR_SIDE in batch else shape.neighbour_slots
    if slots is None:
        slots = tf.shape(batch[F.NBR_SIDE])[1]
    fields = shape.batch_fields(labels=False, neighbours=True)
    for name in F.NEIGHBOUR_INPUTS:
        inner, dtype, _ = fields[name]
        out[name] = batch[name] if name in batch else tf.zeros([rows, slots, *inner[1:]], dtype)
    return out


def neighbour_session_mask(words: tf.Tensor, clicks: tf.Tensor) -> tf.Tensor:
    """``(B, K, Lq)`` bool: a neighbour session is real if it has a word or a click.

    Args:
        words: int ``(B, K, Lq, Wn)`` word ids, 0 = padding.
        clicks: int ``(B, K, Lq, Kn)`` item ids, 0 = padding.
    """
    return tf.logical_or(tf.reduce_any(tf.not_equal(words, F.PAD_ID), axis=-1),
                         tf.reduce_any(tf.not_equal(clicks, F.PAD_ID), axis=-1))


def build_neighbour_encoder(config: ModelConfig) -> NeighbourEncoder:
    """The pooled ``NeighbourEncoder`` (``Dense(2d → d)``, γ = ``neighbour_decay``)."""
    return NeighbourEncoder(config.hidden_dim, decay=config.neighbour_decay,
                            encoder=config.neighbours, name="neighbour_encoder")


def build_neighbour_fusion(config: ModelConfig, name: str,
                           candidate_aware: Optional[bool] = None) -> NeighbourFusion:
    """A ``NeighbourFusion`` with the config's heads and dropouts.

    Args:
        config: Model hyper-parameters (``neighbour_*``).
        name: Layer name.
        candidate_aware: Overrides ``neighbour_candidate_aware`` (a candidate-independent user
            vector queries alone).
    """
    aware = config.neighbour_candidate_aware if candidate_aware is None else candidate_aware
    return NeighbourFusion(config.neighbour_heads, config.neighbour_head_dim,
                           dropout=config.neighbour_attention_dropout,
                           slot_dropout=config.neighbour_dropout, candidate_aware=aware,
                           name=name)


# ---------------------------------------------------------------------------------------------
# Losses.
def mean_bce(task: tfrs.tasks.Ranking, batch: Batch, logits: tf.Tensor,
             training: bool) -> tf.Tensor:
    """Mean BCE of ``logits (B, C)`` against the batch's labels over all ``B × C`` entries.

    Args:
        task: A ``bce_ranking_task`` (its metrics are updated when not training).
        batch: The task batch (``reader.LABEL`` float ``(B, C)``).
        logits: Float ``(B, C)``.
        training: Training step (no metric updates).
    """
    labels = batch[reader.LABEL]
    return tf.reduce_mean(task(labels=labels[..., None], predictions=logits[..., None],
                               compute_metrics=not training))


def optimizer_step(model: keras.Model) -> tf.Tensor:
    """The model optimizer's step counter, or 0 before ``compile``."""
    optimizer = getattr(model, "optimizer", None)
    return optimizer.iterations if optimizer is not None else tf.constant(0, tf.int64)


def infonce_negatives(seed: int, step: tf.Tensor, num_negatives: int, num_items: int,
                      queries: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """One query–item InfoNCE draw: uniform items and queries without replacement.

    Stateless and keyed by ``(seed, step)``: the same step draws the same negatives, also after
    a resume from a backup, and under XLA.

    Args:
        seed: The model's seed.
        step: Integer scalar, the optimizer step (``optimizer_step``).
        num_negatives: Draws of each kind (fewer when the pool is smaller).
        num_items: Rows of the item table (the reserved pad and OOV rows are never drawn).
        queries: int64 ``[num_queries, W]`` dense word indices (``query_table``).

    Returns:
        ``(items, queries)``: int64 ``(k_i,)`` dense item indices and int64 ``(k_q, W)``.
    """
    n_items = max(num_items - NUM_RESERVED, 1)
    n_queries = int(queries.shape[0])
    key = tf.stack([tf.constant(seed, tf.int64), tf.cast(step, tf.int64)])
    item_keys = tf.random.stateless_uniform([n_items], seed=key)
    items = tf.math.top_k(item_keys, k=min(num_negatives, n_items)).indices + NUM_RESERVED
    query_keys = tf.random.stateless_uniform([n_queries], seed=key + [1, 0])
    drawn = tf.gather(queries, tf.math.top_k(query_keys, k=min(num_negatives, n_queries)).indices)
    return tf.cast(items, tf.int64), drawn


def check_joint_inputs(inputs: Mapping[str, Batch]) -> None:
    """Raises ``ValueError`` unless ``inputs`` holds a feed or a search batch."""
    if Inputs.FEED not in inputs and Inputs.SEARCH not in inputs:
        raise ValueError(f"`inputs` should have the key `{Inputs.FEED.value}` or "
                         f"`{Inputs.SEARCH.value}`. Received: keys {sorted(inputs)}")


def joint_loss(inputs: Mapping[str, Batch], task_loss: Callable[..., Dict[str, tf.Tensor]],
               src_loss_weight: float, **kwargs: Any) -> tf.Tensor:
    """``L_feed + src_loss_weight · L_search`` over the task batches present.

    The search weight balances the two tasks; a search-only step keeps weight 1, so the coupled
    L2 is not relatively stronger. No batch at all gives 0 (see ``check_joint_inputs``).

    Args:
        inputs: ``{Inputs.FEED: batch, Inputs.SEARCH: batch}``, either may be absent.
        task_loss: ``task_loss(batch, task, **kwargs)`` → dict with the scalar ``total`` of one
            task's batch (a model's ``task_loss``).
        src_loss_weight: Weight of the search loss next to a feed loss.
        **kwargs: Passed to every ``task_loss`` call (``training``, shared negatives).
    """
    total = 0.0
    if Inputs.FEED in inputs:
        total += task_loss(inputs[Inputs.FEED], F.Task.FEED, **kwargs)["total"]
    if Inputs.SEARCH in inputs:
        weight = src_loss_weight if Inputs.FEED in inputs else 1.0
        total += weight * task_loss(inputs[Inputs.SEARCH], F.Task.SEARCH, **kwargs)["total"]
    return total


def single_task_batch(inputs: Mapping[str, Batch], key: Inputs, model_name: str) -> Batch:
    """The batch of a model that trains on one task only, or ``ValueError`` if it is absent."""
    if key not in inputs:
        raise ValueError(f"{model_name} trains on the {key.value} task only: `inputs` should "
                         f"have the key `{key.value}`. Received: keys {sorted(inputs)}")
    return inputs[key]
