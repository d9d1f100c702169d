"""`icd-bench reproduce SUITE`: suite files, the plan, the preflight that names every missing piece
at once, and the toy suite run end to end (resumable) into its table and figure."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from icd_bench.errors import ConfigError
from icd_bench.reports.tables import TABLES, paper_numbers, resolve_match
from icd_bench.studies.reproduce import (
    Options,
    list_suites,
    load_suite,
    parse_data_dirs,
    parse_sets,
    plan,
)

from conftest import REPO

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "COLUMNS": "200"}


def icd(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "icd_bench", *args], capture_output=True, text=True,
                          env=ENV, timeout=600, cwd=cwd or REPO)


def write_suite(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_every_shipped_suite_loads_and_names_real_presets_and_paper_rows():
    from icd_bench.config import resolve_method

    suites = list_suites()
    assert {"toy-table3", "table3-piebench", "table3-coco", "table2-coco", "table4-generation",
            "table1-generation", "piebench-p2p"} <= set(suites)
    for name in suites:
        suite = load_suite(name)
        assert suite.table in TABLES and suite.description
        paper = paper_numbers(suite.table)
        for run in suite.runs:
            resolve_method(run.method, list(run.overrides))  # the preset exists and takes the parameters
            if run.match:
                section, row = resolve_match(paper, run.match)  # raises for a row the paper does not print
                assert row


def test_the_icd_suites_score_with_the_icd_code_s_metrics():
    for name in ("table1-generation", "table2-coco", "table3-coco", "table3-piebench", "table4-generation"):
        for run in load_suite(name).runs:
            assert run.metrics and all(m.endswith(":whole:icd") for m in run.metrics), (name, run.metrics)
    assert all(m.endswith(":pie") for run in load_suite("piebench-p2p").runs for m in run.metrics)
    assert len(load_suite("table1-generation").runs) == 16  # four encodings × four decodings


def test_suites_run_the_official_behaviour_unless_asked_for_the_corrections(tmp_path):
    from icd_bench.config import resolve_method

    path = write_suite(tmp_path, """
description = "switches"
table = "table3"
[defaults]
dataset = "demo"
[[runs]]
name = "ef"
method = "ef-ddpm-toy"
[[runs]]
name = "p2p"
method = "ddim-p2p-toy"
set = {reference_compat = false}
[[runs]]
name = "plain"
method = "ddim-toy"
""")
    suite = load_suite(str(path))
    official = {p.run.name: p for p in plan(suite, Options(out=tmp_path / "out"))}
    assert official["ef"].switches == ("reference_compat=true", "zero_last_noise=true")
    assert official["plain"].switches == ()
    ef = resolve_method("ef-ddpm-toy", official["ef"].config.overrides).params
    assert ef.zero_last_noise and ef.reference_compat
    # the suite's own set (and the command line's) come after the switches, and win
    assert not resolve_method("ddim-p2p-toy", official["p2p"].config.overrides).params.reference_compat
    corrected = {p.run.name: p for p in plan(suite, Options(out=tmp_path / "out", corrections=True))}
    assert corrected["ef"].switches == () and corrected["ef"].out == tmp_path / "out" / "corrections" / "ef"
    assert not resolve_method("ef-ddpm-toy", corrected["ef"].config.overrides).params.zero_last_noise


def test_suite_file_errors_name_the_file_and_the_run(tmp_path):
    cases = {
        ('table = "table3"\nwidgets = 1\n'
         '[[runs]]\nname = "a"\nmethod = "ddim-toy"\ndataset = "demo"\n'): "unknown key",
        ('table = "table9"\n'
         '[[runs]]\nname = "a"\nmethod = "ddim-toy"\ndataset = "demo"\n'): "table must be one of",
        'table = "table3"\n': "needs \\[\\[runs\\]\\]",
        'table = "table3"\n[[runs]]\nname = "a"\ndataset = "demo"\n': "method = ",
        ('table = "table3"\n[[runs]]\nname = "a"\nmethod = "ddim-toy"\ndataset = "demo"\n'
         '[[runs]]\nname = "a"\nmethod = "icd-toy"\ndataset = "demo"\n'): "unique",
        ('table = "table3"\n[[runs]]\nname = "a"\nmethod = "ddim-toy"\ndataset = "demo"\n'
         'colour = 1\n'): "run 'a'.*colour",
    }
    for k, (text, fragment) in enumerate(cases.items()):
        with pytest.raises(ConfigError, match=fragment):
            load_suite(str(write_suite(tmp_path, text, f"s{k}.toml")))
    with pytest.raises(ConfigError, match="unknown suite 'nope'.*toy-table3"):
        load_suite("nope")


def test_sets_data_dirs_and_lists_reach_each_run(tmp_path):
    suite = load_suite(str(write_suite(tmp_path, """
