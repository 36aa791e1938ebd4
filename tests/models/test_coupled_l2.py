"""Coupled L2 in ``JsrModel.train_step``: the reference (every decayed entry) and the named
deviation ``train.l2_rows_in_batch`` (the rows a row-sparse gradient names, once each), with
golden values from hand-set tables."""

import jsr_tf  # noqa: F401  (must precede tensorflow)

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from jsr_tf.models import base

TABLE = [[1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [4.0, 4.0]]


def _rows_gradient():
    # Rows 1 (twice) and 3: the dense gradient is [[0, 0], [2, 2], [0, 0], [1, 1]].
    return tf.IndexedSlices(tf.ones([3, 2]), tf.constant([1, 1, 3]), tf.constant([4, 2]))


def test_reference_adds_l2_to_every_entry():
    table = tf.Variable(TABLE, name="table/embeddings")
    out = base.add_coupled_l2(_rows_gradient(), table, 0.5)
    np.testing.assert_allclose(out, [[0.5, 0.5], [3.0, 3.0], [1.5, 1.5], [3.0, 3.0]])


def test_rows_in_batch_adds_l2_once_to_each_named_row_only():
    table = tf.Variable(TABLE, name="table/embeddings")
    out = base.add_coupled_l2(_rows_gradient(), table, 0.5, rows_in_batch=True)
    assert isinstance(out, tf.Tensor)  # made dense: Adam's update is unchanged
    # Row 1 named twice: gradient 2 plus 0.5 * 2 once; rows 0 and 2 get nothing.
    np.testing.assert_allclose(out, [[0.0, 0.0], [3.0, 3.0], [0.0, 0.0], [3.0, 3.0]])


def test_rows_in_batch_leaves_dense_gradients_with_the_whole_l2():
    table = tf.Variable(TABLE, name="table/embeddings")
    dense = tf.convert_to_tensor(_rows_gradient())
    for rows_in_batch in (False, True):
        np.testing.assert_allclose(base.add_coupled_l2(dense, table, 0.5, rows_in_batch),
                                   [[0.5, 0.5], [3.0, 3.0], [1.5, 1.5], [3.0, 3.0]])


def test_biases_and_missing_gradients_pass_through():
    bias = tf.Variable([1.0, 2.0], name="dense/bias")
    gradient = tf.constant([0.25, 0.5])
    assert base.add_coupled_l2(gradient, bias, 0.5, rows_in_batch=True) is gradient
    assert base.add_coupled_l2(None, tf.Variable(TABLE, name="t/embeddings"), 0.5) is None


class _Lookup(base.JsrModel):
    """Loss = sum of the embeddings of ids [0, 0, 2]: row 0's gradient is 2, row 2's 1."""

    def __init__(self, rows_in_batch: bool):
        super().__init__(l2=0.5)
        self.l2_rows_in_batch = rows_in_batch
        self.table = keras.layers.Embedding(
            4, 2, embeddings_initializer=keras.initializers.Constant(TABLE))

    def loss_prepared(self, inputs, training=False):
        return tf.reduce_sum(self.table(tf.constant([0, 0, 2])))


@pytest.mark.parametrize("rows_in_batch, expected", [
    # SGD with learning rate 1: v - (g + 0.5 v) on every row ...
    (False, [[-1.5, -1.5], [1.0, 1.0], [0.5, 0.5], [2.0, 2.0]]),
    # ... or only on the rows the batch read (0 and 2); rows 1 and 3 keep their values.
    (True, [[-1.5, -1.5], [2.0, 2.0], [0.5, 0.5], [4.0, 4.0]]),
])
def test_one_train_step(rows_in_batch, expected):
    model = _Lookup(rows_in_batch)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0))
    model.compute_loss({})  # creates the table
    model.train_step({})
    np.testing.assert_allclose(model.table.embeddings.numpy(), expected)
