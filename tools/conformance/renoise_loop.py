"""Make ``tests/conformance/goldens/renoise_loop.json``: ReNoise's inversion loop end to end,
from the official code.

    python tools/conformance/renoise_loop.py --repo PATH/ReNoise-Inversion \
        --python PATH/venv-d024/bin/python \
        [--commit SHA] [--out tests/conformance/goldens/renoise_loop.json]

(``--commit`` names the commit when ``--repo`` is an exported tree, not a clone.) The official SD
pipelines need diffusers 0.24, so they run in a second environment (``--python``: torch, "diffusers==0.24.0",
"huggingface_hub==0.20.3", "transformers==4.36.2", "accelerate==0.25.0", "numpy<2", pillow, safetensors):
this writes golden_inputs.renoise_loop_components and the inputs, runs ``renoise_reference.py`` there and
reads its outputs back. Nothing of the reference is copied; only its outputs are written, with the
repository's commit and the package versions of both environments.

Stored per run of golden_inputs.RENOISE_LOOP_CASES: the latent after every inversion step and the noise
list after it (golden_inputs.uac_project's fixed random projection), the inverted latent and the
reconstruction in full, the generator's draws (projected) and the UNet rows. The released settings with
noise correction on are run too: the official LCM scheduler cannot (the error is stored).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent))
from make_goldens import (  # noqa: E402
    ROOT,
    clip_tokenizer,
    golden_main,
    rounded,
    run_reference,
    save_components,
)
from make_goldens import commit as repo_commit  # noqa: E402

import golden_inputs as gi  # noqa: E402  (tests/conformance, put on the path by make_goldens)

OUT = ROOT / "tests" / "conformance" / "goldens" / "renoise_loop.json"
WHAT = ("main.run with src.utils.enums_utils.get_pipes(Model_Type.SD15, Scheduler_Type.LCM) "
        "(SDDDIMPipeline + src.renoise_inversion.inversion_step, MyLCMScheduler, the img2img pipeline's "
        "reconstruction) on golden_inputs.renoise_loop_components, via "
        "tools/conformance/renoise_reference.py")
# the released RunConfig as it is: perform_noise_correction=True
NOISE_CORRECTION = "released_noise_correction"
COMMAND = ("python tools/conformance/renoise_loop.py --repo PATH/ReNoise-Inversion "
           "--python PATH/venv-d024/bin/python --commit fa8323820daf80a62baec94ec80c9106bcc6e8e9")


def prepare(work: Path) -> Path:
    """``work`` for ``renoise_reference.py``: the components, the clean latent, the noise list, the runs."""
    save_components(gi.renoise_loop_components(clip_tokenizer()), work / "pipeline")
    noises, _, _ = gi.renoise_loop_draws(gi.RENOISE_LOOP_RUN["num_inversion_steps"])
    cases = {name: run for name, (run, _) in gi.RENOISE_LOOP_CASES.items()}
    torch.save({"latent": gi.renoise_loop_latent(), "prompt": gi.RENOISE_LOOP_PROMPT, "noises": noises,
                "run": gi.RENOISE_LOOP_RUN, "cases": {**cases, NOISE_CORRECTION: {}}}, work / "inputs.pt")
    return work


def _case(r: dict) -> dict:
    p = gi.uac_project
    if "error" in r:
        return {"settings": r["settings"], "error": r["error"], "steps_done": r["steps_done"]}
    return {"settings": r["settings"], "timesteps": r["timesteps"], "unet_rows": r["unet_rows"],
            "drawn": [rounded(p(z)) for z in r["drawn"]], "forward_noise": rounded(p(r["forward_noise"])),
            "z_0": rounded(p(r["z_0"])),
            "steps": [{"t": s["t"], "latent": rounded(p(s["latent"])),
                       "noises": [rounded(p(z)) for z in s["noises"]]}
                      for s in r["steps"]],
            "all_latents": [rounded(p(z)) for z in r["all_latents"]],
            "inverted": rounded(r["inverted"]), "reconstruction": rounded(r["reconstruction"])}


def renoise_loop_goldens(repo: Path, python: Path, commit: str | None) -> dict:
    """The golden (provenance inside): ReNoise's SD inversion and reconstruction by the official
    ``main.run`` on golden_inputs.renoise_loop_components under ``python`` (the reference's environment,
    diffusers 0.24), for each of golden_inputs.RENOISE_LOOP_CASES and the released settings as they are."""
    import diffusers
    import numpy as np
    import transformers

    with tempfile.TemporaryDirectory() as work:
        ref = run_reference("renoise_reference.py", repo, python, prepare(Path(work)))
    settings = {"run": gi.RENOISE_LOOP_RUN, "cases": {k: {"run_config": run, "project_set": project}
                                                      for k, (run, project) in gi.RENOISE_LOOP_CASES.items()},
                "prompt": gi.RENOISE_LOOP_PROMPT, "latent_side": gi.RENOISE_LOOP_SIDE,
                "released": "src/config.py RunConfig defaults: 9 renoising iterations "
                            "(5 in steps below t 250), averaging (8, 10) / (0, 5), lambda_ac 20, "
                            "lambda_kl 0.065, 4 reg steps, 5 rolls, noise correction"}
    provenance = {
        "renoise": {"repository": "garibida/ReNoise-Inversion", "commit": repo_commit(repo, commit)},
        "what": WHAT, "settings": settings, "reference_versions": ref["versions"],
        "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__,
                     "transformers": transformers.__version__, "numpy": np.__version__},
        "tokenizer": "CLIP ViT-L/14 BPE (open_clip's vocabulary), model_max_length 77",
        "projection": "per-step tensors as golden_inputs.uac_project (16 numbers); inverted and "
                      "reconstruction in full",
        "command": COMMAND,
    }
    return {"provenance": provenance, "cases": {name: _case(r) for name, r in ref["results"].items()}}


def main() -> None:
    golden_main(__doc__, renoise_loop_goldens, OUT, "garibida/ReNoise-Inversion",
                "a Python with the reference's environment (diffusers 0.24)",
                "ReNoise runs")


if __name__ == "__main__":
    main()
