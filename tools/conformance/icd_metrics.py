"""The iCD paper's metrics as its own code computes them: the golden ``icd_metrics.json``.

Runs yandex-research/invertible-cd's ``utils/metrics.py`` — ``calc_all`` (edits: CLIP image and text
scores, DINOv2, ImageReward over saved ``<j>.jpg`` files), ``calc_inversion`` (DINOv2, PSNR, LPIPS over
saved pairs), the metric functions on images in memory, ``calculate_fid`` and ``get_activations`` —
in its own environment (``--python``: transformers 4, piq, the ``image-reward`` package and its pins), on
tiny random weights in the layouts the official code loads (golden_inputs.write_icd_metric_weights: the
hub folders of ``facebook/dinov2-base`` and ``openai/clip-vit-large-patch14``, torchvision's VGG-16 and
piq's ``lpips_weights.pt``, pytorch-fid's FID Inception file, ``ImageReward.pt`` at its real ViT-L size,
reference statistics) and fixed images (golden_inputs.icd_metric_cases: 512², a non-square 200 × 300,
1024², an identical pair, 96 × 160; prompts up to past ImageReward's 35 and CLIP's 77 tokens).

    python tools/conformance/icd_metrics.py --icd-repo PATH/invertible-cd --python PATH/venv/bin/python

The reference environment (Python 3.11; torch from the local wheels served both sides here):

    python -m venv VENV && VENV/bin/pip install torch==2.14.1 torchvision==0.29.1 "transformers==4.46.3" \\
        "huggingface_hub==0.25.2" "diffusers==0.25.1" "timm==0.6.13" "image-reward==1.5" piq scipy \\
        "numpy<2" pillow "setuptools<81" ipython pandas tqdm safetensors ftfy regex "datasets==2.21.0" \\
        "pyarrow==16.1.0" "fsspec<=2024.6.1"
    VENV/bin/pip install --no-build-isolation PATH/openai-CLIP   # the `clip` package image-reward imports

(``image-reward`` 1.5 pins timm 0.6.13 and imports helpers transformers dropped after 4.55; its package
imports ``clip`` from openai/CLIP's repository, which needs ``pkg_resources``; ``datasets`` must be a
release that accepts numpy 1.)
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

HERE = Path(__file__).resolve()
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT / "tests" / "conformance"))
sys.path.insert(0, str(HERE.parent))
from make_goldens import commit  # noqa: E402

import golden_inputs as gi  # noqa: E402

INSTALL = ('pip install torch==2.14.1 torchvision==0.29.1 "transformers==4.46.3" "huggingface_hub==0.25.2" '
           '"diffusers==0.25.1" "timm==0.6.13" "image-reward==1.5" piq scipy "numpy<2" pillow '
           '"setuptools<81" ipython pandas tqdm safetensors ftfy regex "datasets==2.21.0" "pyarrow==16.1.0" '
           '"fsspec<=2024.6.1"; '
           'pip install --no-build-isolation openai/CLIP@d05afc436d78f1c48dc0dbf8e5980a9d471f35f6')


def write_inputs(work: Path) -> None:
    gi.write_icd_metric_weights(work / "weights", vgg_classifier=True)
    (work / "cases").mkdir(parents=True, exist_ok=True)
    cases = gi.icd_metric_cases()
    for k, case in enumerate(cases):
        Image.fromarray(case["source"]).save(work / "cases" / f"{k}-source.png")
        Image.fromarray(case["output"]).save(work / "cases" / f"{k}-output.png")
    (work / "cases" / "cases.json").write_text(json.dumps({"prompts": [c["prompt"] for c in cases],
                                                           "identical": gi.ICD_IDENTICAL}))
    (work / "fid").mkdir(exist_ok=True)
    for k, image in enumerate(gi.icd_fid_images()):
        Image.fromarray(image).save(work / "fid" / f"{k:03d}.png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--icd-repo", type=Path, required=True)
    ap.add_argument("--icd-commit")
    ap.add_argument("--python", required=True, help="the reference environment's Python")
    ap.add_argument("--work", type=Path,
                    help="keep the inputs and outputs here (default: a temporary folder)")
    ap.add_argument("--out", type=Path, default=gi.GOLDENS)
    args = ap.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory(prefix="icd-metrics-") as tmp:
        work = (args.work or Path(tmp)).resolve()
        write_inputs(work)
        subprocess.run([args.python, str(HERE.parent / "icd_metrics_reference.py"),
                        "--repo", str(args.icd_repo), "--work", str(work)], check=True)
        ref = json.loads((work / "reference.json").read_text())
        with np.load(work / "activations.npz") as data:
            acts = torch.from_numpy(data["activations"])
    ref["fid_activations_projected"] = (acts.double() @ gi.icd_fid_projection()).tolist()
    versions = ref.pop("versions")
    python = ref.pop("python")
    provenance = {
        "reference": {"repository": "yandex-research/invertible-cd",
                      "commit": commit(args.icd_repo, args.icd_commit),
                      "code": "utils/metrics.py (calc_all, calc_inversion, calc_clip_score_images_prompts, "
                              "calc_clip_score_images_images, calc_dinov2_images_images, calc_ir, "
                              "calculate_psnr, calculate_lpips, calculate_fid, get_activations), "
                              "utils/inception.py, utils/generation.load_512"},
        "packages": {"image-reward": versions["image-reward"], "piq": versions["piq"]},
        "environment": {"python": python, "versions": versions, "install": INSTALL},
        "settings": "device cpu (calc_all's and calc_inversion's device='cuda' answered by the CPU, where "
                    "torch.cuda.amp.autocast() is inert); tiny random weights of golden_inputs in the "
                    "official layouts; hub downloads answered by a local Hugging Face cache, torch's hub "
                    "cache and ~/.cache/ImageReward",
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
    }
    (args.out / "icd_metrics.json").write_text(json.dumps({"provenance": provenance, **ref}, indent=1))
    print(json.dumps({k: v for k, v in ref.items() if k != "fid_activations_projected"}, indent=1))


if __name__ == "__main__":
    main()
