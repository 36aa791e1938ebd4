"""jsr_tf.data.reader: round trip against what the pipeline wrote, padding, resampling."""

import numpy as np
import pytest

import jsr_tf  # noqa: F401
import tensorflow as tf

from jsr_tf import features as F
from jsr_tf.data import reader
from tests import golden_fixture as G
from tests.testing import read_examples, sessions_of

SHAPE = F.DataShape()  # the reference shape of the fixtures' data

CONFIG = {"num_train_negatives": 2, "num_eval_negatives": 3}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("reader")
    return G.preprocessed(root, CONFIG)


def _rows(ds):
    rows = []
    for batch in ds:
        batch = {k: v.numpy() for k, v in batch.items()}
        for i in range(batch[F.USER_ID].shape[0]):
            rows.append({k: v[i] for k, v in batch.items()})
    return rows


@pytest.mark.parametrize("split", ["train", "valid", "test"])
@pytest.mark.parametrize("task", list(F.Task))
def test_round_trip(data_dir, split, task):
    written = {(int(e[F.USER_ID]), int(e[F.TARGET_ROW])): e
               for e in read_examples(data_dir, split, task)}
    rows = _rows(reader.make_dataset(data_dir, split, task, batch_size=3, shuffle_buffer=0))
    assert len(rows) == len(written) > 0
    for row in rows:
        e = written[(int(row[F.USER_ID]), int(row[F.TARGET_ROW]))]
        n_feed = len(e[F.FEED_ITEMS])
        np.testing.assert_array_equal(row[F.FEED_ITEMS][:n_feed], e[F.FEED_ITEMS])
        np.testing.assert_array_equal(row[F.FEED_ITEMS][n_feed:], F.RAW_PAD_ID)
        np.testing.assert_array_equal(row[F.FEED_TS][:n_feed], e[F.FEED_TS])
        assert row[F.FEED_ITEMS].shape == (SHAPE.feed_history,)
        assert row[F.SEARCH_WORDS].shape == (SHAPE.search_history, SHAPE.query_words)
        assert row[F.SEARCH_CLICKS].shape == (SHAPE.search_history, SHAPE.session_clicks)
        sessions = sessions_of(e)
        for i, s in enumerate(sessions):
            assert row[F.SEARCH_TS][i] == s["ts"]
            assert list(row[F.SEARCH_WORDS][i][:len(s["words"])]) == s["words"]
            assert (row[F.SEARCH_WORDS][i][len(s["words"]):] == F.RAW_PAD_ID).all()
            assert list(row[F.SEARCH_CLICKS][i][:len(s["clicks"])]) == s["clicks"]
            assert row[F.SEARCH_HAS_CLICK][i] == s["has_click"]
        assert not row[F.SEARCH_TS][len(sessions):].any()
        np.testing.assert_array_equal(row[reader.CANDIDATES],
                                      [e[F.TARGET_ITEM], *e[F.NEGATIVES]])
        np.testing.assert_array_equal(row[reader.LABEL], [1.0] + [0.0] * len(e[F.NEGATIVES]))
        assert list(row[F.QUERY_WORDS][:len(e[F.QUERY_WORDS])]) == list(e[F.QUERY_WORDS])


def test_static_shapes_with_drop_remainder(data_dir):
    ds = reader.make_dataset(data_dir, "train", F.Task.FEED, batch_size=2, drop_remainder=True)
    spec = ds.element_spec
    assert spec[F.SEARCH_WORDS].shape.as_list() == [2, 30, 50]
    assert spec[reader.CANDIDATES].shape.as_list() == [2, None]


def test_shuffle_is_seeded(data_dir):
    def order(seed):
        ds = reader.make_dataset(data_dir, "train", F.Task.FEED, batch_size=1, seed=seed)
        return [int(r[F.TARGET_ROW]) for r in _rows(ds)]

    assert order(3) == order(3)
    assert sorted(order(3)) == sorted(order(4))


def test_resampled_negatives_exclude_positive_and_history(data_dir):
    ds = reader.make_dataset(data_dir, "train", F.Task.FEED, batch_size=4, repeat=True,
                             resample_negatives=True, num_negatives=3, seed=1)
    batches = [{k: v.numpy() for k, v in b.items()} for b in ds.take(6)]
    for b in batches:
        assert b[reader.CANDIDATES].shape[1] == 4
        np.testing.assert_array_equal(b[reader.LABEL][:, 0], 1.0)
        for row in range(b[F.USER_ID].shape[0]):
            positive = b[reader.CANDIDATES][row, 0]
            assert positive == b[F.TARGET_ITEM][row]
            negatives = set(b[reader.CANDIDATES][row, 1:].tolist())
            history = set(b[F.FEED_ITEMS][row].tolist()) | set(b[F.SEARCH_CLICKS][row].ravel().tolist())
            assert positive not in negatives
            assert not negatives & (history - {0})
    # Deterministic for a seed.
    again = [{k: v.numpy() for k, v in b.items()} for b in reader.make_dataset(
        data_dir, "train", F.Task.FEED, batch_size=4, repeat=True, resample_negatives=True,
        num_negatives=3, seed=1).take(6)]
    for a, b in zip(batches, again):
        np.testing.assert_array_equal(a[reader.CANDIDATES], b[reader.CANDIDATES])


def test_resampling_is_train_only(data_dir):
    with pytest.raises(ValueError, match="train split only"):
        reader.make_dataset(data_dir, "valid", F.Task.FEED, 2, resample_negatives=True)


def test_missing_files_raise(tmp_path):
    with pytest.raises(FileNotFoundError, match="jsr-preprocess"):
        reader.make_dataset(str(tmp_path), "train", F.Task.FEED, 2)
