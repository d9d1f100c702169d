"""``icd-bench reproduce SUITE``: a declarative suite of runs → the paper table (and figure).

A suite file (``suites/<name>.toml``) names the report table and a list of runs, each a method or
preset × dataset/split × task × metrics, with the paper row it stands beside::

    description = "Table 3, PIE-Bench rows: iCD-XL (8 NFE)"
    table = "table3"                       # a layout of `icd-bench report --table`
    figure = {kind = "tradeoff", metric = "clip_t"}   # optional

    [defaults]                             # any run key, for every run
    dataset = "piebench"
    split = "{lists}/editing_pie_bench_140.csv"   # {lists}: --lists DIR, the published instruction files
    metrics = ["clip_t", "dinov2", "clip_i"]

    [[runs]]
    name = "icd-xl"                        # the run's folder under --out
    method = "icd-sdxl"
    match = "PIE-Bench/Ours, 8"            # the paper row beside it (optional)
    set = {guidance_scale = 8.0}           # method parameters (optional)

**Official behaviour by default.** Where a method's defaults deliberately correct its official
implementation (the README's deviations table: P2P's ``reference_compat``, EF-DDPM's
``zero_last_noise``, ReNoise's ``kl_reference`` and ``noise_correction``), every run of a suite sets the
official values (`config.official_switches`) before the suite's own ``set`` and the command line's, so a
reproduced number is the published computation; ``Options.corrections`` (``--corrections``) runs the
project's corrections instead, into ``OUT/corrections/``. Each table says which behaviour and which
metric protocol (flavour) made its columns.

Every run goes through the runner (`Runner`, resumable: finished samples are skipped) and the
scorer (skipped when ``metrics.parquet`` is newer than the records and holds the metrics asked
for); the table is `reports.tables.build_table` over the runs. Before any work, `preflight` checks
every run's method, weights, backbone files, data and metric weights and returns every problem at
once — what ``--dry-run`` prints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from icd_bench.config import repo_root
from icd_bench.errors import ConfigError, IcdBenchError
from icd_bench.training_utils import read_toml

SUITE_KEYS = {"description", "table", "figure", "defaults", "runs", "source", "by_edit_type"}
RUN_KEYS = {"name", "method", "dataset", "split", "task", "metrics", "set", "match", "backbone", "limit",
            "batch_size", "seed", "dtype", "data_dir", "options"}
FIGURE_KINDS = ("tradeoff",)


@dataclass(frozen=True)
class SuiteRun:
    name: str
    method: str
    dataset: str
    task: str = "edit"
    split: str | None = None
    metrics: tuple[str, ...] | None = None  # None: the scorer's defaults for the run
    overrides: tuple[str, ...] = ()  # KEY=VALUE, as `icd-bench run --set`
    match: str | None = None
    backbone: str | None = None
    limit: int | None = None
    batch_size: int = 1
    seed: int = 0
    dtype: str = "fp32"
    data_dir: str | None = None
    # metric options, as `icd-bench score --option`; {data_dir}: the run's
    options: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Suite:
    name: str
    path: Path
    description: str
    table: str
    runs: tuple[SuiteRun, ...]
    figure: dict[str, str] = field(default_factory=dict)
    by_edit_type: bool = False  # the table also per edit type of each run (PIE-Bench's ten)


def suite_dirs() -> list[Path]:
    """Where suite names are looked up: ./suites, then the icd-bench source tree's ``suites/``."""
    out = []
    for d in (Path.cwd() / "suites", repo_root() / "suites"):
        if d.is_dir() and all(d.resolve() != o.resolve() for o in out):
            out.append(d)
    return out


def list_suites() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in suite_dirs():
        for path in sorted(d.glob("*.toml")):
            found.setdefault(path.stem, path)
    return found


def find_suite(name: str) -> Path:
    path = Path(name).expanduser()
    if path.suffix == ".toml" or path.is_file():
        if not path.is_file():
            raise ConfigError(f"suite file {name} does not exist")
        return path
    suites = list_suites()
    if name not in suites:
        known = ", ".join(suites) or "none"
        raise ConfigError(f"unknown suite {name!r}; known: {known} (or pass the path of a suite .toml)")
    return suites[name]


