"""The clean KuaiSAR parameter count of UniSAR, assembled from the layers (spec/unisar.md §11).

The reference log reports 35,599,505 trainable parameters, of which 121,484 belong to template
layers it never uses (3 encoder layers, 1 decoder layer, the shared gate of its one-level PLE).
A clean port has **35,478,021**, which decomposes over the layers the model holds as:

    item id table        673,416 x 32                                  = 21,549,312
    word table           394,912 x 32                                  = 12,637,184
    item categories      (38 + 297) x 32                               =     10,720
    user tables          (22,700 + 8 + 3 + 7 + 4) x 32                 =    727,104
                                                      embeddings total = 34,924,320
    QueryEncoder proj.   32 x 64 + 64                                  =      2,112
    ItemEncoder proj.    (32 + 64 + 32 + 32) x 64 + 64                 =     10,304
    UserEncoder proj.    (5 x 32) x 64 + 64                            =     10,304
    3 encoder blocks     3 x 25,216 (MHA 16,640 + FFN 8,320 + 2 LN 256) =     75,648
    2 decoder blocks     2 x 41,984 (2 MHA 33,280 + FFN 8,320 + 3 LN)  =     83,968
    CGC                  12 experts x 20,544 + 2 gates x 2,568
                         + 2 towers x 16,576                           =    284,816
    2 prediction heads   2 x 29,161 (64-200-80-1)                      =     58,322
    2 target attention   2 x 64 x 64                                   =      8,192
    2 transition align.  2 x (64 x 64 + 1)                             =      8,194
    1 query-item InfoNCE 64 x 64 + 1                                   =      4,097
    positions            (60 + 30 + 30) x 64                           =      7,680
    rec_query            64 (a model-level weight, counted here)       =         64
                                                                 total = 35,478,021

The item table counts 673,416 rows "incl. pad" as the reference does. With `IdLookup`'s layout
(0 pad, 1 OOV, vocabulary from 2) a vocabulary of 673,415 real items needs 673,417 rows, i.e.
32 parameters more than the reference; the number here is the spec's table size.
"""

import jsr_tf  # noqa: F401  (must precede tensorflow)

import tensorflow as tf

from jsr_tf.layers import (CGC, MLP, ItemEncoder, PositionalEmbedding, QueryEncoder,
                           QueryItemInfoNCE, TargetAttention, TransformerDecoderBlock,
                           TransformerEncoderBlock, TransitionAlignmentLoss, UserEncoder)

from ._harness import count_params

NUM_ITEMS, NUM_WORDS = 673_416, 394_912
USER_SIZES = (22_700, 8, 3, 7, 4)  # user id, onehot_feat1, onehot_feat2, 2 active levels.
CATEGORY_SIZES = (38, 297)
E, D, W, L = 32, 64, 50, 30


def test_clean_kuaisar_parameter_count():
    query = QueryEncoder(NUM_WORDS, E, D)
    item = ItemEncoder(NUM_ITEMS, E, D, query_encoder=query, caption_length=W,
                       category_sizes=CATEGORY_SIZES)
    user = UserEncoder(USER_SIZES, E, D)
    encoders = [TransformerEncoderBlock(2, 64, dropout=0.1) for _ in range(3)]
    decoders = [TransformerDecoderBlock(2, 64, dropout=0.1) for _ in range(2)]
    cgc = CGC()
    heads = [MLP((200, 80, 1), dropout=0.1) for _ in range(2)]
    target = [TargetAttention() for _ in range(2)]
    transition = [TransitionAlignmentLoss(0.1) for _ in range(2)]
    infonce = QueryItemInfoNCE(0.5)
    positions = [PositionalEmbedding(n) for n in (2 * L, L, L)]
    rec_query = tf.Variable(tf.zeros([D]), name="rec_query")  # Held by the model itself.

    # Build every layer at the reference sizes with tiny inputs.
    seq = tf.zeros([1, L, D])
    query(tf.zeros([1, W], tf.int32))
    item(tf.zeros([1], tf.int32))
    user(tf.zeros([1, len(USER_SIZES)], tf.int32))
    for block in encoders:
        block(seq)
    for block in decoders:
        block(seq, seq)
    cgc(tf.zeros([1, 1, 5 * D]))
    for head in heads:
        head(tf.zeros([1, 1, D]))
    for layer in target:
        layer(seq, tf.zeros([1, 1, D]), tf.ones([1, L], bool))
    for layer in transition:
        layer(seq, seq, tf.ones([1, L], bool))
    infonce(seq, tf.zeros([1, L, 5, D]), tf.ones([1, L, 5], bool), tf.zeros([4, D]),
            tf.zeros([4, D]))
    positions[0](tf.zeros([1, 2 * L, D]))
    positions[1](seq)
    positions[2](seq)

    layers = [query, item, user, cgc, infonce] + encoders + decoders + heads + target
    layers += transition + positions
    weights = [w for layer in layers for w in layer.trainable_weights] + [rec_query]

    # The shared word table is tracked by both QueryEncoder and ItemEncoder: count it once.
    assert sum(w is query.word_embeddings for w in weights) == 2
    parts = {
        "embeddings": count_params([item.item_embeddings, query.word_embeddings,
                                    *item.category_embeddings, *user.embeddings]),
        "encoders": count_params([w for b in encoders for w in b.trainable_weights]),
        "decoders": count_params([w for b in decoders for w in b.trainable_weights]),
        "cgc": count_params(cgc.trainable_weights),
        "heads": count_params([w for h in heads for w in h.trainable_weights]),
        "positions": count_params([w for p in positions for w in p.trainable_weights]),
    }
    assert parts == {"embeddings": 34_924_320, "encoders": 75_648, "decoders": 83_968,
                     "cgc": 284_816, "heads": 58_322, "positions": 7_680}
    assert count_params(weights) == 35_478_021
    # Side tables are constants, not parameters.
    assert count_params(item.non_trainable_weights) == NUM_ITEMS * (W + len(CATEGORY_SIZES))
