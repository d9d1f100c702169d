"""The metric API: a spec names a metric, a region and a flavour; a metric scores batches of items.

Spelling: ``name[:region[:flavour]]`` — ``psnr`` (whole image), ``psnr:background:pie``,
``ssim:background:clean``, ``lpips:whole:icd``, ``toy_edit``. Regions: ``whole``, ``background``
(outside the edit mask), ``edited`` (inside it). Flavours are measurement protocols: ``clean`` (the
default) is the project's own definition; ``pie`` reproduces PIE-Bench's published computation (for
masked pixel metrics: both images multiplied by the region mask, scored over the whole frame, zeros
included); ``icd`` reproduces the iCD paper's ``utils/metrics.py`` (`icd_protocol`, whole images only).

A per-sample metric returns, per item, a dict of named values (one for most metrics, several for the
toy oracle); a value that cannot be computed is NaN (or infinite) with a reason, and aggregation counts
it as failed instead of averaging it. A set metric (FID) turns each item into a row of features
(`Metric.features`) and reduces all rows to one value (`Metric.compute`), so a scorer can stream the
items, keep the rows on disk and resume.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from icd_bench.errors import ConfigError
from icd_bench.metrics import pie_protocol
from icd_bench.registry import METRICS

REGIONS = ("whole", "background", "edited")
#: The flavours of the masked metrics (every region).
FLAVOURS = ("clean", "pie")
#: The iCD paper's protocol (`icd_protocol`); defined for whole images only.
ICD = "icd"
#: What each flavour reproduces, in words (tables say which protocol made each column).
PROTOCOLS = {"icd": "the iCD code's utils/metrics.py (yandex-research/invertible-cd)",
             "pie": "PIE-Bench's evaluation/evaluate.py (cure-lab/PnPInversion)",
             "clean": "this project's definition"}
#: A set metric's rows, chunk by chunk, in a fixed order: ``compute`` may call it more than once (two passes).
Chunks = Callable[[], Iterator[np.ndarray]]


@dataclass(frozen=True)
class MetricSpec:
    name: str
    region: str = "whole"
    flavour: str = "clean"

    @staticmethod
    def parse(text: str) -> MetricSpec:
        parts = [p.strip() for p in text.strip().split(":")]
        if not parts[0] or len(parts) > 3:
            raise ConfigError(f"bad metric {text!r}: write name[:region[:flavour]], e.g. psnr:background:pie")
        region = parts[1] if len(parts) > 1 else "whole"
        flavour = parts[2] if len(parts) > 2 else "clean"
        cls = METRICS.get(parts[0])  # unknown names: one error with close matches
        if region not in cls.regions:
            raise ConfigError(f"metric {parts[0]!r} has regions {', '.join(cls.regions)}, not {region!r}")
        if flavour not in cls.flavours:
            raise ConfigError(f"metric {parts[0]!r} has flavours {', '.join(cls.flavours)}, not {flavour!r}")
        if flavour == ICD and region != "whole":
            raise ConfigError(f"the icd flavour of {parts[0]!r} scores whole images (the iCD paper's metrics "
                              f"have no regions), not {region!r}: write {parts[0]}:whole:icd")
        return MetricSpec(parts[0], region, flavour)

    @property
    def key(self) -> str:
        """``psnr`` for the whole image in the default (``clean``) flavour; otherwise the full
        spelling, e.g. ``psnr:background:pie`` or ``clip_t:whole:pie``."""
        if self.region == "whole" and self.flavour == "clean":
            return self.name
        return f"{self.name}:{self.region}:{self.flavour}"


@dataclass
class ScoreItem:
    """One sample as metrics see it: the output, the source as the model saw it (both 3×H×W in
    [0, 1]), the edit mask carried to the same geometry (H×W bool, True = edited), the prompts and
    the dataset's metadata."""

    id: str
    output: torch.Tensor
    source: torch.Tensor | None = None
    mask: np.ndarray | None = None
    source_prompt: str = ""
    target_prompt: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


#: what a metric's ``needs`` may name: the source image, a prompt, the dataset's metadata
NEEDS = ("source", "source_prompt", "target_prompt", "meta")


