"""Make ``tests/conformance/goldens/pie_baselines.json``: PIE-Bench's editors beyond the iCD paper's
comparison, end to end, from the official code (cure-lab/PnPInversion).

    python tools/conformance/pie_baselines.py --repo PATH/PnPInversion --python PATH/venv-d010/bin/python \
        --masactrl-python PATH/venv-d015/bin/python [--commit SHA] \
        [--out tests/conformance/goldens/pie_baselines.json]

(``--commit`` names the commit when ``--repo`` is an exported tree, not a clone.) Each editor runs in the
environment PIE-Bench pins for it (``environment/*_requirements.txt``), through a reference half of this
folder: the P2P editors (``--python``: torch, "diffusers==0.10.0", "huggingface_hub==0.11.1",
"transformers==4.25.1", "numpy<2", "matplotlib<3.9", pillow, scipy, safetensors, opencv-python-headless)
by ``pnp_p2p_reference.py``, as the golden ``pie_p2p.json``; the MasaCtrl editors (``--masactrl-python``:
torch, "diffusers==0.15.0", "huggingface_hub==0.13.4", "transformers==4.27.4", "numpy<2",
"matplotlib<3.9", pillow, scipy, safetensors, opencv-python-headless, einops) by
``masactrl_reference.py``. This writes golden_inputs.pnp_components and the cases, runs the references
and reads back per case the edit's target latents and the source branch's (7 significant digits).
Nothing of the reference is copied; only its outputs are written, with its commit, what of it ran and
the package versions of every environment.

Cases now: ``directinversion+p2p`` (``P2PEditor.edit_image_directinversion`` with ``run_editing_p2p.py``'s
arguments), refine and replace, 10 steps; ``ddim+masactrl`` and ``directinversion+masactrl``
(``MasaCtrlEditor`` with ``run_editing_masactrl.py``'s), 50 steps.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent))
import make_goldens as mg  # noqa: E402

import golden_inputs as gi  # noqa: E402  (tests/conformance, put on the path by make_goldens)

OUT = mg.ROOT / "tests" / "conformance" / "goldens" / "pie_baselines.json"
WHAT = ("models/p2p_editor.P2PEditor (directinversion+p2p) with run_editing_p2p.py's arguments, via "
        "tools/conformance/pnp_p2p_reference.py; run_editing_masactrl.MasaCtrlEditor (ddim+masactrl, "
        "directinversion+masactrl) with its main's arguments, via tools/conformance/masactrl_reference.py; "
        "on golden_inputs.pnp_components")


def prepare(work: Path) -> Path:
    """``work`` for ``pnp_p2p_reference.py``: the components and golden_inputs.PNP_BASELINE_CASES."""
    from icd_bench.backbones.loaders import SD_SCHEDULER_CONFIG

    mg.save_components(gi.pnp_components(mg.clip_tokenizer()), work / "pipeline")
    cases = [{"method": m, "source": s, "target": t, "blend": list(b), "replace": r,
              "num_steps": gi.PNP_STEPS, "latent": gi.pnp_latent(gi.PNP_BASELINE_LATENTS + k)}
             for k, (m, s, t, b, r) in enumerate(gi.PNP_BASELINE_CASES)]
    torch.save({"cases": cases, "scheduler": dict(SD_SCHEDULER_CONFIG)}, work / "cases.pt")
    return work


def prepare_masactrl(work: Path) -> Path:
    """``work`` for ``masactrl_reference.py``: the components and golden_inputs.PNP_MASACTRL_CASES."""
    mg.save_components(gi.pnp_components(mg.clip_tokenizer()), work / "pipeline")
    cases = [{"method": m, "source": s, "target": t, "latent": gi.pnp_latent(gi.PNP_MASACTRL_LATENTS + k)}
             for k, (m, s, t) in enumerate(gi.PNP_MASACTRL_CASES)]
    torch.save({"cases": cases, "num_steps": gi.PNP_MASACTRL_STEPS}, work / "cases.pt")
    return work


def masactrl_goldens(repo: Path, python: Path) -> tuple[list[dict], dict]:
    """The MasaCtrl cases (the decode's source row and edit, the UNet rows, the grid) and the versions of
    the environment that ran them."""
    with tempfile.TemporaryDirectory() as work:
        ref = mg.run_reference("masactrl_reference.py", repo, python, prepare_masactrl(Path(work)))
    cases = [{"method": m, "source": s, "target": t, "num_steps": gi.PNP_MASACTRL_STEPS,
              "unet_rows": out["unet_rows"], "timesteps": out["timesteps"],
              "steps_offset": out["steps_offset"],
              "source_branch": mg.rounded(out["masactrl"][0], 7), "edit": mg.rounded(out["masactrl"][1], 7)}
             for (m, s, t), out in zip(gi.PNP_MASACTRL_CASES, ref["results"], strict=True)]
    return cases, ref["versions"]


def pie_baseline_goldens(repo: Path, python: Path, commit: str | None, masactrl_python: Path) -> dict:
    """The golden (provenance inside)."""
    masactrl, masactrl_versions = masactrl_goldens(repo, masactrl_python)
    with tempfile.TemporaryDirectory() as work:
        ref = mg.run_reference("pnp_p2p_reference.py", repo, python, prepare(Path(work)))
    cases = [{"method": m, "source": s, "target": t, "blend": list(b), "replace": r,
              "num_steps": gi.PNP_STEPS, "unet_rows": out["unet_rows"],
              "reconstruction": mg.rounded(out["reconstruction"][0], 7),
              "edit": mg.rounded(out["edit"][1], 7)}
             for (m, s, t, b, r), out in zip(gi.PNP_BASELINE_CASES, ref["results"], strict=True)]
    pie = {"repository": "cure-lab/PnPInversion", "commit": mg.commit(repo, commit)}
    prov = mg.provenance({"pie": pie}, WHAT, command=mg.invocation("tools/conformance/pie_baselines.py"),
                         reference_versions={"p2p": ref["versions"], "masactrl": masactrl_versions},
                         tokenizer="CLIP ViT-L/14 BPE (open_clip's vocabulary), model_max_length 77",
                         stopwords="nltk stand-in: icd_bench.words.STOPWORDS")
    return {"provenance": prov, "cases": cases, "masactrl_cases": masactrl}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repo", type=Path, required=True,
                    help="cure-lab/PnPInversion (a clone or an exported tree)")
    ap.add_argument("--python", type=Path, required=True,
                    help="a Python with the reference's environment (diffusers 0.10)")
    ap.add_argument("--masactrl-python", type=Path, required=True,
                    help="a Python with the MasaCtrl editors' environment (diffusers 0.15)")
    ap.add_argument("--commit", help="the commit of --repo when it is an exported tree")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    golden = pie_baseline_goldens(args.repo, args.python, args.commit, args.masactrl_python)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(golden))
    size = args.out.stat().st_size // 1024
    n = len(golden["cases"]) + len(golden["masactrl_cases"])
    print(f"{n} PIE-Bench editor cases → {args.out} ({size} KiB)")


if __name__ == "__main__":
    main()
