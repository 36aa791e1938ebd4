"""Two-tower retrieval head: the model behind the ``retrieve`` serving signature.

UniSAR scores a given candidate list; it cannot rank a whole catalogue per request. This model
gives the serving side a first stage: a user (+ query) tower and an item tower whose dot product
is indexed over every item with a TFRS ``BruteForce`` layer inside the SavedModel.

Shapes: B rows, Lr = Ls = 30 history slots, W = 50 words, K = 5 clicks, C candidates, D = hidden.

- **Item tower:** ``normalize(Dense_D([E_id(i); E_cat1(i); E_cat2(i)]))`` → ``[..., D]``.
- **User tower** (one per task): ``[mean E_item(feed history); mean E_item(search clicks);
  mean E_word(history queries); E_user]`` (masked means; empty histories give zeros), plus the
  mean target-query word embedding on the search tower → ``MLP(2D, D)`` → L2-normalised ``[B, D]``.
- **Loss:** ``tfrs.tasks.Retrieval``: in-batch softmax over the batch's positive items, logQ
  correction with the items' train-target frequencies (``vocab/items.tsv`` counts, +1 smoothed),
  accidental hits removed, temperature ``TEMPERATURE``. Feed and search batches are summed.
- ``score`` (used by ``jsr-evaluate``): cosine / temperature of the row's candidates, so the head
  is evaluated on the same 100-candidate files as the rankers.
"""

from __future__ import annotations

from typing import Dict, Tuple

import jsr_tf  # noqa: F401
import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs
import tf_keras as keras

from jsr_tf import features as F
from jsr_tf.config import ExperimentConfig, ModelConfig
from jsr_tf.data import reader
from jsr_tf.data.vocab import NUM_RESERVED, Vocab
from jsr_tf.keys import Inputs
from jsr_tf.layers.id_lookup import IdLookup
from jsr_tf.layers.mlp import MLP
from jsr_tf.layers.pooling import masked_mean
from jsr_tf.models.base import JsrModel
from jsr_tf.models.factory import register_model
from jsr_tf.models.parts.builders import coupled_l2
from jsr_tf.models.parts.tables import ItemTables

TEMPERATURE = 0.05


