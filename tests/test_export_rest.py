"""``jsr_tf.export.rest`` against a small SavedModel: clear errors for bad bodies, files and
signatures, the request limits of ``jsr_tf.export.serving.RequestLimits``, and a ``hypothesis`` fuzz
test (any body gets a response or a ``RequestError``, never another exception).

The SavedModel is a toy with the input kinds of the real signatures (int64 ids and timestamps, a
bool flag, float32 similarities, serialized strings), so the tests need no trained model.
"""

import json
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jsr_tf  # noqa: F401
import tensorflow as tf

from jsr_tf.export import rest
from jsr_tf.export import serving as S
from jsr_tf.export import signatures as SG
from jsr_tf import features as F

LIMITS = S.RequestLimits(max_rows=4, max_candidates=6, max_scores=12)
# A toy signature over the registry's input specs, one of each dtype kind.
_SPECS = {name: spec for sig in SG.REGISTRY for name, spec in sig.inputs.items()}
FEED_SPECS = {name: _SPECS[name] for name in (F.USER_ID, F.FEED_TS, SG.EXCLUDE_HISTORY,
                                              F.NBR_SIM, SG.CANDIDATES)}


class _Toy(tf.Module):
    """Scores = candidate id + user id (+ the mean history time, the flag and similarities)."""

    @tf.function(input_signature=list(FEED_SPECS.values()))
    def feed(self, user_id, feed_ts, exclude_history, nbr_sim, candidates):
        inputs = S.within_limits(LIMITS, {F.USER_ID: user_id, SG.CANDIDATES: candidates},
                                 F.USER_ID)
        extra = (tf.reduce_mean(tf.cast(feed_ts, tf.float32), axis=1)
                 + tf.cast(exclude_history, tf.float32) + tf.reduce_sum(nbr_sim, axis=1))
        return {SG.SCORES: tf.cast(inputs[SG.CANDIDATES] + inputs[F.USER_ID][:, None], tf.float32)
                + extra[:, None]}

    @tf.function(input_signature=[SG.EXAMPLES_SPEC])
    def examples(self, examples):
        return {"length": tf.strings.length(examples)}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("rest") / "toy")
    toy = _Toy()
    tf.saved_model.save(toy, path, signatures={"feed": toy.feed.get_concrete_function(),
                                               "examples": toy.examples.get_concrete_function()})
    return path, tf.saved_model.load(path)


def _feed_body(num_rows=2, num_candidates=3, **changes):
    rows = num_rows
    inputs = {F.USER_ID: list(range(1, rows + 1)), F.FEED_TS: [[10, 20]] * rows,
              SG.EXCLUDE_HISTORY: [False] * rows, F.NBR_SIM: [[0.5]] * rows,
              SG.CANDIDATES: [list(range(num_candidates))] * rows}
    inputs.update(changes)
    return {"signature_name": "feed", "inputs": inputs}


def test_a_good_body_is_answered(saved):
    _, loaded = saved
    response = rest.answer(loaded, _feed_body())
    np.testing.assert_allclose(response["outputs"], [[16.5, 17.5, 18.5], [17.5, 18.5, 19.5]])


@pytest.mark.parametrize("body, message", [
    ({"signature_name": "nope", "inputs": {}}, "Unknown signature_name 'nope'. Valid signature "
                                               "names: examples, feed."),
    ({"inputs": {}}, "names no signature and the model has no serving_default. Valid signature "
                     "names: examples, feed."),
    (_feed_body(user_id=[2 ** 63, 1]), "Received 9223372036854775808, outside [-2^63"),
    (_feed_body(user_id=[-2 ** 63 - 1, 1]), "outside [-2^63"),
    (_feed_body(feed_ts=[[True, 20], [10, 20]]), "`feed_ts` takes int64 values. Received "
                                                 "booleans."),
    (_feed_body(feed_ts=[[10.5, 20], [10, 20]]), "`feed_ts` takes int64 values. Received floats."),
    (_feed_body(feed_ts=[["10", "20"], [10, 20]]), "`feed_ts` takes int64 values. Received str"),
    (_feed_body(feed_ts=[[10], [10, 20]]), "`feed_ts` is ragged"),
    (_feed_body(user_id=5), "Input `user_id` has shape []"),
    (_feed_body(num_rows=5), "at most 4 rows"),
    (_feed_body(num_candidates=7), "at most 6 candidates per row"),
    (_feed_body(num_rows=3, num_candidates=5), "at most 12 scores"),
    ({"signature_name": "feed", "instances": 3}, '"instances" is a list of rows'),
    ({"signature_name": "feed", "instances": [1, 2]}, "Each of \"instances\" is an object"),
    ({"signature_name": "feed", "inputs": [1]}, '"inputs" is an object'),
    ({"signature_name": "examples", "inputs": [{"b64": "%%"}]}, "Not base64"),
    ({"signature_name": "examples", "inputs": [1]}, "`examples` takes strings"),
    ([1, 2], "A predict body is a JSON object"),
])
def test_bad_bodies_get_one_clear_line(saved, body, message):
    _, loaded = saved
    with pytest.raises(rest.RequestError) as error:
        rest.answer(loaded, body)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_the_largest_allowed_request_is_answered(saved):
    _, loaded = saved
    response = rest.answer(loaded, _feed_body(num_rows=2, num_candidates=6))
    assert np.shape(response["outputs"]) == (2, 6)