table = "table3"
[defaults]
dataset = "piebench"
split = "{lists}/editing_pie_bench_140.csv"
[[runs]]
name = "a"
method = "ddim-toy"
set = {guidance_scale = 2.0}
[[runs]]
name = "b"
method = "icd-toy"
limit = 3
""")))
    sets = parse_sets(["a.num_inference_steps=10", "*.seed_offset=1"], suite)
    assert sets == {"a": ["num_inference_steps=10", "seed_offset=1"], "b": ["seed_offset=1"]}
    with pytest.raises(ConfigError, match="no run 'c'"):
        parse_sets(["c.x=1"], suite)
    with pytest.raises(ConfigError, match="RUN.KEY=VALUE"):
        parse_sets(["guidance_scale=1"], suite)
    opts = Options(out=tmp_path / "out", data_dirs=parse_data_dirs(["piebench=/data/pie"]),
                   lists=Path("/lists"), sets={"a": ["num_inference_steps=10"]}, limit=5)
    a, b = plan(suite, opts)
    assert a.config.split == "/lists/editing_pie_bench_140.csv" and a.config.data_dir == Path("/data/pie")
    assert a.config.overrides == ["guidance_scale=2.0", "num_inference_steps=10"]
    assert (a.config.limit, b.config.limit) == (5, 3) and b.out == tmp_path / "out" / "b"
    with pytest.raises(ConfigError, match="--only"):
        plan(suite, Options(out=tmp_path, only=("z",)))


def test_dry_run_names_every_missing_piece_at_once_and_runs_nothing(tmp_path):
    suite = write_suite(tmp_path, """
table = "table2"
[[runs]]
name = "ddim50"
method = "ddim-sd15-inversion"
dataset = "coco-edit"
task = "invert"
metrics = ["psnr", "dinov2"]
[[runs]]
name = "icd"
method = "icd-sd15"
dataset = "folder"
task = "invert"
""")
    out = tmp_path / "runs"
    res = icd("reproduce", str(suite), "--dry-run", "--out", str(out),
              "--data-dir", f"coco-edit={tmp_path / 'no-coco'}", "--set", "icd.teacher=/no/such/teacher.pt",
              "--set", "icd.forward_lora=/no/f.safetensors", "--set", "icd.reverse_lora=/no/r.safetensors")
    assert res.returncode == 1, res.stdout + res.stderr
    text = " ".join(res.stdout.split())
    assert "not started" in text and "problem(s)" in text
    assert "stable-diffusion-v1-5/stable-diffusion-v1-5" in text  # the backbone, said once for both runs
    assert text.count("cannot load backbone") == 1 and "ddim50, icd" in text
    assert "teacher = /no/such/teacher.pt does not exist" in text  # the weight files
    assert "no-coco" in text  # the data folder
    assert "dinov2" in text  # a metric's weights
    assert not out.exists()
    # the same problems stop a real run before any work
    res = icd("reproduce", str(suite), "--out", str(out))
    assert res.returncode != 0 and "nothing was run" in res.stderr + res.stdout and not out.exists()


def test_toy_suite_runs_scores_and_tabulates_then_resumes(tmp_path):
    out = tmp_path / "suite"
    args = ("reproduce", "toy-table3", "--only", "icd", "--only", "ddim", "--limit", "2", "--batch-size", "2",
            "--out", str(out), "--quiet")
    res = icd(*args)
    assert res.returncode == 0, res.stdout + res.stderr
    table = (out / "table3.md").read_text()
    assert "| icd | icd-toy |" in table and "| ddim | ddim-toy |" in table and "oracle edit success" in table
    assert ("**Method behaviour**: the official implementations'" in table
            and "icd: reference_compat=true" in table)
    # the protocol of each column is said once, by the table's notes
    assert table.count("protocol per column") == 1 and "toy_edit" in table.split("protocol per column")[1]
    assert "--only icd --only ddim --limit 2" in table  # the command that regenerates it, as run
    long = pd.read_csv(out / "table3.csv")
    nfe = long[long["column"] == "UNet evaluations"].set_index("run")["mean"]
    assert nfe["icd"] == 8 and nfe["ddim"] == 150
    assert (out / "figure" / "tradeoff.png").stat().st_size > 0
    for name in ("icd", "ddim"):
        assert len((out / name / "records.jsonl").read_text().splitlines()) == 2
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/*.jsonl")} | {p: p.stat().st_mtime_ns
                                                                       for p in out.glob("*/metrics.parquet")}
    res = icd(*args)
    assert res.returncode == 0 and res.stdout.count("scores up to date") == 2, res.stdout
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # nothing re-run, nothing re-scored
    res = icd("reproduce", "toy-table3", "--dry-run", "--out", str(out))
    assert res.returncode == 0 and "2 samples, scored" in res.stdout and "ready" in res.stdout
