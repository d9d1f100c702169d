"""Operating curves: each editing method run over the knob that trades edit strength for preservation,
every point scored, drawn, and read at matched preservation (``icd-bench sweep``).

One shared setting hides the trade-off: a method at a stronger guidance edits more and keeps less. A
sweep runs every method over its knob (by default its guidance scale — the one `compare_edits` sets:
``guidance_scale``, EF-DDPM's and InfEdit's target scale, the w a guidance-embedded consistency model is
given — or any ``--set`` field), each point an ordinary run directory under ``WORK/<method>/<key>=<value>``
(a killed sweep resumes: finished samples and scores are kept). From the per-sample scores it writes

- ``NAME.csv``: one row per point — its knob value, the mean of the edit measure (y, e.g. edit success or
  CLIP-T) and of the preservation measure (x, e.g. background PSNR, LPIPS, DINOv2) with 95 % bootstrap
  intervals over the samples, UNet evaluations per edit, whether the point is on its method's Pareto front
  and on the front of all methods together;
- ``NAME.md`` (and ``NAME-matched.csv``): those points per method, then each method **at matched
  preservation**: its curve (points in knob order, joined by straight lines) read at given levels of x,
  with bootstrap intervals (the samples resampled jointly across a method's points, so the interval
  covers the reading, not only the points); "—" where the curve does not reach the level;
- ``NAME.png``: y against x per method with both intervals, each point labelled with its knob value, each
  method's Pareto points filled and the front of all methods drawn.

A guidance sweep of the whole demo set that includes DDIM-50 also stores every method's points in the
package (``toy/demo-curves.json``, `store_curves`): `demo_comparison` reads DDIM-50 off it for the main
job — at the run's CFG, at DDIM-50's default CFG and at the run's background PSNR.

Written by hand: no library draws Pareto fronts over bootstrapped operating curves.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from icd_bench.errors import ConfigError
from icd_bench.markdown import markdown_table
from icd_bench.paths import ASSETS
from icd_bench.registry import METRICS

GUIDANCE = "guidance"  # the knob name that means each method's own guidance field
GUIDANCE_FIELDS = ("guidance_scale", "target_guidance_scale", "target_guidance", "model_guidance")
#: the guidance-like knob of methods with no CFG at all, swept as their guidance (TurboEdit's w weighs the
#: target prompt's step against the source prompt's, CFG's form) but left at the preset's value where the
#: methods share one CFG scale (`compare_edits`)
NON_CFG_GUIDANCE_FIELDS = ("w",)


def knob_field(method: str, knob: str) -> str:
    """The ``--set`` field that ``knob`` moves for ``method``: for ``guidance`` its guidance scale (the
    first of GUIDANCE_FIELDS it has), otherwise ``knob`` itself, which it must have."""
    from icd_bench.config import resolve_method

    fields = {f.name for f in dataclasses.fields(resolve_method(method, []).params)}
    if knob == GUIDANCE:
        key = next((k for k in GUIDANCE_FIELDS + NON_CFG_GUIDANCE_FIELDS if k in fields), None)
        if key is None:
            raise ConfigError(f"{method} has no guidance scale to set "
                              f"({', '.join(GUIDANCE_FIELDS + NON_CFG_GUIDANCE_FIELDS)})")
        return key
    if knob not in fields:
        raise ConfigError(f"{method} has no setting {knob!r} (its settings: {', '.join(sorted(fields))})")
    return knob


TOY_METHODS = "toy"  # --methods toy: every editing preset of the toy world


def expand_methods(names: Sequence[str]) -> list[str]:
    """``toy`` → every preset named ``*-toy`` (the toy world's editing setting of each method, so a method
    added later joins the comparison by its preset), the others as given."""
    from icd_bench.config import list_presets

    out: list[str] = []
    for name in names:
        out += sorted(p for p in list_presets() if p.endswith("-toy")) if name == TOY_METHODS else [name]
    return list(dict.fromkeys(out))


def higher_is_better(key: str) -> bool:
    return bool(METRICS.get(key.split(":")[0]).higher_is_better)


@dataclass
class Point:
    method: str
    field: str
    value: float
    run_dir: Path


def run_points(methods: Sequence[str], knob: str, values: dict[str, list[float]], *, metrics: list[str],
               work: Path, dataset: str = "demo", data_dir: Path | None = None, split: str | None = None,
               limit: int | None = None, device: str = "auto", batch_size: int = 16, score_options=None,
               log: Callable[[str], None] = print) -> list[Point]:
    """Run and score every (method, value); each point resumes what an earlier (killed) sweep finished."""
    from icd_bench.metrics.score import score_run
    from icd_bench.runner import RunConfig, Runner

    plan = [(m, knob_field(m, knob), v) for m in methods for v in values[m]]  # every knob is checked first
    points = []
    for k, (method, key, value) in enumerate(plan, 1):
        out = Path(work) / method / f"{key}={value:g}"
        cfg = RunConfig(method=method, dataset=dataset, data_dir=data_dir, split=split, task="edit",
                        limit=limit, batch_size=batch_size, overrides=[f"{key}={value}"], device=device,
                        out=out)
        summary = Runner(cfg).run()
        score_run(out, metrics, device="cpu" if device == "auto" else device, options=score_options)
        log(f"[{k}/{len(plan)}] {method} {key}={value:g}: {summary.skipped + summary.ok} edits "
            f"({summary.skipped} from before), {summary.failed} failed")
        points.append(Point(method, key, value, out))
    return points


def _values(run_dir: Path, keys: Sequence[str]) -> tuple[pd.DataFrame, float, float]:
    """Per-sample values of ``keys`` (id × key), the mean UNet evaluations and seconds per edit of a
    scored run."""
    from icd_bench.reports.runs import load_run

    data = load_run(run_dir)
    m = data.metrics
    m = m[m["metric"].isin(keys) & m["error"].isna()]
    wide = m.pivot_table(index="id", columns="metric", values="value", aggfunc="last")
    missing = [k for k in keys if k not in wide.columns]
    if missing:
        raise ConfigError(f"{run_dir} has no scores for {', '.join(missing)}: "
                          f"score it with metrics giving them")
    nfe = [r["nfe"] for r in data.ok if r.get("nfe") is not None]
    seconds = [r["seconds"] for r in data.ok if r.get("seconds") is not None]
    return (wide[list(keys)], (float(np.mean(nfe)) if nfe else math.nan),
            (float(np.mean(seconds)) if seconds else math.nan))


def dominated(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """For points (higher x and y better), whether another point is at least as good in both and better
    in one."""
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    out = np.zeros(len(xs), bool)
    for i in range(len(xs)):
        if not (np.isfinite(xs[i]) and np.isfinite(ys[i])):
            out[i] = True
            continue
        better = (xs >= xs[i]) & (ys >= ys[i]) & ((xs > xs[i]) | (ys > ys[i]))
        out[i] = bool(better.any())
    return out


def crossings(xs: Sequence[float], level: float) -> list[tuple[int, int, float]]:
    """Where a curve (points in knob order, joined by straight lines) is at x = ``level``, in knob order:
    ``(i, j, t)`` with the curve there at point i + t·(point j − point i) — j = i + 1 inside a segment,
    j = i (t = 0) at a point on the level."""
    out = []
    for i in range(len(xs)):
        if xs[i] == level:
            out.append((i, i, 0.0))
        if i + 1 < len(xs) and min(xs[i], xs[i + 1]) < level < max(xs[i], xs[i + 1]):
            out.append((i, i + 1, (level - xs[i]) / (xs[i + 1] - xs[i])))
    return out


def read_at(xs: np.ndarray, ys: np.ndarray, level: float) -> float:
    """A curve read at x = ``level``: the best y (higher is better) over its `crossings`; NaN where it does
    not reach the level."""
    reads = [ys[i] + t * (ys[j] - ys[i]) for i, j, t in crossings(xs, level)]
    return max(reads) if reads else math.nan


def analyse(points: Sequence[Point], x: str, y: str, *, levels: Sequence[float] | None = None,
            resamples: int = 1000, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(points table, matched-preservation table) — see the module docstring. Values are oriented
    internally so that higher is better; the tables keep the metrics' own signs."""
    from icd_bench.reports.tables import bootstrap_mean

    sx, sy = (1.0 if higher_is_better(x) else -1.0), (1.0 if higher_is_better(y) else -1.0)
    rng = np.random.default_rng(seed)
    rows, per_method = [], {}
    for method in dict.fromkeys(p.method for p in points):
        mine = sorted((p for p in points if p.method == method), key=lambda p: p.value)
        tables = [(p, *_values(p.run_dir, [x, y])) for p in mine]
        common = sorted(set.intersection(*(set(t.dropna().index) for _, t, _, _ in tables)))
        idx = (rng.integers(0, len(common), (resamples, len(common))) if common
               else np.zeros((resamples, 0), int))
        boot_x, boot_y = [], []
        for p, t, nfe, seconds in tables:
            vx, vy = t[x].to_numpy(float), t[y].to_numpy(float)
            row = {"method": method, "knob": p.field, "value": p.value, "n": int(np.isfinite(vx + vy).sum()),
                   "nfe": nfe, "seconds per edit": seconds, "run": str(p.run_dir)}
            for key, v in ((x, vx), (y, vy)):
                row[key], row[f"{key} low"], row[f"{key} high"] = bootstrap_mean(v, resamples, seed)
            rows.append(row)
            paired = t.loc[common]
            boot_x.append(sx * paired[x].to_numpy(float)[idx].mean(1) if common
                          else np.full(resamples, math.nan))
            boot_y.append(sy * paired[y].to_numpy(float)[idx].mean(1) if common
                          else np.full(resamples, math.nan))
        per_method[method] = (np.array(boot_x), np.array(boot_y), len(common))
    table = pd.DataFrame(rows)
    ox, oy = sx * table[x].to_numpy(float), sy * table[y].to_numpy(float)
    table["pareto (method)"] = False
    for _method, part in table.groupby("method", sort=False):
        table.loc[part.index, "pareto (method)"] = ~dominated(ox[part.index], oy[part.index])
    table["pareto (all)"] = ~dominated(ox, oy)

    if levels is None:  # the quartiles of the points' preservation, rounded
        finite = table[x].dropna().to_numpy(float)
        levels = (sorted({round(float(q) * 2) / 2 for q in np.percentile(finite, [25, 50, 75])})
                  if len(finite) else [])
    matched = []
    for method, part in table.groupby("method", sort=False):
        bx, by, n_common = per_method[method]
        px, py = sx * part[x].to_numpy(float), sy * part[y].to_numpy(float)
        for level in levels:
            value = read_at(px, py, sx * level)
            reads = np.array([read_at(bx[:, b], by[:, b], sx * level) for b in range(bx.shape[1])])
            reached = reads[np.isfinite(reads)]
            lo, hi = (np.percentile(reached, [2.5, 97.5]) if len(reached) else (math.nan, math.nan))
            matched.append({"method": method, f"{x} level": level,
                            y: sy * value if np.isfinite(value) else math.nan,
                            f"{y} low": sy * (lo if sy > 0 else hi), f"{y} high": sy * (hi if sy > 0 else lo),
                            "resamples reaching it": len(reached) / max(bx.shape[1], 1), "n": n_common})
    return table, pd.DataFrame(matched)


