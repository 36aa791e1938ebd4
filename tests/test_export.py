"""``jsr-export`` end to end: the SavedModel used the way TF Serving and its clients use it.

One module fixture trains UniSAR and the two-tower head briefly on the golden fixture and runs
the ``jsr-export`` command. The tests then load the SavedModel in a fresh process that imports
only TensorFlow, through TF Serving's own TF1 loader, with ``saved_model_cli``, with REST bodies
and gRPC ``PredictRequest`` protos, and with bad requests.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import jsr_tf  # noqa: F401
import tensorflow as tf

from jsr_tf.export import rest, warmup
from jsr_tf.export import serving as S
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
from tests.test_signatures import assert_matches_golden

pytestmark = pytest.mark.slow
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOP_K = 5
TOL = 1e-5


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("export"))
    data_dir = T.write_data(root)
    runs = {}
    for name, config in (
            ("unisar", C.preset(T.UNISAR).override(["train.epochs=1"])),
            ("two_tower", C.preset("two_tower").override(
                ["train.epochs=1", "train.batch_size=4", "train.steps_per_epoch=2",
                 "train.eval_batch_size=4", "train.shuffle_buffer=16"]))):
        runs[name] = os.path.join(root, name)
        trainer.train(config, data_dir, runs[name], verbose=0)
    base = os.path.join(root, "serving")
    cmd = [sys.executable, "-m", "jsr_tf.export.cli", "--model_dir", runs["unisar"],
           "--export_base", base, "--retrieval_dir", runs["two_tower"], "--top_k", str(TOP_K)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    path = os.path.join(base, "jsr", "1")
    assert f"exported {path}" in done.stdout
    ranker, _ = factory.load_trained(runs["unisar"], data_dir)
    retriever, _ = factory.load_trained(runs["two_tower"], data_dir)
    return {"root": root, "data_dir": data_dir, "path": path, "ranker": ranker,
            "retriever": retriever, "runs": runs, "base": base}


@pytest.fixture(scope="module")
def loaded(run):
    return tf.saved_model.load(run["path"])


def _requests(data_dir, rows, num_candidates, seed=0):
    """Real valid rows (tiled to ``rows``) with random candidates: known, unknown and padding."""
    vocab = load_vocab(data_dir)
    rng = np.random.default_rng(seed)
    out = {}
    for task in F.Task:
        batch = next(iter(reader.make_dataset(data_dir, "valid", task, 8, shuffle_buffer=0)))
        index = np.arange(rows) % int(batch[F.USER_ID].shape[0])
        inputs = {k: batch[k].numpy()[index] for k in SG.HISTORY_SPECS}
        pool = np.concatenate([vocab.item_ids, [987654321, 0]])
        inputs[SG.CANDIDATES] = rng.choice(pool, size=[rows, num_candidates]).astype(np.int64)
        if task == F.Task.SEARCH:
            inputs[F.QUERY_WORDS] = batch[F.QUERY_WORDS].numpy()[index]
        out[task] = inputs
    return out


def _expected(model, inputs, task):
    return model.score({k: tf.constant(v) for k, v in inputs.items()}, task).numpy()


def _expected_retrieve(retriever, inputs):
    """Top-K by brute force in numpy, history excluded (the reference for ``retrieve``)."""
    batch = {k: tf.constant(v) for k, v in inputs.items()}
    ids, vectors = (t.numpy() for t in retriever.catalogue())
    has_query = (inputs[F.QUERY_WORDS] != 0).any(axis=1)
    batch = retriever.prepare(batch)
    users = np.where(has_query[:, None], retriever.user_vectors(batch, F.Task.SEARCH).numpy(),
                     retriever.user_vectors(batch, F.Task.FEED).numpy())
    scores = users @ vectors.T
    seen = np.concatenate([inputs[F.FEED_ITEMS].reshape(len(users), -1),
                           inputs[F.SEARCH_CLICKS].reshape(len(users), -1)], axis=1)
    top_ids, top_scores = [], []
    for row in range(len(users)):
        excluded = np.isin(ids, seen[row]) & inputs[SG.EXCLUDE_HISTORY][row]
        order = [i for i in np.argsort(-scores[row], kind="stable") if not excluded[i]]
        order = order[:TOP_K]
        top_ids.append(ids[order])
        top_scores.append(scores[row][order])
    return np.array(top_ids), np.array(top_scores)


FRESH_SCRIPT = textwrap.dedent("""
    import json, subprocess, sys
    import numpy as np
    import tensorflow as tf

    path, requests_file, out_file = sys.argv[1:4]
    requests = dict(np.load(requests_file, allow_pickle=True))
    results = {}
    loaded = tf.saved_model.load(path)
    for key in sorted(requests):
        if not key.endswith("__sig"):
            continue
        prefix = key[:-len("__sig")]
        sig = str(requests[key])
        inputs = {k[len(prefix) + 2:]: v for k, v in requests.items()
                  if k.startswith(prefix + "__") and k != key}
        outputs = loaded.signatures[sig](**{k: tf.constant(v) for k, v in inputs.items()})
        for name, value in outputs.items():
            results[f"{prefix}__{name}"] = value.numpy()

    # TF Serving's own loading path: the TF1 loader and the signature_def tensor names.
    with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as sess:
        meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], path)
        for key in sorted(requests):
            if not key.endswith("__sig"):
                continue
            prefix = key[:-len("__sig")]
            sig = meta.signature_def[str(requests[key])]
            feed = {sig.inputs[k[len(prefix) + 2:]].name: v for k, v in requests.items()
                    if k.startswith(prefix + "__") and k != key}
            names = sorted(sig.outputs)
            values = sess.run([sig.outputs[n].name for n in names], feed_dict=feed)
            for name, value in zip(names, values):
                results[f"v1_{prefix}__{name}"] = value
    results["modules"] = np.array(sorted(m for m in sys.modules
                                         if m.startswith(("jsr_tf", "tensorflow_recommenders"))),
                           dtype=object)
    np.savez(out_file, **results)