def _overrides(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, dict):
        return tuple(f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in value.items())
    if isinstance(value, list) and all(isinstance(v, str) and "=" in v for v in value):
        return tuple(value)
    raise ConfigError(f"{where}: set must be a table (key = value) or a list of \"KEY=VALUE\" strings")


def load_suite(name_or_path: str) -> Suite:
    """Parse and check a suite file; every error names the file and the run."""
    from icd_bench.reports.tables import TABLES

    path = find_suite(name_or_path)
    data = read_toml(path, "suite")
    unknown = set(data) - SUITE_KEYS
    if unknown:
        raise ConfigError(f"suite {path}: unknown key(s) {', '.join(sorted(unknown))}; "
                          f"allowed: {', '.join(sorted(SUITE_KEYS))}")
    table = data.get("table")
    if table not in TABLES:
        raise ConfigError(f"suite {path}: table must be one of {', '.join(TABLES)}, got {table!r}")
    figure = data.get("figure", {})
    if figure and (not isinstance(figure, dict) or figure.get("kind") not in FIGURE_KINDS
                   or "metric" not in figure):
        raise ConfigError(f"suite {path}: figure must be {{kind = \"tradeoff\", metric = \"<metric key>\"}}")
    defaults = data.get("defaults", {})
    entries = data.get("runs", [])
    if not isinstance(defaults, dict) or not isinstance(entries, list) or not entries:
        raise ConfigError(f"suite {path}: needs [[runs]] entries (and [defaults] must be a table)")
    runs, seen = [], set()
    for k, entry in enumerate(entries):
        merged = {**defaults, **entry}
        where = f"suite {path}, run {entry.get('name', k + 1)!r}"
        bad = set(merged) - RUN_KEYS
        if bad:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(bad))}; "
                              f"allowed: {', '.join(sorted(RUN_KEYS))}")
        for key in ("name", "method", "dataset"):
            if not isinstance(merged.get(key), str) or not merged[key]:
                raise ConfigError(f"{where}: {key} = \"...\" is required")
        if merged["name"] in seen or "/" in merged["name"]:
            raise ConfigError(f"{where}: run names must be unique folder names")
        seen.add(merged["name"])
        options = merged.get("options", {})
        if not isinstance(options, dict):
            raise ConfigError(f"{where}: options must be a table of metric options "
                              f"(e.g. {{fid_ref = \"...\"}})")
        metrics = merged.get("metrics")
        if metrics is not None and not (isinstance(metrics, list)
                                        and all(isinstance(m, str) for m in metrics)):
            raise ConfigError(f"{where}: metrics must be a list of metric keys")
        runs.append(SuiteRun(
            name=merged["name"], method=merged["method"], dataset=merged["dataset"],
            task=merged.get("task", "edit"), split=merged.get("split"),
            metrics=tuple(metrics) if metrics is not None else None,
            overrides=_overrides(merged.get("set", {}), where), match=merged.get("match"),
            backbone=merged.get("backbone"), limit=merged.get("limit"),
            batch_size=int(merged.get("batch_size", 1)), seed=int(merged.get("seed", 0)),
            dtype=merged.get("dtype", "fp32"), data_dir=merged.get("data_dir"),
            options=tuple((str(k), str(v)) for k, v in options.items())))
    by_edit_type = data.get("by_edit_type", False)
    if not isinstance(by_edit_type, bool):
        raise ConfigError(f"suite {path}: by_edit_type must be true or false")
    return Suite(name=path.stem, path=path, description=str(data.get("description", "")).strip(), table=table,
                 runs=tuple(runs), figure=dict(figure), by_edit_type=by_edit_type)


# -- planning ---------------------------------------------------------------------------------------
@dataclass
class Options:
    """What the command line adds to a suite: where the data and the published lists are, extra
    parameters per run (``RUN.KEY=VALUE``), a sample limit, the device."""

    out: Path
    data_dirs: dict[str, Path] = field(default_factory=dict)  # dataset name → folder ("*": every dataset)
    lists: Path = Path("benchmarks")
    sets: dict[str, list[str]] = field(default_factory=dict)  # run name → KEY=VALUE
    limit: int | None = None
    only: tuple[str, ...] = ()
    device: str = "auto"
    batch_size: int | None = None
    corrections: bool = False  # the project's corrections instead of the official behaviour

    @property
    def root(self) -> Path:
        """Where the runs and the table go: ``out``, or ``out/corrections`` for the project's corrections."""
        return self.out / "corrections" if self.corrections else self.out


