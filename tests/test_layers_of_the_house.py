"""The layers of the house: no module imports from a layer above its own (README, "Development").

Every module of ``jsr_tf/``, ``pipelines/``, ``export/`` and ``benchmarks/`` is read with ``ast``
(``pipelines/`` and ``export/`` are the packages ``jsr_tf.pipelines`` and ``jsr_tf.export``)
(no import runs); every ``import`` / ``from … import`` statement counts, deferred ones inside
functions included. A module may import modules of its own layer and of the layers below it; two
layers on the same level (peers) may not import each other.
"""

from __future__ import annotations

import ast
import os
from typing import Dict, Iterator, List, NamedTuple, Optional, Set, Tuple

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOP_LEVEL = ("jsr_tf", "pipelines", "export", "benchmarks")  # the folders read
# Folder -> the package setup.py installs it as.
MAPPED = {"pipelines": "jsr_tf.pipelines", "export": "jsr_tf.export"}

# Bottom first; each level is a tuple of peer layers ``(name, members)``. A member names a module
# and everything under it, except that ``jsr_tf`` names only the package's ``__init__``.
LEVELS: Tuple[Tuple[Tuple[str, Tuple[str, ...]], ...], ...] = (
    (("base", ("jsr_tf", "jsr_tf.keys", "jsr_tf.filenames", "jsr_tf.features", "jsr_tf.config")),),
    # The rank-metric formulas (numpy only), shared by the evaluator and the simulator's oracle;
    # ``jsr_tf.evaluation``'s ``__init__`` re-exports them, so it belongs here too.
    (("metrics", ("jsr_tf.evaluation.metrics",)),),
    # The importer and the Beam pipeline's per-user code, and the simulator: they meet only through
    # the raw CSVs and the data dir's files, never through an import.
    (("data", ("jsr_tf.data",)), ("simulator", ("jsr_tf.simulator",))),
    (("layers", ("jsr_tf.layers",)),),
    (("models", ("jsr_tf.models",)),),
    (("neighbours", ("jsr_tf.neighbours",)),),
    (("evaluation", ("jsr_tf.evaluation",)),),
    (("training", ("jsr_tf.training",)),),
    (("experiments", ("jsr_tf.experiments",)),),
    (("cli", ("jsr_tf.cli",)),),
    (("pipelines", ("jsr_tf.pipelines",)), ("export", ("jsr_tf.export",))),
    (("benchmarks", ("benchmarks",)),),
)
EXACT = {"jsr_tf"}  # members that do not take the modules under them
_PACKAGE_INITS = {"jsr_tf.evaluation": "metrics"}  # package __init__ -> layer (not its package's)

# Upward imports that exist today, each with its reason; the test fails when one disappears, so
# that this list only shrinks.
KNOWN_UPWARD = {
    ("jsr_tf.models.factory", "jsr_tf.evaluation.report"):
        "deferred import: the run fingerprint hashes the config with report.config_hash",
}

# The rules above, spelled out for the pairs that matter most (they follow from LEVELS).
CORE = "jsr_tf (but pipelines and export)"  # the library itself
FORBIDDEN = (
    ("jsr_tf.evaluation", "jsr_tf.training"),
    ("jsr_tf.evaluation", "jsr_tf.experiments"),
    ("jsr_tf.training", "jsr_tf.experiments"),
    ("jsr_tf.layers", "jsr_tf.models"),
    ("jsr_tf.data", "jsr_tf.simulator"),
    ("jsr_tf.simulator", "jsr_tf.data"),
    ("jsr_tf.simulator", "jsr_tf.models"),
    ("jsr_tf.simulator", "jsr_tf.training"),
    (CORE, "jsr_tf.pipelines"),
    (CORE, "jsr_tf.export"),
    (CORE, "benchmarks"),
    ("jsr_tf.pipelines", "jsr_tf.export"),
    ("jsr_tf.export", "jsr_tf.pipelines"),
)


class Import(NamedTuple):
    importer: str  # module name
    path: str  # file, relative to the repository root
    line: int
    target: str  # the imported module (a package's ``__init__`` for a name imported from it)


def _module_name(relpath: str) -> str:
    parts = relpath[:-len(".py")].split(os.sep)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    parts[0] = MAPPED.get(parts[0], parts[0])
    return ".".join(parts)


def _modules() -> Dict[str, str]:
    """``{module name: path relative to the root}`` of every module of the checked folders."""
    out = {}
    for top in TOP_LEVEL:
        for folder, dirs, files in os.walk(os.path.join(ROOT, top)):
            dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__pycache__")))
            for name in sorted(files):
                if name.endswith(".py"):
                    rel = os.path.relpath(os.path.join(folder, name), ROOT)
                    out[_module_name(rel)] = rel
    return out


MODULES = _modules()


def _resolve(module: str, name: Optional[str]) -> str:
    """``from module import name``: the submodule if ``name`` is one, else ``module`` itself."""
    if name and f"{module}.{name}" in MODULES:
        return f"{module}.{name}"
    return module


