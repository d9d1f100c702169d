"""The toy world's oracle as a metric: ``toy_edit`` scores edits of samples that carry their
source and target scenes (the demo set's ``toy_source_scene`` / ``toy_target_scene``) — see
`icd_bench.toy.oracle.score_edit` — and ``toy_match`` checks that an image (a reconstruction or a
generation) reads as the scene its prompt describes (source scene for inversion)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from icd_bench.metrics.base import Metric, ScoreItem
from icd_bench.registry import METRICS


def _pixels(item: ScoreItem) -> np.ndarray:
    from icd_bench.imaging import tensor_to_pil

    return np.asarray(tensor_to_pil(item.output))


def _scenes(item: ScoreItem):
    from icd_bench.toy.scenes import Scene

    if "toy_source_scene" not in item.meta:
        raise ValueError("not a toy-world sample (no toy_source_scene in its metadata)")
    return Scene.from_dict(item.meta["toy_source_scene"]), Scene.from_dict(item.meta["toy_target_scene"])


@METRICS.register("toy_edit")
class ToyEdit(Metric):
    """edit_success (0/1: the output reads as the target scene), background_psnr (dB over the pixels
    the edit must keep), kept (0/1: the untouched attributes still read as the source's)."""

    needs = ("meta",)
    KEYS = ("toy_edit:success", "toy_edit:background_psnr", "toy_edit:kept")

    def keys(self) -> tuple[str, ...]:
        return self.KEYS

    def score(self, items: Sequence[ScoreItem]) -> list[dict[str, float]]:
        from icd_bench.toy.oracle import score_edit

        self.require(items)
        out = []
        for item in items:
            source, target = _scenes(item)
            r = score_edit(_pixels(item), source, target)
            values = (float(r["edit_success"]), r["background_psnr"], float(r["kept"]))
            out.append(dict(zip(self.KEYS, values, strict=True)))
        return out


@METRICS.register("toy_match")
class ToyMatch(Metric):
    """1 when every attribute the oracle judges reads as the source scene's (for reconstructions)."""

    needs = ("meta",)

    def score(self, items: Sequence[ScoreItem]) -> list[dict[str, float]]:
        from icd_bench.toy.oracle import score_scene

        self.require(items)
        out = []
        for item in items:
            source, _ = _scenes(item)
            out.append({self.spec.key: float(all(score_scene(_pixels(item), source).values()))})
        return out
