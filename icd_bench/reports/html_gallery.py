"""A static HTML gallery of one or more runs (``icd-bench gallery``): per sample, the source and each
run's output side by side, with the prompts and the per-sample metrics; rows sort by any column.

The page is one file with relative image paths (it opens from disk, and keeps working when the
folder holding it and the runs moves together); every text taken from datasets and runs is
HTML-escaped, so a prompt is always shown as text. Sorting is a few lines of inline JavaScript;
``#sort=<column>`` (optionally ``&desc``) in the address sorts on load.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

import pandas as pd

from icd_bench.errors import ConfigError
from icd_bench.reports.runs import load_run

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1em;color:#222}
table{border-collapse:collapse}th,td{border:1px solid #ddd;padding:4px;vertical-align:top;font-size:12px}
th{background:#f4f4f4;cursor:pointer;position:sticky;top:0}th.sorted{background:#dde8ff}
img{width:160px;height:160px;image-rendering:pixelated;display:block}
.prompt{max-width:220px}.metric{color:#555;font-size:11px}.failed{color:#b00}
.warning{color:#a60;font-size:11px;max-width:160px}
"""

_SCRIPT = """
function sortBy(col, desc){
  const body=document.querySelector('tbody');
  const rows=[...body.rows];
  const key=r=>{const v=r.dataset['k'+col];const n=parseFloat(v);return isNaN(n)?(v||''):n};
  rows.sort((a,b)=>{const x=key(a),y=key(b);const c=(x>y)-(x<y);return desc?-c:c});
  rows.forEach(r=>body.appendChild(r));
  document.querySelectorAll('th').forEach(th=>th.classList.toggle('sorted',th.dataset.col==String(col)));
  document.body.dataset.sorted=col+(desc?':desc':'');
}
document.querySelectorAll('th[data-col]').forEach(th=>th.addEventListener('click',()=>{
  const desc=document.body.dataset.sorted===th.dataset.col; sortBy(th.dataset.col, desc);}));
window.addEventListener('load',()=>{const im=[...document.images];
  document.body.dataset.images=im.filter(i=>i.complete&&i.naturalWidth>0).length+'/'+im.length;});
const m=location.hash.match(/sort=([0-9]+)(&desc)?/); if(m){sortBy(m[1], !!m[2]);}
"""


def _run(run: Path) -> dict:
    data = load_run(run)
    metrics = pd.DataFrame()
    if not data.metrics.empty:
        metrics = data.metrics.pivot_table(index="id", columns="metric", values="value", aggfunc="first")
    return {"dir": data.dir, "name": data.name, "records": {r["id"]: r for r in data.records},
            "metrics": metrics}


def write_gallery(runs: list[Path], out: Path, *, limit: int | None = None) -> Path:
    """Write the gallery page ``out`` for ``runs``; returns its path."""
    if not runs:
        raise ConfigError("give at least one run directory")
    data = [_run(Path(r)) for r in runs]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    base = out.parent.resolve()

    def rel(run: dict, path: str | None) -> str | None:
        if not path:
            return None
        full = (run["dir"] / path).resolve()
        return os.path.relpath(full, base).replace(os.sep, "/") if full.is_file() else None

    ids: list[str] = []
    for d in data:
        ids += [i for i in d["records"] if i not in ids]
    if limit:
        ids = ids[:limit]
    esc = html.escape
    # columns: 0 id, 1 source prompt, 2 target prompt, then per run: one sortable column per metric
    headers = ["id", "source prompt", "target prompt", "source"]
    for d in data:
        headers.append(d["name"])
        headers += [f"{d['name']}: {m}" for m in d["metrics"].columns]
    head = "".join(f'<th data-col="{c}">{esc(h)}</th>' for c, h in enumerate(headers))
    rows = []
    for sid in ids:
        first = next(d["records"][sid] for d in data if sid in d["records"])
        keys = {0: sid, 1: first.get("source_prompt") or "", 2: first.get("target_prompt") or ""}
        src = next((rel(d, d["records"][sid].get("outputs", {}).get("source")) for d in data
                    if sid in d["records"] and d["records"][sid].get("outputs", {}).get("source")), None)
        cells = [f"<td>{esc(sid)}</td>", f'<td class="prompt">{esc(keys[1])}</td>',
                 f'<td class="prompt">{esc(keys[2])}</td>',
                 f'<td><img src="{esc(src)}" alt="source" loading="lazy"></td>' if src else "<td>—</td>"]
        c = 4
        for d in data:
            c += 1  # the run's output column (not sortable by value)
            r = d["records"].get(sid)
            ms = list(d["metrics"].columns)
            values = d["metrics"].loc[sid] if sid in d["metrics"].index else pd.Series(dtype=float)
            if r is None:
                cells.append("<td>—</td>")
            elif r.get("status") != "ok":
                cells.append(f'<td class="failed">failed: {esc(str(r.get("error") or "")[:300])}</td>')
            else:
                img = rel(d, r.get("outputs", {}).get("image"))
                picture = f'<img src="{esc(img)}" alt="output" loading="lazy">' if img else "—"
                cost = (f'<div class="metric">NFE {esc(str(r.get("nfe")))}, '
                        f'{float(r.get("seconds") or 0):.2f} s</div>')
                notes = "".join(f'<div class="warning">warning: {esc(str(n))}</div>'
                                for n in r.get("warnings") or ())
                cells.append(f"<td>{picture}{cost}{notes}</td>")
            for m in ms:
                v = values.get(m)
                ok = v is not None and pd.notna(v) and r is not None and r.get("status") == "ok"
                keys[c] = repr(float(v)) if ok else ""
                cells.append(f"<td>{f'{float(v):.4g}' if ok else ''}</td>")
                c += 1
        attrs = " ".join(f'data-k{c}="{esc(str(v))}"' for c, v in keys.items())
        rows.append(f"<tr {attrs}>{''.join(cells)}</tr>")
    title = "icd-bench gallery: " + ", ".join(d["name"] for d in data)
    page = (f"<!doctype html><html lang=en><meta charset=utf-8><title>{esc(title)}</title>"
            f"<style>{_STYLE}</style>"
            f"<body><h1>{esc(title)}</h1>"
            f"<p>{len(ids)} samples; click a column title to sort (again: descending).</p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
            f"<script>{_SCRIPT}</script></body></html>")
    tmp = out.with_suffix(".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    return out
