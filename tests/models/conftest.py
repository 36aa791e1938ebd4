"""Shared fixture of the model tests: the golden fixture preprocessed (2 train, 3 eval negatives)."""


import pytest

from jsr_tf.data.vocab import load_vocab
from tests import golden_fixture as G

CONFIG = {"num_train_negatives": 2, "num_eval_negatives": 3}


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """Pipeline output of the golden fixture, built once for all model tests (read only)."""
    root = tmp_path_factory.mktemp("models")
    return G.preprocessed(root, CONFIG)


@pytest.fixture(scope="session")
def vocab(data_dir):
    """Vocabularies of ``data_dir``."""
    return load_vocab(data_dir)
