"""UniSAR building blocks: one layer per module, each registered under the `jsr_tf` package.

All layers work on *dense* indices (after `IdLookup`): 0 = padding, 1 = OOV. Attention masks are
Keras masks (True = may attend) and are all built by `history_layout.HistoryLayout`.

Every layer honours a `dtype` argument (`"float64"`, `"float16"`, `"mixed_float16"`, ...): its
sublayers get the same policy, its float call arguments are cast to its compute dtype, and its
masked fills stay finite there (`pooling.safe_fill`). Every layer saves and reloads exactly in
the `.keras` format, as in h5 and SavedModel.
"""

from jsr_tf.layers.cgc import CGC
from jsr_tf.layers.history_layout import HistoryLayout, LayoutKey, stable_rank
from jsr_tf.layers.id_lookup import IdLookup
from jsr_tf.layers.item_encoder import ItemEncoder
from jsr_tf.layers.mlp import MLP
from jsr_tf.layers.neighbour_encoder import NeighbourEncoder
from jsr_tf.layers.neighbour_fusion import NeighbourFusion
from jsr_tf.layers.positional_embedding import PositionalEmbedding
from jsr_tf.layers.query_encoder import QueryEncoder
from jsr_tf.layers.query_item_infonce import QueryItemInfoNCE
from jsr_tf.layers.search_behaviour_encoder import SearchBehaviourEncoder
from jsr_tf.layers.target_attention import TargetAttention
from jsr_tf.layers.transformer import TransformerDecoderBlock, TransformerEncoderBlock
from jsr_tf.layers.transition_alignment import TransitionAlignmentLoss
from jsr_tf.layers.user_encoder import UserEncoder

__all__ = [
    "CGC",
    "HistoryLayout",
    "IdLookup",
    "ItemEncoder",
    "LayoutKey",
    "MLP",
    "NeighbourEncoder",
    "NeighbourFusion",
    "PositionalEmbedding",
    "QueryEncoder",
    "QueryItemInfoNCE",
    "SearchBehaviourEncoder",
    "TargetAttention",
    "TransformerDecoderBlock",
    "TransformerEncoderBlock",
    "TransitionAlignmentLoss",
    "UserEncoder",
    "stable_rank",
]
