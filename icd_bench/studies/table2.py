"""The Table 2 study (paper §4.1): train several iCD configurations and compare their inversion.

A *plan* (TOML, e.g. ``training/toy-table2.toml``) names

- ``recipe``: the stage-2 recipe every configuration starts from (a path relative to the plan),
  and a ``[train]`` table of overrides for all of them (the study's size);
- ``[configs.NAME]``: one trained configuration each, as overrides of that recipe's ``[train]``
  (boundaries, ``lambda_f``, ``lambda_r``, …) plus a ``label`` ("fCD4 + L_f | CD4"); with
  ``adapters = "DIR"`` the configuration is not trained here but read from DIR's
  ``fcdm.safetensors`` / ``cdm.safetensors`` (e.g. ``bundled:toy/icd``, the shipped models);
- ``[[rows]]``: the table, in order — each row decodes with a trained configuration (``config``)
  or is the DDIM reference (``config = "ddim"``: DDIM inversion and reconstruction with
  ``ddim_steps``), in a ``decode`` setting: ``unguided`` (w = 1), ``guided`` (w = ``guided_scale``
  at every step) or ``guided-dcfg`` (w only where t/T ≤ ``dcfg_tau``: dynamic CFG).

`run_study` trains what is missing (each configuration in its own folder, resumable), runs every
row as an ``invert`` run of the unified runner (cached: a finished run is not redone), scores the
rows with the plan's metrics and writes ``table2.md`` and ``table2.csv``; with ``only``, the named rows
are (re)computed and the others kept from the ``table2.csv`` already there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from icd_bench.errors import ConfigError
from icd_bench.markdown import markdown_table

DECODES = ("unguided", "guided", "guided-dcfg")
#: How each metric's mean is shown: (column title, format, higher is better).
COLUMNS = {"psnr": ("PSNR ↑", "{:.2f}", True), "mse": ("MSE ↓", "{:.5f}", False),
           "toy_match": ("oracle preservation ↑", "{:.1%}", True), "lpips": ("LPIPS ↓", "{:.3f}", False),
           "dinov2": ("DINOv2 ↑", "{:.3f}", True)}


@dataclass
class StudyRow:
    name: str
    config: str  # a key of the plan's configs, or "ddim"
    decode: str = "unguided"
    label: str = ""


@dataclass
class StudyPlan:
    path: Path
    recipe: Path
    description: str = ""
    dataset: str = "demo"
    data_dir: str | None = None
    limit: int | None = None
    metrics: tuple[str, ...] = ("psnr", "mse", "toy_match")
    guided_scale: float = 5.0
    dcfg_tau: float = 0.7
    ddim_steps: int = 50
    train: dict[str, Any] = field(default_factory=dict)
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    rows: list[StudyRow] = field(default_factory=list)

    def config_label(self, name: str) -> str:
        return (f"fDDIM{self.ddim_steps} | DDIM{self.ddim_steps}" if name == "ddim"
                else self.configs[name].get("label", name))


def load_plan(path: str | Path) -> StudyPlan:
    """Read and check a study plan (every problem is a `ConfigError` naming the plan)."""
    from icd_bench.training_utils import read_toml

    path = Path(path)
    data = read_toml(path, "study plan")
    known = {"description", "recipe", "dataset", "data_dir", "limit", "metrics", "guided_scale", "dcfg_tau",
             "ddim_steps", "train", "configs", "rows"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"study plan {path}: unknown key(s) {', '.join(unknown)}")
    if "recipe" not in data or not data.get("configs") or not data.get("rows"):
        raise ConfigError(f"study plan {path} needs recipe, [configs.NAME] tables and [[rows]]")
    rows = []
    for i, r in enumerate(data["rows"]):
        extra = sorted(set(r) - {"name", "config", "decode", "label"})
        if extra or "name" not in r or "config" not in r:
            raise ConfigError(f"study plan {path}: row {i + 1} needs name and config (and optionally decode, "
                              f"label){'; unknown: ' + ', '.join(extra) if extra else ''}")
        row = StudyRow(**r)
        if row.config != "ddim" and row.config not in data["configs"]:
            raise ConfigError(f"study plan {path}: row {row.name!r} uses config {row.config!r}, which is not "
                              f"among [configs.*] ({', '.join(data['configs'])}) nor 'ddim'")
        if row.decode not in DECODES:
            raise ConfigError(f"study plan {path}: row {row.name!r} has decode {row.decode!r}; use one of "
                              f"{', '.join(DECODES)}")
        rows.append(row)
    plan = StudyPlan(path=path, recipe=(path.parent / data["recipe"]).resolve(), rows=rows,
                     configs={k: dict(v) for k, v in data["configs"].items()},
                     train=dict(data.get("train", {})),
                     **{k: data[k] for k in ("description", "dataset", "data_dir", "limit", "guided_scale",
                                             "dcfg_tau", "ddim_steps") if k in data})
    if "metrics" in data:
        plan.metrics = tuple(data["metrics"])
    for name in plan.configs:  # fail now on a bad override, not after hours of training
        config_recipe(plan, name)
    return plan


def config_recipe(plan: StudyPlan, name: str, teacher: str | None = None) -> dict:
    """The stage-2 recipe of configuration ``name``: the plan's recipe + its overrides."""
    from icd_bench.icd.train import ICD_SECTIONS
    from icd_bench.training_utils import load_recipe

    recipe = load_recipe(plan.recipe, ICD_SECTIONS)
    overrides = {**plan.train,
                 **{k: v for k, v in plan.configs[name].items() if k not in ("label", "adapters")}}
    if teacher:
        overrides["teacher"] = teacher
    fields = set(recipe["train"].__dataclass_fields__)
    bad = sorted(set(overrides) - fields)
    if bad:
        raise ConfigError(f"study plan {plan.path}: configuration {name!r} sets unknown [train] key(s) "
                          f"{', '.join(bad)}")
    if "reverse_boundaries" in overrides or "forward_boundaries" in overrides:
        overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    if isinstance(overrides.get("guidance_scales"), list):
        overrides["guidance_scales"] = tuple(overrides["guidance_scales"])
    try:
        recipe["train"] = replace(recipe["train"], **overrides)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"study plan {plan.path}: configuration {name!r}: {exc}") from None
    return recipe