class TwoTower(JsrModel):
    """Two-tower retrieval model with a feed and a search user tower.

    Args:
        config: Model hyper-parameters (``hidden_dim``, ``embedding_dim``, ``dropout``).
        vocab: Vocabularies (lookup tables, item categories, item frequencies for logQ).
        l2: Coupled L2 coefficient (see ``JsrModel``).
        temperature: Softmax temperature of the cosine scores.
    """

    def __init__(self, config: ModelConfig, vocab: Vocab, l2: float = 0.0,
                 temperature: float = TEMPERATURE, **kwargs) -> None:
        super().__init__(l2=l2, data_shape=vocab.shape, **kwargs)
        self.config = config.validate()
        self.temperature = float(temperature)
        d, e = config.hidden_dim, config.embedding_dim
        self.item_lookup = IdLookup(vocab.item_ids, name="item_lookup")
        self.word_lookup = IdLookup(vocab.word_ids, name="word_lookup")
        self.user_lookup = IdLookup(vocab.user_ids, name="user_lookup")
        self.num_items = vocab.num_items
        tables = ItemTables(vocab)
        self._categories = tf.constant(tables.categories)
        counts = np.ones([vocab.num_items], np.float64)  # +1 smoothing; pad/OOV rows never drawn
        counts[NUM_RESERVED:] += vocab.item_feed_count + vocab.item_search_count
        self._log_q = tf.constant(np.log(counts / counts[NUM_RESERVED:].sum()), tf.float32)
        self._raw_item_ids = tf.constant(np.asarray(vocab.item_ids, np.int64))
        self.item_ids = keras.layers.Embedding(vocab.num_items, e, name="item_ids")
        self.categories = [keras.layers.Embedding(size, e, name=f"category_{k}")
                           for k, size in enumerate(tables.category_sizes)]
        self.item_projection = keras.layers.Dense(d, name="item_projection")
        self.words = keras.layers.Embedding(vocab.num_words, e, name="words")
        self.users = keras.layers.Embedding(vocab.num_users, e, name="users")
        self.towers = [MLP((2 * d, d), dropout=config.dropout, name=f"{t.name.lower()}_tower")
                       for t in F.Task]
        self.history_items = keras.layers.Embedding(vocab.num_items, e, name="history_items")
        self.tasks = [tfrs.tasks.Retrieval(
            loss=keras.losses.CategoricalCrossentropy(
                from_logits=True, reduction=keras.losses.Reduction.NONE),
            temperature=self.temperature, remove_accidental_hits=True) for _ in F.Task]

    def item_vectors(self, dense_ids: tf.Tensor) -> tf.Tensor:
        """L2-normalised item-tower vectors ``[..., D]`` of dense item indices (any shape)."""
        categories = tf.gather(self._categories, dense_ids)
        parts = [self.item_ids(dense_ids)] + [
            table(categories[..., k]) for k, table in enumerate(self.categories)]
        return tf.math.l2_normalize(self.item_projection(tf.concat(parts, axis=-1)), axis=-1)

    def _user_features(self, batch: Dict[str, tf.Tensor]) -> tf.Tensor:
        """The task-independent tower input ``[B, 3E + E_user]`` of a prepared batch."""
        feed = batch[F.FEED_ITEMS]
        clicks = batch[F.SEARCH_CLICKS]
        words = batch[F.SEARCH_WORDS]
        session_valid = tf.not_equal(batch[F.SEARCH_TS], 0)
        query_means = masked_mean(self.words(words), tf.not_equal(words, 0), axis=-2)
        return tf.concat([
            masked_mean(self.history_items(feed), tf.not_equal(feed, 0), axis=1),
            masked_mean(self.history_items(clicks),
                        tf.not_equal(clicks, 0) & session_valid[..., None], axis=[1, 2]),
            masked_mean(query_means, session_valid, axis=1),
            self.users(batch[F.USER_ID])], axis=-1)

    def _tower(self, features: tf.Tensor, query: tf.Tensor, task: int,
               training: bool) -> tf.Tensor:
        tower = self.towers[int(task)](tf.concat([features, query], axis=-1), training=training)
        return tf.math.l2_normalize(tower, axis=-1)

    def _query(self, batch: Dict[str, tf.Tensor]) -> tf.Tensor:
        query = batch[F.QUERY_WORDS]
        return masked_mean(self.words(query), tf.not_equal(query, 0), axis=1)

    def user_vectors(self, batch: Dict[str, tf.Tensor], task: int,
                     training: bool = False) -> tf.Tensor:
        """L2-normalised user-tower vectors ``[B, D]`` of a prepared batch."""
        features = self._user_features(batch)
        query = (self._query(batch) if task == F.Task.SEARCH
                 else tf.zeros_like(features[:, :self.config.embedding_dim]))
        return self._tower(features, query, task, training)

    def request_vectors(self, batch: Dict[str, tf.Tensor]) -> tf.Tensor:
        """Per row of a prepared batch: the search tower if the row has query words, else the
        feed tower ``[B, D]``.

        The history pooling is shared; only the two small tower MLPs run for every row.
        """
        features = self._user_features(batch)
        query = self._query(batch)
        has_query = tf.reduce_any(tf.not_equal(batch[F.QUERY_WORDS], 0), axis=1)
        return tf.where(has_query[:, None],
                        self._tower(features, query, F.Task.SEARCH, False),
                        self._tower(features, tf.zeros_like(query), F.Task.FEED, False))

    def catalogue(self) -> Tuple[tf.Tensor, tf.Tensor]:
        """Every vocabulary item: raw ids ``[N]`` and item vectors ``[N, D]`` (no pad/OOV)."""
        dense = tf.range(NUM_RESERVED, self.num_items, dtype=tf.int64)
        return self._raw_item_ids, self.item_vectors(dense)

    def score_prepared(self, batch: Dict[str, tf.Tensor], task: int,
                       training: bool = False) -> tf.Tensor:
        users = self.user_vectors(batch, task, training)
        items = self.item_vectors(batch[reader.CANDIDATES])
        return tf.einsum("bd,bcd->bc", users, items) / self.temperature

    def task_loss(self, batch: Dict[str, tf.Tensor], task: int, training: bool) -> tf.Tensor:
        """In-batch softmax loss of one task's batch (positives = candidate column 0)."""
        positives = batch[reader.CANDIDATES][:, 0]
        users = self.user_vectors(batch, task, training)
        items = self.item_vectors(positives)
        losses = self.tasks[int(task)](
            users, items, candidate_sampling_probability=tf.exp(tf.gather(self._log_q, positives)),
            candidate_ids=positives, compute_metrics=False, compute_batch_metrics=False)
        return tf.reduce_mean(losses)

    def loss_prepared(self, inputs, training: bool = False) -> tf.Tensor:
        total = 0.0
        for key, task in ((Inputs.FEED, F.Task.FEED), (Inputs.SEARCH, F.Task.SEARCH)):
            if key in inputs:
                total += self.task_loss(inputs[key], task, training)
        return total


@register_model("two_tower")
def build_two_tower(config: ExperimentConfig, vocab: Vocab) -> TwoTower:
    return TwoTower(config.model, vocab, l2=coupled_l2(config))
