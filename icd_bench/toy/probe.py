"""The toy world's iCD probe (`icd_bench.icd.probe`): trained adapters against the toy teacher on a fixed
set of toy scenes, one CSV row per probed model pair (``reports/toy/probe.csv``)."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import torch

from icd_bench.markdown import markdown_table

BUNDLED = {"teacher": "bundled:toy/icd/cfg_distill.safetensors",
           "forward_lora": "bundled:toy/icd/fcdm.safetensors",
           "reverse_lora": "bundled:toy/icd/cdm.safetensors"}


def probe_models(*, teacher: str, forward_lora: str | None, reverse_lora: str | None,
                 boundaries: str = "4step-tau0.8", guidance: float = 5.0, images: int = 16, seed: int = 0,
                 lora_alpha: float | None = None, backbone: str = "toy",
                 device: str = "cpu") -> dict[str, float]:
    """Probe one (forward, reverse) adapter pair (None: zero-initialised, i.e. the untrained student) on
    ``images`` toy training-distribution scenes (seed ``seed``); the metrics of `icd_bench.icd.probe`."""
    from icd_bench.backbones import load_backbone
    from icd_bench.icd.boundaries import choose_boundaries
    from icd_bench.icd.pipeline import ICDPipeline
    from icd_bench.icd.probe import Probe
    from icd_bench.icd.train import DataConfig, TrainData

    bb = load_backbone(backbone, device=device, dtype=torch.float32)
    pipe = ICDPipeline(bb, choose_boundaries(boundaries, None, None), teacher=teacher,
                       forward_lora=forward_lora, reverse_lora=reverse_lora, lora_alpha=lora_alpha)
    # the toy training data's scenes, from a seed no training recipe uses
    x, captions = TrainData(DataConfig(source="toy"), 10_000 + seed, bb.preprocess,
                            bb.resolution).batch(0, images)
    return Probe(pipe).run(x, captions, guidance, seed=seed)


def append_row(path: Path, label: str, values: dict[str, float], extra: dict[str, str]) -> None:
    """One row (label, time, the given settings, the values) appended to the CSV at ``path``; new columns
    widen the file (older rows get empty cells)."""
    row = {"label": label, "time": time.strftime("%Y-%m-%d %H:%M"), **extra,
           **{k: f"{v:.5g}" for k, v in values.items()}}
    rows, fields = [], list(row)
    if path.exists():
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            fields = list(reader.fieldnames or []) + [k for k in row if k not in (reader.fieldnames or [])]
    rows.append(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(rows)


#: The probe's headline columns in probe.md: (CSV column, header).
SUMMARY = (("rev_rmse_w1_999_779", "CD 999→779 unguided"), ("guidance", "guided at w"),
           ("rev_rmse_999_779", "CD 999→779 guided"), ("rev_rmse_259_0", "CD 259→0 guided"),
           ("rev_rmse_w1_779_519", "CD 779→519 unguided"), ("fwd_rmse_779_999", "fCD 779→999"),
           ("enc_std", "encoding std"), ("cross_rmse", "CD(teacher inversion)"), ("self_rmse", "CD(fCD)"),
           ("recon_psnr", "recon. PSNR dB"), ("hf_icd", "HF energy, unguided 4-step"))
REFERENCE = {"rev_rmse_w1_999_779": "ddim_rmse_w1_999_779", "guidance": "guidance",
             "rev_rmse_999_779": "ddim_rmse_999_779", "rev_rmse_259_0": "ddim_rmse_259_0",
             "rev_rmse_w1_779_519": "ddim_rmse_w1_779_519", "enc_std": "ddim_enc_std", "hf_icd": "hf_ddim"}


def write_markdown(csv_path: Path, md_path: Path) -> None:
    """probe.md: the CSV's rows under the headline columns, with the teacher's reference values."""
    with csv_path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    lines = ["# iCD probe of the toy models", "",
             f"`icd-bench toy probe --label LABEL [--forward-lora F --reverse-lora R]` appends one row to "
             f"`{csv_path.name}` (all columns) and rewrites this page. Distances are RMSE on the toy world's "
             "pixel-space latents ([-1, 1]) to the teacher (the guidance-distilled student with its adapters "
             "off, DDIM on its 50-step grid) from the same inputs, on 16 fixed toy scenes; see "
             "`icd_bench/icd/probe.py`. The guided columns are at the row's w (`--guidance`, 5 by default). "
             "Teacher row: a plain DDIM jump over the same segment (guided: at the first row's w), the "
             "teacher's 50-step inversion std, DDIM-50 samples' high-frequency energy.", ""]
    first = rows[0]
    teacher = ["teacher (DDIM)",
               *(first.get(REFERENCE[c], "") if c in REFERENCE else "—" for c, _ in SUMMARY)]
    lines += markdown_table(["model pair", *(h for _, h in SUMMARY)],
                            [teacher, *([r["label"], *(r.get(c, "") for c, _ in SUMMARY)] for r in rows)])
    lines += ["", "Each variant of `training/probe/`: "
              "`icd-bench train icd --recipe training/probe/NAME.toml --out "
              "runs/train/probe-NAME`, then `icd-bench toy probe --label ... --forward-lora "
              "runs/train/probe-NAME/fcdm.safetensors --reverse-lora runs/train/probe-NAME/cdm.safetensors` "
              "(the bundled pair: no adapter options; the untrained one: "
              "`--forward-lora none --reverse-lora none`)."]
    md_path.write_text("\n".join(lines) + "\n")