def row_overrides(plan: StudyPlan, row: StudyRow, trained: dict[str, dict]) -> tuple[str, list[str]]:
    """(method, ``--set`` overrides) of a row's invert run."""
    w = 1.0 if row.decode == "unguided" else plan.guided_scale
    tau = plan.dcfg_tau if row.decode == "guided-dcfg" else 1.0
    if row.config == "ddim":
        return "ddim", [f"num_inference_steps={plan.ddim_steps}", "inversion_guidance_scale=1.0",
                        f"guidance_scale={w}", f"tau={tau}"]
    paths, train = trained[row.config]["paths"], trained[row.config]["recipe"]["train"]
    sets = [f"forward_lora={paths['forward_lora']}", f"reverse_lora={paths['reverse_lora']}",
            f"guidance_scale={w}", f"tau={tau}", "p2p=false"]
    if paths.get("teacher"):
        sets.append(f"teacher={paths['teacher']}")
    if train.reverse_boundaries is not None:
        sets += [f"reverse_boundaries={list(train.reverse_boundaries)}",
                 f"forward_boundaries={list(train.forward_boundaries)}"]
    else:
        sets.append(f"boundaries={train.boundaries}")
    return "icd", sets


def run_study(plan: StudyPlan, work: Path, out: Path, *, teacher: str | None = None, device: str = "auto",
              only: list[str] | None = None, progress: bool = True, log=print) -> Path:
    """Train, run and score every row of the plan; returns the written ``table2.md``."""
    import json

    from icd_bench.icd.train import train_icd
    from icd_bench.metrics.score import score_run
    from icd_bench.runner import RunConfig, Runner

    work, out = Path(work), Path(out)
    rows = [r for r in plan.rows if not only or r.name in only]
    if only and len(rows) != len(set(only)):
        missing = sorted(set(only) - {r.name for r in plan.rows})
        raise ConfigError(f"--only: no row named {', '.join(missing)} in {plan.path}")
    trained: dict[str, dict] = {}
    for name in dict.fromkeys(r.config for r in rows if r.config != "ddim"):
        recipe = config_recipe(plan, name, teacher)
        folder = work / "train" / name
        done = folder / "icd.json"
        if "adapters" in plan.configs[name]:
            from icd_bench.paths import user_path

            given = user_path(plan.configs[name]["adapters"])
            paths = {"teacher": recipe["train"].teacher or None,
                     "forward_lora": str(given / "fcdm.safetensors"),
                     "reverse_lora": str(given / "cdm.safetensors")}
            for key in ("forward_lora", "reverse_lora"):
                if not Path(paths[key]).is_file():
                    raise ConfigError(f"configuration {name}: {paths[key]} not found")
        elif (done.is_file() and (meta := json.loads(done.read_text()))["recipe"]["train"]["steps"]
              == recipe["train"].steps):
            paths = {k: meta[k] for k in ("teacher", "forward_lora", "reverse_lora")}
        else:
            log(f"training configuration {name} ({plan.config_label(name)}) in {folder}")
            paths = train_icd(recipe, folder, device=device, progress=progress, log=log)
        trained[name] = {"paths": paths, "recipe": recipe}
    backbone = config_recipe(plan, next(iter(plan.configs)), teacher)["train"].backbone
    results = []
    for row in rows:
        method, sets = row_overrides(plan, row, trained)
        cfg = RunConfig(method=method, dataset=plan.dataset,
                        data_dir=Path(plan.data_dir) if plan.data_dir else None,
                        backbone=backbone, task="invert", limit=plan.limit, batch_size=16, overrides=sets,
                        device=device, out=work / "runs" / _slug(row.name))
        summary = Runner(cfg).run()
        if summary.failed:
            log(f"row {row.name}: {summary.failed} samples failed (see {summary.out}/records.jsonl)")
        _, means = score_run(summary.out, list(plan.metrics), device="cpu" if device == "auto" else device)
        values = dict(zip(means["metric"], means["mean"], strict=True))
        nfe = _nfe(summary.out)
        results.append({"row": row.name, "config": row.config,
                        "configuration": row.label or plan.config_label(row.config),
                        "decode": row.decode, "nfe": nfe, **values, "run": str(summary.out)})
        log(f"{row.name:>24}  " + "  ".join(f"{k} {v:.4g}" for k, v in values.items()))
    if only:
        results = _with_kept_rows(plan, results, out / "table2.csv", log)
    return write_table(plan, results, out, teacher=teacher)


