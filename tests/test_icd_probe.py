"""The iCD probe (`icd_bench.icd.probe`, ``icd-bench toy probe``): its teacher references and its CSV."""

from __future__ import annotations

import csv

import pytest

from icd_bench.toy.probe import append_row, probe_models, write_markdown


@pytest.fixture(scope="module")
def untrained():
    """The probe of zero-initialised adapters: iCD's models are then the teacher itself."""
    return probe_models(teacher="bundled:toy/icd/cfg_distill.safetensors", forward_lora=None,
                        reverse_lora=None, images=4)


def test_untrained_adapters_jump_exactly_as_the_teachers_ddim_step(untrained):
    """With zero LoRA, every reverse step is the teacher's one DDIM jump: the probe's consistency and DDIM
    distances coincide, guided and unguided, and a jump over many grid steps is off the 50-step trajectory."""
    rev = {k: v for k, v in untrained.items() if k.startswith("rev_rmse")}
    assert len(rev) == 8  # 4 segments, guided and unguided
    for key, value in rev.items():
        assert value == pytest.approx(untrained[key.replace("rev_", "ddim_")], rel=1e-6, abs=1e-7)
        assert value > 1e-3


def test_the_probe_reads_the_teachers_inversion_and_samples(untrained):
    # the teacher's 50-step DDIM inversion ends near unit variance; its samples are smooth, the coarse 4-step
    # jumps of an untrained student are not the teacher's: real distances
    assert 0.7 < untrained["ddim_enc_std"] < 1.3
    assert untrained["hf_ddim"] < untrained["hf_icd"]
    for k in ("fwd_rmse_19_259", "fwd_rmse_779_999", "cross_rmse", "self_rmse"):
        assert untrained[k] > 0
    assert 0 < untrained["recon_psnr"] < 100


def test_probe_rows_append_and_widen_the_csv(tmp_path):
    path = tmp_path / "probe.csv"
    append_row(path, "a", {"x": 1.0}, {"note": "first"})
    append_row(path, "b", {"x": 2.0, "y": 3.0}, {"note": "second"})
    rows = list(csv.DictReader(path.open()))
    assert [r["label"] for r in rows] == ["a", "b"]
    assert rows[0]["y"] == "" and rows[1]["y"] == "3" and rows[0]["x"] == "1"


def test_probe_markdown_lists_every_row_with_the_teachers_reference(tmp_path):
    path = tmp_path / "probe.csv"
    append_row(path, "trained", {"rev_rmse_w1_999_779": 0.3, "ddim_rmse_w1_999_779": 0.05, "enc_std": 0.6,
                                 "ddim_enc_std": 1.07}, {})
    append_row(path, "other",
               {"rev_rmse_w1_999_779": 0.04, "ddim_rmse_w1_999_779": 0.05, "rev_rmse_259_0": 0.33},
               {"guidance": "7"})
    write_markdown(path, tmp_path / "probe.md")
    table = [line for line in (tmp_path / "probe.md").read_text().splitlines() if line.startswith("| ")]
    assert table[1].startswith("| teacher (DDIM) | 0.05 |") and "1.07" in table[1]
    assert table[2].startswith("| trained | 0.3 |") and table[3].startswith("| other | 0.04 | 7 | | 0.33 |")
    assert "| guided at w | CD 999→779 guided | CD 259→0 guided |" in table[0]
