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
    {"errors", "registry", "types", "words", "paths", "config", "provenance", "imaging", "gallery", "store",
     "markdown", "training_utils"},          # shared helpers with no knowledge of models or methods
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


def _module_name(path: Path) -> str:
    parts = ("icd_bench", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports_of(source: str, module: str, is_package: bool = False):
    """(line, absolute module) of every ``icd_bench`` import in ``source``, the source of ``module``:
    absolute ones, relative ones (``from ..methods import x``) resolved against its package, and
    ``from icd_bench import methods`` as the submodule it names."""
    tree = ast.parse(source)
    annotation_only = _type_checking_blocks(tree)
    package = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(tree):
        if id(node) in annotation_only:
            continue
        if isinstance(node, ast.ImportFrom):
            base = package[:len(package) - (node.level - 1)] if node.level else []
            name = ".".join([*base, *([node.module] if node.module else [])])
            if name == "icd_bench":  # `from icd_bench import methods` / `from .. import methods`
                for alias in node.names:
                    if not alias.name.startswith("__"):  # not the package's own attributes (__version__)
                        yield node.lineno, f"icd_bench.{alias.name}"
            elif name.startswith("icd_bench."):
                yield node.lineno, name
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("icd_bench."):
                    yield node.lineno, alias.name


def _imports(path: Path):
    return _imports_of(path.read_text(encoding="utf-8"), _module_name(path), path.name == "__init__.py")


def test_relative_imports_are_read_as_the_modules_they_name():
    src = "from ..methods import ddim\nfrom . import loop\nfrom .. import runner\nfrom icd_bench import toy\n"
    assert list(_imports_of(src, "icd_bench.diffusion.ddim")) == [
        (1, "icd_bench.methods"), (2, "icd_bench.diffusion"), (3, "icd_bench.runner"), (4, "icd_bench.toy")]
    assert list(_imports_of("from .ddim import x\n", "icd_bench.diffusion", is_package=True)) == [
        (1, "icd_bench.diffusion.ddim")]


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
                assert module.split(".")[1] not in {"icd", "methods", "toy", "metrics", "runner"}, \
                    (path, module)


def test_tests_never_change_the_machine():
    """No test installs anything (apt, pip): `.ci/run` or a documented step does, a test skips without it."""
    tests = Path(__file__).parent
    found = []
    for path in sorted(tests.rglob("*.py")):
        if path == Path(__file__):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.List | ast.Tuple) and node.elts
                    and isinstance(node.elts[0], ast.Constant)):
                head = node.elts[0].value
                rest = [e.value for e in node.elts[1:3] if isinstance(e, ast.Constant)]
                if head in ("apt-get", "apt", "dpkg") or (head in ("pip", "pip3") and "install" in rest):
                    found.append(f"{path.relative_to(tests)}:{node.lineno}: "
                                 f"{head} {' '.join(map(str, rest))}")
    assert found == [], "tests that change the machine:\n" + "\n".join(found)
