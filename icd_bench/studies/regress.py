"""Regression of the bundled toy models' inversion quality (``icd-bench regress``).

Each case inverts and reconstructs the demo set with one preset through the unified runner, in a
fresh work folder (a cached run would hide a regression), and scores PSNR, MSE and the oracle's
preservation score. The means are compared with the stored baseline
(``reports/regression/toy-inversion.json``): a metric *regresses* when it is worse than the
baseline by more than its tolerance; better values pass and are reported, and ``--update`` writes
the current values as the new baseline deliberately. Tolerances absorb the small numeric
differences between CPUs and thread counts (the runs are deterministic on one machine).
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

from icd_bench.errors import ConfigError

BASELINE = Path("reports/regression/toy-inversion.json")
#: case → preset: the bundled iCD default (4 + 4 steps, unguided decoding for inversion) and DDIM-50
CASES = {"icd-toy": "icd-toy", "ddim50-toy": "ddim-toy-inversion"}
#: case → --set overrides: iCD's inversion quality is measured unguided, as in Table 2's first block
OVERRIDES = {"icd-toy": ["guidance_scale=1.0"], "ddim50-toy": []}
METRICS = ("psnr", "mse", "toy_match")


@dataclass(frozen=True)
class Tolerance:
    higher_is_better: bool
    absolute: float = 0.0  # allowed worsening in the metric's units ...
    relative: float = 0.0  # ... plus this fraction of the baseline value

    def allowed(self, baseline: float) -> float:
        return self.absolute + self.relative * abs(baseline)


TOLERANCES = {
    "psnr": Tolerance(True, absolute=0.5),  # dB
    "mse": Tolerance(False, absolute=1e-5, relative=0.10),
    "toy_match": Tolerance(True, absolute=0.03),  # 3 points of the oracle's preservation score
}


def measure(*, dataset: str = "demo", limit: int | None = None, device: str = "cpu",
            work: Path | None = None, extra: dict[str, list[str]] | None = None,
            log=print) -> dict[str, dict[str, float]]:
    """Run every case in a fresh folder and return case → {metric: mean, "nfe": NFE per sample}.
    ``extra``: case → more ``--set`` overrides (e.g. another reverse adapter, to check a candidate)."""
    unknown = sorted(set(extra or {}) - set(CASES))
    if unknown:
        raise ConfigError(f"unknown regression case(s) {unknown}; cases: {', '.join(CASES)}")
    from icd_bench.metrics.score import score_run
    from icd_bench.reports.runs import load_run
    from icd_bench.runner import RunConfig, Runner

    if work is not None and work.exists() and any(work.iterdir()):
        raise ConfigError(f"--work {work} is not empty: regression runs must start fresh (a cached run would "
                          "hide a regression); give an empty or new folder")
    with tempfile.TemporaryDirectory(prefix="icd-bench-regress-") as tmp:
        root = work or Path(tmp)
        results = {}
        for case, preset in CASES.items():
            log(f"{case}: inverting the {dataset} set with {preset} ...")
            cfg = RunConfig(method=preset, dataset=dataset, task="invert", limit=limit, batch_size=16,
                            overrides=[*OVERRIDES[case], *(extra or {}).get(case, [])], device=device,
                            out=root / case)
            summary = Runner(cfg).run()
            if summary.failed:
                raise ConfigError(f"{case}: {summary.failed} samples failed (see {summary.out}/errors.log)")
            _, means = score_run(summary.out, list(METRICS), device=device)
            values = {m: float(v) for m, v in zip(means["metric"], means["mean"], strict=True)}
            nfe = load_run(summary.out).nfe
            values["nfe"] = sum(nfe) / len(nfe)
            values["n"] = len(nfe)
            results[case] = values
    return results


def compare(baseline: dict, current: dict[str, dict[str, float]]) -> list[dict]:
    """One row per case × metric: baseline, now, change, allowed worsening, status (ok, better,
    REGRESSED, new, missing)."""
    rows = []
    base_cases = baseline.get("cases", {})
    for case in sorted(set(base_cases) | set(current)):
        for metric in METRICS:
            b = base_cases.get(case, {}).get(metric)
            c = current.get(case, {}).get(metric)
            tol = TOLERANCES[metric]
            row = {"case": case, "metric": metric, "baseline": b, "now": c, "allowed": None, "status": "ok"}
            if b is None or c is None:
                row["status"] = "new" if b is None else "missing"
                rows.append(row)
                continue
            worse = (b - c) if tol.higher_is_better else (c - b)
            row["allowed"] = tol.allowed(b)
            if math.isnan(c) or worse > row["allowed"]:
                row["status"] = "REGRESSED"
            elif worse < -row["allowed"]:
                row["status"] = "better"
            rows.append(row)
    return rows


def failed(rows: list[dict]) -> bool:
    return any(r["status"] in ("REGRESSED", "missing") for r in rows)


def read_baseline(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"no regression baseline at {path}: "
                          f"create it deliberately with `icd-bench regress --update`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path} is not valid JSON ({e.msg}, line {e.lineno}); restore it from git or "
                          "rewrite it with `icd-bench regress --update`") from None
    if not isinstance(data.get("cases"), dict):
        raise ConfigError(f"{path} has no 'cases' table; rewrite it with `icd-bench regress --update`")
    return data


def write_baseline(path: Path, current: dict, *, dataset: str, limit: int | None) -> None:
    from icd_bench.provenance import versions

    data = {"command": "icd-bench regress --update" + (f" --limit {limit}" if limit else ""),
            "dataset": dataset, "limit": limit, "cases": current,
            "presets": CASES, "overrides": OVERRIDES,
            "tolerances": {m: {"higher_is_better": t.higher_is_better, "absolute": t.absolute,
                               "relative": t.relative} for m, t in TOLERANCES.items()},
            "versions": versions()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def case_settings(items: list[str] | None) -> dict[str, list[str]]:
    """``CASE:KEY=VALUE`` items (``regress --set``) as case → [KEY=VALUE, ...]."""
    extra: dict[str, list[str]] = {}
    for item in items or []:
        case, sep, setting = item.partition(":")
        if not sep or "=" not in setting:
            raise ConfigError(f"--set expects CASE:KEY=VALUE, got {item!r}")
        extra.setdefault(case, []).append(setting)
    return extra


def check(*, update: bool, baseline: Path, limit: int | None, device: str, work: Path | None,
          extra: dict[str, list[str]], log=print) -> tuple[dict, list[dict] | None]:
    """`regress`: refuse a baseline of another sample limit, measure, then write the baseline
    (``update``) or compare with it. Returns (the measured values, the comparison rows — None after
    an update)."""
    base = None if update else read_baseline(baseline)
    if base is not None and base.get("limit") != limit:
        raise ConfigError(f"{baseline} was measured with limit {base.get('limit')}, this check with {limit}: "
                          "compare like with like "
                          "(or write a baseline for this limit with --update --baseline FILE)")
    if update and extra and baseline == BASELINE:
        raise ConfigError("--update with --set would store a baseline of other weights "
                          "than the bundled ones; write such a baseline to another file with --baseline")
    current = measure(limit=limit, device=device, work=work, extra=extra, log=log)
    if update:
        write_baseline(baseline, current, dataset="demo", limit=limit)
        return current, None
    return current, compare(base, current)
