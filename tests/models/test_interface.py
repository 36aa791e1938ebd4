"""The explicit model interface (``JsrModel``): every registered family provides it, and the code
that drives models (trainer, factory, export, dense neighbours) uses it without probing."""

import ast
import os

import pytest

import jsr_tf  # noqa: F401

from jsr_tf import config as C
from jsr_tf import features as F
from jsr_tf.keys import Inputs
from jsr_tf.models import base, factory
from tests.models._checks import preset_model, read_batch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAMILIES = ("mixed_sequence", "sasrec", "search_baseline", "sesrec", "two_tower", "uditsr",
            "unisar")
# Expected interface of each family: (train_tasks, supports_neighbours, encodes_user_sides,
# caches_items, has a dynamic-shape path).
EXPECTED = {
    "mixed_sequence": ((F.Task.FEED, F.Task.SEARCH), False, False, False, False),
    "sasrec": ((F.Task.FEED,), True, False, False, True),
    "search_baseline": ((F.Task.SEARCH,), False, False, False, False),
    "sesrec": ((F.Task.FEED, F.Task.SEARCH), False, False, False, True),
    "two_tower": ((F.Task.FEED, F.Task.SEARCH), False, False, False, False),
    "uditsr": ((F.Task.FEED, F.Task.SEARCH), False, False, True, True),
    "unisar": ((F.Task.FEED, F.Task.SEARCH), True, True, True, True),
}
SMALL = ("model.embedding_dim=8", "model.hidden_dim=8", "model.ffn_dim=8", "model.num_heads=1")


def test_families_register_themselves():
    # Every module of jsr_tf/models that calls @register_model is found without a list (test
    # doubles may register more names in the same process).
    assert set(FAMILIES) <= set(factory.model_names())
    with open(os.path.join(ROOT, "jsr_tf", "models", "factory.py")) as f:
        source = f.read()
    assert not any(f"jsr_tf.models.{name}" in source for name in FAMILIES)


@pytest.mark.parametrize("name", FAMILIES)
def test_every_family_provides_the_interface(name, data_dir, vocab):
    model = preset_model(name, vocab, *SMALL)
    assert isinstance(model, base.JsrModel)
    cls = type(model)
    for required in ("score_prepared", "loss_prepared"):
        assert getattr(cls, required) is not getattr(base.JsrModel, required), required
    for entry in ("score", "compute_loss", "call", "fit", "prepare", "train_step"):  # the base's own
        assert getattr(cls, entry) is getattr(base.JsrModel, entry), entry
    tasks, neighbours, sides, caches, dynamic = EXPECTED[name]
    assert model.train_tasks == tasks
    assert (model.supports_neighbours, model.encodes_user_sides, model.caches_items) == (
        neighbours, sides, caches)
    assert model.dynamic_shapes is dynamic
    assert model.uses_neighbours is False
    assert model.data_shape == vocab.shape
    assert model.item_lookup is not None
    assert model.zero_is_id == bool(0 in vocab.item_ids or 0 in vocab.word_ids)
    model.use_fixed_shapes()
    assert model.dynamic_shapes is False
    cache = model.cache_item_vectors()
    assert (cache is not None) == caches and (model.item_cache is cache)
    model.configure_training(C.TrainConfig(l2_rows_in_batch=True))
    assert model.l2_rows_in_batch is True
    task = tasks[0]
    logits = model.score(read_batch(data_dir, task=task), task)
    assert logits.shape == (read_batch(data_dir, task=task)[F.FEED_ITEMS].shape[0], 4)


def test_the_base_requires_score_and_loss_on_prepared_batches():
    model = base.JsrModel()
    with pytest.raises(NotImplementedError, match="JsrModel should implement `score_prepared`"):
        model.score({}, F.Task.FEED)
    with pytest.raises(NotImplementedError, match="should implement `loss_prepared`"):
        model.compute_loss({})

    assert model.cache_item_vectors() is None and model.zero_is_id is True
    assert model.uses_neighbours is False and model.train_tasks == (F.Task.FEED, F.Task.SEARCH)
    assert isinstance(model.data_shape, F.DataShape)


@pytest.mark.parametrize("path", [
    "jsr_tf/training/trainer.py", "jsr_tf/models/factory.py", "export/serving.py",
    "export/exporter.py", "jsr_tf/neighbours/dense.py", "pipelines/dense_neighbours.py"])
def test_the_drivers_do_not_probe_models(path):
    """No ``getattr``/``hasattr`` on a model or ranker: the interface says what exists."""
    with open(os.path.join(ROOT, path)) as f:
        tree = ast.parse(f.read())
    probes = [node.lineno for node in ast.walk(tree)
              if isinstance(node, ast.Call) and getattr(node.func, "id", "") in (
                  "getattr", "hasattr") and node.args
              and any(word in ast.unparse(node.args[0]) for word in ("model", "ranker"))]
    assert not probes, f"{path} probes a model at lines {probes}"


@pytest.mark.parametrize("name", FAMILIES)
def test_prepare_runs_once_per_batch(name, data_dir, vocab):
    model = preset_model(name, vocab, *SMALL)
    calls = []
    prepare = model.prepare

    def counting(batch):
        calls.append(1)
        return prepare(batch)

    model.prepare = counting
    feed = read_batch(data_dir, "train", F.Task.FEED)
    search = read_batch(data_dir, "train", F.Task.SEARCH)
    model.score(feed, F.Task.FEED)
    assert len(calls) == 1
    model(search)
    assert len(calls) == 2
    inputs = {Inputs.FEED: feed, Inputs.SEARCH: search}
    inputs = {key: inputs[key] for key in inputs
              if (F.Task.FEED if key == Inputs.FEED else F.Task.SEARCH) in model.train_tasks}
    model.compute_loss(inputs)
    assert len(calls) == 2 + len(inputs)
