"""Builders the families share: ``id_lookups``, ``build_query_encoder`` / ``build_item_encoder``
(UniSAR's ``QueryEncoder`` and ``ItemEncoder``, or a plain id table), ``transformer_stack``,
``bce_ranking_task``, ``coupled_l2``, ``build_seeded`` (the UniSAR / SESRec registry builder),
``precision_kwargs`` and ``check_item_features``. Each creates its layers in the order the models
always did, so a seeded model initialises exactly as before (unseeded Keras initialisers take
their seeds in creation order).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Type

import jsr_tf  # noqa: F401
import tensorflow_recommenders as tfrs
import tf_keras as keras

from jsr_tf.config import ExperimentConfig, ModelConfig
from jsr_tf.data.vocab import Vocab
from jsr_tf.layers.id_lookup import IdLookup
from jsr_tf.layers.item_encoder import ItemEncoder
from jsr_tf.layers.query_encoder import QueryEncoder
from jsr_tf.layers.transformer import TransformerEncoderBlock
from jsr_tf.models.parts.tables import ItemTables


ITEM_FEATURES = ("unisar", "id_only")


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