def _with_kept_rows(plan: StudyPlan, results: list[dict], csv: Path, log) -> list[dict]:
    """The rows just computed, and every other row of the plan from the table already written at ``csv``
    (so re-running a few rows does not drop the rest), in the plan's order."""
    import pandas as pd

    if not csv.is_file():
        return results
    new = {r["row"]: r for r in results}
    old = {str(r["row"]): r for r in pd.read_csv(csv).to_dict("records")}
    kept = [name for name in (r.name for r in plan.rows) if name not in new and name in old]
    if kept:
        log(f"kept from {csv}: {', '.join(kept)}")
    return [new.get(r.name) or old[r.name] for r in plan.rows if r.name in new or r.name in old]


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name).strip("-").lower() or "row"


def _nfe(run_dir: Path) -> float:
    from icd_bench.reports.runs import load_run

    values = load_run(run_dir).nfe
    return sum(values) / len(values) if values else math.nan


def write_table(plan: StudyPlan, results: list[dict], out: Path, *, teacher: str | None = None) -> Path:
    """``table2.md`` (one section per decoding setting, the best trained row of each column in
    bold) and ``table2.csv`` in ``out``."""
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(results)
    frame.to_csv(out / "table2.csv", index=False)
    metrics = [m for m in plan.metrics if m in frame.columns]
    command = (f"icd-bench toy table2 --plan {plan.path.as_posix()}"
               + (f" --teacher {teacher}" if teacher else ""))
    lines = ["# Table 2 on the toy world: iCD configurations, inversion quality", "",
             plan.description.strip(), "",
             f"Dataset `{plan.dataset}`" + (f" (first {plan.limit})" if plan.limit else "") +
             f": each image is encoded (forward model, unguided) and decoded again; metrics compare the "
             f"reconstruction with the original. Regenerate with `{command}`.", ""]
    sections = {"Unguided decoding (w = 1)": ["unguided"],
                f"Guided decoding, w = {plan.guided_scale:g} "
                f"(d.CFG: guided only where t/T ≤ {plan.dcfg_tau:g})": ["guided", "guided-dcfg"]}
    for title, decodes in sections.items():
        part = frame[frame["decode"].isin(decodes)]
        if part.empty:
            continue
        lines += [f"## {title}", ""]
        titles = [COLUMNS.get(m, (m, "{:.4g}", True))[0] for m in metrics]
        body = []
        trained_part = part[part["config"] != "ddim"]
        best = {}
        for m in metrics:
            if not trained_part.empty and trained_part[m].notna().any():
                higher = COLUMNS.get(m, (m, "", True))[2]
                best[m] = trained_part[m].max() if higher else trained_part[m].min()
        for _, r in part.iterrows():
            name = "" if r["config"] == "ddim" else r["row"]
            config = r["configuration"] + (" + d.CFG" if r["decode"] == "guided-dcfg" else "")
            cells = []
            for m in metrics:
                fmt = COLUMNS.get(m, (m, "{:.4g}", True))[1]
                text = fmt.format(r[m]) if pd.notna(r[m]) else "—"
                is_best = m in best and r["config"] != "ddim" and r[m] == best[m]
                cells.append(f"**{text}**" if is_best else text)
            body.append([name, config, f"{r['nfe']:.0f}", *cells])
        lines += [*markdown_table(["", "configuration", "NFE", *titles], body, left=2), ""]
    (out / "table2.md").write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    return out / "table2.md"