def parse_sets(items: list[str], suite: Suite) -> dict[str, list[str]]:
    """``RUN.KEY=VALUE`` (one run) or ``*.KEY=VALUE`` (every run) → run name → [KEY=VALUE]."""
    names = [r.name for r in suite.runs]
    out: dict[str, list[str]] = {}
    for item in items:
        target, dot, rest = item.partition(".")
        if not dot or "=" not in rest or not target:
            raise ConfigError(f"--set expects RUN.KEY=VALUE (RUN: a run of the suite, or * for all), "
                              f"got {item!r}")
        if target != "*" and target not in names:
            raise ConfigError(f"--set {item!r}: the suite has no run {target!r} (runs: {', '.join(names)})")
        for name in names if target == "*" else [target]:
            out.setdefault(name, []).append(rest)
    return out


def parse_data_dirs(items: list[str]) -> dict[str, Path]:
    """``DATASET=PATH`` or a bare ``PATH`` (every dataset of the suite)."""
    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        out[name.strip() if sep else "*"] = Path(path if sep else item).expanduser()
    return out


@dataclass
class Planned:
    run: SuiteRun
    config: Any  # runner.RunConfig
    out: Path
    metric_options: dict[str, str] = field(default_factory=dict)
    # KEY=VALUE: the official behaviour set on this run (empty with corrections)
    switches: tuple[str, ...] = ()

    @property
    def metrics(self) -> list[str] | None:
        return list(self.run.metrics) if self.run.metrics is not None else None


def behaviour_switches(method: str) -> tuple[str, ...]:
    """``KEY=VALUE`` for every official switch of a preset's or method's parameters (none: nothing differs,
    or the name is unknown — preflight reports that)."""
    from icd_bench.config import list_presets, official_switches
    from icd_bench.registry import METHODS

    presets = list_presets()
    name = presets[method].method if method in presets else method
    if name not in METHODS:
        return ()
    return tuple(f"{k}={str(v).lower() if isinstance(v, bool) else v}"
                 for k, v in official_switches(METHODS.get(name).Params).items())


def plan(suite: Suite, options: Options) -> list[Planned]:
    from icd_bench.runner import RunConfig

    unknown = sorted(set(options.only) - {r.name for r in suite.runs})
    if unknown:
        raise ConfigError(f"--only: the suite has no run(s) {', '.join(unknown)} "
                          f"(runs: {', '.join(r.name for r in suite.runs)})")
    out = []
    for run in suite.runs:
        if options.only and run.name not in options.only:
            continue
        split = run.split.replace("{lists}", str(options.lists)) if run.split else None
        data_dir = options.data_dirs.get(run.dataset, options.data_dirs.get("*"))
        if data_dir is None and run.data_dir:
            data_dir = Path(run.data_dir)
        limits = [x for x in (run.limit, options.limit) if x is not None]
        limit = min(limits) if limits else None
        switches = () if options.corrections else behaviour_switches(run.method)
        cfg = RunConfig(method=run.method, dataset=run.dataset, data_dir=data_dir, split=split,
                        backbone=run.backbone, task=run.task, out=options.root / run.name, limit=limit,
                        batch_size=options.batch_size or run.batch_size, seed=run.seed,
                        overrides=[*switches, *run.overrides, *options.sets.get(run.name, [])],
                        device=options.device, dtype=run.dtype)
        folder = str(data_dir) if data_dir is not None else "."
        metric_options = {k: v.replace("{data_dir}", folder).replace("{lists}", str(options.lists))
                          for k, v in run.options}
        out.append(Planned(run, cfg, options.root / run.name, metric_options, switches))
    return out


# -- preflight --------------------------------------------------------------------------------------
def _weight_files(spec) -> list[str]:
    """Weight parameters a preset requires that name a file that is not there."""
    missing = []
    for key in spec.requires:
        value = getattr(spec.params, key, None)
        if (isinstance(value, str) and value and not value.startswith("bundled:")
                and not Path(value).expanduser().exists()):
            missing.append(f"{key} = {value} does not exist")
    return missing


