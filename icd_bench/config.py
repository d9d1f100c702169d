"""Presets (``methods/*.toml``) and ``--set key=value`` overrides of a method's parameters.

A preset is a TOML file naming a method, a default backbone and parameter values::

    method = "ddim"
    backbone = "sd15"
    description = "DDIM 50-step inversion, unguided decoding (Table 2, first row)"
    [params]
    num_inference_steps = 50
    guidance_scale = 1.0

A preset that claims a published setting with published weights names them: ``requires`` (the
parameters that must point at the weights) and ``weights`` (where to download them); a run of it
without them stops before any work (`MethodSpec.check_weights`), unless ``--set untrained=true``.

``--method`` takes a preset name (the file stem) or a method name (its default parameters).
Overrides are typed by the method's parameter dataclass: a wrong key or a value of the wrong type
is a `ConfigError` naming the valid fields.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from icd_bench.errors import ConfigError, UnknownNameError
from icd_bench.registry import METHODS

PRESET_PATH_ENV = "ICD_BENCH_PRESET_PATH"
PRESET_KEYS = {"method", "backbone", "description", "params", "source", "requires", "weights"}


@dataclass(frozen=True)
class Preset:
    name: str
    method: str
    params: dict[str, Any] = field(default_factory=dict)
    backbone: str | None = None
    description: str = ""
    source: str = ""  # where the numbers come from (paper table, reference script)
    path: Path | None = None
    requires: tuple[str, ...] = ()  # parameters that must name the published weights
    weights: str = ""  # where to download them


@dataclass(frozen=True)
class MethodSpec:
    """A method resolved from a preset or a name, with its typed parameters."""

    method: str
    params: Any  # an instance of the method's Params dataclass
    preset: str | None = None
    backbone: str | None = None  # the preset's default backbone
    requires: tuple[str, ...] = ()
    weights: str = ""

    def params_dict(self) -> dict[str, Any]:
        return params_to_dict(self.params)

    def check_weights(self) -> None:
        """A preset of a published setting without its weights is refused (``--set untrained=true``
        runs it anyway, with whatever the method does without them)."""
        missing = [k for k in self.requires if not getattr(self.params, k, None)]
        if missing and not getattr(self.params, "untrained", False):
            sets = " ".join(f"--set {k}=PATH" for k in missing)
            raise ConfigError(f"preset {self.preset!r} needs its published weights "
                              f"({', '.join(missing)} not set): "
                              f"{self.weights or 'download them'}; pass {sets} "
                              f"(or --set untrained=true to run without them: not the published method)")


def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


def preset_dirs() -> list[Path]:
    """Where presets are looked for, first match wins: $ICD_BENCH_PRESET_PATH (os.pathsep-
    separated), ./methods, then the ``methods/`` folder of the icd-bench source tree."""
    dirs = [Path(p) for p in os.environ.get(PRESET_PATH_ENV, "").split(os.pathsep) if p]
    dirs += [Path.cwd() / "methods", repo_root() / "methods"]
    seen, out = set(), []
    for d in dirs:
        key = d.resolve()
        if key not in seen and d.is_dir():
            seen.add(key)
            out.append(d)
    return out


def load_preset(path: Path) -> Preset:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read preset {path}: {exc}") from None
    unknown = set(data) - PRESET_KEYS
    if unknown:
        raise ConfigError(f"preset {path}: unknown key(s) {', '.join(sorted(unknown))}; "
                          f"allowed: {', '.join(sorted(PRESET_KEYS))}")
    if not isinstance(data.get("method"), str):
        raise ConfigError(f"preset {path}: 'method = \"<name>\"' is required")
    params = data.get("params", {})
    if not isinstance(params, dict):
        raise ConfigError(f"preset {path}: [params] must be a table")
    requires = data.get("requires", [])
    if not (isinstance(requires, list) and all(isinstance(r, str) for r in requires)):
        raise ConfigError(f"preset {path}: requires must be a list of parameter names")
    return Preset(name=path.stem, method=data["method"], params=params, backbone=data.get("backbone"),
                  description=data.get("description", ""), source=data.get("source", ""), path=path,
                  requires=tuple(requires), weights=data.get("weights", ""))


def list_presets() -> dict[str, Preset]:
    presets: dict[str, Preset] = {}
    for d in preset_dirs():
        for path in sorted(d.glob("*.toml")):
            if path.stem not in presets:
                presets[path.stem] = load_preset(path)
    return presets


# -- typed parameters -------------------------------------------------------------------------

def params_to_dict(params: Any) -> dict[str, Any]:
    def _plain(v):
        if isinstance(v, tuple):
            return [_plain(x) for x in v]
        return v
    return {f.name: _plain(getattr(params, f.name)) for f in dataclasses.fields(params)}


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def coerce(value: Any, tp: Any, *, key: str) -> Any:
    """Convert a parsed TOML value (or a raw string) to the annotated type ``tp``, or raise."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return coerce(value, arg, key=key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is typing.Literal:
        if value in args:
            return value
        raise ConfigError(f"{key}: expected one of {', '.join(repr(a) for a in args)}, got {value!r}")
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list like [1, 2] or 1,2; got {value!r}")
        item_tp = args[0] if args else str
        items = [coerce(_parse_scalar(v) if isinstance(v, str) else v, item_tp, key=key) for v in value]
        return tuple(items) if origin is tuple else items
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    return value


