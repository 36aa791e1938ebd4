"""``jsr-export`` of a neighbour-augmented ranker: the ``feed_nbr`` / ``search_nbr`` signatures.

One module fixture trains the tiny UniSAR with the pooled neighbour encoder for one epoch on the
golden fixture (which has no neighbour payload, so the fusion's output projection would stay
at its zero initialisation), then perturbs every neighbour-fusion weight so that neighbours
change the scores, saves those weights as the run's best weights and runs the ``jsr-export``
command. The SavedModel is then called in a fresh TensorFlow-only process.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import jsr_tf  # noqa: F401
import tensorflow as tf

from jsr_tf.export import rest, warmup
from jsr_tf.export import signatures as SG
from jsr_tf import config as C
from jsr_tf import features as F
from jsr_tf import filenames as FN
from jsr_tf.data import reader
from jsr_tf.keys import Outputs
from jsr_tf.data.vocab import load_vocab
from jsr_tf.models import factory
from jsr_tf.training import trainer
from tests import training_doubles as T
from tests.test_export import call_in_fresh_process
from tests.test_signatures import assert_matches_golden

SHAPE = F.DataShape()  # the reference shape of the fixtures' data

pytestmark = pytest.mark.slow
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOL = 1e-5
EXACT = 1e-6
K = SHAPE.neighbour_slots


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("export_nbr"))
    data_dir = T.write_data(root)
    model_dir = os.path.join(root, "unisar_nbr")
    config = C.preset(T.UNISAR).override(["train.epochs=1", "model.neighbours=pooled"])
    trainer.train(config, data_dir, model_dir, verbose=0)
    ranker, _ = factory.load_trained(model_dir, data_dir)
    batch = next(iter(reader.make_dataset(data_dir, "valid", F.Task.SEARCH, 2, shuffle_buffer=0,
                                          neighbours=True)))
    ranker(batch)  # creates the variables, so the checkpoint's values are restored into them
    rng = np.random.default_rng(7)
    perturbed = 0
    for variable in ranker.variables:
        if "neighbour" in variable.name:
            variable.assign(variable + rng.normal(0.0, 0.3, variable.shape).astype(
                variable.dtype.as_numpy_dtype))
            perturbed += 1
    assert perturbed > 0
    ranker.save_weights(os.path.join(model_dir, FN.BEST_WEIGHTS))
    base = os.path.join(root, "serving")
    cmd = [sys.executable, "-m", "jsr_tf.export.cli", "--model_dir", model_dir,
           "--export_base", base]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    path = os.path.join(base, "jsr", "1")
    ranker, _ = factory.load_trained(model_dir, data_dir)  # the weights the export read
    return {"data_dir": data_dir, "path": path, "ranker": ranker}


@pytest.fixture(scope="module")
def loaded(run):
    return tf.saved_model.load(run["path"])


def _requests(data_dir, rows, num_candidates, seed):
    """Valid rows tiled to ``rows``, random candidates and random neighbour payloads.

    Returns task → (base inputs, neighbour inputs); slot sides are random (0 = empty), so some
    rows have several empty slots.
    """
    vocab = load_vocab(data_dir)
    rng = np.random.default_rng(seed)
    items = np.concatenate([vocab.item_ids, [987654321]])
    words = np.asarray(vocab.word_ids)
    out = {}
    for task in F.Task:
        batch = next(iter(reader.make_dataset(data_dir, "valid", task, 8, shuffle_buffer=0)))
        index = np.arange(rows) % int(batch[F.USER_ID].shape[0])
        inputs = {k: batch[k].numpy()[index] for k in SG.HISTORY_SPECS}
        inputs[SG.CANDIDATES] = rng.choice(items, size=[rows, num_candidates]).astype(np.int64)
        if task == F.Task.SEARCH:
            inputs[F.QUERY_WORDS] = batch[F.QUERY_WORDS].numpy()[index]

        def ids(pool, shape, fill):
            values = rng.choice(pool, size=shape).astype(np.int64)
            return np.where(rng.random(shape) < fill, values, 0)

        nbr = {F.NBR_SIDE: rng.integers(0, 3, size=[rows, K]).astype(np.int64),
               F.NBR_SIM: rng.random([rows, K]).astype(np.float32),
               F.NBR_REC_ITEMS: np.sort(ids(items, [rows, K, SHAPE.nbr_feed_items],
                                            0.7))[..., ::-1],
               F.NBR_SRC_WORDS: ids(words, [rows, K, SHAPE.nbr_search_sessions,
                                            SHAPE.nbr_query_words], 1.0),
               F.NBR_SRC_CLICKS: ids(items, [rows, K, SHAPE.nbr_search_sessions,
                                             SHAPE.nbr_session_clicks], 0.8)}
        # Right-padded, as the pipeline writes them: items sorted with the zeros last.
        nbr[F.NBR_REC_ITEMS] = np.ascontiguousarray(nbr[F.NBR_REC_ITEMS])
        out[task] = (inputs, nbr)
    return out


def _score(model, inputs, task, nbr=None):
    batch = {k: tf.constant(v) for k, v in {**inputs, **(nbr or {})}.items()}
    return model.score(batch, task).numpy()


def _zeros_like(nbr):
    return {k: np.zeros_like(v) for k, v in nbr.items()}


SIGS = {F.Task.FEED: (SG.FEED_SIGNATURE, SG.FEED_NBR_SIGNATURE),
        F.Task.SEARCH: (SG.SEARCH_SIGNATURE, SG.SEARCH_NBR_SIGNATURE)}


def test_signatures_and_export_info(run, loaded):
    assert set(loaded.signatures) == {SG.FEED_SIGNATURE, SG.SEARCH_SIGNATURE,
                                      SG.FEED_NBR_SIGNATURE, SG.SEARCH_NBR_SIGNATURE,
                                      SG.DEFAULT_SIGNATURE}
    specs = loaded.signatures[SG.SEARCH_NBR_SIGNATURE].structured_input_signature[1]
    assert set(specs) == {*SG.HISTORY_SPECS, *F.NEIGHBOUR_INPUTS, F.QUERY_WORDS, SG.CANDIDATES}
    assert specs[F.NBR_SIM].dtype == tf.float32
    assert_matches_golden(loaded.signatures, [SG.FEED_SIGNATURE, SG.SEARCH_SIGNATURE,
                                              SG.DEFAULT_SIGNATURE, SG.FEED_NBR_SIGNATURE,
                                              SG.SEARCH_NBR_SIGNATURE])
    with open(os.path.join(run["path"], FN.EXTRA_DIR, FN.EXPORT_INFO_FILE)) as f:
        assert json.load(f)["neighbour_inputs"] is True
    logged = [sig for sig, _ in warmup.read_warmup(
        os.path.join(run["path"], FN.EXTRA_DIR, FN.WARMUP_FILE))]
    assert sorted(set(logged)) == sorted(loaded.signatures)


def test_fresh_process_neighbour_signatures(run, tmp_path):
    """TF-only process: all-zero neighbours = the base signature (1e-6) at B = 1 and 7; real
    neighbours = the in-process model (1e-5) and differ from the base scores."""
    ranker = run["ranker"]
    requests, expected, base_scores = {}, {}, {}
    for rows in (1, 7):
        for task, (inputs, nbr) in _requests(run["data_dir"], rows, 6, seed=rows).items():
            base_sig, nbr_sig = SIGS[task]
            for kind, sig, extra in (("base", base_sig, {}),
                                     ("zeros", nbr_sig, _zeros_like(nbr)),
                                     ("nbr", nbr_sig, nbr)):
                prefix = f"{kind}_{sig}_{rows}"
                requests[f"{prefix}__sig"] = sig
                requests.update({f"{prefix}__{k}": v for k, v in {**inputs, **extra}.items()})
            base_scores[(task, rows)] = _score(ranker, inputs, task)
            expected[f"nbr_{nbr_sig}_{rows}__scores"] = _score(ranker, inputs, task, nbr)
            expected[f"base_{base_sig}_{rows}__scores"] = base_scores[(task, rows)]
            expected[f"zeros_{nbr_sig}_{rows}__scores"] = base_scores[(task, rows)]
            assert np.abs(expected[f"nbr_{nbr_sig}_{rows}__scores"]
                          - base_scores[(task, rows)]).max() > 1e-3  # neighbours matter
    got = call_in_fresh_process(run["path"], requests, tmp_path)
    assert len(expected) == 2 * 2 * 3
    for key, want in expected.items():
        for prefix in ("", "v1_"):
            np.testing.assert_allclose(got[prefix + key], want, atol=TOL, rtol=0,
                                       err_msg=prefix + key)
    for rows in (1, 7):  # absent neighbours: exactly the base path
        for task, (base_sig, nbr_sig) in SIGS.items():
            np.testing.assert_allclose(got[f"zeros_{nbr_sig}_{rows}__scores"],
                                       got[f"base_{base_sig}_{rows}__scores"], atol=EXACT, rtol=0)


def test_neighbour_inputs_of_other_sizes_are_fitted(run, loaded):
    """Fewer slots, longer item lists and sessions, wider words and clicks: cut and padded as
    the pipeline does (extra slots dropped, the most recent items kept, the first words)."""
    inputs, nbr = _requests(run["data_dir"], 3, 5, seed=11)[F.Task.FEED]
    rows = len(inputs[F.USER_ID])
    # Full slots (15 items, 10 sessions with words), so "the most recent 15 / 10" is exactly
    # the original block once older entries are put in front.
    vocab = load_vocab(run["data_dir"])
    nbr[F.NBR_REC_ITEMS] = np.random.default_rng(1).choice(
        vocab.item_ids, size=[rows, K, SHAPE.nbr_feed_items]).astype(np.int64)
    fn = loaded.signatures[SG.FEED_NBR_SIGNATURE]

    def call(extra):
        return fn(**{k: tf.constant(v) for k, v in {**inputs, **extra}.items()})[SG.SCORES].numpy()

    want = call(nbr)
    longer = dict(nbr)
    older = np.full([rows, K, 4], 12345, np.int64)  # 4 older items before the 15 kept ones
    items = nbr[F.NBR_REC_ITEMS]
    count = (items != 0).sum(-1)
    merged = np.zeros([rows, K, SHAPE.nbr_feed_items + 4], np.int64)
    for b in range(rows):
        for k in range(K):
            n = count[b, k]
            merged[b, k, :4 + n] = np.concatenate([older[b, k], items[b, k, :n]])
    longer[F.NBR_REC_ITEMS] = merged
    # Sessions: 3 older sessions in front; words and clicks widened with junk past their caps.
    pad_words = np.full([rows, K, 3, SHAPE.nbr_query_words], 99, np.int64)
    pad_clicks = np.full([rows, K, 3, SHAPE.nbr_session_clicks], 12345, np.int64)
    words = nbr[F.NBR_SRC_WORDS]
    clicks = nbr[F.NBR_SRC_CLICKS]
    valid = (words != 0).any(-1) | (clicks != 0).any(-1)
    assert valid.all()  # every session holds words (fill 1.0), so the order is simple
    longer[F.NBR_SRC_WORDS] = np.concatenate(
        [np.concatenate([pad_words, words], axis=2),
         np.full([rows, K, SHAPE.nbr_search_sessions + 3, 2], 77, np.int64)], axis=3)
    longer[F.NBR_SRC_CLICKS] = np.concatenate(
        [np.concatenate([pad_clicks, clicks], axis=2),
         np.full([rows, K, SHAPE.nbr_search_sessions + 3, 1], 12345, np.int64)], axis=3)
    np.testing.assert_allclose(call(longer), want, atol=TOL)
    # Only the first 4 slots given: the same as slots 4.. empty.
    few = {k: v[:, :4] for k, v in nbr.items()}
    cut = {k: v.copy() for k, v in nbr.items()}
    for name in cut:
        cut[name][:, 4:] = 0
    np.testing.assert_allclose(call(few), call(cut), atol=TOL)
    # More than K slots: the extra ones are ignored.
    more = {k: np.concatenate([v, v[:, :3]], axis=1) for k, v in nbr.items()}
    np.testing.assert_allclose(call(more), want, atol=TOL)


def test_serving_default_reads_neighbour_fields_of_examples(run, loaded):
    examples = warmup.serving_examples(run["data_dir"], rows=2)
    _, nbr = _requests(run["data_dir"], 2, 3, seed=5)[F.Task.SEARCH]
    with_nbr = []
    for i, record in enumerate(examples):
        example = tf.train.Example.FromString(record)
        feature = example.features.feature
        slots = 6  # a row with fewer slots than K, stored flat as the pipeline writes it
        for name in F.NEIGHBOUR_INPUTS:
            values = nbr[name][i, :slots].ravel()
            if name == F.NBR_SIM:
                feature[name].float_list.value.extend(values.tolist())
            else:
                feature[name].int64_list.value.extend(values.tolist())
        with_nbr.append(example.SerializeToString())
    out = loaded.signatures[SG.DEFAULT_SIGNATURE](examples=tf.constant(with_nbr))
    batch = reader.parse_batch(tf.constant(with_nbr), SHAPE, neighbours=True)
    assert int(tf.reduce_sum(tf.cast(batch[F.NBR_SIDE][:, slots:] != 0, tf.int32))) == 0
    logits = run["ranker"](batch)
    np.testing.assert_allclose(out[SG.FEED_SCORES].numpy(), logits[Outputs.FEED_LOGITS].numpy(),
                               atol=TOL)
    np.testing.assert_allclose(out[SG.SEARCH_SCORES].numpy(),
                               logits[Outputs.SEARCH_LOGITS].numpy(), atol=TOL)
    plain = loaded.signatures[SG.DEFAULT_SIGNATURE](examples=tf.constant(examples))
    assert np.abs(plain[SG.SEARCH_SCORES].numpy() - out[SG.SEARCH_SCORES].numpy()).max() > 1e-3


def test_rest_body_of_search_nbr(run, loaded):
    inputs, nbr = _requests(run["data_dir"], 2, 4, seed=3)[F.Task.SEARCH]
    body = json.loads(json.dumps(rest.row_body(SG.SEARCH_NBR_SIGNATURE, {**inputs, **nbr})))
    response = rest.answer(loaded, body)
    np.testing.assert_allclose(response["predictions"],
                               _score(run["ranker"], inputs, F.Task.SEARCH, nbr), atol=TOL)
