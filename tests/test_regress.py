"""`icd-bench regress`: the comparison rule (tolerances, better vs regressed, missing cases), and the
command end to end on a few demo samples (baseline written, re-check passes, a degraded baseline fails)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from icd_bench.errors import ConfigError
from icd_bench.studies.regress import compare, failed, read_baseline

BASE = {"cases": {"icd-toy": {"psnr": 34.0, "mse": 0.0004, "toy_match": 0.98}}}


def status(current):
    return {r["metric"]: r["status"] for r in compare(BASE, {"icd-toy": current})}


def test_within_tolerance_passes_and_beyond_regresses():
    assert (status({"psnr": 33.7, "mse": 0.00043, "toy_match": 0.96})
            == {"psnr": "ok", "mse": "ok", "toy_match": "ok"})
    s = status({"psnr": 33.2, "mse": 0.0006, "toy_match": 0.90})
    assert s == {"psnr": "REGRESSED", "mse": "REGRESSED", "toy_match": "REGRESSED"}
    assert failed(compare(BASE, {"icd-toy": {"psnr": 33.2, "mse": 0.0004, "toy_match": 0.98}}))


def test_direction_matters_and_improvements_are_reported_not_failed():
    s = status({"psnr": 35.0, "mse": 0.0002, "toy_match": 1.0})
    assert s == {"psnr": "better", "mse": "better", "toy_match": "ok"}
    assert not failed(compare(BASE, {"icd-toy": {"psnr": 35.0, "mse": 0.0002, "toy_match": 1.0}}))
    assert status({"psnr": float("nan"), "mse": 0.0004, "toy_match": 0.98})["psnr"] == "REGRESSED"


def test_a_missing_case_fails_and_a_new_one_does_not():
    rows = compare(BASE, {"other": {"psnr": 1.0, "mse": 1.0, "toy_match": 0.0}})
    assert {r["status"] for r in rows if r["case"] == "icd-toy"} == {"missing"}
    assert {r["status"] for r in rows if r["case"] == "other"} == {"new"}
    assert failed(rows)


def test_bad_baselines_name_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="--update"):
        read_baseline(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        read_baseline(tmp_path / "bad.json")


def test_the_stored_baseline_covers_both_cases_on_the_whole_demo_set():
    data = read_baseline(__import__("pathlib").Path(__file__).parents[1]
                         / "reports/regression/toy-inversion.json")
    assert set(data["cases"]) == {"icd-toy", "ddim50-toy"} and data["limit"] is None
    assert all(c["n"] == 70 for c in data["cases"].values())


def test_command_end_to_end(tmp_path):
    base = tmp_path / "base.json"
    cmd = [sys.executable, "-m", "icd_bench", "regress", "--limit", "3", "--baseline", str(base)]
    env = {"HF_HUB_OFFLINE": "1", "PATH": "", "COLUMNS": "160", "OMP_NUM_THREADS": "1"}
    res = subprocess.run([*cmd, "--update"], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr + res.stdout
    assert "no regression" in res.stdout
    data = json.loads(base.read_text())
    data["cases"]["icd-toy"]["psnr"] += 5.0  # a baseline the models no longer reach
    base.write_text(json.dumps(data))
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert res.returncode == 1 and "REGRESSED" in res.stdout and "regressed" in res.stderr
    res = subprocess.run([sys.executable, "-m", "icd_bench", "regress", "--baseline", str(base)],
                         capture_output=True, text=True, env=env)
    assert res.returncode == 2 and "limit" in res.stderr


def test_a_perturbed_reverse_adapter_fails_the_stored_check(tmp_path):
    """What CI guards: the bundled models pass against their baseline; the same models with noise on
    the reverse (decoding) adapter's LoRA weights regress."""
    import torch
    from safetensors.torch import load_file, save_file

    from icd_bench.paths import user_path

    src = user_path("bundled:toy/icd/cdm.safetensors")
    state = load_file(str(src))
    g = torch.Generator().manual_seed(0)
    noisy = {k: (v + (3.0 * v.float().std() * torch.randn(v.shape, generator=g)).to(v.dtype)
                 if "lora_B" in k else v)
             for k, v in state.items()}
    bad = tmp_path / "cdm-perturbed.safetensors"
    from safetensors import safe_open

    with safe_open(str(src), framework="pt") as f:
        meta = f.metadata()
    save_file(noisy, str(bad), metadata=meta)
    base = tmp_path / "base.json"
    env = {"HF_HUB_OFFLINE": "1", "PATH": "", "COLUMNS": "160", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "icd_bench", "regress", "--limit", "6", "--baseline", str(base)]
    assert subprocess.run([*cmd, "--update"], capture_output=True, text=True, env=env).returncode == 0
    res = subprocess.run([*cmd, "--set", f"icd-toy:reverse_lora={bad}"],
                         capture_output=True, text=True, env=env)
    assert res.returncode == 1, res.stdout[-3000:]
    assert "REGRESSED" in res.stdout
