"""One registry type for methods, datasets, metrics and backbones.

Built-ins register by decorator (``@METHODS.register("ddim")``, which also sets a registered class's
``name``, so the name is written once); third-party packages register
through entry points (``[project.entry-points."icd_bench.methods"] my-method = "pkg.mod:MyMethod"``),
loaded the first time a registry is read. An unknown name raises `UnknownNameError` listing the
closest registered names.
"""

from __future__ import annotations

import difflib
import importlib
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from icd_bench.errors import UnknownNameError

if TYPE_CHECKING:  # the registered types, for annotations only (no import at run time, none upward)
    from icd_bench.backbones.base import Backbone
    from icd_bench.data.base import Dataset
    from icd_bench.methods.base import EditingMethod
    from icd_bench.metrics.base import Metric

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    obj: T
    origin: str  # "builtin" or "entry point <dist>"
    aliases: tuple[str, ...] = ()

    @property
    def summary(self) -> str:
        doc = getattr(self.obj, "__doc__", None) or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""


class Registry(Generic[T]):
    """Name → object, filled by decorators in `builtin_modules` and by an entry-point group."""

    def __init__(self, kind: str, group: str | None, builtin_modules: tuple[str, ...] = (),
                 base: str | None = None):
        self.kind = kind
        self.group = group
        self._builtin_modules = builtin_modules
        self._base = base  # "module:Class" every registered object must subclass (imported when needed)
        self._entries: dict[str, Entry[T]] = {}
        self._aliases: dict[str, str] = {}
        self._loaded = False

    # -- filling -----------------------------------------------------------------------------
    def register(self, name: str, *, aliases: tuple[str, ...] = ()) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            self.add(name, obj, aliases=aliases)
            return obj

        return deco

    def add(self, name: str, obj: T, *, origin: str = "builtin", aliases: tuple[str, ...] = ()) -> None:
        if self._base is not None:
            module, _, cls = self._base.partition(":")
            base = getattr(importlib.import_module(module), cls)
            if not (isinstance(obj, type) and issubclass(obj, base)):
                raise TypeError(f"{self.kind} {name!r} must be a subclass of {module}.{cls}, got {obj!r}")
        if name in self._entries and self._entries[name].obj is not obj:
            raise ValueError(f"{self.kind} {name!r} is registered twice "
                             f"({self._entries[name].origin} and {origin})")
        if isinstance(obj, type):  # a plugin class knows its registered name
            own = vars(obj).get("name")
            if own not in (None, name):
                raise ValueError(f"{self.kind} class {obj.__qualname__} says its name is {own!r} but is "
                                 f"registered as {name!r}; drop its `name` (registering sets it)")
            obj.name = name
        self._entries[name] = Entry(name, obj, origin, tuple(aliases))
        for alias in aliases:
            self._aliases[alias] = name

    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for mod in self._builtin_modules:
            importlib.import_module(mod)
        if self.group is None:
            return
        for ep in entry_points(group=self.group):
            if ep.name in self._entries:
                continue
            dist = getattr(ep, "dist", None)
            origin = f"entry point ({dist.name if dist else ep.value})"
            try:
                self.add(ep.name, ep.load(), origin=origin)
            except Exception as exc:  # a broken plugin must not break the whole CLI
                warnings.warn(f"could not load {self.kind} plugin {ep.name!r} ({ep.value}): {exc}",
                              stacklevel=2)

    def reload(self) -> None:
        """Forget entry-point plugins and read them again (after installing a package)."""
        self._entries = {k: v for k, v in self._entries.items() if v.origin == "builtin"}
        self._loaded = False
        self._ensure_loaded()

    # -- reading -----------------------------------------------------------------------------
    def __contains__(self, name: object) -> bool:
        self._ensure_loaded()
        return name in self._entries or name in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def names(self) -> list[str]:
        self._ensure_loaded()
        return sorted(self._entries)

    def entries(self) -> list[Entry[T]]:
        self._ensure_loaded()
        return [self._entries[n] for n in sorted(self._entries)]

    def entry(self, name: str) -> Entry[T]:
        self._ensure_loaded()
        name = self._aliases.get(name, name)
        if name not in self._entries:
            raise UnknownNameError(self.unknown_message(name))
        return self._entries[name]

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def unknown_message(self, name: str, extra: list[str] | None = None) -> str:
        known = self.names() + sorted(self._aliases) + list(extra or [])
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        listing = ", ".join(self.names()) or "(none)"
        return (f"unknown {self.kind} {name!r}.{hint} Known {self.kind}s: {listing}. "
                f"`icd-bench list {self.kind}s` shows them with descriptions.")


METHODS: Registry[type[EditingMethod]] = Registry("method", "icd_bench.methods", ("icd_bench.methods",),
                                                  base="icd_bench.methods.base:EditingMethod")
#: a dataset class (or factory) called with its options → a `Dataset`
DATASETS: Registry[Callable[..., Dataset]] = Registry("dataset", "icd_bench.datasets", ("icd_bench.data",))
METRICS: Registry[type[Metric]] = Registry("metric", "icd_bench.metrics", ("icd_bench.metrics",),
                                           base="icd_bench.metrics.base:Metric")
#: a backbone factory ``(device, dtype) -> Backbone``
BACKBONES: Registry[Callable[..., Backbone]] = Registry("backbone", "icd_bench.backbones",
                                                        ("icd_bench.backbones",))
#: generated training data for the trainers' ``[data] source`` (the toy world's scenes): name → a class
#: ``(seed, resolution)`` with ``batch(step, size, process) -> (images in [0, 1], captions)``
TRAIN_SOURCES: Registry[Any] = Registry("training source", "icd_bench.training_sources",
                                        ("icd_bench.toy.teacher",))

REGISTRIES: dict[str, Registry[Any]] = {
    "methods": METHODS,
    "datasets": DATASETS,
    "metrics": METRICS,
    "backbones": BACKBONES,
}
