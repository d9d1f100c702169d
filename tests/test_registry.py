import subprocess
import sys
import textwrap

import pytest

from icd_bench.errors import UnknownNameError
from icd_bench.registry import METHODS, Registry


def test_register_and_get():
    reg = Registry("widget", group=None)

    @reg.register("alpha", aliases=("a",))
    class Alpha:
        """The first widget."""

    assert reg.get("alpha") is Alpha
    assert reg.get("a") is Alpha
    assert reg.names() == ["alpha"]
    assert reg.entry("alpha").summary == "The first widget."
    assert "alpha" in reg and "beta" not in reg


def test_a_registered_class_takes_its_name_from_the_registry():
    reg = Registry("widget", group=None)

    @reg.register("beta")
    class Beta:
        pass

    assert Beta.name == "beta"
    with pytest.raises(ValueError, match="says its name is 'gamma'"):
        @reg.register("delta")
        class Gamma:
            name = "gamma"
    assert [m.name for m in (METHODS.get("ddim-p2p"), METHODS.get("npi"))] == ["ddim-p2p", "npi"]


def test_unknown_name_lists_close_matches():
    reg = Registry("widget", group=None)
    reg.add("null-text", object())
    reg.add("negative-prompt", object())
    with pytest.raises(UnknownNameError) as err:
        reg.get("nul-text")
    msg = str(err.value)
    assert "unknown widget 'nul-text'" in msg
    assert "Did you mean 'null-text'" in msg
    assert "negative-prompt" in msg  # the full listing


def test_double_registration_is_refused():
    reg = Registry("widget", group=None)
    reg.add("x", object())
    with pytest.raises(ValueError, match="registered twice"):
        reg.add("x", object())


def test_builtins_are_registered():
    assert "ddim" in METHODS.names()


def _fake_distribution(root, group: str, name: str) -> None:
    """An installed distribution with an entry point, as pip would leave it (dist-info on sys.path)."""
    (root / "my_plugin.py").write_text(textwrap.dedent('''
        from dataclasses import dataclass
        from icd_bench.methods.base import EditingMethod

        @dataclass
        class P:
            strength: float = 0.5

        class MyMethod(EditingMethod):
            """A third-party editing method."""
            name = "my-method"
            Params = P
    '''))
    dist = root / "my_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[{group}]\n{name} = my_plugin:MyMethod\n")


def test_entry_point_plugin_is_found(tmp_path, monkeypatch):
    _fake_distribution(tmp_path, "icd_bench.test_methods", "my-method")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry("method", group="icd_bench.test_methods")
    entry = reg.entry("my-method")
    assert entry.obj.__name__ == "MyMethod"
    assert entry.origin.startswith("entry point (my-plugin")


def test_entry_point_plugin_in_cli_listing(tmp_path):
    _fake_distribution(tmp_path, "icd_bench.methods", "my-method")
    env = {"PYTHONPATH": str(tmp_path), "HF_HUB_OFFLINE": "1", "COLUMNS": "200", "PATH": ""}
    res = subprocess.run([sys.executable, "-m", "icd_bench", "list", "methods"], capture_output=True,
                         text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "my-method" in res.stdout
    assert "A third-party editing method." in res.stdout
    assert "ddim" in res.stdout
