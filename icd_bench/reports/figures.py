"""Figures from scored runs (``icd-bench figure``), PNG + SVG.

- ``tradeoff`` (the paper's Fig. 9 layout): a quality metric against seconds per edit and against
  UNet evaluations per edit, one point per run (labelled by preset) with its 95 % interval;
- ``tau`` (Fig. 5a): reconstruction quality against generation quality as the dynamic-CFG τ varies —
  each run gives its τ (from its parameters) and whichever of the two metrics it was scored with;
  runs with the same τ are joined, and the points are connected in τ order.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from icd_bench.errors import ConfigError
from icd_bench.reports.runs import load_run
from icd_bench.reports.tables import bootstrap_mean


def _metric(metrics, key: str) -> tuple[float, float, float]:
    return bootstrap_mean(metrics.loc[metrics["metric"] == key, "value"].to_numpy(dtype=float))


def save_figure(fig, path: Path) -> list[Path]:
    """``path`` as .png and .svg (the one place figures are written); closes the figure."""
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    outs = [path.with_suffix(".png"), path.with_suffix(".svg")]
    for p in outs:
        fig.savefig(p, dpi=150)
    plt.close(fig)
    return outs


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def tradeoff_points(runs: list[Path], metric: str) -> list[dict]:
    points = []
    for run in runs:
        data = load_run(run)
        mean, lo, hi = _metric(data.metrics, metric)
        if math.isnan(mean):
            raise ConfigError(f"{run} has no scores for {metric!r}: "
                              f"run `icd-bench score {run} --metrics {metric}`")
        secs = [r["seconds"] for r in data.ok if r.get("seconds") is not None]
        nfe = [r["nfe"] for r in data.ok if r.get("nfe") is not None]
        points.append({"label": data.name, "mean": mean, "lo": lo,
                       "hi": hi, "seconds": float(np.mean(secs)) if secs else math.nan,
                       "nfe": float(np.mean(nfe)) if nfe else math.nan})
    return points


def tradeoff_figure(runs: list[Path], metric: str, out: Path) -> list[Path]:
    plt = _pyplot()
    points = tradeoff_points(runs, metric)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, x, xlabel in ((axes[0], "seconds", "seconds per edit (log)"),
                          (axes[1], "nfe", "UNet evaluations per edit (log)")):
        for p in points:
            if not math.isfinite(p[x]) or p[x] <= 0:
                continue
            ax.errorbar([p[x]], [p["mean"]], yerr=[[p["mean"] - p["lo"]], [p["hi"] - p["mean"]]], fmt="o",
                        capsize=3)
            ax.annotate(p["label"], (p[x], p["mean"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"{metric} (mean, 95 % CI)")
    fig.suptitle(f"{metric} vs cost per edit")
    fig.tight_layout()
    return save_figure(fig, out)


def tau_points(runs: list[Path], x_metric: str, y_metric: str) -> list[dict]:
    by_tau: dict[float, dict] = {}
    for run in runs:
        data = load_run(run)
        tau = data.config.get("params", {}).get("tau")
        if tau is None:
            raise ConfigError(f"{run}: its method has no tau parameter; "
                              "the τ curve needs runs of a τ sweep "
                              "(e.g. --set tau=0.6, 0.7, 0.8 ...)")
        entry = by_tau.setdefault(float(tau), {"tau": float(tau), "x": math.nan, "y": math.nan})
        for key, metric in (("x", x_metric), ("y", y_metric)):
            mean = _metric(data.metrics, metric)[0]
            if not math.isnan(mean):
                entry[key] = mean
    points = sorted(by_tau.values(), key=lambda p: p["tau"])
    if not any(math.isfinite(p["x"]) and math.isfinite(p["y"]) for p in points):
        raise ConfigError(f"no τ has both {x_metric!r} and {y_metric!r} scored among these runs")
    return points


def tau_figure(runs: list[Path], x_metric: str, y_metric: str, out: Path) -> list[Path]:
    plt = _pyplot()
    points = [p for p in tau_points(runs, x_metric, y_metric)
              if math.isfinite(p["x"]) and math.isfinite(p["y"])]
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot([p["x"] for p in points], [p["y"] for p in points], "o-")
    for p in points:
        ax.annotate(f"τ={p['tau']:g}", (p["x"], p["y"]), textcoords="offset points", xytext=(4, 4),
                    fontsize=8)
    ax.set_xlabel(f"reconstruction: {x_metric}")
    ax.set_ylabel(f"generation: {y_metric}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(points, indent=2))
    return save_figure(fig, out) + [out.with_suffix(".json")]
