"""Editing methods side by side on the demo set, judged by the toy oracle.

`compare_edits` runs each method's ``edit`` task on the demo set through the unified runner (at
one shared CFG scale, so guidance strength is not what differs), scores every edit with
``toy_edit`` (edit success, background PSNR, kept attributes), and writes

- ``NAME.md`` / ``NAME.csv`` (``edits`` by default): per method the UNet evaluations and seconds
  per edit and the scores, edit success per edit type, and the command;
- ``NAME.png``: before/after rows (the source and its prompt, then each method's edit with the
  target prompt and the oracle's verdict) for two edits of each type.

One shared CFG can put a method at a dominated point of its own curve: `studies.sweep` runs each
method over its guidance instead (and stores the curves the main job reads DDIM-50 from).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from PIL import Image

from icd_bench.gallery import image_grid
from icd_bench.markdown import markdown_table
from icd_bench.reports.runs import load_run

MEASURES = {"toy_edit:success": "edit success", "toy_edit:background_psnr": "background PSNR (dB)",
            "toy_edit:kept": "kept attributes"}


def _records(run_dir: Path) -> pd.DataFrame:
    return pd.DataFrame(load_run(run_dir).ok)


def guidance_override(method: str, guidance: float) -> str | None:
    """The ``--set`` that makes ``method`` edit at CFG ``guidance``: its ``guidance_scale``, the
    target scale of methods with separate source and target scales (EF-DDPM, InfEdit), or the w a
    guidance-embedded consistency model is given (ReNoise) — `sweep.knob_field`'s guidance field. None for
    a method without CFG (TurboEdit): it edits at its preset's setting."""
    from icd_bench.studies.sweep import GUIDANCE, NON_CFG_GUIDANCE_FIELDS, knob_field

    field = knob_field(method, GUIDANCE)
    return None if field in NON_CFG_GUIDANCE_FIELDS else f"{field}={guidance}"


def compare_edits(methods: list[str], guidance: float, work: Path, out: Path, *, dataset: str = "demo",
                  device: str = "auto", limit: int | None = None, per_type_shown: int = 2,
                  command: str = "", name: str = "edits", log=print) -> Path:
    """Run, score and tabulate (see the module docstring)."""
    from icd_bench.data.piebench import Demo
    from icd_bench.metrics.score import score_run
    from icd_bench.runner import RunConfig, Runner

    work, out = Path(work), Path(out)
    results, outputs = [], {}
    for method in methods:
        override = guidance_override(method, guidance)
        cfg = RunConfig(method=method, dataset=dataset, backbone=None, task="edit", limit=limit,
                        batch_size=16, overrides=[override] if override else [], device=device,
                        out=work / method)
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
    own = [m for m in methods if guidance_override(m, guidance) is None]
    lines = [f"# Editing the demo set: {', '.join(methods)} at CFG {guidance:g}", "",
             "Each method edits every demo image from its source prompt to its target prompt through the "
             "unified runner, at one shared CFG scale (a method's own scale otherwise"
             + ((f"; {own[0]}, which uses no CFG, at its preset's setting" if len(own) == 1 else
                 f"; {', '.join(own)}, which use no CFG, at their presets' settings") if own else "")
             + "); the toy oracle reads "
             "the result: *edit success* (the output reads as the target scene), *background PSNR* (the "
             "pixels no object touches, against the source) and *kept attributes* (what the edit should not "
             "change still reads as the source's). *Seconds per edit* are wall-clock times of this one run "
             "(batch time / batch size), so they compare methods only against each other.", ""]
    if command:
        lines += [f"Regenerate with `{command}`.", ""]
    lines += markdown_table(
        ["method", "edits", "UNet evaluations per edit", "seconds per edit", "edit success",
         "background PSNR (dB)", "kept attributes"],
        ([r["method"], int(r["n"]), f"{r['nfe']:.0f}", f"{r['seconds per edit']:.2f}",
          f"{r['edit success']:.0%}", f"{r['background PSNR (dB)']:.1f}", f"{r['kept attributes']:.0%}"]
         for _, r in overall.iterrows()))
    by_type = []
    for group in table.loc[table["edit type"] != "all", "edit type"].drop_duplicates():
        part = table[table["edit type"] == group].set_index("method")
        by_type.append([group, int(part["n"].iloc[0]),
                        *(f"{part.loc[m, 'edit success']:.0%}" for m in methods)])
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