def preflight(planned: list[Planned]) -> list[tuple[str, str]]:
    """Every problem that would stop a run, as (run name, message), found without running anything:
    the method and its parameters, the preset's weights, the backbone's files, the dataset (its
    folder, its split file), the task, and each metric's weights."""
    from icd_bench.backbones import check_backbone
    from icd_bench.config import resolve_method
    from icd_bench.data.base import open_dataset
    from icd_bench.metrics.base import MetricSpec
    from icd_bench.registry import METHODS, METRICS

    problems: list[tuple[str, str]] = []
    checked_backbones: dict[str, str | None] = {}
    checked_metrics: dict[tuple, str | None] = {}
    for p in planned:
        name, cfg = p.run.name, p.config

        def problem(msg: str, name: str = name) -> None:
            problems.append((name, msg))
        spec = None
        try:
            spec = resolve_method(cfg.method, cfg.overrides)
            spec.check_weights()
        except IcdBenchError as exc:
            problem(str(exc))
        if spec is not None:
            for msg in _weight_files(spec):
                problem(f"preset {spec.preset!r}: {msg}")
            if cfg.task not in METHODS.get(spec.method).tasks:
                problem(f"method {spec.method!r} does not support task {cfg.task!r}")
            backbone = cfg.backbone or spec.backbone
            if backbone:
                if backbone not in checked_backbones:
                    try:
                        check_backbone(backbone)
                        checked_backbones[backbone] = None
                    except IcdBenchError as exc:
                        checked_backbones[backbone] = str(exc)
                if checked_backbones[backbone]:
                    problem(checked_backbones[backbone])
        try:
            dataset = open_dataset(cfg.dataset, data_dir=cfg.data_dir, split=cfg.split, task=cfg.task)
            if len(dataset.ids()) == 0:
                problem(f"dataset {cfg.dataset!r} has no samples")
        except IcdBenchError as exc:
            problem(str(exc))
        for text in p.run.metrics or ():
            text_key = (text, tuple(sorted(p.metric_options.items())))
            if text_key not in checked_metrics:
                try:
                    ms = MetricSpec.parse(text)
                    METRICS.get(ms.name)(ms, "cpu", p.metric_options).check()
                    checked_metrics[text_key] = None
                except IcdBenchError as exc:
                    checked_metrics[text_key] = str(exc)
            if checked_metrics[text_key]:
                problem(checked_metrics[text_key])
    return problems


def group_problems(problems: list[tuple[str, str]]) -> list[tuple[str, list[str]]]:
    """The same message for several runs (one missing weight file, one data folder) said once."""
    grouped: dict[str, list[str]] = {}
    for name, msg in problems:
        runs = grouped.setdefault(msg, [])
        if name not in runs:
            runs.append(name)
    return [(msg, runs) for msg, runs in grouped.items()]


# -- running ----------------------------------------------------------------------------------------
def status(p: Planned) -> tuple[int, int | None]:
    """(samples finished, metrics up to date: 1 / 0, or None when the run has not started)."""
    from icd_bench.store import RunStore

    if not (p.out / "manifest.json").is_file():
        return 0, None
    store = RunStore(p.out)
    return len(store.finished_ids()), int(scores_current(p))


def scores_current(p: Planned) -> bool:
    """metrics.parquet is newer than every records file and holds every metric asked for."""
    import pandas as pd

    parquet = p.out / "metrics.parquet"
    records = list(p.out.glob("records*.jsonl"))
    if not parquet.is_file() or any(r.stat().st_mtime > parquet.stat().st_mtime for r in records):
        return False
    if p.run.metrics is None:
        return True
    have = set(pd.read_parquet(parquet, columns=["metric"])["metric"])
    return all(any(k == m or k.startswith(m + ":") for k in have) for m in p.run.metrics)


