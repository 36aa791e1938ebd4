"""Changing a history cap is one value in one place: the preprocessing config.

The golden fixture is preprocessed with ``max_feed_history = 20``; the reader, the model and the
serving export then all work at 20 without another change, because each takes its sizes from the
data directory's ``DataShape`` (``manifest.json``).
"""

import json

import numpy as np
import pytest

import jsr_tf  # noqa: F401
import tensorflow as tf

from jsr_tf.export import serving as S
from jsr_tf.export import signatures as SG
from jsr_tf import features as F
from jsr_tf import filenames as FN
from jsr_tf.data import reader
from jsr_tf.data.vocab import load_vocab
from tests import golden_fixture as G
from tests.models._checks import preset_model

pytestmark = pytest.mark.slow
CAP = 20
CONFIG = {"max_feed_history": CAP, "num_train_negatives": 2, "num_eval_negatives": 3}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cap20")
    return G.preprocessed(root, CONFIG)


def test_the_pipeline_records_the_shape(data_dir):
    with open(f"{data_dir}/{FN.MANIFEST_FILE}") as f:
        recorded = json.load(f)[F.DATA_SHAPE_KEY]
    assert recorded == F.DataShape(feed_history=CAP, train_negatives=2,
                                   eval_negatives=3).to_dict()
    with open(f"{data_dir}/{FN.SCHEMA_FILE}") as f:
        assert json.load(f)["caps"]["feed_history"] == CAP


def test_reader_model_and_export_follow_the_data(data_dir, tmp_path):
    shape = F.DataShape.read(data_dir)
    assert shape.feed_history == CAP and shape.search_history == 30
    batch = next(iter(reader.make_dataset(data_dir, "valid", F.Task.FEED, 4, shuffle_buffer=0)))
    assert batch[F.FEED_ITEMS].shape[1:] == batch[F.FEED_TS].shape[1:] == [CAP]
    assert batch[F.SEARCH_WORDS].shape[1:] == [30, 50]

    vocab = load_vocab(data_dir)
    assert vocab.shape == shape
    model = preset_model("unisar", vocab, "model.embedding_dim=8", "model.hidden_dim=8",
                         "model.ffn_dim=8", "model.num_heads=1")
    assert model.data_shape == shape
    scores = model.score(batch, F.Task.FEED).numpy()
    assert scores.shape == (batch[F.FEED_ITEMS].shape[0], 4)  # 1 + 3 candidates
    assert model.feed_positions.position_embeddings.shape[0] == CAP
    assert model.global_positions.position_embeddings.shape[0] == CAP + 30

    # A request with a longer history keeps its CAP most recent items, as the pipeline does.
    rows = 2
    items = np.tile(np.arange(100, 100 + CAP + 5, dtype=np.int64), (rows, 1))
    request = {F.USER_ID: tf.constant([1, 2], tf.int64),
               F.FEED_ITEMS: tf.constant(items),
               F.FEED_TS: tf.constant(np.arange(1, CAP + 6, dtype=np.int64)[None].repeat(rows, 0)),
               F.SEARCH_TS: tf.zeros([rows, 1], tf.int64),
               F.SEARCH_WORDS: tf.fill([rows, 1, 1], tf.constant(-1, tf.int64)),
               F.SEARCH_CLICKS: tf.fill([rows, 1, 1], tf.constant(-1, tf.int64)),
               SG.CANDIDATES: batch[reader.CANDIDATES][:rows]}
    fitted = S.fit_request(request, model.data_shape)
    assert fitted[F.FEED_ITEMS].shape[1:] == [CAP]
    np.testing.assert_array_equal(fitted[F.FEED_ITEMS].numpy()[0], items[0, 5:])
    want = model.score(fitted, F.Task.FEED).numpy()

    module = S.ServingModule(model, cache_items=False)
    path = str(tmp_path / "saved")
    tf.saved_model.save(module, path, signatures=module.signatures())
    loaded = tf.saved_model.load(path).signatures[SG.FEED_SIGNATURE]
    got = loaded(**request)[SG.SCORES].numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
