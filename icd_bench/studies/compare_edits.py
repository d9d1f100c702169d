"""Editing methods side by side on the demo set, judged by the toy oracle.

`compare_edits` runs each method's ``edit`` task on the demo set through the unified runner (at
one shared CFG scale, so guidance strength is not what differs), scores every edit with
``toy_edit`` (edit success, background PSNR, kept attributes), and writes

- ``NAME.md`` / ``NAME.csv`` (``edits`` by default): per method the UNet evaluations and seconds
  per edit and the scores, edit success per edit type, and the command;
- ``NAME.png``: before/after rows (the source and its prompt, then each method's edit with the
  target prompt and the oracle's verdict) for two edits of each type.

A comparison over the whole demo set also refreshes the package's ``toy/demo-edits.json`` (each
method's overall row, the CFG scale, the command and the machine): the figures `icd-bench run
--dataset demo --task edit --score` prints beside its own, so the README's main job shows iCD next
to DDIM-50 without running DDIM-50 again.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import pandas as pd
from PIL import Image

from icd_bench.gallery import image_grid
from icd_bench.markdown import markdown_table
from icd_bench.paths import ASSETS
from icd_bench.reports.runs import load_run

#: The stored whole-demo-set comparison (see the module docstring).
REFERENCE = ASSETS / "toy" / "demo-edits.json"

MEASURES = {"toy_edit:success": "edit success", "toy_edit:background_psnr": "background PSNR (dB)",
            "toy_edit:kept": "kept attributes"}


def _records(run_dir: Path) -> pd.DataFrame:
    return pd.DataFrame(load_run(run_dir).ok)


def guidance_override(method: str, guidance: float) -> str:
    """The ``--set`` that makes ``method`` edit at CFG ``guidance``: its ``guidance_scale``, the
    target scale of methods with separate source and target scales (EF-DDPM, InfEdit), or the w a
    guidance-embedded consistency model is given (ReNoise) — `sweep.knob_field`'s guidance field."""
    from icd_bench.studies.sweep import GUIDANCE, knob_field

    return f"{knob_field(method, GUIDANCE)}={guidance}"


def write_reference(overall: pd.DataFrame, guidance: float, command: str, path: Path = REFERENCE) -> Path:
    """Store each method's whole-demo-set row (edits, UNet evaluations and seconds per edit, the
    oracle's measures) with the CFG scale, the command and the machine that measured it."""
    import json
    import os
    import platform
    from datetime import date

    rows = {r["method"]: {"edits": int(r["n"]), "nfe": float(r["nfe"]), "seconds_per_edit": float(r["seconds per edit"]),
                          **{key: float(r[label]) for key, label in MEASURES.items()}}
            for _, r in overall.iterrows()}
    doc = {"guidance": guidance, "command": command, "date": date.today().isoformat(),
           "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores", "methods": rows}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    return path


