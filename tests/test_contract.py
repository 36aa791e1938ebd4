"""The batch contract has one owner, ``jsr_tf/features.py``: no other module spells a shape.

Every field's name, dtype, padded shape (``DataShape.batch_fields``), parse spec (``parse_spec``),
padding (``pad_batch``) and the neighbour slots (``DataShape.slot_shapes``) live there; the
reader, the serving export, the models and the neighbour jobs derive theirs from it. These tests
read the source of every other module (``ast``) and fail, naming the place, when one of them
writes its own parse spec, pads to its own sizes, keeps a table of field shapes or refers to the
import-time caps that ``DataShape`` replaced.
"""

import ast
import os
from typing import Iterator, List, Tuple

import pytest

from jsr_tf import features as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OWNER = os.path.join("jsr_tf", "features.py")
PACKAGES = ("jsr_tf", "pipelines", "export", "benchmarks")
PARSE_SPECS = {"RaggedFeature", "FixedLenFeature", "VarLenFeature"}
# The module constants of the caps before they became ``DataShape`` fields.
REMOVED_CAPS = {"MAX_FEED_HISTORY", "MAX_SEARCH_HISTORY", "MAX_QUERY_WORDS", "MAX_CAPTION_WORDS",
                "MAX_SESSION_CLICKS", "NUM_TRAIN_NEGATIVES", "NUM_EVAL_NEGATIVES",
                "NUM_EVAL_CANDIDATES", "MAX_IMPRESSIONS", "MAX_NEIGHBOURS", "NBR_FEED_ITEMS",
                "NBR_SEARCH_SESSIONS", "NBR_QUERY_WORDS", "NBR_SESSION_CLICKS", "LIST_CAPS",
                "SESSION_LIST_CAPS", "NEIGHBOUR_SLOT_SIZES", "NEIGHBOUR_SLOT_SHAPES",
                "HISTORY_CAPS"}
# The names (in features.py) of the fields a batch carries.
FIELD_CONSTANTS = {name for name, value in vars(F).items()
                   if isinstance(value, str) and name.isupper()
                   and value in (set(F.ALL_FEATURES) | set(F.NEIGHBOUR_FEATURES)
                                 | set(F.EVAL_FEATURES) | {F.CANDIDATES, F.LABEL})}


def _sources(*packages: str) -> Iterator[Tuple[str, ast.Module]]:
    for package in packages:
        for directory, _, files in os.walk(os.path.join(ROOT, package)):
            for name in sorted(files):
                if name.endswith(".py"):
                    path = os.path.join(directory, name)
                    rel = os.path.relpath(path, ROOT)
                    with open(path, encoding="utf-8") as f:
                        yield rel, ast.parse(f.read(), rel)


def _where(rel: str, node: ast.AST) -> str:
    return f"{rel}:{node.lineno}"


def _field_key(node: ast.AST) -> bool:
    """``F.FEED_ITEMS``-like: a contract field's constant read from a module alias."""
    return isinstance(node, ast.Attribute) and node.attr in FIELD_CONSTANTS


def test_the_field_constants_are_found():
    assert {"FEED_ITEMS", "SEARCH_WORDS", "NBR_SRC_WORDS", "CANDIDATES", "IMPRESSIONS"} <= (
        FIELD_CONSTANTS)


@pytest.mark.parametrize("check", ["parse_spec", "padding", "shape_table"])
def test_no_other_module_spells_the_contract(check):
    found: List[str] = []
    for rel, tree in _sources(*PACKAGES):
        if rel == OWNER:
            continue
        for node in ast.walk(tree):
            if check == "parse_spec" and isinstance(node, ast.Attribute) and (
                    node.attr in PARSE_SPECS):
                found.append(f"{_where(rel, node)} builds a parse spec ({node.attr}): use "
                             "features.parse_spec")
            elif check == "padding" and isinstance(node, ast.Call) and isinstance(
                    node.func, ast.Attribute) and node.func.attr == "to_tensor" and any(
                    k.arg == "shape" for k in node.keywords):
                found.append(f"{_where(rel, node)} pads to its own shape: use "
                             "features.pad_batch or DataShape.batch_fields")
            elif check == "shape_table" and isinstance(node, ast.Dict):
                shaped = [k for k, v in zip(node.keys, node.values)
                          if k is not None and _field_key(k) and isinstance(v, ast.Tuple)]
                if len(shaped) >= 2:
                    found.append(f"{_where(rel, node)} keeps a table of field shapes: use "
                                 "DataShape.batch_fields / slot_shapes")
    assert not found, "\n".join(found)


def test_the_removed_caps_are_gone_everywhere():
    found = [f"{_where(rel, node)}: {node.attr if isinstance(node, ast.Attribute) else node.id}"
             for rel, tree in _sources(*PACKAGES, "tests")
             for node in ast.walk(tree)
             if (isinstance(node, ast.Attribute) and node.attr in REMOVED_CAPS)
             or (isinstance(node, ast.Name) and node.id in REMOVED_CAPS)]
    assert not found, ("the caps are DataShape fields (features.py); read them from the data's "
                       "shape:\n" + "\n".join(found))
    assert not REMOVED_CAPS & set(vars(F))


def test_production_modules_build_no_shape_of_their_own():
    # A DataShape with other sizes comes from the data (DataShape.read, the PreprocessConfig);
    # only the default (reference) shape may be built elsewhere, e.g. as a parameter default.
    found = [_where(rel, node) for rel, tree in _sources("jsr_tf", "pipelines", "export")
             if rel != OWNER for node in ast.walk(tree)
             if isinstance(node, ast.Call) and (
                 getattr(node.func, "attr", None) == "DataShape"
                 or getattr(node.func, "id", None) == "DataShape")
             and (node.args or node.keywords)]
    assert not found, "\n".join(found)
