from dataclasses import dataclass
from typing import Literal

import pytest

from icd_bench.config import build_params, coerce, list_presets, parse_overrides, resolve_method
from icd_bench.errors import ConfigError, UnknownNameError
from icd_bench.methods.ddim import DDIMParams


def test_method_name_gives_default_params():
    spec = resolve_method("ddim")
    assert spec.method == "ddim" and spec.preset is None and spec.backbone is None
    assert spec.params == DDIMParams()


def test_preset_resolves_with_backbone_and_params():
    presets = list_presets()
    assert "ddim-sd15-w8-dcfg" in presets
    spec = resolve_method("ddim-sd15-w8-dcfg")
    assert spec.method == "ddim" and spec.preset == "ddim-sd15-w8-dcfg" and spec.backbone == "sd15"
    assert spec.params.guidance_scale == 8.0 and spec.params.tau == 0.7


def test_overrides_are_typed():
    spec = resolve_method("ddim-sd15-w8", ["num_inference_steps=10", "tau=0.5", "guidance_scale=3"])
    assert spec.params.num_inference_steps == 10
    assert spec.params.tau == 0.5
    assert spec.params.guidance_scale == 3.0 and isinstance(spec.params.guidance_scale, float)
    assert spec.params.inversion_guidance_scale == 1.0  # untouched preset value


def test_unknown_override_key_names_valid_fields():
    with pytest.raises(ConfigError) as err:
        resolve_method("ddim", ["num_steps=10"])
    msg = str(err.value)
    assert "num_steps" in msg and "num_inference_steps (int)" in msg and "tau (float)" in msg


@pytest.mark.parametrize("override, fragment", [
    ("num_inference_steps=ten", "expected an integer"),
    ("num_inference_steps=2.5", "expected an integer"),
    ("tau=high", "expected a number"),
    ("tau=2.0", "tau must be in [0, 1]"),
    ("novalue", "key=value"),
])
def test_bad_override_values(override, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        resolve_method("ddim", [override])


def test_unknown_method_suggests_presets_and_methods():
    with pytest.raises(UnknownNameError) as err:
        resolve_method("ddim-sd15-w9")
    assert "ddim-sd15-w8" in str(err.value)


@dataclass
class _Fancy:
    boundaries: tuple[int, ...] = (259, 519, 779, 999)
    mode: Literal["replace", "refine"] = "refine"
    blend: str | None = None
    flag: bool = False


def test_coercion_of_tuples_literals_optionals_bools():
    vals = parse_overrides(["boundaries=19,259,519", "mode=replace", "blend=none", "flag=true"])
    p = build_params(_Fancy, vals, where="--set")
    assert p.boundaries == (19, 259, 519) and p.mode == "replace" and p.blend is None and p.flag is True
    p = build_params(_Fancy, parse_overrides(["boundaries=[1, 2]", "blend=cat"]), where="--set")
    assert p.boundaries == (1, 2) and p.blend == "cat"
    with pytest.raises(ConfigError, match="one of 'replace', 'refine'"):
        build_params(_Fancy, parse_overrides(["mode=swap"]), where="--set")
    with pytest.raises(ConfigError, match="true or false"):
        coerce("maybe", bool, key="flag")


def test_bad_preset_file_is_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / "broken.toml").write_text('method = "ddim"\nstrength = 3\n')
    monkeypatch.setenv("ICD_BENCH_PRESET_PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="unknown key"):
        list_presets()
    (tmp_path / "broken.toml").write_text('method = "ddim"\n[params]\nsteps = 3\n')
    with pytest.raises(ConfigError, match="unknown parameter"):
        resolve_method("broken")
