"""Make ``tests/conformance/goldens/turboedit.json``: TurboEdit end to end from the official code
(GiilDe/turbo-edit ``main.run``).

    python tools/conformance/turboedit_golden.py --repo PATH/turbo-edit --python PATH/venv-d027/bin/python \
        [--commit SHA] [--out tests/conformance/goldens/turboedit.json]

(``--commit`` names the commit when ``--repo`` is an exported tree, not a clone.) The reference runs in the
environment its ``requirements.txt`` pins (``--python``: torch, "diffusers==0.27.2", "transformers==4.43.3",
"accelerate==0.33.0", "ml-collections==0.1.1", "json-with-comments==1.2.7", "huggingface-hub<0.26",
"numpy<2", pillow, safetensors, pyyaml) through ``turboedit_reference.py``. This writes the tiny
SDXL-shaped components (icd_bench.backbones.tiny, seed golden_inputs.TURBO_SEED) and the cases
(golden_inputs.TURBO_CASES: the 4- and the 3-step configuration, seed 2, w 1.5; 16² latents and a 64² one)
and reads back per case the edit's latents after every step and the noised latents ``x_ts`` (7 significant
digits), the timesteps it stepped at and the UNet rows. Nothing of the reference is
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

OUT = mg.ROOT / "tests" / "conformance" / "goldens" / "turboedit.json"
WHAT = ("main.run (set_pipeline with run_configs/noise_shift_steps_{4,3}.yaml, create_xts, "
        "utils.get_ddpm_inversion_scheduler, the SDXL img2img pipeline at guidance 0) with its __main__'s "
        "defaults (seed 2, w 1.5), via tools/conformance/turboedit_reference.py; on the tiny SDXL of "
        f"icd_bench.backbones.tiny (seed {gi.TURBO_SEED}) with golden_inputs.TURBO_SCHEDULER")


def prepare(work: Path) -> Path:
    """``work`` for ``turboedit_reference.py``: the components, the cases and the scheduler config."""
    from icd_bench.backbones.tiny import save_tiny, write_tiny_tokenizer

    d = save_tiny(work / "pipeline", "sdxl", seed=gi.TURBO_SEED)
    for name in ("tokenizer", "tokenizer_2"):  # as vocabulary files, which every transformers release reads
        for f in (d / name).iterdir():
            f.unlink()
        write_tiny_tokenizer(d / name)
    cases = [{"num_steps": k, "source": s, "target": t, "seed": gi.TURBO_RUN_SEED, "w1": gi.TURBO_W,
              "latent": gi.turbo_latent(j)} for j, (k, _, s, t) in enumerate(gi.TURBO_CASES)]
    torch.save({"cases": cases, "scheduler": dict(gi.TURBO_SCHEDULER)}, work / "cases.pt")
    return work


def turboedit_golden(repo: Path, python: Path, commit: str | None) -> dict:
    """The golden (provenance inside)."""
    with tempfile.TemporaryDirectory() as work:
        ref = mg.run_reference("turboedit_reference.py", repo, python, prepare(Path(work)))
    cases = [{"num_steps": k, "side": side, "source": s, "target": t, "seed": gi.TURBO_RUN_SEED,
              "w": gi.TURBO_W, "unet_rows": out["unet_rows"], "timesteps": out["timesteps"],
              "x_ts": mg.rounded(out["x_ts"], 7), "steps": mg.rounded(out["steps"], 7)}
             for (k, side, s, t), out in zip(gi.TURBO_CASES, ref["results"], strict=True)]
    turbo = {"repository": "GiilDe/turbo-edit", "commit": mg.commit(repo, commit)}
    prov = mg.provenance({"turboedit": turbo}, WHAT,
                         command=mg.invocation("tools/conformance/turboedit_golden.py"),
                         reference_versions=ref["versions"], scheduler=dict(gi.TURBO_SCHEDULER),
                         tokenizer="icd_bench.backbones.tiny's character-level CLIP tokenizer, both encoders")
    return {"provenance": prov, "cases": cases}


def main() -> None:
    mg.golden_main(__doc__, turboedit_golden, OUT, "GiilDe/turbo-edit",
                   "a Python with the reference's environment (diffusers 0.27.2)",
                   "TurboEdit cases")


if __name__ == "__main__":
    main()
