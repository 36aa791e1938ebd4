"""Invariants of the example contract (jsr_tf/features.py) and of PreprocessConfig."""

import json

import pytest

from jsr_tf import features as F
from jsr_tf import filenames as FN
from jsr_tf.data.config import PreprocessConfig

SHAPE = F.DataShape()  # the reference shape of the fixtures' data


def test_feature_names_are_unique_and_partitioned():
    assert len(F.ALL_FEATURES) == len(set(F.ALL_FEATURES)) == 17
    assert not set(F.SCALAR_FEATURES) & set(F.LIST_FEATURES)
    caps = SHAPE.list_caps()
    assert set(caps) == set(F.LIST_FEATURES)
    assert set(F.LABEL_FEATURES) <= set(F.ALL_FEATURES)
    for values, lengths in F.SESSION_LISTS.items():
        assert lengths in F.SEARCH_PARALLEL
    assert caps[F.SEARCH_WORDS] == SHAPE.search_history * SHAPE.query_words == 1500
    assert caps[F.SEARCH_CLICKS] == SHAPE.search_history * SHAPE.session_clicks == 150


def test_parse_spec_serving_drops_labels():
    # The parsed fields: every model input; the per-session lengths are partitions of their
    # values lists, and the row indices of the history are never parsed.
    inputs = {F.QUERY_WORDS, F.FEED_ITEMS, F.FEED_TS, F.SEARCH_TS, F.SEARCH_HAS_CLICK,
              F.SEARCH_WORDS, F.SEARCH_CLICKS}
    spec = F.parse_spec(labels=False)
    assert set(spec) == {F.USER_ID, F.TARGET_TS} | inputs
    assert set(F.parse_spec()) == set(F.SCALAR_FEATURES) | inputs | {F.NEGATIVES}
    assert set(F.parse_spec(request=True)) == {F.USER_ID, F.CANDIDATES} | inputs
    assert set(F.parse_spec(neighbours=True, eval_fields=True)) == (
        set(F.parse_spec()) | set(F.NEIGHBOUR_INPUTS) | set(F.EVAL_FEATURES))


def test_file_patterns():
    assert F.file_pattern("train", F.Task.FEED) == "train-feed-*.tfrecord.gz"
    assert F.shard_prefix("valid", F.Task.SEARCH) == "valid-search"
    with pytest.raises(ValueError):
        F.file_pattern("dev", F.Task.FEED)


def test_enums_match_the_spec():
    assert (F.Task.FEED, F.Task.SEARCH) == (0, 1)
    assert (F.BehaviorType.PAD, F.BehaviorType.FEED, F.BehaviorType.SEARCH) == (0, 1, 2)
    assert F.EventKind.FEED < F.EventKind.SEARCH  # feed first on equal timestamps


def test_config_json_round_trip_and_reference():
    config = PreprocessConfig(candidate_seed=7, num_eval_negatives=50)
    again = PreprocessConfig.from_dict(json.loads(config.to_json()))
    assert again == config
    ref = PreprocessConfig.reference()
    assert (ref.history_requirement, ref.mask_heldout_in_train_history, ref.strict_same_ts,
            ref.negatives_must_predate_target) == ("both", False, False, False)


@pytest.mark.parametrize("bad, match", [
    ({"max_feed_history": 0}, "`max_feed_history` should be a positive integer"),
    ({"min_targets_per_task": 2}, "min_targets_per_task"),
    ({"no_click_fallback": "last"}, "no_click_fallback"),
    ({"history_requirement": "all"}, "history_requirement"),
    ({"max_session_clicks": -1}, "`max_session_clicks` should be a positive integer"),
    ({"period_start_ms": 10, "period_end_ms": 5}, "period_start_ms"),
    ({"typo_field": 1}, "Unknown PreprocessConfig fields"),
])
def test_config_rejects_bad_values(bad, match):
    with pytest.raises(ValueError, match=match):
        PreprocessConfig.from_dict(bad)


