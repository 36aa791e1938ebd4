"""pooling: fills that stay finite in every float dtype, and the softmax over valid slots."""

import jsr_tf  # noqa: F401  (must precede tensorflow)

import math

import numpy as np
import pytest
import tensorflow as tf

from jsr_tf.layers import co_attention_split, target_attention, transition_alignment
from jsr_tf.layers.pooling import masked_mean, safe_fill, softmax_valid

from ._harness import assert_all_finite

FILLS = (target_attention.MASK_FILL, co_attention_split.MASK_FILL, transition_alignment.MASK_FILL)


@pytest.mark.parametrize("fill", FILLS)
@pytest.mark.parametrize("dtype", [tf.float32, tf.float64, tf.bfloat16])
def test_fill_is_unchanged_where_the_dtype_holds_it(fill, dtype):
    """float32 results are pinned: there the fill is exactly the former `tf.cast(fill, dtype)`."""
    value = safe_fill(fill, dtype)
    assert value.dtype == dtype
    assert value.numpy() == tf.cast(fill, dtype).numpy() and np.isfinite(float(value))


@pytest.mark.parametrize("fill", FILLS)
def test_float16_fill_is_its_lowest_finite_value(fill):
    assert tf.cast(fill, tf.float16).numpy() == -np.inf  # What the layers used to fill with.
    assert safe_fill(fill, tf.float16).numpy() == np.finfo(np.float16).min
    assert safe_fill(-fill, tf.float16).numpy() == np.finfo(np.float16).max


@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16])
@pytest.mark.parametrize("fill", FILLS)
def test_softmax_valid_row_without_valid_slot_is_zero_in_half_precision(dtype, fill):
    scores = tf.constant([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]], dtype)
    valid = tf.constant([[True, False, True], [False] * 3])
    weights = softmax_valid(scores, valid, fill=fill)
    assert weights.dtype == dtype
    assert_all_finite(weights)
    np.testing.assert_array_equal(weights[1], 0.0)
    low = math.exp(-2.0) / (1.0 + math.exp(-2.0))
    np.testing.assert_allclose(tf.cast(weights[0], tf.float32), [low, 0.0, 1.0 - low],
                               atol=1e-2)


@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16, tf.float64])
def test_masked_mean_keeps_the_dtype_and_is_zero_without_valid_slot(dtype):
    values = tf.constant([[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [7.0, 8.0]]], dtype)
    out = masked_mean(values, tf.constant([[True, True], [False, False]]))
    assert out.dtype == dtype
    np.testing.assert_array_equal(tf.cast(out, tf.float32), [[2.0, 3.0], [0.0, 0.0]])