class Metric:
    """Base class: ``regions`` / ``flavours`` it supports, ``needs`` (item fields it requires, from
    `NEEDS`, checked by `require`). Its ``name`` is the one it is registered under (`METRICS.register`
    sets it).

    ``options``: metric settings given as ``icd-bench score --option KEY=VALUE`` (e.g.
    ``lpips_net=vgg``, ``clip_model=ViT-B-16``); each metric reads the keys it knows (listed in
    ``option_keys``) and ignores the others. ``task``: the task of the run being scored (``edit``,
    ``invert``, ``generate``; None when unknown), for protocols that read images differently per task.

    A per-sample metric implements `score`; a set metric (``per_sample = False``, e.g. FID) implements
    `features` (one row per item) and `compute` (the rows → one value per run); `score_set` chains them
    over items held in memory.
    """

    name: ClassVar[str] = ""
    regions: ClassVar[tuple[str, ...]] = ("whole",)
    flavours: ClassVar[tuple[str, ...]] = ("clean",)
    needs: ClassVar[tuple[str, ...]] = ("source",)
    higher_is_better: ClassVar[bool] = True
    per_sample: ClassVar[bool] = True
    option_keys: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        unknown = [n for n in cls.needs if n not in NEEDS]
        if unknown:
            raise TypeError(f"{cls.__qualname__}.needs has {unknown}: a metric can need {', '.join(NEEDS)}")

    def __init__(self, spec: MetricSpec, device: torch.device | str = "cpu",
                 options: dict[str, str] | None = None, task: str | None = None):
        self.spec = spec
        self.device = torch.device(device)
        self.options = dict(options or {})
        self.task = task
        if spec.flavour == "pie":  # a misspelt protocol switch stops before any sample
            pie_protocol.check_options(self.options)

    def keys(self) -> tuple[str, ...]:
        """The metric names of its rows: ``spec.key``; a metric with several values per sample lists
        them, so that a failed sample is a NaN row under each (and counts as failed in each)."""
        return (self.spec.key,)

    def check(self) -> None:
        """Raise a `ConfigError` now (before any sample) when the metric cannot run, e.g. weights missing."""

    def score(self, items: Sequence[ScoreItem]) -> list[dict[str, float]]:
        raise NotImplementedError

    def features(self, items: Sequence[ScoreItem]) -> np.ndarray:
        """A set metric's rows: one float row per item (B×D), all that `compute` needs of it."""
        raise NotImplementedError

    def compute(self, chunks: Chunks, n: int) -> dict[str, float]:
        """A set metric's value from the ``n`` rows of every item, read through ``chunks()``."""
        raise NotImplementedError

    def score_set(self, items: Sequence[ScoreItem]) -> dict[str, float]:
        """The value of a set metric over items held in memory: `compute` over their `features`."""
        rows = self.features(items)
        return self.compute(lambda: iter([rows]), len(rows))

    def undefined(self, key: str, value: float) -> str:
        """Why a per-sample value that is not finite is not averaged (the reason stored with it)."""
        return "not defined for this sample (e.g. an empty region)"

    # helpers
    def require(self, items: Sequence[ScoreItem]) -> None:
        """Check what ``needs`` declares — ``source`` present, ``source_prompt`` / ``target_prompt``
        not empty — raising `ValueError` (the scorer then retries sample by sample, so the failure
        is recorded against the sample that lacks it). Metrics call it first thing in `score`."""
        for item in items:
            for need in self.needs:
                if need == "meta" and not item.meta:
                    raise ValueError(f"{item.id}: no dataset metadata stored ({self.name} reads it)")
                if need == "source" and item.source is None:
                    raise ValueError(f"{self.name} needs the source image (a run without sources/?)")
                if need.endswith("_prompt") and not getattr(item, need).strip():
                    raise ValueError(f"{item.id}: empty {need.replace('_', ' ')} "
                                     f"({self.name} scores the image against it)")

    def region_mask(self, item: ScoreItem) -> np.ndarray | None:
        """H×W bool of the pixels the metric looks at (None = all); the ``pie`` flavour's mask follows its
        ``pie_mask_border`` switch."""
        if self.spec.region == "whole":
            return None
        if item.mask is None:
            raise ValueError(f"region {self.spec.region!r} needs an edit mask, and the sample has none")
        mask = pie_protocol.mask(item, self.options) if self.spec.flavour == "pie" else item.mask
        return ~mask if self.spec.region == "background" else mask

    def empty_region(self) -> float:
        """The value of a region without pixels: NaN (undefined: not averaged, counted), or for the ``pie``
        flavour what its ``pie_undefined`` switch says."""
        return pie_protocol.empty_region_value(self.options) if self.spec.flavour == "pie" else float("nan")