def load_reference(path: Path = REFERENCE) -> dict | None:
    """The stored comparison (``write_reference``'s document), or None when there is none."""
    import json

    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def compare_edits(methods: list[str], guidance: float, work: Path, out: Path, *, dataset: str = "demo",
                  device: str = "auto", limit: int | None = None, per_type_shown: int = 2,
                  command: str = "", name: str = "edits", reference: Path | None = None, log=print) -> Path:
    """Run, score and tabulate (see the module docstring); ``reference``: also store the overall rows
    there (``write_reference``), which the CLI does for whole-demo-set comparisons."""
    from icd_bench.data.piebench import Demo
    from icd_bench.metrics.score import score_run
    from icd_bench.runner import RunConfig, Runner

    work, out = Path(work), Path(out)
    results, outputs = [], {}
    for method in methods:
        cfg = RunConfig(method=method, dataset=dataset, backbone=None, task="edit", limit=limit, batch_size=16,
                        overrides=[guidance_override(method, guidance)], device=device, out=work / method)
        summary = Runner(cfg).run()
        frame, _ = score_run(summary.out, ["toy_edit"])
        records = _records(summary.out)
        scores = frame[frame["error"].isna()].pivot(index="id", columns="metric", values="value")
        merged = records.set_index("id")[["edit_type", "nfe", "seconds", "outputs"]].join(scores, how="inner")
        outputs[method] = (summary.out, merged)
        for group, part in [("all", merged), *merged.groupby("edit_type", sort=True)]:
            results.append({"method": method, "edit type": group, "n": len(part), "nfe": part["nfe"].mean(),
                            "seconds per edit": part["seconds"].mean(),
                            **{label: part[key].mean() for key, label in MEASURES.items()}})
        log(f"{method}: edit success {merged['toy_edit:success'].mean():.1%} over {len(merged)} edits")
    table = pd.DataFrame(results)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / f"{name}.csv", index=False, float_format="%.4f")

    overall = table[table["edit type"] == "all"]
    if reference is not None:
        log(f"stored as the demo set's reference figures: {write_reference(overall, guidance, command, reference)}")
    lines = [f"# Editing the demo set: {', '.join(methods)} at CFG {guidance:g}", "",
             "Each method edits every demo image from its source prompt to its target prompt through the "
             "unified runner, at one shared CFG scale (a method's own scale otherwise); the toy oracle reads "
             "the result: *edit success* (the output reads as the target scene), *background PSNR* (the "
             "pixels no object touches, against the source) and *kept attributes* (what the edit should not "
             "change still reads as the source's). *Seconds per edit* are wall-clock times of this one run "
             "(batch time / batch size), so they compare methods only against each other.", ""]
    if command:
        lines += [f"Regenerate with `{command}`.", ""]
    lines += markdown_table(
        ["method", "edits", "UNet evaluations per edit", "seconds per edit", "edit success", "background PSNR (dB)",
         "kept attributes"],
        ([r["method"], int(r["n"]), f"{r['nfe']:.0f}", f"{r['seconds per edit']:.2f}", f"{r['edit success']:.0%}",
          f"{r['background PSNR (dB)']:.1f}", f"{r['kept attributes']:.0%}"] for _, r in overall.iterrows()))
    by_type = []
    for group in table.loc[table["edit type"] != "all", "edit type"].drop_duplicates():
        part = table[table["edit type"] == group].set_index("method")
        by_type.append([group, int(part["n"].iloc[0]), *(f"{part.loc[m, 'edit success']:.0%}" for m in methods)])
    lines += ["", "Edit success by edit type:", "", *markdown_table(["edit type", "n", *methods], by_type)]
    lines += ["", f"![before and after]({name}.png)", ""]
    (out / f"{name}.md").write_text("\n".join(lines), encoding="utf-8")

    demo = Demo() if dataset == "demo" else None
    first = outputs[methods[0]][1]
    shown = [i for _, part in first.groupby("edit_type", sort=True) for i in part.index[:per_type_shown]]
    targets = _records(outputs[methods[0]][0]).set_index("id")["target_prompt"]
    rows = []
    for sid in shown:
        sample = demo.load(sid) if demo else None
        row = [(sample.image, sample.source_prompt)] if sample else []
        for m in methods:
            run_dir, merged = outputs[m]
            if sid not in merged.index:
                continue
            ok = "ok" if merged.loc[sid, "toy_edit:success"] else "MISSED"
            with Image.open(run_dir / merged.loc[sid, "outputs"]["image"]) as im:
                row.append((im.convert("RGB"), f"[{ok}] {targets[sid]}"))
        rows.append(row)
    header = (["source"] if demo else []) + [f"{m}, CFG {guidance:g}" for m in methods]
    image_grid(rows, cell=128, text_lines=4, header=header).save(out / f"{name}.png")
    return out / f"{name}.md"


def demo_comparison(run_dir: Path, label: str, means: dict[str, float]) -> dict | None:
    """A scored demo edit run beside the stored whole-demo-set figures of DDIM-50 (``ddim-toy``), as
    ``{"rows": [...], "reference": the stored entry}``; None without a stored reference or oracle scores."""
    reference = load_reference()
    if reference is None or "ddim-toy" not in reference["methods"] or "toy_edit:success" not in means:
        return None
    ok = load_run(run_dir).ok
    ddim = reference["methods"]["ddim-toy"]
    rows = [{"method": f"this run ({label})", "edits": len(ok), "success": means["toy_edit:success"],
             "background_psnr": means["toy_edit:background_psnr"], "nfe": statistics.mean(r["nfe"] for r in ok),
             "seconds_per_edit": statistics.mean(r["seconds"] for r in ok)},
            {"method": "DDIM-50 (ddim-toy)", "edits": ddim["edits"], "success": ddim["toy_edit:success"],
             "background_psnr": ddim["toy_edit:background_psnr"], "nfe": ddim["nfe"],
             "seconds_per_edit": ddim["seconds_per_edit"]}]
    return {"rows": rows, "reference": reference}