def _parse_scalar(raw: str) -> Any:
    """Parse an override value as TOML (1, 2.5, true, [1, 2], "x"); anything else is a string."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def official_switches(params_cls: type) -> dict[str, Any]:
    """The parameter values that reproduce a method's official implementation where this project's
    defaults deliberately differ (the README's deviations table): each class of ``params_cls``'s bases
    may state its own in ``OFFICIAL_SWITCHES``; a subclass's win. Empty when nothing differs."""
    merged: dict[str, Any] = {}
    for cls in reversed(params_cls.__mro__):
        merged.update(vars(cls).get("OFFICIAL_SWITCHES", {}))
    fields = ({f.name for f in dataclasses.fields(params_cls)} if dataclasses.is_dataclass(params_cls)
              else set())
    unknown = sorted(set(merged) - fields)
    if unknown:
        raise ConfigError(f"{params_cls.__name__}.OFFICIAL_SWITCHES names unknown parameter(s) "
                          f"{', '.join(unknown)}")
    return merged


def build_params(params_cls: type, values: dict[str, Any], *, where: str) -> Any:
    hints = typing.get_type_hints(params_cls)
    fields = {f.name for f in dataclasses.fields(params_cls)}
    unknown = [k for k in values if k not in fields]
    if unknown:
        raise ConfigError(f"{where}: unknown parameter(s) {', '.join(unknown)} for "
                          f"{params_cls.__name__}; valid fields: {describe_fields(params_cls)}")
    typed = {k: coerce(v, hints[k], key=k) for k, v in values.items()}
    try:
        return params_cls(**typed)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def describe_fields(params_cls: type) -> str:
    hints = typing.get_type_hints(params_cls)
    return ", ".join(f"{f.name} ({_type_name(hints[f.name])})" for f in dataclasses.fields(params_cls))


def parse_overrides(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        out[key] = _parse_scalar(raw.strip())
    return out


def resolve_method(name: str, overrides: list[str] | None = None) -> MethodSpec:
    """A preset or method name + ``--set`` overrides → `MethodSpec` with validated parameters."""
    presets = list_presets()
    if name in presets:
        preset = presets[name]
        method_cls = METHODS.get(preset.method)
        base, where, backbone = dict(preset.params), f"preset {preset.path}", preset.backbone
    elif name in METHODS:
        preset, method_cls, base, where, backbone = None, METHODS.get(name), {}, f"method {name}", None
    else:
        raise UnknownNameError(METHODS.unknown_message(name, extra=list(presets)) +
                               (f" Presets: {', '.join(sorted(presets))}." if presets else ""))
    params = build_params(method_cls.Params, base, where=where)
    if overrides:
        params = build_params(method_cls.Params, {**base, **parse_overrides(overrides)}, where="--set")
    if preset:
        unknown = [k for k in preset.requires if k not in {f.name for f in dataclasses.fields(params)}]
        if unknown:
            raise ConfigError(f"{where}: requires names unknown parameter(s) {', '.join(unknown)}")
    return MethodSpec(method=method_cls.name, params=params, preset=preset.name if preset else None,
                      backbone=backbone, requires=preset.requires if preset else (),
                      weights=preset.weights if preset else "")