def command_line(suite: Suite, options: Options) -> str:
    """The ``icd-bench reproduce`` call that regenerates this table (weight paths given by --set included)."""
    parts = [f"icd-bench reproduce {suite.name}", f"--out {options.out}"]
    parts += [f"--data-dir {k}={v}" if k != "*" else f"--data-dir {v}" for k, v in options.data_dirs.items()]
    if options.lists != Path("benchmarks"):
        parts.append(f"--lists {options.lists}")
    parts += [f"--set {run}.{kv}" for run, kvs in options.sets.items() for kv in kvs]
    parts += [f"--only {name}" for name in options.only]
    if options.limit is not None:
        parts.append(f"--limit {options.limit}")
    if options.batch_size is not None:
        parts.append(f"--batch-size {options.batch_size}")
    if options.corrections:
        parts.append("--corrections")
    return " ".join(parts)


def behaviour_line(planned: list[Planned], corrections: bool) -> str:
    """The line that heads a table: which method behaviour ran (the table's notes say which protocol made
    each metric column)."""
    if corrections:
        return ("**Method behaviour**: the project's corrections of the official implementations "
                "(`--corrections`; the README's deviations table).")
    switched = sorted({f"{p.run.name}: {', '.join(p.switches)}" for p in planned if p.switches})
    return ("**Method behaviour**: the official implementations' (the suite sets their switches: "
            + ("; ".join(switched) if switched else "none differ for these methods")
            + "; `--corrections` runs the project's corrections instead).")


@dataclass
class Result:
    runs: list[Path]
    written: list[Path]
    summaries: dict[str, Any]


def reproduce(suite: Suite, options: Options, *, run_one: Callable[[Any], Any] | None = None,
              score_one: Callable[[Planned], Any] | None = None, log: Callable[[str], None] = print,
              resamples: int = 1000) -> Result:
    """Run, score and tabulate the suite. ``run_one(runner)`` runs a `Runner` (default: its `run`;
    the CLI passes one with a progress bar); ``score_one(planned)`` scores a run (default:
    `score_run` on the run's metrics). Refuses to start while `preflight` finds problems."""
    from icd_bench.metrics.score import score_run
    from icd_bench.reports.tables import TABLES, build_table, render
    from icd_bench.runner import Runner, resolve_device

    planned = plan(suite, options)
    problems = preflight(planned)
    if problems:
        lines = "\n".join(f"  - [{', '.join(runs)}] {msg}" for msg, runs in group_problems(problems))
        raise ConfigError(f"suite {suite.name}: {len(problems)} problem(s); nothing was run:\n{lines}\n"
                          f"(`icd-bench reproduce {suite.name} --dry-run` lists them with the plan)")
    options.root.mkdir(parents=True, exist_ok=True)
    summaries = {}
    for k, p in enumerate(planned, 1):
        log(f"[{k}/{len(planned)}] {p.run.name}: {p.run.method} on {p.run.dataset}"
            f"{'/' + Path(p.config.split).name if p.config.split else ''} ({p.run.task}) → {p.out}")
        runner = Runner(p.config)
        summaries[p.run.name] = (run_one or (lambda r: r.run()))(runner)
        if scores_current(p):
            log("  scores up to date")
        elif score_one is not None:
            score_one(p)
        else:
            score_run(p.out, p.metrics, device=str(resolve_device(options.device, (0, 1))),
                      options=p.metric_options)
    runs = [p.out for p in planned]
    spec = TABLES[suite.table]
    matches = {p.run.name: p.run.match for p in planned if p.run.match}
    long, notes = build_table(spec, runs, resamples=resamples, matches=matches,
                              by_edit_type=suite.by_edit_type)
    command = command_line(suite, options)
    written = []
    for fmt in ("md", "csv"):
        path = options.root / f"{suite.table}.{fmt}"
        text = render(spec, long, notes, fmt, command)
        if fmt == "md":
            head = ([suite.description] if suite.description else []) + [
                behaviour_line(planned, options.corrections)]
            text = "\n\n".join([*head, text])
        path.write_text(text, encoding="utf-8")
        written.append(path)
    if suite.figure:
        from icd_bench.reports.figures import tradeoff_figure

        written += tradeoff_figure(runs, suite.figure["metric"],
                                   options.root / "figure" / suite.figure["kind"])
    return Result(runs=runs, written=written, summaries=summaries)


__all__ = ["Options", "Planned", "Suite", "SuiteRun", "find_suite", "group_problems", "list_suites",
           "load_suite", "parse_data_dirs", "parse_sets", "plan", "preflight", "reproduce", "status"]
