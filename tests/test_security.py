"""What the package's own source may not do with content it reads: no eval / exec of strings, no
unpickling outside ``torch.load(weights_only=True)``, no YAML (presets and recipes are TOML, read by
the standard library), no shell commands. A static scan of every module, so a change that adds one
fails here; the behaviour on hostile files is tested in tests/test_bad_inputs.py (a pickle payload
is refused) and tests/test_html_gallery.py (a prompt holding <script> renders as text)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "icd_bench"
MODULES = sorted(PACKAGE.rglob("*.py"))

FORBIDDEN_NAMES = {"eval", "exec", "__import__"}  # builtins that run strings as code
FORBIDDEN_ATTRS = {("pickle", "load"), ("pickle", "loads"), ("pickle", "Unpickler"), ("marshal", "loads"),
                   ("yaml", "load"), ("yaml", "unsafe_load"), ("dill", "load"),
                   ("os", "system"), ("os", "popen")}


def violations(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
            found += [f"line {node.lineno}: imports {n}"
                      for n in names if n and n.split(".")[0] in {"pickle", "yaml", "dill", "marshal"}]
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in FORBIDDEN_NAMES:
            found.append(f"line {node.lineno}: {func.id}()")
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            pair = (func.value.id, func.attr)
            if pair in FORBIDDEN_ATTRS:
                found.append(f"line {node.lineno}: {pair[0]}.{pair[1]}()")
            if pair == ("torch", "load") and not any(
                    k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                    for k in node.keywords):
                found.append(f"line {node.lineno}: torch.load without weights_only=True")
        if any(k.arg == "shell" and isinstance(k.value, ast.Constant) and k.value.value is True
               for k in node.keywords):
            found.append(f"line {node.lineno}: a call with shell=True")
    return found


def test_the_scan_catches_each_pattern():
    hostile = ("import pickle\nimport yaml\neval(s)\nexec(s)\nx = torch.load(p)\n"
               "y = torch.load(p, weights_only=False)\n"
               "yaml.load(f)\nos.system(c)\nsubprocess.run(c, shell=True)\n")
    assert len(violations(hostile)) == 9
    assert violations("torch.load(p, map_location='cpu', weights_only=True)\n"
                      "ast.literal_eval(s)\nm.eval()\n") == []


def test_the_scan_covers_the_whole_package():
    assert (len(MODULES) > 50 and PACKAGE / "cli" / "__init__.py" in MODULES
            and PACKAGE / "icd" / "model.py" in MODULES)


def test_no_code_execution_from_content():
    found = {str(m.relative_to(PACKAGE)): v
             for m in MODULES if (v := violations(m.read_text(encoding="utf-8")))}
    assert found == {}
