"""Rows without search or feed history (or with none) stay finite through the layer stack.

The reference filtered such users out; the port keeps them (DESIGN.md §3). This wires the
layers the way UniSAR does (spec/unisar.md §3-8), on a tiny batch whose rows are: full history,
no search history, no feed history, no history at all, and checks every output and every
gradient eagerly with `check_numerics`.
"""

import jsr_tf  # noqa: F401  (must precede tensorflow)

import numpy as np
import tensorflow as tf

from jsr_tf.layers import (CGC, MLP, HistoryLayout, ItemEncoder, LayoutKey, PositionalEmbedding,
                           QueryEncoder, QueryItemInfoNCE, SearchBehaviourEncoder,
                           TargetAttention, TransformerDecoderBlock, TransformerEncoderBlock,
                           TransitionAlignmentLoss, UserEncoder)

from ._harness import assert_all_finite

B, LR, LS, K, W, C, D = 4, 3, 2, 2, 3, 2, 8


def _batch():
    feed_items = np.array([[2, 3, 0], [4, 0, 0], [0, 0, 0], [0, 0, 0]])
    feed_ts = np.where(feed_items > 0, np.array([[10, 30, 0]] * B), 0)
    search_ts = np.array([[20, 0], [0, 0], [5, 6], [0, 0]])
    search_words = np.zeros([B, LS, W], np.int64)
    search_clicks = np.zeros([B, LS, K], np.int64)
    for b, s in zip(*np.nonzero(search_ts)):
        search_words[b, s, :2] = [1 + s, 2]
        search_clicks[b, s, 0] = 3 + s
    return feed_items, feed_ts, search_ts, search_words, search_clicks


def test_stack_is_finite_for_missing_histories():
    feed_items, feed_ts, search_ts, search_words, search_clicks = _batch()
    query = QueryEncoder(6, 4, D)
    item = ItemEncoder(8, 4, D, query_encoder=query, caption_length=W, category_sizes=(3,),
                       caption_words=np.tile([[1, 2, 0]], [8, 1]),
                       item_categories=np.arange(8)[:, None] % 3)
    user = UserEncoder((5, 2), 4, D)
    layout = HistoryLayout()
    behaviour = SearchBehaviourEncoder()
    pos_g, pos_r, pos_s = PositionalEmbedding(LR + LS), PositionalEmbedding(LR), \
        PositionalEmbedding(LS)
    enc_g, enc_r, enc_s = (TransformerEncoderBlock(2, 8) for _ in range(3))
    dec_r, dec_s = (TransformerDecoderBlock(2, 8) for _ in range(2))
    ta_r, ta_s = TargetAttention(), TargetAttention()
    his_r, his_s = TransitionAlignmentLoss(), TransitionAlignmentLoss()
    qi = QueryItemInfoNCE()
    cgc = CGC(expert_units=8, tower_units=(8, 8))
    heads = [MLP((8, 1)), MLP((8, 1))]

    with tf.GradientTape() as tape:
        masks = layout(feed_ts, search_ts)
        x_r = item(feed_items)
        q_s = query(search_words)
        i_s = item(search_clicks)
        x_s = behaviour(q_s, i_s, search_clicks, session_mask=masks[LayoutKey.SEARCH_VALID])
        g = enc_g(pos_g(tf.concat([x_r, x_s], 1), masks[LayoutKey.GLOBAL_POSITIONS]),
                  attention_mask=masks[LayoutKey.GLOBAL_MASK], training=True)
        s2r, r2s = g[:, :LR], g[:, LR:]
        r2r = enc_r(pos_r(x_r), attention_mask=masks[LayoutKey.FEED_MASK], training=True)
        s2s = enc_s(pos_s(x_s), attention_mask=masks[LayoutKey.SEARCH_MASK], training=True)
        f_r = dec_r(r2r, s2r, self_attention_mask=masks[LayoutKey.FEED_MASK],
                    cross_attention_mask=masks[LayoutKey.FEED_MASK], training=True)
        f_s = dec_s(s2s, r2s, self_attention_mask=masks[LayoutKey.SEARCH_MASK],
                    cross_attention_mask=masks[LayoutKey.SEARCH_MASK], training=True)
        e_c = item(tf.constant([[2, 5]] * B))
        rec_interest = ta_r(f_r, e_c, masks[LayoutKey.FEED_VALID])
        src_interest = ta_s(f_s, e_c, masks[LayoutKey.SEARCH_VALID])
        u = tf.repeat(user(tf.constant([[1, 0]] * B))[:, None], C, axis=1)
        q = tf.repeat(query(tf.constant([[1, 2, 0]] * B))[:, None], C, axis=1)
        towers = cgc(tf.concat([rec_interest, src_interest, e_c, u, q], -1), training=True)
        logits = [head(t, training=True) for head, t in zip(heads, towers)]
        l_his = (his_r(s2r, r2r, masks[LayoutKey.FEED_VALID])
                 + his_s(r2s, s2s, masks[LayoutKey.SEARCH_VALID]))
        l_qi = qi(q_s, i_s, tf.not_equal(search_clicks, 0), item(tf.constant([2, 3, 4])),
                  query(tf.constant([[1, 0, 0], [2, 3, 0]])))
        loss = tf.add_n([tf.reduce_sum(t) for t in logits]) + l_his + l_qi
    variables = [v for layer in (query, item, user, pos_g, pos_r, pos_s, enc_g, enc_r, enc_s,
                                 dec_r, dec_s, ta_r, ta_s, his_r, his_s, qi, cgc, *heads)
                 for v in layer.trainable_weights]
    grads = tape.gradient(loss, variables)
    assert_all_finite([g, r2r, s2s, f_r, f_s, rec_interest, src_interest, *logits, l_his, l_qi])
    assert_all_finite([grad for grad in grads if grad is not None])
    # Rows with no history of a type get a zero interest for that type.
    np.testing.assert_array_equal(src_interest[1], 0.0)  # No search history.
    np.testing.assert_array_equal(rec_interest[2], 0.0)  # No feed history.
    np.testing.assert_array_equal(rec_interest[3], 0.0)
    np.testing.assert_array_equal(src_interest[3], 0.0)
    assert np.abs(rec_interest[0].numpy()).sum() > 0 and np.abs(src_interest[0].numpy()).sum() > 0
