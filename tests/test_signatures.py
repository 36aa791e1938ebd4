"""The serving signatures' registry (``export/signatures.py``) against a golden table.

``GOLDEN`` is the SavedModel signatures as exported before the registry existed: every input's
name, dtype and shape in ``input_signature`` order, every output's name, dtype and shape, and
when the signature is exported. The fast tests hold the registry, the concrete functions it
builds and the README's signature table to it; ``assert_matches_golden`` is also called on the
exported SavedModels of ``tests/test_export.py`` and ``tests/test_export_neighbours.py``.
"""

import os
import re
from typing import Mapping, Optional

import numpy as np
import pytest

import jsr_tf  # noqa: F401
import tensorflow as tf

from jsr_tf.export import signatures as SG

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_N = None  # a free axis
K = "k"    # the retrieve head's top_k, fixed at export

_HISTORY = [("user_id", "int64", [_N]), ("feed_items", "int64", [_N, _N]),
            ("feed_ts", "int64", [_N, _N]), ("search_ts", "int64", [_N, _N]),
            ("search_words", "int64", [_N, _N, _N]), ("search_clicks", "int64", [_N, _N, _N])]
_NBR = [("nbr_side", "int64", [_N, _N]), ("nbr_sim", "float32", [_N, _N]),
        ("nbr_rec_items", "int64", [_N, _N, _N]), ("nbr_src_words", "int64", [_N, _N, _N, _N]),
        ("nbr_src_clicks", "int64", [_N, _N, _N, _N])]
_QUERY = [("query_words", "int64", [_N, _N])]
_CANDIDATES = [("candidates", "int64", [_N, _N])]
_SCORES = {"scores": ("float32", [_N, _N])}

# name -> (inputs in order, outputs, exported when)
GOLDEN = {
    "feed": (_HISTORY + _CANDIDATES, _SCORES, "always"),
    "search": (_HISTORY + _QUERY + _CANDIDATES, _SCORES, "always"),
    "serving_default": ([("examples", "string", [_N])],
                        {"feed_scores": ("float32", [_N, _N]),
                         "search_scores": ("float32", [_N, _N])}, "always"),
    "feed_nbr": (_HISTORY + _NBR + _CANDIDATES, _SCORES, "neighbours"),
    "search_nbr": (_HISTORY + _NBR + _QUERY + _CANDIDATES, _SCORES, "neighbours"),
    "retrieve": (_HISTORY + _QUERY + [("exclude_history", "bool", [_N])],
                 {"item_ids": ("int64", [_N, K]), "scores": ("float32", [_N, K])}, "retriever"),
}
_EXPORTED = {"always": SG.Exported.ALWAYS, "neighbours": SG.Exported.NEIGHBOURS,
             "retriever": SG.Exported.RETRIEVER}


def _spec_row(name: str, spec: tf.TensorSpec) -> tuple:
    return name, spec.dtype.name, spec.shape.as_list()


def _golden_outputs(name: str, k: Optional[int]) -> dict:
    return {out: (dtype, [k if axis == K else axis for axis in shape])
            for out, (dtype, shape) in GOLDEN[name][1].items()}


def assert_matches_golden(functions: Mapping[str, tf.types.experimental.ConcreteFunction],
                          names, k: Optional[int] = None) -> None:
    """Asserts that ``functions`` (``ServingModule.signatures()``, or ``tf.saved_model.load``'s
    ``signatures``) are exactly the signatures ``names`` of ``GOLDEN``.

    In-process functions take their inputs positionally, in ``GOLDEN``'s order; a loaded
    SavedModel's take them by keyword (a ``signature_def`` has no order), so the order is
    checked for the former and names, dtypes and shapes for both. ``k``: retrieve's top_k.
    """
    assert sorted(functions) == sorted(names)
    for name in names:
        args, kwargs = functions[name].structured_input_signature
        want = [tuple(row) for row in GOLDEN[name][0]]
        if args:
            assert not kwargs, name
            assert [_spec_row(spec.name, spec) for spec in args] == want, name
        else:
            assert sorted(_spec_row(key, spec) for key, spec in kwargs.items()) == sorted(want)
        outputs = {key: (spec.dtype.name, spec.shape.as_list())
                   for key, spec in functions[name].structured_outputs.items()}
        assert outputs == _golden_outputs(name, k), name


def test_the_registry_is_the_golden_table():
    assert [sig.name for sig in SG.REGISTRY] == list(GOLDEN)
    assert set(SG.BY_NAME) == set(GOLDEN)
    for sig in SG.REGISTRY:
        inputs, outputs, exported = GOLDEN[sig.name]
        assert [_spec_row(name, spec) for name, spec in sig.inputs.items()] == \
            [tuple(row) for row in inputs], sig.name
        assert all(name == spec.name for name, spec in sig.inputs.items()), sig.name
        assert sig.outputs == tuple(outputs), sig.name
        assert sig.exported is _EXPORTED[exported], sig.name


