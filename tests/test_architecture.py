"""Imports run downward only: each module of the package imports only from its own layer or the
layers below it (docs/ARCHITECTURE.md, "Layers"). Read from the source with ``ast``, so an
import inside a function counts as much as one at the top; imports under ``if TYPE_CHECKING:`` (for
annotations only, never run) do not count."""

from __future__ import annotations

import ast
from pathlib import Path

import icd_bench

#: lowest first; a module may import from its own layer and from any layer listed before it
LAYERS: list[set[str]] = [
    {"errors", "registry", "types", "words", "paths", "config", "provenance", "imaging", "gallery", "store", "markdown",
     "training_utils"},                      # shared helpers with no knowledge of models or methods
    {"backbones", "diffusion", "attention"},  # the models and the math every method shares
    {"data"},                                # datasets and training data
    {"icd"},                                 # the iCD algorithm: training and inference
    {"toy"},                                 # the toy world (teacher, scenes, oracle) built on the above
    {"methods"},                             # editing-method plugins
    {"metrics"},
    {"runner", "interchange"},               # what writes run directories: the runner, the importer
    {"reports"},                             # tables, figures, statistics over finished runs
    {"studies"},                             # experiments composed of runs, scores and reports
    {"cli", "__main__"},
]
LEVEL = {name: k for k, layer in enumerate(LAYERS) for name in layer}
PACKAGE = Path(icd_bench.__file__).parent


def _unit(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def _type_checking_blocks(tree: ast.Module) -> set[int]:
    """ids of the nodes under ``if TYPE_CHECKING:`` (imports for annotations only: no run-time dependency)."""
    inside = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            inside |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return inside


def _imports(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    annotation_only = _type_checking_blocks(tree)
    for node in ast.walk(tree):
        if id(node) in annotation_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("icd_bench."):
            yield node.lineno, node.module
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("icd_bench."):
                    yield node.lineno, alias.name


def test_every_module_has_a_layer():
    units = {_unit(p) for p in PACKAGE.rglob("*.py")} - {"__init__"}
    assert units - LEVEL.keys() == set(), "add new modules to LAYERS (and to docs/ARCHITECTURE.md)"


def test_imports_run_downward_only():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        unit = _unit(path)
        if unit == "__init__":
            continue
        for line, module in _imports(path):
            target = module.split(".")[1]
            if target != unit and LEVEL[target] > LEVEL[unit]:
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {unit} imports {module}")
    assert upward == [], "imports that run upward:\n" + "\n".join(upward)


def test_the_core_math_never_reaches_up():
    """The rule the contributing notes state: diffusion/, attention/ and backbones/ never import
    icd/, methods/, toy/, metrics/ or the runner."""
    for unit in ("diffusion", "attention", "backbones"):
        for path in (PACKAGE / unit).rglob("*.py"):
            for _, module in _imports(path):
                assert module.split(".")[1] not in {"icd", "methods", "toy", "metrics", "runner"}, (path, module)