def test_caps_may_exceed_the_reference_and_are_the_data_shape():
    # Caps are data (manifest.json's data_shape), not constants: raising one is allowed.
    config = PreprocessConfig(max_feed_history=40, max_query_words=8, num_train_negatives=0,
                              num_eval_negatives=120).validate()
    assert config.data_shape() == F.DataShape(feed_history=40, query_words=8, train_negatives=0,
                                              eval_negatives=120)
    assert PreprocessConfig().data_shape() == F.DataShape()
    assert F.DataShape(eval_negatives=120).eval_candidates == 121


@pytest.mark.parametrize("bad, match", [
    ({"feed_history": 0}, "`feed_history` should be a positive integer"),
    ({"train_negatives": -1}, "`train_negatives` should be a non-negative integer"),
    ({"neighbour_slots": 2.5}, "`neighbour_slots` should be a positive integer"),
    ({"nbr_feed_items": True}, "`nbr_feed_items` should be a positive integer"),
])
def test_data_shape_rejects_bad_values(bad, match):
    with pytest.raises(ValueError, match=match):
        F.DataShape(**bad)


def test_data_shape_round_trips_and_is_read_from_the_manifest(tmp_path):
    shape = F.DataShape(feed_history=20, nbr_query_words=3)
    assert F.DataShape.from_dict(shape.to_dict()) == shape
    with pytest.raises(ValueError, match=r"Unknown DataShape fields: \['typo'\]"):
        F.DataShape.from_dict({"typo": 1})
    with pytest.raises(FileNotFoundError, match="run jsr-preprocess"):
        F.DataShape.read(str(tmp_path))
    # A data dir written before the manifest recorded its shape: the config's caps.
    (tmp_path / FN.PREPROCESS_CONFIG_FILE).write_text(
        PreprocessConfig(max_search_history=7).to_json())
    assert F.DataShape.read(str(tmp_path)) == F.DataShape(search_history=7)
    (tmp_path / FN.MANIFEST_FILE).write_text(json.dumps({F.DATA_SHAPE_KEY: shape.to_dict()}))
    assert F.DataShape.read(str(tmp_path)) == shape


def test_golden_batch_layout_of_a_small_shape():
    shape = F.DataShape(feed_history=3, search_history=2, query_words=4, session_clicks=1,
                        eval_negatives=5, impressions=6, neighbour_slots=2, nbr_feed_items=3,
                        nbr_search_sessions=2, nbr_query_words=2, nbr_session_clicks=1)
    fields = shape.batch_fields(neighbours=True, eval_fields=True)
    assert {name: field.inner for name, field in fields.items()} == {
        F.USER_ID: (), F.TASK: (), F.TARGET_ITEM: (), F.TARGET_TS: (), F.TARGET_ROW: (),
        F.QUERY_WORDS: (4,), F.FEED_ITEMS: (3,), F.FEED_TS: (3,), F.SEARCH_TS: (2,),
        F.SEARCH_HAS_CLICK: (2,), F.SEARCH_WORDS: (2, 4), F.SEARCH_CLICKS: (2, 1),
        F.CANDIDATES: (None,), F.LABEL: (None,),
        F.NBR_SIDE: (2,), F.NBR_SIM: (2,), F.NBR_REC_ITEMS: (2, 3), F.NBR_SRC_WORDS: (2, 2, 2),
        F.NBR_SRC_CLICKS: (2, 2, 1), F.NEGATIVES_FAIR: (5,), F.IMPRESSIONS: (6,),
        F.OTHER_CLICKS: (6,)}
    pads = {name: field.pad for name, field in fields.items() if field.pad != F.RAW_PAD_ID}
    assert pads == {F.TASK: 0, F.TARGET_ITEM: 0, F.TARGET_TS: 0, F.TARGET_ROW: 0, F.FEED_TS: 0,
                    F.SEARCH_TS: 0, F.SEARCH_HAS_CLICK: 0, F.LABEL: 0, F.NBR_SIDE: 0,
                    F.NBR_SIM: 0}
    assert {n for n, f in fields.items() if f.dtype == F.FLOAT32} == {F.LABEL, F.NBR_SIM}
    assert shape.slot_sizes() == {F.NBR_SIDE: 1, F.NBR_SIM: 1, F.NBR_USERS: 1, F.NBR_LAST_TS: 1,
                                  F.NBR_REC_ITEMS: 3, F.NBR_SRC_WORDS: 4, F.NBR_SRC_CLICKS: 2}
