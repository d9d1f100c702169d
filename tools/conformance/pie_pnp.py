"""Make ``tests/conformance/goldens/pie_pnp.json``: PIE-Bench's Plug-and-Play editors end to end, from the
official code (cure-lab/PnPInversion ``run_editing_pnp.py``, after MichalGeyer/plug-and-play).

    python tools/conformance/pie_pnp.py --repo PATH/PnPInversion --python PATH/venv-d017/bin/python \
        [--commit SHA] [--out tests/conformance/goldens/pie_pnp.json]

(``--commit`` names the commit when ``--repo`` is an exported tree, not a clone.) The editors run in the
environment PIE-Bench pins for them (``environment/pnp_requirements.txt``; ``--python``: torch,
"diffusers==0.17.1", "transformers==4.30.2", "huggingface-hub==0.16.4", "numpy<2", "matplotlib<3.9",
pillow, safetensors, tqdm) through ``pnp_reference.py``. This writes golden_inputs.pnp_components and the
cases (golden_inputs.PIE_PNP_CASES, ``ddim+pnp`` and ``directinversion+pnp`` at PIE_PNP_STEPS steps), runs the
reference and reads back per case the edit's final latents (7 significant digits), its latents after
every step (golden_inputs.uac_project's 16 numbers), the DDIM + PnP reconstruction and the UNet rows.
Nothing of the reference is copied; only its outputs are written, with its commit, what of it ran and the
package versions of its environment.
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

OUT = mg.ROOT / "tests" / "conformance" / "goldens" / "pie_pnp.json"
WHAT = ("run_editing_pnp.py's edit_image_ddim_PnP (ddim+pnp) and edit_image_directinversion_PnP "
        "(directinversion+pnp) with its main's arguments (CFG 7.5, pnp_f_t 0.8, pnp_attn_t 0.5), "
        f"NUM_DDIM_STEPS {gi.PIE_PNP_STEPS}, float32, via tools/conformance/pnp_reference.py; on "
        "golden_inputs.pnp_components")


def prepare(work: Path) -> Path:
    """``work`` for ``pnp_reference.py``: the components, the cases and SD's scheduler config."""
    from icd_bench.backbones.loaders import SD_SCHEDULER_CONFIG

    mg.save_components(gi.pnp_components(mg.clip_tokenizer()), work / "pipeline")
    cases = [{"method": m, "source": s, "target": t, "latent": gi.pnp_latent(gi.PIE_PNP_LATENTS + k)}
             for k, (m, s, t) in enumerate(gi.PIE_PNP_CASES)]
    torch.save({"cases": cases, "num_steps": gi.PIE_PNP_STEPS, "scheduler": dict(SD_SCHEDULER_CONFIG)},
               work / "cases.pt")
    return work


def pie_pnp_golden(repo: Path, python: Path, commit: str | None) -> dict:
    """The golden (provenance inside)."""
    with tempfile.TemporaryDirectory() as work:
        ref = mg.run_reference("pnp_reference.py", repo, python, prepare(Path(work)))
    cases = [{"method": m, "source": s, "target": t, "num_steps": gi.PIE_PNP_STEPS,
              "unet_rows": out["unet_rows"], "timesteps": out["timesteps"],
              "reconstruction": mg.rounded(out["reconstruction"][0], 7),
              "edit": mg.rounded(out["edit"][0], 7),
              "edit_steps": [mg.rounded(gi.uac_project(x[None])) for x in out["edit_steps"]]}
             for (m, s, t), out in zip(gi.PIE_PNP_CASES, ref["results"], strict=True)]
    pie = {"repository": "cure-lab/PnPInversion", "commit": mg.commit(repo, commit)}
    prov = mg.provenance({"pie": pie}, WHAT, command=mg.invocation("tools/conformance/pie_pnp.py"),
                         reference_versions=ref["versions"],
                         tokenizer="CLIP ViT-L/14 BPE (open_clip's vocabulary), model_max_length 77",
                         projection="edit_steps as golden_inputs.uac_project (16 numbers); edit and "
                                    "reconstruction in full")
    return {"provenance": prov, "cases": cases}


def main() -> None:
    mg.golden_main(__doc__, pie_pnp_golden, OUT, "cure-lab/PnPInversion",
                   "a Python with the PnP editors' environment (diffusers 0.17.1)",
                   "PIE-Bench PnP cases")


if __name__ == "__main__":
    main()
