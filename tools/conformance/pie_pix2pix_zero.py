"""Make ``tests/conformance/goldens/pie_pix2pix_zero.json``: PIE-Bench's pix2pix-zero editors end to end,
from the official code (cure-lab/PnPInversion ``run_editing_pix2pix_zero.py``, its ``models/pix2pix_zero``).

    python tools/conformance/pie_pix2pix_zero.py --repo PATH/PnPInversion --python PATH/venv-d014/bin/python \
        [--commit SHA] [--out tests/conformance/goldens/pie_pix2pix_zero.json]

(``--commit`` names the commit when ``--repo`` is an exported tree, not a clone.) The editors run in the
environment PIE-Bench pins for them (``environment/pix2pix_zero_requirements.txt``; ``--python``: torch,
"diffusers==0.14.0", "transformers==4.27.4", "huggingface_hub==0.13.4", "numpy<2", "matplotlib<3.9",
pillow, safetensors; BLIP's ``lavis`` is stood in for) through ``pix2pix_zero_reference.py``. This writes
golden_inputs.pnp_components and the cases (golden_inputs.PIE_P2PZ_CASES at PIE_P2PZ_STEPS steps, the
caption given as the source prompt) and reads back per case the inverted latents, the reconstruction and
the edit (7 significant digits), the edit's latents after every step (golden_inputs.uac_project's 16
numbers), the auto-correlation rolls the inversion drew and the UNet rows. Nothing of the reference is
copied; only its outputs are written, with its commit, what of it ran and the package versions of its
environment.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent))
import make_goldens as mg  # noqa: E402

import golden_inputs as gi  # noqa: E402  (tests/conformance, put on the path by make_goldens)

OUT = mg.ROOT / "tests" / "conformance" / "goldens" / "pie_pix2pix_zero.json"
WHAT = ("run_editing_pix2pix_zero.py's edit_image_ddim_pix2pix_zero (ddim+pix2pix-zero) and "
        "edit_image_directinversion_pix2pix_zero (directinversion+pix2pix-zero) with its main's arguments "
        "(CFG 7.5, XA_GUIDANCE 0.1; DDIMInversion's regularisation defaults), NUM_DDIM_STEPS "
        f"{gi.PIE_P2PZ_STEPS}, the BLIP caption given as the source prompt, via "
        "tools/conformance/pix2pix_zero_reference.py; on golden_inputs.pnp_components")


def prepare(work: Path) -> Path:
    """``work`` for ``pix2pix_zero_reference.py``: the components, the cases and SD's scheduler config."""
    from icd_bench.backbones.loaders import SD_SCHEDULER_CONFIG

    mg.save_components(gi.pnp_components(mg.clip_tokenizer()), work / "pipeline")
    cases = [{"method": m, "source": s, "target": t, "caption": s, "num_steps": gi.PIE_P2PZ_STEPS,
              "latent": gi.pnp_latent(gi.PIE_P2PZ_LATENTS + k)}
             for k, (m, s, t) in enumerate(gi.PIE_P2PZ_CASES)]
    torch.save({"cases": cases, "num_steps": gi.PIE_P2PZ_STEPS, "scheduler": dict(SD_SCHEDULER_CONFIG)},
               work / "cases.pt")
    return work


def pie_pix2pix_zero_golden(repo: Path, python: Path, commit: str | None) -> dict:
    """The golden (provenance inside)."""
    with tempfile.TemporaryDirectory() as work:
        ref = mg.run_reference("pix2pix_zero_reference.py", repo, python, prepare(Path(work)))
    cases = [{"method": m, "source": s, "target": t, "caption": s, "num_steps": gi.PIE_P2PZ_STEPS,
              "unet_rows": out["unet_rows"], "timesteps": out["timesteps"], "rolls": out["rolls"],
              "inverted": mg.rounded(out["inversion"][-1], 7),
              "reconstruction": mg.rounded(out["reconstruction"][0], 7),
              "edit": mg.rounded(out["edit"][0], 7),
              "edit_steps": [mg.rounded(gi.uac_project(x[None])) for x in out["steps"]]}
             for (m, s, t), out in zip(gi.PIE_P2PZ_CASES, ref["results"], strict=True)]
    pie = {"repository": "cure-lab/PnPInversion", "commit": mg.commit(repo, commit)}
    prov = mg.provenance({"pie": pie}, WHAT, command=mg.invocation("tools/conformance/pie_pix2pix_zero.py"),
                         reference_versions=ref["versions"],
                         tokenizer="CLIP ViT-L/14 BPE (open_clip's vocabulary), model_max_length 77",
                         projection="edit_steps (before Direct Inversion's offset) as "
                                    "golden_inputs.uac_project (16 numbers); inverted, reconstruction "
                                    "and edit in full")
    return {"provenance": prov, "cases": cases}


def main() -> None:
    mg.golden_main(__doc__, pie_pix2pix_zero_golden, OUT, "cure-lab/PnPInversion",
                   "a Python with the pix2pix-zero editors' environment (diffusers 0.14)",
                   "PIE-Bench pix2pix-zero cases")


if __name__ == "__main__":
    main()