def _fmt(v: float, digits: int = 3) -> str:
    return ("—" if v is None or not np.isfinite(v)
            else f"{v:.{digits}g}" if abs(v) < 1 else f"{v:.{digits + 1}g}")


def write_report(table: pd.DataFrame, matched: pd.DataFrame, x: str, y: str, out: Path, name: str, *,
                 title: str, command: str = "", notes: Sequence[str] = ()) -> Path:
    """NAME.csv, NAME.md and NAME.png under ``out`` (see the module docstring)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / f"{name}.csv", index=False, float_format="%.5g")
    arrow = lambda k: "↑" if higher_is_better(k) else "↓"  # noqa: E731
    lines = [f"# {title}", "",
             f"Each method is run over its knob; every point is scored: *{y}* {arrow(y)} (edit strength) "
             f"against *{x}* {arrow(x)} (preservation), means with 95 % bootstrap intervals over the "
             "samples. A point on its method's Pareto front (★) is not beaten on both by another setting "
             "of the same method; ◆ marks the front of all methods together. Seconds per edit are "
             "wall-clock times of each point's own run (batch time / batch size; a resumed point keeps "
             "its first timing).", ""]
    if command:
        lines += [f"Regenerate with `{command}`.", ""]
    lines += [*notes, ""] if notes else []
    lines += [f"![operating curves]({name}.png)", "", "## Points", ""]
    body = []
    for _, r in table.iterrows():
        mark = ("★" if r["pareto (method)"] else "") + ("◆" if r["pareto (all)"] else "")
        body.append([r["method"], f"{r['knob']}={r['value']:g}", int(r["n"]), _fmt(r["nfe"], 2),
                     _fmt(r["seconds per edit"], 2),
                     f"{_fmt(r[y])} [{_fmt(r[f'{y} low'])}, {_fmt(r[f'{y} high'])}]",
                     f"{_fmt(r[x])} [{_fmt(r[f'{x} low'])}, {_fmt(r[f'{x} high'])}]", mark])
    lines += markdown_table(["method", "setting", "n", "UNet evaluations", "seconds per edit",
                             f"{y} {arrow(y)}", f"{x} {arrow(x)}",
                             "front"], body)
    if not matched.empty:
        levels = list(dict.fromkeys(matched[f"{x} level"]))
        lines += ["", f"## At matched preservation ({x} = {', '.join(f'{v:g}' for v in levels)})", "",
                  f"Each method's curve read at the level (linear between neighbouring settings; the best "
                  f"reading where it crosses the level more than once), {y} with its 95 % bootstrap "
                  "interval; — where the curve does not reach the level; † where under 95 % of the "
                  "resampled curves reach it (the interval is then over those that do).", ""]
        head = ["method", *(f"{y} at {x} = {v:g}" for v in levels)]
        body = []
        for method, part in matched.groupby("method", sort=False):
            cells = []
            for v in levels:
                r = part[part[f"{x} level"] == v].iloc[0]
                partial = "†" if r["resamples reaching it"] < 0.95 else ""
                cells.append("—" if not np.isfinite(r[y]) else
                             f"{_fmt(r[y])} [{_fmt(r[f'{y} low'])}, {_fmt(r[f'{y} high'])}]{partial}")
            body.append([method, *cells])
        lines += markdown_table(head, body)
    (out / f"{name}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if not matched.empty:
        matched.to_csv(out / f"{name}-matched.csv", index=False, float_format="%.5g")
    draw(table, x, y, out / f"{name}.png", title=title)
    return out / f"{name}.md"


def draw(table: pd.DataFrame, x: str, y: str, path: Path, *, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.5, 6), dpi=120)
    colours = plt.get_cmap("tab10")
    for k, (method, part) in enumerate(table.groupby("method", sort=False)):
        c = colours(k % 10)
        ax.plot(part[x], part[y], "-", color=c, alpha=0.6, lw=1.2, label=method)
        ax.errorbar(part[x], part[y], xerr=[part[x] - part[f"{x} low"], part[f"{x} high"] - part[x]],
                    yerr=[part[y] - part[f"{y} low"], part[f"{y} high"] - part[y]], fmt="none", ecolor=c,
                    alpha=0.35, lw=0.8)
        front = part["pareto (method)"].to_numpy(bool)
        ax.scatter(part[x][front], part[y][front], color=c, s=36, zorder=3)
        ax.scatter(part[x][~front], part[y][~front], facecolor="white", edgecolor=c, s=36, zorder=3)
        for _, r in part.iterrows():
            ax.annotate(f"{r['value']:g}", (r[x], r[y]), textcoords="offset points", xytext=(4, 3),
                        fontsize=7, color=c)
    front = table[table["pareto (all)"]].sort_values(x)
    if len(front):
        ax.plot(front[x], front[y], "--", color="black", lw=1, alpha=0.7, label="front of all methods",
                zorder=2)
    ax.set_xlabel(f"{x} ({'higher' if higher_is_better(x) else 'lower'} is better: preservation)")
    ax.set_ylabel(f"{y} ({'higher' if higher_is_better(y) else 'lower'} is better: edit)")
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


# -- the stored demo curves: what `run --dataset demo --task edit --score` shows beside its own figures ------
#: Every method's curve of a whole-demo-set guidance sweep (`store_curves`), shipped in the package.
CURVES = ASSETS / "toy" / "demo-curves.json"
#: The baseline the main job is read against: DDIM-50, a plain prompt switch.
BASELINE = "ddim-toy"


def store_curves(table: pd.DataFrame, x: str, y: str, command: str, path: Path = CURVES) -> Path:
    """Store each method's points (knob value, edits, UNet evaluations and seconds per edit, ``x`` and
    ``y``) with the command and the machine that measured them."""
    import json
    import os
    import platform
    from datetime import date

    methods = {}
    for method, part in table.groupby("method", sort=False):
        methods[method] = {"knob": str(part["knob"].iloc[0]), "points": [
            {"value": float(r["value"]), "edits": int(r["n"]), "nfe": float(r["nfe"]),
             "seconds_per_edit": float(r["seconds per edit"]), x: float(r[x]), y: float(r[y])}
            for _, r in part.sort_values("value").iterrows()]}
    doc = {"x": x, "y": y, "command": command, "date": date.today().isoformat(),
           "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores", "methods": methods}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    return path


def load_curves(path: Path = CURVES) -> dict | None:
    """The stored curves (`store_curves`' document), or None when there are none."""
    import json

    return json.loads(path.read_text(encoding="utf-8")) if Path(path).is_file() else None


def demo_comparison(run_dir: Path, label: str, means: dict[str, float], path: Path = CURVES) -> dict | None:
    """A scored demo edit run beside the stored DDIM-50 curve (``BASELINE``): DDIM-50 at the run's own CFG
    (where the curve has that point), at DDIM-50's default CFG, and at the run's background PSNR (its curve
    read there: success, CFG and seconds linear between the neighbouring points). Returns ``{"rows": [...],
    "stored": the document}``; None without stored curves or oracle scores."""
    from icd_bench.config import resolve_method
    from icd_bench.reports.runs import load_run

    stored = load_curves(path)
    if (stored is None or BASELINE not in stored["methods"] or stored["y"] not in means
            or stored["x"] not in means):
        return None
    x, y = stored["x"], stored["y"]
    data = load_run(run_dir)
    ok = data.ok
    params = data.config.get("params", {})
    try:
        own = params.get(knob_field(label, GUIDANCE))
    except ConfigError:
        own = None
    rows = [{"method": f"this run ({label})", "cfg": f"{own:g}" if own is not None else "—",
             "edits": len(ok), "success": means[y], "background_psnr": means[x],
             "nfe": statistics.mean(r["nfe"] for r in ok),
             "seconds_per_edit": statistics.mean(r["seconds"] for r in ok)}]
    points = stored["methods"][BASELINE]["points"]
    default = resolve_method(BASELINE, []).params_dict()[stored["methods"][BASELINE]["knob"]]

    def row(name: str, cfg: str, p: dict) -> dict:
        return {"method": name, "cfg": cfg, "edits": p["edits"], "success": p[y], "background_psnr": p[x],
                "nfe": p["nfe"], "seconds_per_edit": p["seconds_per_edit"]}

    at = {p["value"]: p for p in points}
    if own is not None and own in at and own != default:
        rows.append(row("DDIM-50, same CFG", f"{own:g}", at[own]))
    if default in at:
        rows.append(row("DDIM-50, default", f"{default:g}", at[default]))
    found = crossings([p[x] for p in points], means[x])
    if found:  # the first crossing in knob order; success, CFG and seconds linear there
        i, j, f = found[0]
        a, b = points[i], points[j]
        mix = {k: a[k] + f * (b[k] - a[k]) for k in ("value", "nfe", "seconds_per_edit", x, y)}
        rows.append(row("DDIM-50, same bg", f"≈{mix['value']:.1f}",
                        {**mix, "edits": min(a["edits"], b["edits"])}))
    else:
        lo, hi = min(p[x] for p in points), max(p[x] for p in points)
        rows.append({"method": f"DDIM-50, same bg: off its curve ({lo:.1f}–{hi:.1f} dB)", "cfg": "—"})
    return {"rows": rows, "stored": stored}