def _imports() -> Iterator[Import]:
    for module, rel in sorted(MODULES.items()):
        with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
            tree = ast.parse(f.read(), filename=rel)
        is_package = rel.endswith("__init__.py")
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative import
                    package = module.split(".")
                    package = package if is_package else package[:-1]
                    package = package[:len(package) - node.level + 1]
                    base = ".".join(package + ([base] if base else []))
                targets = [_resolve(base, alias.name) for alias in node.names]
            else:
                continue
            for target in targets:
                if target.split(".")[0] in TOP_LEVEL:
                    yield Import(module, rel, node.lineno, target)


IMPORTS = sorted(set(_imports()))


def _layer(module: str) -> Optional[Tuple[int, str]]:
    """``(level, layer name)`` of a module: its longest matching member."""
    if module in _PACKAGE_INITS:
        name = _PACKAGE_INITS[module]
        return next((i, n) for i, level in enumerate(LEVELS) for n, _ in level if n == name)
    best = None
    for index, level in enumerate(LEVELS):
        for name, members in level:
            for member in members:
                matches = module == member or (member not in EXACT
                                               and module.startswith(member + "."))
                if matches and (best is None or len(member) > best[0]):
                    best = (len(member), index, name)
    return None if best is None else best[1:]


def _under(module: str, prefix: str) -> bool:
    if prefix == CORE:
        return _under(module, "jsr_tf") and not any(_under(module, p) for p in MAPPED.values())
    return module == prefix or module.startswith(prefix + ".")


def _fmt(imp: Import) -> str:
    return f"{imp.path}:{imp.line}: {imp.importer} imports {imp.target}"


def test_the_scan_sees_the_imports():
    """Guards the test itself: a scan that found nothing would pass every rule."""
    assert len(MODULES) > 100
    pairs = {(imp.importer, imp.target) for imp in IMPORTS}
    assert ("jsr_tf.training.trainer", "jsr_tf.evaluation.evaluator") in pairs  # deferred import
    assert ("jsr_tf.experiments.compare", "jsr_tf.training.trainer") in pairs
    assert ("jsr_tf.models.factory", "jsr_tf.filenames") in pairs  # ``from jsr_tf.filenames import``
    assert ("jsr_tf.evaluation.evaluator", "jsr_tf.simulator.oracle") in pairs


def test_every_module_has_a_layer():
    missing = sorted(m for m in MODULES if _layer(m) is None)
    assert not missing, ("Modules in no layer of LEVELS (add them to the right layer, and to "
                         "README.md's Development section):\n  " + "\n  ".join(missing))


def test_no_module_imports_from_a_layer_above_its_own():
    offending: List[str] = []
    seen_known: Set[Tuple[str, str]] = set()
    for imp in IMPORTS:
        source, target = _layer(imp.importer), _layer(imp.target)
        if source is None or target is None or source[1] == target[1]:
            continue
        if target[0] < source[0]:
            continue
        if (imp.importer, imp.target) in KNOWN_UPWARD:
            seen_known.add((imp.importer, imp.target))
            continue
        where = "a peer layer" if target[0] == source[0] else "a layer above"
        offending.append(f"{_fmt(imp)}  ({source[1]} -> {target[1]}: {where})")
    assert not offending, ("Imports against the layers of the house (README.md, Development):\n  "
                           + "\n  ".join(offending))
    stale = sorted(set(KNOWN_UPWARD) - seen_known)
    assert not stale, f"KNOWN_UPWARD entries no longer needed (remove them): {stale}"


@pytest.mark.parametrize("importer,imported", FORBIDDEN, ids=[f"{a}-not-{b}" for a, b in FORBIDDEN])
def test_forbidden_directions(importer, imported):
    offending = [_fmt(imp) for imp in IMPORTS
                 if _under(imp.importer, importer) and _under(imp.target, imported)
                 and (imp.importer, imp.target) not in KNOWN_UPWARD]
    assert not offending, (f"{importer} may not import {imported}:\n  " + "\n  ".join(offending))


def test_filenames_is_a_leaf():
    """``jsr_tf.filenames`` is read by every layer, so it imports nothing from the package."""
    offending = [_fmt(imp) for imp in IMPORTS if imp.importer == "jsr_tf.filenames"]
    assert not offending, "\n".join(offending)


def test_moved_modules_left_no_copy_at_their_old_paths():
    old = ("jsr_tf/data/simulator", "jsr_tf/data/oracle.py", "jsr_tf/evaluation/compare.py")
    assert not [p for p in old if os.path.exists(os.path.join(ROOT, p))]


def test_pipelines_and_export_are_imported_as_jsr_tf_packages():
    """``setup.py`` installs the folders as ``jsr_tf.pipelines`` and ``jsr_tf.export``: nothing
    imports top-level packages named ``pipelines`` or ``export`` (they are not installed)."""
    offending = [_fmt(imp) for imp in IMPORTS if imp.target.split(".")[0] in MAPPED]
    assert not offending, "\n".join(offending)
    assert "jsr_tf.pipelines.preprocess" in MODULES and "jsr_tf.export.serving" in MODULES