@pytest.mark.parametrize("neighbours", [False, True])
@pytest.mark.parametrize("retriever", [False, True])
def test_which_signatures_an_export_has(neighbours, retriever):
    wanted = {"always"} | ({"neighbours"} if neighbours else set()) | (
        {"retriever"} if retriever else set())
    got = [sig.name for sig in SG.exported_signatures(neighbours, retriever)]
    assert got == [name for name, (_, _, when) in GOLDEN.items() if when in wanted]


class _Module:
    """Answers every signature with outputs of the golden dtypes and shapes (top_k = 3)."""

    def __init__(self):
        self.calls = []

    def score(self, inputs, task):
        self.calls.append(("score", tuple(inputs), task))
        return tf.cast(inputs[SG.CANDIDATES], tf.float32)

    def score_examples(self, examples):
        self.calls.append(("score_examples", examples.dtype))
        rows = tf.shape(examples)[0]
        scores = tf.zeros([rows, rows])  # [B, N], N free
        return {SG.FEED_SCORES: scores, SG.SEARCH_SCORES: scores + 1.0}

    def retrieve(self, inputs):
        self.calls.append(("retrieve", tuple(inputs)))
        rows = tf.shape(inputs[SG.EXCLUDE_HISTORY])[0]
        return {SG.ITEM_IDS: tf.zeros([rows, 3], tf.int64), SG.SCORES: tf.zeros([rows, 3])}


def test_concrete_functions_keep_the_golden_inputs_and_outputs():
    module = _Module()
    functions = {sig.name: SG.concrete_function(sig, module) for sig in SG.REGISTRY}
    assert_matches_golden(functions, list(GOLDEN), k=3)
    # Each signature reaches its answer with its inputs by name, in order.
    from jsr_tf import features as F

    tasks = {"feed": F.Task.FEED, "search": F.Task.SEARCH, "feed_nbr": F.Task.FEED,
             "search_nbr": F.Task.SEARCH}
    assert [call for call in module.calls if call[0] == "score"] == [
        ("score", tuple(SG.BY_NAME[name].inputs), task) for name, task in tasks.items()]
    assert ("score_examples", tf.string) in module.calls
    assert ("retrieve", tuple(SG.BY_NAME["retrieve"].inputs)) in module.calls
    feed = functions["feed"](**{name: tf.constant(np.ones([2] + [1] * (len(shape) - 1)),
                                                  tf.as_dtype(dtype))
                                for name, dtype, shape in GOLDEN["feed"][0]})
    np.testing.assert_array_equal(feed[SG.SCORES].numpy(), [[1.0], [1.0]])


def test_an_answer_with_other_outputs_is_refused():
    broken = SG.Signature("feed", SG.BY_NAME["feed"].inputs, ("logits",),
                          SG.BY_NAME["feed"].answer, SG.Exported.ALWAYS, SG.Sample(None))
    with pytest.raises(ValueError, match="should return \\['logits'\\]"):
        SG.concrete_function(broken, _Module())


def _readme_rows() -> dict:
    """The README's signature table: tuple of signature names → (inputs cell, outputs cell)."""
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    serving = text.split("## Serve with TF Serving", 1)[1].split("\n## ", 1)[0]
    table = serving.split("| signature | inputs | outputs |", 1)[1].split("\n\n", 1)[0]
    rows = {}
    for line in table.strip().splitlines()[1:]:
        names, inputs, outputs = [cell.strip() for cell in line.strip("|").split(" | ")]
        rows[tuple(re.findall(r"`(\w+)`", names))] = (inputs, outputs)
    return rows


def _shaped(cell: str) -> list:
    """The names the cell gives with a shape: ``name [..]`` in backticks, in order."""
    return re.findall(r"`(\w+) \[", cell)


def test_the_readme_signature_table_is_the_registry():
    rows = _readme_rows()
    assert sorted(name for names in rows for name in names) == sorted(SG.BY_NAME)
    for names, (inputs_cell, outputs_cell) in rows.items():
        # "the `feed` / `search` inputs": a cell may name other signatures' inputs.
        referred = [SG.BY_NAME[name] for name in re.findall(r"`(\w+)`", inputs_cell)
                    if name in SG.BY_NAME]
        documented = set(_shaped(inputs_cell)).union(*(sig.inputs for sig in referred))
        row_inputs = set().union(*(SG.BY_NAME[name].inputs for name in names))
        assert set(_shaped(inputs_cell)) <= row_inputs, names
        for name in names:
            sig = SG.BY_NAME[name]
            assert set(sig.inputs) <= documented, (name, set(sig.inputs) - documented)
            if not referred:  # a row that lists all its inputs lists them in order
                assert _shaped(inputs_cell) == list(sig.inputs), name
            assert _shaped(outputs_cell) == list(sig.outputs), name