def test_limits_must_be_positive():
    with pytest.raises(ValueError, match="`max_rows` should be a positive integer"):
        S.RequestLimits(max_rows=0)


def _main(capsys, saved_model, body_text, tmp_path):
    request = tmp_path / "body.json"
    request.write_text(body_text)
    with pytest.raises(SystemExit) as exit_info:
        rest.main(["--saved_model", saved_model, "--request", str(request)])
    return exit_info.value.code, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize("text, message", [
    ('{"signature_name": "feed", "inputs": ', "is not valid JSON"),
    (json.dumps({"signature_name": "retrieve", "inputs": {}}),
     "Unknown signature_name 'retrieve'. Valid signature names: examples, feed."),
])
def test_the_command_fails_in_one_line(saved, capsys, tmp_path, text, message):
    code, err = _main(capsys, saved[0], text, tmp_path)
    assert code == 1 and len(err) == 1 and err[0].startswith("jsr_tf.export.rest: error: "), err
    assert message in err[0]


def test_the_command_names_a_missing_saved_model(capsys, tmp_path):
    code, err = _main(capsys, str(tmp_path / "absent"), "{}", tmp_path)
    assert code == 1 and len(err) == 1 and "absent" in err[0], err


# -- fuzz ----------------------------------------------------------------------------------------
# Random bodies per run (JSR_FUZZ_EXAMPLES=5000 for a longer hunt); no example database is kept.
FUZZ_EXAMPLES = int(os.environ.get("JSR_FUZZ_EXAMPLES", "300"))
_SCALARS = (st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70)
            | st.floats(allow_nan=False) | st.text(max_size=4))
_JSON = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=12)
_NAMES = st.sampled_from([*FEED_SPECS, SG.EXAMPLES, "other"])
_INT_VALUES = st.recursive(st.integers(-3, 3) | st.sampled_from([2 ** 63, True, 0.5]),
                           lambda inner: st.lists(inner, min_size=1, max_size=4), max_leaves=10)
_VALUES = _INT_VALUES | _JSON | st.fixed_dictionaries({"b64": st.sampled_from(["YQ==", "%"])})
_ROW = st.dictionaries(_NAMES, _VALUES, max_size=6)
_BODY = st.fixed_dictionaries(
    {}, optional={"signature_name": st.sampled_from(["feed", "examples", "serving_default", 3]),
                  "instances": st.lists(_ROW | _VALUES, max_size=4),
                  "inputs": _ROW | _VALUES})


# A good body with one input replaced, or of random size (the limits).
_MUTATED = (st.builds(lambda name, value: _feed_body(**{name: value}),
                      st.sampled_from(list(FEED_SPECS)), _VALUES)
            | st.builds(_feed_body, st.integers(1, 6), st.integers(0, 8)))


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(body=_BODY | _JSON | _MUTATED)
def test_random_bodies_get_a_response_or_a_request_error(saved, body):
    _, loaded = saved
    try:
        response = rest.answer(loaded, body)
    except rest.RequestError as error:
        assert str(error) and "\n" not in str(error)
    else:
        assert set(response) <= {"predictions", "outputs"}
        json.dumps(response)
