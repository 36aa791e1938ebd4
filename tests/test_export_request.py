"""Request normalisation and the REST body mapping (no SavedModel needed: fast)."""

import json

import numpy as np
import pytest

import jsr_tf  # noqa: F401
import tensorflow as tf

from jsr_tf.export import request, rest
from jsr_tf.export import serving as S
from jsr_tf import features as F

SHAPE = F.DataShape()  # the reference shape of the fixtures' data


def test_fit_history_keeps_the_most_recent_valid_entries():
    # Row 0: 5 events (oldest first) then padding; row 1: 2 events; row 2: none. Cap 3.
    items = tf.constant([[11, 12, 13, 14, 15, 0],
                         [21, 22, 0, 0, 0, 0],
                         [0, 0, 0, 0, 0, 0]], tf.int64)
    ts = items * 10
    kept_items, kept_ts = request.fit_history(tf.not_equal(items, 0), [items, ts], cap=3)
    np.testing.assert_array_equal(kept_items, [[13, 14, 15], [21, 22, 0], [0, 0, 0]])
    np.testing.assert_array_equal(kept_ts, [[130, 140, 150], [210, 220, 0], [0, 0, 0]])


def test_fit_history_pads_short_and_empty_histories_and_carries_inner_axes():
    words = tf.constant([[[1, 2], [3, 4]]], tf.int64)  # [B=1, L=2, W=2]
    ts = tf.constant([[5, 6]], tf.int64)
    kept_ts, kept_words = request.fit_history(tf.not_equal(ts, 0), [ts, words], cap=4)
    np.testing.assert_array_equal(kept_ts, [[5, 6, 0, 0]])
    np.testing.assert_array_equal(kept_words, [[[1, 2], [3, 4], [0, 0], [0, 0]]])
    empty = tf.zeros([2, 0], tf.int64)
    (out,) = request.fit_history(tf.not_equal(empty, 0), [empty], cap=3)
    np.testing.assert_array_equal(out, np.zeros([2, 3]))


def test_fit_width_cuts_and_pads():
    np.testing.assert_array_equal(request.fit_width(tf.constant([[1, 2, 3]]), 2), [[1, 2]])
    np.testing.assert_array_equal(request.fit_width(tf.constant([[1]]), 3), [[1, 0, 0]])
    np.testing.assert_array_equal(request.fit_width(tf.zeros([1, 0], tf.int64), 2), [[0, 0]])


def test_fit_request_gives_the_model_caps():
    b, l = 2, 45
    inputs = {F.USER_ID: tf.constant([1, 2], tf.int64),
              F.FEED_ITEMS: tf.ones([b, l], tf.int64), F.FEED_TS: tf.ones([b, l], tf.int64),
              F.SEARCH_TS: tf.ones([b, 1], tf.int64),
              F.SEARCH_WORDS: tf.ones([b, 1, 70], tf.int64),
              F.SEARCH_CLICKS: tf.ones([b, 1, 9], tf.int64),
              F.QUERY_WORDS: tf.zeros([b, 0], tf.int64)}
    out = S.fit_request(inputs, SHAPE)
    assert out[F.FEED_ITEMS].shape == (b, SHAPE.feed_history)
    assert out[F.SEARCH_WORDS].shape == (b, SHAPE.search_history, SHAPE.query_words)
    assert out[F.SEARCH_CLICKS].shape == (b, SHAPE.search_history, SHAPE.session_clicks)
    assert out[F.QUERY_WORDS].shape == (b, SHAPE.query_words)
    # One session kept, its 50 first words and 5 first clicks; the other 29 slots are padding.
    assert int(tf.reduce_sum(tf.cast(out[F.SEARCH_WORDS] == 1, tf.int64))) == b * SHAPE.query_words
    assert int(tf.reduce_sum(tf.cast(out[F.SEARCH_CLICKS] == 1, tf.int64))) == (
        b * SHAPE.session_clicks)
    assert bool(tf.reduce_all(out[F.SEARCH_WORDS][:, 1:] == F.RAW_PAD_ID))  # -1 = padding


def test_fit_request_keeps_raw_id_zero_and_pads_with_minus_one():
    """Raw id 0 is an event; -1 is padding (a model whose vocabularies lack 0 reads 0 as padding)."""
    inputs = {F.USER_ID: tf.constant([0], tf.int64),
              F.FEED_ITEMS: tf.constant([[5] * 30 + [0, -1]], tf.int64),
              F.FEED_TS: tf.constant([[1] * 30 + [2, 0]], tf.int64),
              F.SEARCH_TS: tf.constant([[3]], tf.int64),
              F.SEARCH_WORDS: tf.constant([[[0, -1]]], tf.int64),
              F.SEARCH_CLICKS: tf.constant([[[-1]]], tf.int64)}
    out = S.fit_request(inputs, SHAPE)
    assert int(out[F.FEED_ITEMS][0, -1]) == 0 and int(out[F.FEED_TS][0, -1]) == 2  # most recent
    assert int(out[F.SEARCH_WORDS][0, 0, 0]) == 0
    assert int(out[F.SEARCH_HAS_CLICK][0, 0]) == 0
    legacy = S.fit_request(inputs, SHAPE, zero_is_id=False)
    assert int(legacy[F.FEED_ITEMS][0, -1]) == 5  # 0 read as padding