""")


def call_in_fresh_process(saved_model, requests, tmp_path):
    """Runs ``FRESH_SCRIPT`` on ``requests`` in a process that imports only TensorFlow.

    ``requests``: ``<prefix>__sig`` → signature name and ``<prefix>__<input>`` → array. Returns
    ``<prefix>__<output>`` (and ``v1_<prefix>__<output>``, through TF Serving's TF1 loader) →
    array, after asserting that no jsr_tf or TFRS module was loaded.
    """
    requests_file, out_file = str(tmp_path / "requests.npz"), str(tmp_path / "out.npz")
    np.savez(requests_file, **requests)
    script = tmp_path / "fresh.py"
    script.write_text(FRESH_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in ("TF_USE_LEGACY_KERAS", "PYTHONPATH")}
    done = subprocess.run([sys.executable, str(script), saved_model, requests_file, out_file],
                          cwd=str(tmp_path), capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    got = dict(np.load(out_file, allow_pickle=True))
    assert list(got.pop("modules")) == []  # only TensorFlow was imported
    return got


def test_fresh_process_reload_matches_the_in_process_model(run, tmp_path):
    ranker, retriever = run["ranker"], run["retriever"]
    expected, requests = {}, {}
    for rows in (1, 7):
        for n in (1, 4, 100):
            for task, inputs in _requests(run["data_dir"], rows, n, seed=rows * 1000 + n).items():
                sig = SG.FEED_SIGNATURE if task == F.Task.FEED else SG.SEARCH_SIGNATURE
                prefix = f"{sig}_{rows}_{n}"
                requests[f"{prefix}__sig"] = sig
                requests.update({f"{prefix}__{k}": v for k, v in inputs.items()})
                expected[f"{prefix}__scores"] = _expected(ranker, inputs, task)
        search = _requests(run["data_dir"], rows, 1)[F.Task.SEARCH]
        inputs = {k: search[k] for k in (*SG.HISTORY_SPECS, F.QUERY_WORDS)}
        inputs[F.QUERY_WORDS] = inputs[F.QUERY_WORDS].copy()
        inputs[F.QUERY_WORDS][::2] = 0  # even rows: feed tower; odd rows: search tower
        inputs[SG.EXCLUDE_HISTORY] = np.arange(rows) % 3 != 1
        prefix = f"retrieve_{rows}"
        requests[f"{prefix}__sig"] = SG.RETRIEVE_SIGNATURE
        requests.update({f"{prefix}__{k}": v for k, v in inputs.items()})
        ids, scores = _expected_retrieve(retriever, inputs)
        expected[f"{prefix}__item_ids"], expected[f"{prefix}__scores"] = ids, scores
        examples = warmup.serving_examples(run["data_dir"], rows=2)
        prefix = f"default_{rows}"
        requests[f"{prefix}__sig"] = SG.DEFAULT_SIGNATURE
        requests[f"{prefix}__examples"] = np.array((examples * rows)[:rows], dtype=object)
        batch = reader.parse_batch(tf.constant((examples * rows)[:rows]), ranker.data_shape)
        logits = ranker(batch)
        expected[f"{prefix}__feed_scores"] = logits[Outputs.FEED_LOGITS].numpy()
        expected[f"{prefix}__search_scores"] = logits[Outputs.SEARCH_LOGITS].numpy()

    got = call_in_fresh_process(run["path"], requests, tmp_path)
    assert len(expected) == 2 * 3 * 2 + 2 * 2 + 2 * 2
    for key, want in expected.items():
        for prefix in ("", "v1_"):
            have = got[prefix + key]
            assert have.shape == want.shape, key
            if key.endswith("item_ids"):
                np.testing.assert_array_equal(have, want, err_msg=key)
            else:
                np.testing.assert_allclose(have, want, atol=TOL, rtol=0, err_msg=prefix + key)


def test_the_signatures_are_the_golden_table(run, loaded):
    """The exported signatures (by name) and the module's (in ``input_signature`` order) have the
    inputs and outputs of ``tests.test_signatures.GOLDEN``."""
    names = [SG.FEED_SIGNATURE, SG.SEARCH_SIGNATURE, SG.DEFAULT_SIGNATURE, SG.RETRIEVE_SIGNATURE]
    assert_matches_golden(loaded.signatures, names, k=TOP_K)
    module = S.ServingModule(run["ranker"], run["retriever"], top_k=TOP_K, cache_items=False)
    assert_matches_golden(module.signatures(), names, k=TOP_K)


def test_saved_model_cli_show_and_run(run, tmp_path):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    shown = subprocess.run([cli, "show", "--dir", run["path"], "--all"], capture_output=True,
                           text=True, timeout=300)
    assert shown.returncode == 0, shown.stderr[-2000:]
    for sig in (SG.FEED_SIGNATURE, SG.SEARCH_SIGNATURE, SG.DEFAULT_SIGNATURE,
                SG.RETRIEVE_SIGNATURE):
        assert f"signature_def['{sig}']" in shown.stdout
    inputs = _requests(run["data_dir"], 1, 3)[F.Task.FEED]
    for name, value in inputs.items():
        np.save(tmp_path / f"{name}.npy", value.astype(np.int64))
    files = ";".join(f"{name}={tmp_path / name}.npy" for name in inputs)
    ran = subprocess.run([cli, "run", "--dir", run["path"], "--tag_set", "serve",
                          "--signature_def", "feed", "--inputs", files],
                         capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr[-2000:]
    want = _expected(run["ranker"], inputs, F.Task.FEED)
    assert "Result for output key scores" in ran.stdout
    printed = ran.stdout.split("Result for output key scores:")[1]
    values = np.array([float(x) for x in printed.replace("[", " ").replace("]", " ").split()])
    np.testing.assert_allclose(values, want.ravel(), atol=1e-5)


def _signature_dtypes(loaded, name):
    specs = loaded.signatures[name].structured_input_signature[1]
    return {k: s.dtype.as_numpy_dtype for k, s in specs.items()}


@pytest.mark.parametrize("make", [rest.row_body, rest.columnar_body])
def test_rest_bodies_map_onto_the_signatures(run, loaded, make):
    for task, sig in ((F.Task.FEED, SG.FEED_SIGNATURE), (F.Task.SEARCH, SG.SEARCH_SIGNATURE)):
        inputs = _requests(run["data_dir"], 3, 5)[task]
        body = json.loads(json.dumps(make(sig, inputs)))
        mapped = rest.body_to_inputs(body, _signature_dtypes(loaded, sig))
        assert set(mapped) == set(inputs)
        outputs = loaded.signatures[sig](**{k: tf.constant(v) for k, v in mapped.items()})
        response = rest.outputs_to_response(body, {k: v.numpy() for k, v in outputs.items()})
        scores = np.array(response["outputs" if "inputs" in body else "predictions"])
        np.testing.assert_allclose(scores, _expected(run["ranker"], inputs, task), atol=TOL)


def test_rest_predict_in_a_tensorflow_only_process(run, tmp_path):
    inputs = _requests(run["data_dir"], 2, 4)[F.Task.SEARCH]
    body_file = tmp_path / "body.json"
    body_file.write_text(json.dumps(rest.row_body(SG.SEARCH_SIGNATURE, inputs)))
    done = subprocess.run([sys.executable, "-m", "jsr_tf.export.rest", "--saved_model", run["path"],
                           "--request", str(body_file)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    response = json.loads(done.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(response["predictions"],
                               _expected(run["ranker"], inputs, F.Task.SEARCH), atol=TOL)


def test_sample_rest_bodies_of_every_signature_are_answered(run, loaded):
    for sig in loaded.signatures:
        path = os.path.join(run["path"], FN.EXTRA_DIR, FN.SAMPLE_REQUEST.format(sig))
        with open(path) as f:
            body = json.load(f)
        assert body["signature_name"] == sig and len(body["instances"]) == 1
        response = rest.answer(loaded, body)["predictions"]
        assert len(response) == 1
        values = response[0] if isinstance(response[0], dict) else {"scores": response[0]}
        for value in values.values():
            assert np.isfinite(np.asarray(value, np.float64)).all()


def test_the_readme_rest_examples_are_answered(loaded):
    import re

    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    serving = text.split("## Serve with TF Serving", 1)[1].split("\n## ", 1)[0]
    bodies = [json.loads(block) for block in re.findall(r"```json\n(.*?)```", serving, re.S)]
    assert {("instances" in b) for b in bodies} == {True, False}
    for body in bodies:
        response = rest.answer(loaded, body)
        scores = np.asarray(response.get("predictions", response.get("outputs")), np.float64)
        assert scores.shape == (1, 3) and np.isfinite(scores).all()


def test_grpc_predict_requests_and_the_warmup_file(run, loaded):
    path = os.path.join(run["path"], FN.EXTRA_DIR, FN.WARMUP_FILE)
    records = warmup.read_warmup(path)
    assert sorted(sig for sig, _ in records) == sorted(list(loaded.signatures) * 2)
    assert sorted(len(next(iter(i.values()))) for _, i in records)[:4] == [1, 1, 1, 1]
    for sig, inputs in records:
        assert set(inputs) == set(_signature_dtypes(loaded, sig))
        outputs = loaded.signatures[sig](**{k: tf.constant(v) for k, v in inputs.items()})
        for value in outputs.values():
            assert np.isfinite(value.numpy().astype(np.float64)).all()
    # A PredictRequest (the gRPC form) decodes back to the same tensors and scores.
    inputs = _requests(run["data_dir"], 2, 3)[F.Task.FEED]
    req = warmup.predict_request("jsr", SG.FEED_SIGNATURE, inputs)
    assert req.model_spec.name == "jsr" and req.model_spec.signature_name == "feed"
    decoded = {k: tf.make_ndarray(v) for k, v in req.inputs.items()}
    scores = loaded.signatures["feed"](**{k: tf.constant(v) for k, v in decoded.items()})
    np.testing.assert_allclose(scores["scores"], _expected(run["ranker"], inputs, F.Task.FEED),
                               atol=TOL)
    info = json.loads(open(os.path.join(run["path"], FN.EXTRA_DIR, FN.EXPORT_INFO_FILE)).read())
    assert info["min_tf_serving_version"] == tf.__version__.rsplit(".", 1)[0]


# ---- bad requests ------------------------------------------------------------------------------
def _call(loaded, sig, inputs):
    out = loaded.signatures[sig](**{k: tf.constant(v, tf.int64) for k, v in inputs.items()})
    scores = out["scores"].numpy()
    assert np.isfinite(scores).all()
    return scores


def test_unknown_ids_score_as_oov_and_negative_ids_as_padding(run, loaded):
    inputs = _requests(run["data_dir"], 2, 3)[F.Task.SEARCH]
    variants = []
    for unknown in (987654321, 123456789, -7, F.RAW_PAD_ID):
        x = {k: v.copy() for k, v in inputs.items()}
        x[SG.CANDIDATES][:, 1] = unknown
        x[F.FEED_ITEMS][:, 0] = unknown
        x[F.QUERY_WORDS][:, 0] = unknown
        x[F.SEARCH_WORDS][:, 0, 0] = unknown
        x[F.USER_ID][:] = unknown
        variants.append(_call(loaded, "search", x))
    np.testing.assert_allclose(variants[0], variants[1], atol=TOL)  # both OOV
    np.testing.assert_allclose(variants[2], variants[3], atol=TOL)  # any negative id = padding


def test_empty_histories_and_an_empty_query_give_finite_scores(run, loaded):
    inputs = _requests(run["data_dir"], 2, 3)[F.Task.SEARCH]
    empty = dict(inputs)
    empty[F.FEED_ITEMS] = empty[F.FEED_TS] = np.zeros([2, 0], np.int64)
    empty[F.SEARCH_TS] = np.zeros([2, 0], np.int64)
    empty[F.SEARCH_WORDS] = empty[F.SEARCH_CLICKS] = np.zeros([2, 0, 0], np.int64)
    empty[F.QUERY_WORDS] = np.zeros([2, 0], np.int64)
    scores = _call(loaded, "search", empty)
    padded = dict(empty)  # the same request at the caps, all padding: identical scores
    padded[F.FEED_ITEMS] = padded[F.FEED_TS] = np.zeros([2, 30], np.int64)
    padded[F.SEARCH_TS] = np.zeros([2, 30], np.int64)
    padded[F.SEARCH_WORDS] = np.zeros([2, 30, 50], np.int64)
    padded[F.SEARCH_CLICKS] = np.zeros([2, 30, 5], np.int64)
    padded[F.QUERY_WORDS] = np.zeros([2, 50], np.int64)
    np.testing.assert_allclose(scores, _call(loaded, "search", padded), atol=TOL)
    feed = {k: v for k, v in empty.items() if k != F.QUERY_WORDS}
    _call(loaded, "feed", feed)


def test_a_history_longer_than_the_cap_keeps_the_most_recent_entries(run, loaded):
    inputs = _requests(run["data_dir"], 1, 4)[F.Task.FEED]
    rng = np.random.default_rng(3)
    vocab = load_vocab(run["data_dir"])
    long_items = rng.choice(vocab.item_ids, size=[1, 45]).astype(np.int64)
    long = dict(inputs, **{F.FEED_ITEMS: long_items,
                           F.FEED_TS: np.arange(1, 46, dtype=np.int64)[None] * 1000})
    recent = dict(inputs, **{F.FEED_ITEMS: long_items[:, -30:],
                             F.FEED_TS: long[F.FEED_TS][:, -30:]})
    oldest = dict(inputs, **{F.FEED_ITEMS: long_items[:, :30], F.FEED_TS: long[F.FEED_TS][:, :30]})
    got = _call(loaded, "feed", long)
    # The same capped batch reaches the model: identical scores (the short-trained fixture
    # model reacts to old items only in the 6th digit, so the check is exact, as for search).
    np.testing.assert_array_equal(got, _call(loaded, "feed", recent))
    assert not np.array_equal(got, _call(loaded, "feed", oldest))


def test_a_search_history_longer_than_the_cap_keeps_the_most_recent_sessions(run, loaded):
    inputs = _requests(run["data_dir"], 1, 4)[F.Task.SEARCH]
    rng = np.random.default_rng(4)
    vocab = load_vocab(run["data_dir"])
    n = 40
    long = dict(inputs)
    long[F.SEARCH_TS] = np.arange(1, n + 1, dtype=np.int64)[None] * 1000
    long[F.SEARCH_WORDS] = rng.choice(vocab.word_ids, size=[1, n, 3]).astype(np.int64)
    long[F.SEARCH_CLICKS] = rng.choice(vocab.item_ids, size=[1, n, 2]).astype(np.int64)
    recent = {k: (v[:, -30:] if k in (F.SEARCH_TS, F.SEARCH_WORDS, F.SEARCH_CLICKS) else v)
              for k, v in long.items()}
    oldest = {k: (v[:, :30] if k in (F.SEARCH_TS, F.SEARCH_WORDS, F.SEARCH_CLICKS) else v)
              for k, v in long.items()}
    got = _call(loaded, "search", long)
    # The same capped batch reaches the model: identical scores (the short-trained fixture
    # model reacts to old sessions only in the 6th digit, so the check is exact).
    np.testing.assert_array_equal(got, _call(loaded, "search", recent))
    assert not np.array_equal(got, _call(loaded, "search", oldest))


def test_bad_retrieve_and_serving_default_requests(run, loaded):
    inputs = _requests(run["data_dir"], 2, 1)[F.Task.SEARCH]
    request = {k: inputs[k] for k in (*SG.HISTORY_SPECS, F.QUERY_WORDS)}
    request[F.FEED_ITEMS] = request[F.FEED_ITEMS].copy()
    request[F.FEED_ITEMS][:, 0] = -5  # negative, and unknown below
    request[F.USER_ID] = np.array([987654321, -1], np.int64)
    out = loaded.signatures["retrieve"](**{k: tf.constant(v) for k, v in request.items()},
                                        exclude_history=tf.constant([True, False]))
    assert np.isfinite(out["scores"].numpy()).all()
    empty = dict(request)
    empty[F.FEED_ITEMS] = empty[F.FEED_TS] = np.zeros([2, 0], np.int64)
    empty[F.SEARCH_TS] = np.zeros([2, 0], np.int64)
    empty[F.SEARCH_WORDS] = empty[F.SEARCH_CLICKS] = np.zeros([2, 0, 0], np.int64)
    out = loaded.signatures["retrieve"](**{k: tf.constant(v) for k, v in empty.items()},
                                        exclude_history=tf.constant([True, True]))
    assert np.isfinite(out["scores"].numpy()).all() and (out["item_ids"].numpy() > 0).all()
    # serving_default: Examples without their label fields score the same; without any
    # `candidates` feature the request fails with a message naming it.
    fn = loaded.signatures[SG.DEFAULT_SIGNATURE]
    examples = warmup.serving_examples(run["data_dir"], rows=2)
    stripped, bare = [], []
    for raw in examples:
        example = tf.train.Example.FromString(raw)
        for name in F.LABEL_FEATURES:
            del example.features.feature[name]
        stripped.append(example.SerializeToString())
        del example.features.feature[SG.CANDIDATES]
        bare.append(example.SerializeToString())
    want = fn(examples=tf.constant(examples))
    got = fn(examples=tf.constant(stripped))
    for key in want:
        np.testing.assert_allclose(got[key].numpy(), want[key].numpy(), atol=TOL)
    with pytest.raises(tf.errors.InvalidArgumentError, match="need an int64 list feature"):
        fn(examples=tf.constant(bare))


def test_sasrec_exports_too(run):
    """A feed-only baseline reads ``search_has_click``: requests derive it from the clicks."""
    config = C.preset("sasrec")
    model = factory.build_model(config, load_vocab(run["data_dir"]))
    signatures = S.ServingModule(model).signatures()
    inputs = _requests(run["data_dir"], 2, 5)[F.Task.FEED]
    got = signatures[SG.FEED_SIGNATURE](**{k: tf.constant(v) for k, v in inputs.items()})
    want = model.score({**{k: tf.constant(v) for k, v in inputs.items()},
                        F.SEARCH_HAS_CLICK: tf.cast(tf.reduce_any(
                            tf.constant(inputs[F.SEARCH_CLICKS]) != 0, -1), tf.int64)},
                       F.Task.FEED)
    np.testing.assert_allclose(got["scores"].numpy(), want.numpy(), atol=TOL)


def test_uditsr_run_exports_and_reloads_in_a_tensorflow_only_process(run, tmp_path):
    """A ``uditsr`` run dir (config + weights, as ``jsr-train`` writes them; untrained weights
    keep the test short) through ``export_run`` (cached item vectors): ``feed``, ``search`` and
    ``serving_default`` answer in a TensorFlow-only process (and through TF Serving's TF1
    loader) as the in-process model does, at 1 and 7 rows."""
    from jsr_tf.export import exporter
    from jsr_tf.keys import Inputs

    model_dir = os.path.join(run["root"], "uditsr")
    config = C.preset("uditsr")
    model = factory.build_model(config, load_vocab(run["data_dir"]))
    model.compute_loss({key: next(iter(reader.make_dataset(run["data_dir"], "train", task, 4)))
                        for key, task in ((Inputs.FEED, F.Task.FEED),
                                          (Inputs.SEARCH, F.Task.SEARCH))})  # the variables
    model.save_weights(os.path.join(model_dir, FN.BEST_WEIGHTS))
    factory.save_config(config, model_dir)
    path = exporter.export_run(model_dir, os.path.join(run["root"], "serving_uditsr"),
                               data_dir=run["data_dir"])
    ranker, _ = factory.load_trained(model_dir, run["data_dir"])
    expected, requests = {}, {}
    for rows in (1, 7):
        for task, inputs in _requests(run["data_dir"], rows, 4, seed=rows).items():
            sig = SG.FEED_SIGNATURE if task == F.Task.FEED else SG.SEARCH_SIGNATURE
            requests[f"{sig}_{rows}__sig"] = sig
            requests.update({f"{sig}_{rows}__{k}": v for k, v in inputs.items()})
            expected[f"{sig}_{rows}__scores"] = _expected(ranker, inputs, task)
        examples = (warmup.serving_examples(run["data_dir"], rows=2) * rows)[:rows]
        requests[f"default_{rows}__sig"] = SG.DEFAULT_SIGNATURE
        requests[f"default_{rows}__examples"] = np.array(examples, dtype=object)
        logits = ranker(reader.parse_batch(tf.constant(examples), ranker.data_shape))
        expected[f"default_{rows}__feed_scores"] = logits[Outputs.FEED_LOGITS].numpy()
        expected[f"default_{rows}__search_scores"] = logits[Outputs.SEARCH_LOGITS].numpy()
    got = call_in_fresh_process(path, requests, tmp_path)
    for key, want in expected.items():
        for prefix in ("", "v1_"):
            assert got[prefix + key].shape == want.shape, key
            np.testing.assert_allclose(got[prefix + key], want, atol=TOL, rtol=0,
                                       err_msg=prefix + key)
    # The search signature reads the query; feed does not.
    assert not np.allclose(expected["feed_7__scores"], expected["search_7__scores"])


def test_one_and_ten_thousand_candidates(run, loaded):
    inputs = _requests(run["data_dir"], 1, 10_000, seed=5)[F.Task.SEARCH]
    many = _call(loaded, "search", inputs)
    assert many.shape == (1, 10_000)
    one = _call(loaded, "search", dict(inputs, candidates=inputs[SG.CANDIDATES][:, 17:18]))
    np.testing.assert_allclose(one[:, 0], many[:, 17], atol=TOL)


def test_requests_over_the_export_limits_are_refused(run, loaded):
    limits = S.RequestLimits()
    inputs = _requests(run["data_dir"], 1, limits.max_candidates + 1)[F.Task.FEED]
    with pytest.raises(tf.errors.InvalidArgumentError, match="at most 10000 candidates per row"):
        _call(loaded, "feed", inputs)
    inputs = _requests(run["data_dir"], limits.max_rows + 1, 1)[F.Task.FEED]
    with pytest.raises(tf.errors.InvalidArgumentError, match="at most 1024 rows"):
        _call(loaded, "feed", inputs)
    with open(os.path.join(run["path"], FN.EXTRA_DIR, FN.EXPORT_INFO_FILE)) as f:
        assert json.load(f)["request_limits"]["max_candidates"] == limits.max_candidates


def test_retrieve_excludes_history_on_request(run, loaded):
    inputs = _requests(run["data_dir"], 1, 1)[F.Task.FEED]
    request = {k: inputs[k] for k in SG.HISTORY_SPECS}
    request[F.QUERY_WORDS] = np.zeros([1, 0], np.int64)
    fn = loaded.signatures[SG.RETRIEVE_SIGNATURE]

    def ids(exclude):
        out = fn(**{k: tf.constant(v) for k, v in request.items()},
                 exclude_history=tf.constant([exclude]))
        assert out["item_ids"].shape == (1, TOP_K)
        return out["item_ids"].numpy()[0]

    seen = set(request[F.FEED_ITEMS].ravel()) | set(request[F.SEARCH_CLICKS].ravel())
    seen.discard(0)
    assert seen, "the fixture row should have a history"
    assert not (set(ids(True)) & seen)
    # The whole request is excluded, also entries past the caps: put the unexcluded top item
    # 40 entries back in a 45-entry feed history.
    top = ids(False)[0]
    vocab = load_vocab(run["data_dir"])
    others = [i for i in vocab.item_ids if i != top][:3]
    long_items = np.array([[top] + list(np.resize(others, 44))], np.int64)
    request[F.FEED_ITEMS] = long_items
    request[F.FEED_TS] = np.arange(1, 46, dtype=np.int64)[None] * 1000
    excluded = set(long_items.ravel()) | set(request[F.SEARCH_CLICKS].ravel())
    got = ids(True)
    assert top not in got
    # The 12-item fixture catalogue minus the excluded items leaves empty slots: id -1, -1e9.
    out = fn(**{k: tf.constant(v) for k, v in request.items()},
             exclude_history=tf.constant([True]))
    empty = out["item_ids"].numpy()[0] == F.RAW_PAD_ID
    assert empty.sum() == TOP_K - len(set(vocab.item_ids) - excluded)
    np.testing.assert_array_equal(out["scores"].numpy()[0][empty], S.EMPTY_SCORE)
    assert not (set(got) - {F.RAW_PAD_ID}) & excluded


def test_xla_serving_functions_match_the_plain_ones(run):
    """``jit_compile=True`` pads B and N to buckets, compiles, and cuts back: same scores."""
    ranker, _ = factory.load_trained(run["runs"]["unisar"], run["data_dir"])
    plain = S.ServingModule(ranker, cache_items=True).signatures()
    ranker, _ = factory.load_trained(run["runs"]["unisar"], run["data_dir"])
    xla = S.ServingModule(ranker, cache_items=True, jit_compile=True).signatures()
    for rows, n in ((1, 1), (3, 5), (7, 100)):
        for task, inputs in _requests(run["data_dir"], rows, n, seed=n).items():
            sig = SG.FEED_SIGNATURE if task == F.Task.FEED else SG.SEARCH_SIGNATURE
            args = {k: tf.constant(v) for k, v in inputs.items()}
            want = plain[sig](**args)["scores"].numpy()
            got = xla[sig](**args)["scores"].numpy()
            assert got.shape == (rows, n)
            np.testing.assert_allclose(got, want, atol=TOL)
            np.testing.assert_allclose(got, _expected(run["ranker"], inputs, task), atol=TOL)
    # Inner sizes beyond the caps (45 feed events, 40 sessions of 60 words and 7 clicks; the
    # XLA path fits the request inside the compiled function) and below them (3 events).
    inputs = _requests(run["data_dir"], 2, 9, seed=5)[F.Task.SEARCH]
    vocab = load_vocab(run["data_dir"])
    rng = np.random.default_rng(6)
    long = dict(inputs, **{
        F.FEED_ITEMS: rng.choice(vocab.item_ids, size=[2, 45]).astype(np.int64),
        F.FEED_TS: np.tile(np.arange(1, 46, dtype=np.int64) * 1000, [2, 1]),
        F.SEARCH_TS: np.tile(np.arange(1, 41, dtype=np.int64) * 1000, [2, 1]),
        F.SEARCH_WORDS: rng.choice(vocab.word_ids, size=[2, 40, 60]).astype(np.int64),
        F.SEARCH_CLICKS: rng.choice(vocab.item_ids, size=[2, 40, 7]).astype(np.int64)})
    short = dict(inputs, **{F.FEED_ITEMS: inputs[F.FEED_ITEMS][:, :3],
                            F.FEED_TS: inputs[F.FEED_TS][:, :3]})
    for request in (long, short):
        args = {k: tf.constant(v) for k, v in request.items()}
        want = plain[SG.SEARCH_SIGNATURE](**args)["scores"].numpy()
        np.testing.assert_allclose(xla[SG.SEARCH_SIGNATURE](**args)["scores"], want, atol=TOL)
    with pytest.raises(tf.errors.InvalidArgumentError, match="same batch and history sizes"):
        xla[SG.FEED_SIGNATURE](**{k: tf.constant(v) for k, v in dict(
            long, **{F.FEED_TS: long[F.FEED_TS][:, :44]}).items() if k != F.QUERY_WORDS})
    assert [int(S.bucket(x)) for x in (1, 2, 3, 64, 65, 100)] == [1, 2, 4, 64, 128, 128]
    np.testing.assert_array_equal(
        S.pad_to_buckets(tf.ones([3, 2, 40], tf.int64), (30, 5), -1).shape, [4, 32, 64])


def test_export_refuses_to_overwrite_a_version(run):
    from jsr_tf.export import exporter

    with pytest.raises(FileExistsError, match="--overwrite"):
        exporter.export_run(run["runs"]["unisar"], run["base"], version=1)
    assert exporter.next_version(os.path.join(run["base"], "jsr")) == 2
