"""Paper-style tables from scored runs (``icd-bench report``), with the paper's numbers beside.

Each run directory (written by ``icd-bench run``, scored by ``icd-bench score``) becomes one row:
per column of the named paper table, the run's mean over its samples with a 95 % bootstrap
interval (1000 resamples over samples, seeded), and — when the run's preset is the setting of a
paper row — the number the paper prints, from ``reports/paper/<table>.csv``. Values are put on the
paper's printed scale (e.g. PIE-Bench's LPIPS × 10³). A metric the run was not scored with shows
as "—" with a footnote naming the ``icd-bench score`` call that adds it; never as NaN or 0.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from icd_bench.errors import ConfigError
from icd_bench.markdown import markdown_table
from icd_bench.metrics.base import PROTOCOLS
from icd_bench.reports.runs import load_run

DASH = "—"


#: Column keys read from the run's records, not from metrics.parquet: per-sample bookkeeping of the runner
#: and the methods (``latent_nll``: the encoded noise's NLL, a record's ``extras`` of an ``invert`` run).
RECORD_KEYS = ("seconds", "nfe", "latent_nll")


def record_value(record: dict, key: str):
    return record.get(key) if key in ("seconds", "nfe") else record.get("extras", {}).get(key)


@dataclass(frozen=True)
class Column:
    label: str
    keys: tuple[str, ...]  # metric keys in metrics.parquet, first found wins; RECORD_KEYS: from the records
    paper: str | None  # the paper CSV's metric name
    higher_is_better: bool
    scale: float = 1.0  # ours × scale = the paper's printed scale
    digits: int = 3
    #: the paper prints this column in another section, per part of the row's configuration (Table 1's NLL:
    #: section "Latent NLL", configuration = the encoding, the part before " | ")
    paper_section: str | None = None
    configuration_part: int | None = None


@dataclass(frozen=True)
class TableSpec:
    name: str
    title: str
    columns: tuple[Column, ...]
    #: preset → (paper section, paper configuration); a section "{dataset}" takes the run's dataset
    matches: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: an imported run's producer method (PnPInversion's ``output/<method>`` folder name) → the paper's row
    published: dict[str, tuple[str, str]] = field(default_factory=dict)


# the iCD paper's own metric code (the icd flavour) first: a run scored with it is read with it
_INVERSION = (Column("LPIPS", ("lpips:whole:icd", "lpips"), "lpips", False),
              Column("DINOv2", ("dinov2:whole:icd", "dinov2"), "dinov2", True),
              Column("PSNR", ("psnr:whole:icd", "psnr"), "psnr", True, digits=2),
              Column("MSE", ("mse",), None, False, digits=5),
              Column("oracle preservation", ("toy_match",), None, True),  # toy-world runs
              Column("UNet evaluations", ("nfe",), None, False, digits=0))
_DDIM_ROWS = {"ddim-sd15-inversion": ("unguided", "fDDIM50 | DDIM50"),
              "ddim-sd15-w8": ("guided", "fDDIM50 | DDIM50"),
              "ddim-sd15-w8-dcfg": ("guided", "fDDIM50 | DDIM50 + d.CFG")}
TABLES: dict[str, TableSpec] = {t.name: t for t in (
    TableSpec("table1", "Table 1: FID-5k of generations from encoded latents, and the latents' NLL",
              (Column("FID-5k", ("fid:whole:icd", "fid"), "fid_5k", False, digits=1),
               Column("latent NLL", ("latent_nll",), "latent_nll", False, paper_section="Latent NLL",
                      configuration_part=0),
               Column("UNet evaluations", ("nfe",), None, False, digits=0))),
    TableSpec("table2", "Table 2: image inversion (SD1.5 configurations)", _INVERSION, _DDIM_ROWS),
    TableSpec("table5", "Table 5: more image inversion results", _INVERSION, _DDIM_ROWS),
    TableSpec("table3", "Table 3: editing, automatic metrics",
              (Column("CLIP-T", ("clip_t:whole:icd", "clip_t"), "clip_t", True),
               Column("DINOv2", ("dinov2:whole:icd", "dinov2"), "dinov2", True),
               Column("CLIP-I", ("clip_i:whole:icd", "clip_i"), "clip_i", True),
               Column("ImageReward", ("imagereward:whole:icd", "imagereward"), "imagereward", True),
               Column("oracle edit success", ("toy_edit:success",), None, True),  # toy-world runs
               Column("toy bg PSNR", ("toy_edit:background_psnr",), None, True, digits=2),
               Column("UNet evaluations", ("nfe",), None, False, digits=0),
               Column("seconds per edit", ("seconds",), None, False)),
              {"icd-sdxl": ("{dataset}", "Ours, 8")}),
    TableSpec("table4", "Table 4: text-to-image generation at w = 8",
              (Column("FID-5k", ("fid:whole:icd", "fid"), "fid_5k", False, digits=2),
               Column("CLIP score", ("clip_t:whole:icd", "clip_t"), "clip_score", True),
               Column("ImageReward", ("imagereward:whole:icd", "imagereward"), "imagereward", True))),
    TableSpec("table6", "Table 6: editing time",
              (Column("seconds per edit", ("seconds",), "seconds_per_edit", False, digits=3),
               Column("UNet evaluations", ("nfe",), None, False, digits=1)),
              {"icd-sd15": ("", "iCD SD1.5, 8 steps"), "nti-sd15": ("", "NTI"), "npi-sd15": ("", "NPI"),
               "icd-sdxl": ("", "iCD SDXL")}),
    TableSpec("piebench", "PIE-Bench (PnPInversion's metrics, its definitions)",
              (Column("structure ×10³", ("structure_distance",), "structure_distance", False, 1e3, 2),
               Column("bg PSNR", ("psnr:background:pie",), "background_psnr", True, digits=2),
               Column("bg LPIPS ×10³", ("lpips:background:pie",), "background_lpips", False, 1e3, 2),
               Column("bg MSE ×10⁴", ("mse:background:pie",), "background_mse", False, 1e4, 2),
               Column("bg SSIM ×10²", ("ssim:background:pie",), "background_ssim", True, 1e2, 2),
               Column("CLIP whole", ("clip_t:whole:pie", "clip_t"), "clip_whole", True, digits=2),
               Column("CLIP edited", ("clip_t:edited:pie",), "clip_edited", True, digits=2)),
              {"ddim-p2p-sd15": ("", "DDIM+P2P"), "nti-sd15": ("", "NTI+P2P"), "npi-sd15": ("", "NPI+P2P"),
               "direct-inversion-sd15": ("", "DirectInversion+P2P"), "masactrl-sd15": ("", "DDIM+MasaCtrl"),
               "direct-inversion-masactrl-sd15": ("", "DirectInversion+MasaCtrl"),
               "pnp-sd15": ("", "DDIM+PnP"),
               "direct-inversion-pnp-sd15": ("", "DirectInversion+PnP"),
               "pix2pix-zero-sd15": ("", "DDIM+pix2pix-zero"),
               "direct-inversion-pix2pix-zero-sd15": ("", "DirectInversion+pix2pix-zero"),
               "turboedit-sdxl-turbo": ("", "TurboEdit (4 steps)"),
               "turboedit-sdxl-turbo-3step": ("", "TurboEdit (3 steps)")},
              # the folders of PnPInversion's released outputs (its evaluate.py's all_tgt_image_folders)
              {"ddim+p2p": ("", "DDIM+P2P"), "null-text-inversion+p2p_a800": ("", "NTI+P2P"),
               "null-text-inversion+p2p_3090": ("", "NTI+P2P"),
               "negative-prompt-inversion+p2p": ("", "NPI+P2P"),
               "directinversion+p2p": ("", "DirectInversion+P2P"), "ddim+masactrl": ("", "DDIM+MasaCtrl"),
               "directinversion+masactrl": ("", "DirectInversion+MasaCtrl"), "ddim+pnp": ("", "DDIM+PnP"),
               "directinversion+pnp": ("", "DirectInversion+PnP"),
               "ddim+pix2pix-zero": ("", "DDIM+pix2pix-zero"),
               "directinversion+pix2pix-zero": ("", "DirectInversion+pix2pix-zero")}),
)}
PAPER_SECTIONS = {"coco-edit": "COCO", "piebench": "PIE-Bench"}


def paper_dir() -> Path:
    """``reports/paper`` of the source tree (the published numbers are data of the repository)."""
    here = Path(__file__).resolve().parents[2] / "reports" / "paper"
    return here if here.is_dir() else Path("reports/paper")


def paper_numbers(table: str) -> pd.DataFrame:
    path = paper_dir() / f"{table}.csv"
    if not path.is_file():
        return pd.DataFrame(columns=["section", "configuration", "metric", "value"])
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def bootstrap_mean(values: np.ndarray, resamples: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """Mean and its 95 % percentile-bootstrap interval (one value: a degenerate interval)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return math.nan, math.nan, math.nan
    if values.size == 1:
        return float(values[0]), float(values[0]), float(values[0])
    idx = np.random.default_rng(seed).integers(0, values.size, (resamples, values.size))
    means = values[idx].mean(1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(values.mean()), float(lo), float(hi)


def resolve_match(paper: pd.DataFrame, row: str) -> tuple[str, str]:
    """``SECTION/ROW`` (or ``ROW``) → the paper's (section, configuration): ROW is the configuration as
    printed or its letter (``unguided/G`` → ``G: fCD4 + L_f | CD4 + L_r``)."""
    section, sep, label = row.partition("/")
    if not sep:
        section, label = "", row
    rows = paper[paper["section"] == section]
    hits = sorted({c for c in rows["configuration"] if c == label or c.startswith(label + ":")})
    if len(hits) != 1:
        known = sorted({f"{s}/{c}" if s else c
                        for s, c in zip(paper["section"], paper["configuration"], strict=True)})
        raise ConfigError(f"paper row {row!r} matches {len(hits)} rows; "
                          f"use SECTION/ROW, one of: {'; '.join(known)}")
    return section, hits[0]


ALL = "all"


def edit_type_groups(records: list[dict]) -> list[tuple[str, set[str] | None]]:
    """("all", None), then each edit type of the records with the ids of its samples — PIE-Bench's types in
    its order (``editing_type_id`` 0–9), any other in the order first seen."""
    from icd_bench.data.piebench import EDIT_TYPES

    order = {name: int(k) for k, name in EDIT_TYPES.items()}
    seen: dict[str, int] = {}
    for r in records:
        if r.get("edit_type"):
            seen.setdefault(r["edit_type"], len(seen))
    types = sorted(seen, key=lambda t: (order.get(t, len(order)), seen[t]))
    return [(ALL, None)] + [(t, {r["id"] for r in records if r.get("edit_type") == t}) for t in types]


def protocol_notes(data, spec: TableSpec) -> list[str]:
    """What a table must say of a run read away from PIE-Bench's protocol: a ``pie`` metric scored with a
    switch set off its default, a method that saw the edit mask (or, imported, one not known not to)."""
    from icd_bench.metrics import pie_protocol

    notes = []
    keys = {k for col in spec.columns for k in col.keys}
    for key, options in sorted(data.metric_options.items()):
        if key in keys and key.endswith(":pie") and (away := pie_protocol.departures(options)):
            ours = ", ".join(f"{k}={v}" for k, v in away.items())
            official = ", ".join(f"{k}={pie_protocol.OPTIONS[k][0]}" for k in away)
            notes.append(f"{data.dir.name}: {key} scored with {ours} (PIE-Bench's evaluate.py: {official})")
    if any(k.endswith(":pie") for k in keys) and data.config.get("task") == "edit":
        saw = data.protocol.get("saw_mask")
        if saw:
            notes.append(f"{data.dir.name}: the method was given the benchmark's edit mask")
        elif saw is None:
            notes.append(f"{data.dir.name}: whether the method saw the edit mask is unknown "
                         "(icd-bench import --saw-mask / --no-saw-mask)")
    return notes


def build_table(spec: TableSpec, runs: list[Path], *, resamples: int = 1000, seed: int = 0,
                matches: dict[str, str] | None = None,
                by_edit_type: bool = False) -> tuple[pd.DataFrame, list[str]]:
    """Long result: one row per run × column (ours: mean, CI, n; the paper's value or NaN), plus the
    footnotes. ``matches``: run folder name → paper row (``SECTION/ROW``), beside the presets' own.
    ``by_edit_type``: each run also per edit type of its samples (column ``group``; "all" first; the paper's
    numbers stand beside "all" only)."""
    paper = paper_numbers(spec.name)
    explicit = {name: resolve_match(paper, row) for name, row in (matches or {}).items()}
    unknown = sorted(set(explicit) - {Path(r).name for r in runs})
    if unknown:
        raise ConfigError(f"--match names runs that are not given: {', '.join(unknown)}")
    rows, notes = [], []
    if paper.empty:
        notes.append(f"the paper's numbers were not found ({paper_dir() / (spec.name + '.csv')}): "
                     "run from the repository, where reports/paper/ holds them")
    used: dict[str, set[str]] = {}  # column → the metric keys its values came from
    for run in runs:
        data = load_run(run)
        config, metrics, records = data.config, data.metrics, data.ok
        if data.failed:
            notes.append(f"{run.name}: {data.failed} of {len(data.records)} samples failed "
                         "and are not in its means (their reasons are in its records.jsonl)")
        preset = config.get("preset") or config.get("method")
        dataset = config.get("dataset", {}).get("name", "")
        notes += protocol_notes(data, spec)
        match = spec.matches.get(preset)
        section = configuration = None
        if config.get("method") == "imported":  # `icd-bench import`: made elsewhere
            made = config.get("params", {})
            notes.append(f"{run.name}: imported (made elsewhere) from {made.get('folder')}, "
                         f"{made.get('layout')} layout: its UNet evaluations and seconds are unknown")
            # the producer's own name for it, when the table knows it
            match = spec.published.get(made.get("producer_method", "")) or match
        if run.name in explicit:
            section, configuration = explicit[run.name]
        elif match:
            section = match[0].replace("{dataset}", PAPER_SECTIONS.get(dataset, dataset))
            configuration = match[1]
        groups = edit_type_groups(records) if by_edit_type else [(ALL, None)]
        for group, ids in groups:
            recs = records if ids is None else [r for r in records if r["id"] in ids]
            mets = metrics if ids is None else metrics[metrics["id"].isin(ids)]
            for col in spec.columns:
                if col.keys[0] in RECORD_KEYS:
                    key = col.keys[0]
                    values = np.array([v for r in recs if (v := record_value(r, key)) is not None],
                                      dtype=float)
                else:
                    key = next((k for k in col.keys if k in set(metrics["metric"])), None)
                    values = (mets.loc[mets["metric"] == key, "value"].to_numpy(dtype=float) if key
                              else np.array([]))
                mean, lo, hi = bootstrap_mean(values * col.scale, resamples, seed)
                theirs = math.nan
                if configuration is not None and col.paper and group == ALL:
                    conf = configuration if col.configuration_part is None else \
                        configuration.split(" | ")[col.configuration_part]
                    hit = paper[(paper["section"] == (col.paper_section or section))
                                & (paper["configuration"] == conf)
                                & (paper["metric"] == col.paper)]
                    if len(hit):
                        theirs = float(hit["value"].iloc[0])
                used.setdefault(col.label, set()).update([key] if key and key not in RECORD_KEYS else [])
                rows.append({"run": run.name, "group": group, "dir": str(run), "preset": preset,
                             "dataset": dataset, "task": config.get("task"),
                             "paper_configuration": configuration or "",
                             "column": col.label, "metric": key or "", "n": int(np.isfinite(values).sum()),
                             "mean": mean, "ci_low": lo, "ci_high": hi, "paper": theirs})
    frame = pd.DataFrame(rows)
    shown = [c.label for c in spec.columns
             if (frame[frame["column"] == c.label]["n"] > 0).any()
             or frame[frame["column"] == c.label]["paper"].notna().any()]
    hidden = [c.label for c in spec.columns if c.label not in shown]
    missing: dict[str, list[str]] = {}
    for r in rows:
        col = next(c for c in spec.columns if c.label == r["column"])
        if r["n"] == 0 and col.label in shown and r["group"] == ALL:
            missing.setdefault(col.keys[0], []).append(r["run"])
    for key, names in missing.items():
        notes.append(f"not scored with {key}: {', '.join(names)} — "
                     f"run `icd-bench score RUN_DIR --metrics {key}`"
                     if key not in RECORD_KEYS else f"no {key} in the records of {', '.join(names)}")
    if hidden:
        notes.append(f"not shown (no run has them and no paper number applies): {', '.join(hidden)}")
    protocol = [
        f"{label} ← {', '.join(f'{k} ({PROTOCOLS.get(_flavour(k), _flavour(k))})' for k in sorted(keys))}"
        for label, keys in used.items() if keys and label in shown]
    if protocol:
        notes.append("metric protocol per column: " + "; ".join(protocol))
    if not any(r["paper_configuration"] for r in rows):
        notes.append("no run's preset is the setting of a paper row, so the paper columns are empty "
                     f"(matched presets: {', '.join(spec.matches) or 'none for this table'})")
    frame = frame[frame["column"].isin(shown)].reset_index(drop=True)
    return frame, notes


def _flavour(key: str) -> str:
    """The flavour a metrics.parquet key was computed in (``name:region:flavour``; shorter keys — ``psnr``,
    ``toy_edit:success`` — are the default flavour)."""
    parts = key.split(":")
    return parts[2] if len(parts) == 3 else "clean"


def _fmt(x: float, digits: int) -> str:
    return DASH if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def wide(spec: TableSpec, long: pd.DataFrame) -> pd.DataFrame:
    """The table as people read it: one row per run (and edit type, when grouped); per column "this run"
    (mean [95 % CI]) and "paper"."""
    out = []
    grouped = (long["group"] != ALL).any()
    for (run, group), g in long.groupby(["run", "group"], sort=False):
        first = g.iloc[0]
        row = {"run": run, **({"edit type": group} if grouped else {}), "preset": first["preset"],
               "paper row": first["paper_configuration"] or DASH}
        for col in spec.columns:
            if not (g["column"] == col.label).any():
                continue
            c = g[g["column"] == col.label].iloc[0]
            arrow = "↑" if col.higher_is_better else "↓"
            ours = DASH if math.isnan(c["mean"]) else (
                f"{_fmt(c['mean'], col.digits)} "
                f"[{_fmt(c['ci_low'], col.digits)}, {_fmt(c['ci_high'], col.digits)}]")
            row[f"{col.label} {arrow} · this run"] = ours
            row[f"{col.label} {arrow} · n"] = int(c["n"])
            if col.paper:
                row[f"{col.label} {arrow} · paper"] = _fmt(c["paper"], col.digits)
        out.append(row)
    return pd.DataFrame(out)


def render(spec: TableSpec, long: pd.DataFrame, notes: list[str], fmt: str, command: str) -> str:
    table = wide(spec, long)
    foot = [f"[{k + 1}] {n}" for k, n in enumerate(notes)]
    if fmt == "csv":
        return long.to_csv(index=False)
    if fmt == "md":
        body = "".join(line + "\n" for line in markdown_table(list(table.columns), table.to_numpy(), left=3))
        return (f"# {spec.title}\n\nThis run: mean over samples [95 % bootstrap CI]; paper: the number "
                f"printed in the paper for the matching setting — from the paper's own models and data, "
                f"so beside runs of another backbone or dataset it shows the published ordering, "
                f"not a target value. Regenerate with `{command}`.\n\n" + body
                + ("\n" + "\n".join(f"{f}  " for f in foot) + "\n" if foot else ""))
    if fmt == "tex":
        return table.to_latex(index=False, caption=spec.title, label=f"tab:{spec.name}") + "".join(
            f"% {f}\n" for f in foot)
    if fmt == "html":
        return (f"<!doctype html><meta charset='utf-8'><title>{html.escape(spec.title)}</title>"
                f"<h1>{html.escape(spec.title)}</h1>" + table.to_html(index=False, escape=True)
                + "".join(f"<p>{html.escape(f)}</p>" for f in foot)
                + f"<p>Regenerate with <code>{html.escape(command)}</code></p>")
    raise ConfigError(f"unknown format {fmt!r}: use md, csv, tex or html")