DTYPES = {"user_id": np.int64, "candidates": np.int64, "exclude_history": np.bool_}


def _inputs():
    return {"user_id": np.array([3, 4]), "candidates": np.array([[1, 2, 3], [4, 5, 6]]),
            "exclude_history": np.array([True, False])}


@pytest.mark.parametrize("make", [rest.row_body, rest.columnar_body])
def test_rest_bodies_round_trip_through_json(make):
    body = json.loads(json.dumps(make("feed", _inputs())))
    assert body["signature_name"] == "feed"
    got = rest.body_to_inputs(body, DTYPES)
    for name, value in _inputs().items():
        np.testing.assert_array_equal(got[name], value)
        assert got[name].dtype == DTYPES[name]


def test_row_body_is_one_object_per_row():
    body = rest.row_body("feed", _inputs())
    assert body["instances"][1] == {"user_id": 4, "candidates": [4, 5, 6],
                                    "exclude_history": False}


def test_bad_rest_bodies_are_refused_with_a_reason():
    with pytest.raises(ValueError, match="exactly one of"):
        rest.body_to_inputs({"instances": [], "inputs": {}}, DTYPES)
    with pytest.raises(ValueError, match="missing \\['exclude_history'\\]"):
        rest.body_to_inputs({"inputs": {"user_id": [1], "candidates": [[1]]}}, DTYPES)
    ragged = {"instances": [{"user_id": 1, "candidates": [1, 2], "exclude_history": True},
                            {"user_id": 2, "candidates": [1], "exclude_history": True}]}
    with pytest.raises(ValueError, match="one shape across instances"):
        rest.body_to_inputs(ragged, DTYPES)


def test_responses_follow_the_request_format():
    outputs = {"scores": np.array([[0.5, 0.25]], np.float32)}
    assert rest.outputs_to_response({"inputs": {}}, outputs) == {"outputs": [[0.5, 0.25]]}
    assert rest.outputs_to_response({"instances": []}, outputs) == {"predictions": [[0.5, 0.25]]}
    two = {"a": np.array([1, 2]), "b": np.array([3, 4])}
    assert rest.outputs_to_response({"instances": []}, two) == {
        "predictions": [{"a": 1, "b": 3}, {"a": 2, "b": 4}]}


def test_strings_travel_as_b64_objects():
    inputs = {"examples": np.array([b"\x00\xffab", b"cd"], dtype=object)}
    for make in (rest.row_body, rest.columnar_body):
        body = json.loads(json.dumps(make("serving_default", inputs)))
        got = rest.body_to_inputs(body, {"examples": object})
        assert got["examples"].tolist() == [b"\x00\xffab", b"cd"]
    assert rest.row_body("s", inputs)["instances"][0] == {"examples": {"b64": "AP9hYg=="}}


def test_one_input_signatures_take_bare_values_as_tf_serving_does():
    dtypes = {"examples": object}
    # TF Serving documents bare values for a single-input signature, in both formats.
    for body in ({"instances": [{"b64": "AP9hYg=="}, {"b64": "Y2Q="}]},
                 {"inputs": [{"b64": "AP9hYg=="}, {"b64": "Y2Q="}]}):
        got = rest.body_to_inputs(body, dtypes)
        assert got["examples"].tolist() == [b"\x00\xffab", b"cd"]


def test_hand_written_columnar_body_with_bool_and_ints():
    body = {"signature_name": "retrieve",
            "inputs": {"user_id": [3, 4], "candidates": [[1, 2, 3], [4, 5, 6]],
                       "exclude_history": [True, False]}}
    got = rest.body_to_inputs(body, DTYPES)
    assert got["exclude_history"].tolist() == [True, False]
    assert got["candidates"].dtype == np.int64


def test_floats_for_integer_inputs_are_refused():
    body = {"inputs": {"user_id": [3.5], "candidates": [[1]], "exclude_history": [True]}}
    with pytest.raises(ValueError, match="`user_id` takes int64 values. Received floats"):
        rest.body_to_inputs(body, DTYPES)
    body = {"inputs": {"user_id": [3], "candidates": [[1]], "exclude_history": [2]}}
    with pytest.raises(ValueError, match="takes booleans"):
        rest.body_to_inputs(body, DTYPES)


def test_fit_history_keeps_the_newest_entry_past_a_hole():
    items = tf.constant([[11, 0, 13, 0]], tf.int64)
    (kept,) = request.fit_history(tf.not_equal(items, 0), [items], cap=2)
    np.testing.assert_array_equal(kept, [[0, 13]])  # the hole stays a masked slot


def test_parallel_fields_of_different_lengths_are_refused():
    items = tf.constant([[11, 12, 13]], tf.int64)
    with pytest.raises(tf.errors.InvalidArgumentError, match="parallel history inputs"):
        request.fit_history(tf.not_equal(items, 0), [items, items[:, :2]], cap=2)
