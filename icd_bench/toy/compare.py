"""Editing methods side by side on the demo set, judged by the toy oracle.

`compare_edits` runs each method's ``edit`` task on the demo set through the unified runner (at
one shared CFG scale, so guidance strength is not what differs), scores every edit with
``toy_edit`` (edit success, background PSNR, kept attributes), and writes

- ``edits.md`` / ``edits.csv``: the scores overall and per edit type, and the command;
- ``edits.png``: before/after rows (the source and its prompt, then each method's edit with the
  target prompt and the oracle's verdict) for two edits of each type.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from PIL import Image

from icd_bench.gallery import image_grid
from icd_bench.store import RunStore

MEASURES = {"toy_edit:success": "edit success", "toy_edit:background_psnr": "background PSNR (dB)",
            "toy_edit:kept": "kept attributes"}


def _records(run_dir: Path) -> pd.DataFrame:
    return pd.DataFrame([r for r in RunStore(run_dir).records() if r["status"] == "ok"])


def compare_edits(methods: list[str], guidance: float, work: Path, out: Path, *, dataset: str = "demo",
                  device: str = "auto", limit: int | None = None, per_type_shown: int = 2,
                  command: str = "", log=print) -> Path:
    from icd_bench.data.piebench import Demo
    from icd_bench.metrics.score import score_run
    from icd_bench.runner import RunConfig, Runner

    work, out = Path(work), Path(out)
    results, outputs = [], {}
    for name in methods:
        cfg = RunConfig(method=name, dataset=dataset, backbone=None, task="edit", limit=limit, batch_size=16,
                        overrides=[f"guidance_scale={guidance}"], device=device, out=work / name)
        summary = Runner(cfg).run()
        frame, _ = score_run(summary.out, ["toy_edit"])
        records = _records(summary.out)
        scores = frame[frame["error"].isna()].pivot(index="id", columns="metric", values="value")
        merged = records.set_index("id")[["edit_type", "nfe", "outputs"]].join(scores, how="inner")
        outputs[name] = (summary.out, merged)
        for group, part in [("all", merged), *merged.groupby("edit_type", sort=True)]:
            results.append({"method": name, "edit type": group, "n": len(part), "nfe": part["nfe"].mean(),
                            **{label: part[key].mean() for key, label in MEASURES.items()}})
        log(f"{name}: edit success {merged['toy_edit:success'].mean():.1%} over {len(merged)} edits")
    table = pd.DataFrame(results)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "edits.csv", index=False, float_format="%.4f")

    lines = [f"# Editing the demo set: {' vs '.join(methods)} at CFG {guidance:g}", "",
             "Each method edits every demo image from its source prompt to its target prompt through the "
             "unified runner; the toy oracle reads the result: *edit success* (the output reads as the "
             "target scene), *background PSNR* (the pixels no object touches, against the source) and "
             "*kept attributes* (what the edit should not change still reads as the source's).", ""]
    if command:
        lines += [f"Regenerate with `{command}`.", ""]
    lines += ["| edit type | " + " | ".join(f"{m}: success / bg PSNR / kept" for m in methods) + " |",
              "|---|" + "---:|" * len(methods)]
    for group in table["edit type"].drop_duplicates():
        cells = []
        for m in methods:
            r = table[(table["method"] == m) & (table["edit type"] == group)].iloc[0]
            cells.append(f"{r['edit success']:.0%} / {r['background PSNR (dB)']:.1f} / {r['kept attributes']:.0%}")
        label = f"**all** ({int(table[table['edit type'] == group]['n'].iloc[0])})" if group == "all" else group
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    nfe = ", ".join(f"{m} {table[(table['method'] == m) & (table['edit type'] == 'all')]['nfe'].iloc[0]:.0f}"
                    for m in methods)
    lines += ["", f"UNet evaluations per edit: {nfe}.", "", "![before and after](edits.png)", ""]
    (out / "edits.md").write_text("\n".join(lines), encoding="utf-8")

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
    image_grid(rows, cell=128, text_lines=4, header=header).save(out / "edits.png")
    return out / "edits.md"
