"""Invariants of the example contract (jsr_tf/features.py) and of PreprocessConfig."""

import json

import pytest

from jsr_tf import features as F
from jsr_tf.data.config import PreprocessConfig


def test_feature_names_are_unique_and_partitioned():
    assert len(F.ALL_FEATURES) == len(set(F.ALL_FEATURES)) == 17
    assert not set(F.SCALAR_FEATURES) & set(F.LIST_FEATURES)
    assert set(F.LIST_CAPS) == set(F.LIST_FEATURES)
    assert set(F.LABEL_FEATURES) <= set(F.ALL_FEATURES)
    for values, (lengths, cap) in F.SESSION_LIST_CAPS.items():
        assert lengths in F.SEARCH_PARALLEL
        assert F.LIST_CAPS[values] == F.MAX_SEARCH_HISTORY * cap


def test_parse_spec_serving_drops_labels():
    spec = F.parse_spec(with_labels=False)
    assert set(spec) == set(F.ALL_FEATURES) - set(F.LABEL_FEATURES)
    assert set(F.parse_spec()) == set(F.ALL_FEATURES)


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
    ({"num_eval_negatives": 120}, "may not exceed"),
    ({"period_start_ms": 10, "period_end_ms": 5}, "period_start_ms"),
    ({"typo_field": 1}, "Unknown PreprocessConfig fields"),
])
def test_config_rejects_bad_values(bad, match):
    with pytest.raises(ValueError, match=match):
        PreprocessConfig.from_dict(bad)
