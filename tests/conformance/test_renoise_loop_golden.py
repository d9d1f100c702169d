"""ReNoise's inversion loop end to end equals the official code's (golden: renoise_loop.json;
garibida/ReNoise-Inversion ``main.run`` with ``get_pipes(Model_Type.SD15, Scheduler_Type.LCM)``:
``SDDDIMPipeline`` / ``inversion_step`` with ``MyLCMScheduler``, then the img2img pipeline's
reconstruction, in the reference's own environment, diffusers 0.24, by
``tools/conformance/renoise_reference.py``). The project's `renoise-lcm-sd15` on
golden_inputs.renoise_loop_components (an SD1.5-layout UNet without a guidance input: the official
``unet_pass`` gives ``timestep_cond=None``), the released settings (4 steps, 9 renoising iterations,
averaging over 8–9, λ_ac 20 with 5 rolls, λ_KL 0.065, 4 regularisation steps), and again with the
regularisation off. Compared: the generator's draws (the noise list, and the forward noise: its last draw
before the regularisation's random rolls, so both sides roll alike), the latent after every inversion
step (projected), the inverted latent, the noise list the reconstruction uses and the reconstruction.

Two settings differ from the project's defaults, to run what the official SD code computes:
``noise_correction=false`` — the official LCM scheduler has no noise correction (``MyLCMScheduler`` lacks
the ``step_and_update_noise`` that ``inversion_step`` calls; the released ``perform_noise_correction=True``
raises AttributeError, recorded in the golden); ``kl_reference=clean`` — for SD models ``get_pipes``
replaces ``scheduler.add_noise`` by the identity (for img2img's ``prepare_latents``), which also makes the
KL's reference ε the prediction at the clean latent, not at the forward-noised one.

Both sides skip the VAE (the clean latent is given, the reconstruction compared as a latent); the
LCM boundary scalings the official scheduler applies (c_skip ≤ 4e-8 on this grid) are left out here.
Tolerance: 1e-4 relative — float32 through 4 steps × 10 UNet evaluations on each side, in two diffusers
releases, with the averaged ε (a running mean here, j/(j+1)-weights there) and the regularisation's
float32 gradients. Measured (both cases): per-step latents ≤ 1.8e-6, inverted latent ≤ 2.2e-6, noise
list 2e-9 (the golden's rounding: neither side changes it), reconstruction ≤ 1.2e-5 (its first step
divides by sqrt(ᾱ_999) ≈ 0.07); a wrong setting is 0.25–0.4 off (the last tests).
"""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from icd_bench.config import resolve_method
from icd_bench.diffusion import renoise as renoise_math
from icd_bench.methods.renoise import ReNoise
from icd_bench.types import EditSample

import golden_inputs as gi
from golden_inputs import golden, rel

G = golden("renoise_loop.json")
TOL = 1e-4
PRESET = "renoise-lcm-sd15"


@pytest.fixture(scope="module")
def backbone(clip_tokenizer):
    return gi.renoise_loop_backbone(clip_tokenizer)


def _run(backbone, monkeypatch, overrides: list[str]) -> dict:
    """Invert and reconstruct the golden latent with PRESET and ``overrides``: the draws, the latent after
    each inversion step (in inversion order), the inverted latent, the noise list, the reconstruction."""
    method = ReNoise(backbone, resolve_method(PRESET, overrides).params)
    noises, forward, generator = gi.renoise_loop_draws(len(method.timesteps))
    monkeypatch.setattr(method, "draw_noises", lambda gens, count: [*noises, forward][:count])
    monkeypatch.setattr(backbone, "encode_image", lambda images: gi.renoise_loop_latent())
    monkeypatch.setattr(backbone, "decode", lambda latents: latents)
    inverted = gi.reuse_inversion(method)
    last: dict[float, torch.Tensor] = {}  # ᾱ_t → the step's latest inversion: the step's result at its end
    real = renoise_math.lcm_invert_step

    def kept(x_next, eps, alpha_t, alpha_next, noise):
        last[alpha_t] = out = real(x_next, eps, alpha_t, alpha_next, noise)
        return out

    monkeypatch.setattr(renoise_math, "lcm_invert_step", kept)
    sample = EditSample(id="x", image=Image.new("RGB", (backbone.resolution,) * 2),
                        source_prompt=gi.RENOISE_LOOP_PROMPT, target_prompt=gi.RENOISE_LOOP_PROMPT)
    _, outs = method.run("invert", [sample], [generator])
    inv = inverted["inv"]
    alphas = backbone.alphas_cumprod
    return {"timesteps": method.timesteps, "drawn": noises, "forward_noise": forward,
            "z_0": inv.image_latents, "steps": [last[float(alphas[t])] for t in reversed(method.timesteps)],
            "inverted": inv.latents, "noises": inv.state["noises"], "reconstruction": outs[0].image,
            "nfe": outs[0].nfe}


def _check(out: dict, ref: dict, tol: float = TOL) -> dict[str, float]:
    """The relative differences to ``ref``; assert each is below ``tol``."""
    p = gi.uac_project
    assert out["timesteps"] == ref["timesteps"]
    for z, want in zip(out["drawn"], ref["drawn"], strict=True):  # the same draws on both sides
        assert rel(p(z), want) < 1e-6
    assert rel(p(out["forward_noise"]), ref["forward_noise"]) < 1e-6
    assert rel(p(out["z_0"]), ref["z_0"]) < 1e-6
    diffs = {"steps": 0.0, "noises": 0.0}
    assert [s["t"] for s in ref["steps"]] == out["timesteps"][::-1]
    for i, (got, want) in enumerate(zip(out["steps"], ref["steps"], strict=True)):
        d = rel(p(got), want["latent"])
        assert d < tol, (i, want["t"], d)
        diffs["steps"] = max(diffs["steps"], d)
    assert rel(p(out["steps"][-1]), ref["all_latents"][-1]) < tol
    # what the reconstruction uses
    for z, want in zip(out["noises"], ref["steps"][-1]["noises"], strict=True):
        diffs["noises"] = max(diffs["noises"], rel(p(z), want))
    diffs["inverted"] = rel(out["inverted"][0], ref["inverted"])
    diffs["reconstruction"] = rel(out["reconstruction"], ref["reconstruction"])
    for key in ("noises", "inverted", "reconstruction"):
        assert diffs[key] < tol, (key, diffs[key])
    return diffs


@pytest.mark.parametrize("case", list(gi.RENOISE_LOOP_CASES))
def test_renoise_inversion_equals_the_official_loop(backbone, case, monkeypatch):
    ref = G["cases"][case]
    _, overrides = gi.RENOISE_LOOP_CASES[case]
    out = _run(backbone, monkeypatch, overrides)
    _check(out, ref)
    # UNet rows: the same, but that the official loop predicts the KL reference (a second row in each step's
    # first call) whenever it has regularisation steps, used or not, the project only when λ_KL > 0
    spares = 0 if ref["settings"].get("noise_regularization_lambda_kl", 0.065) > 0 else len(ref["timesteps"])
    assert out["nfe"] == ref["unet_rows"] - spares


def test_the_official_lcm_scheduler_has_no_noise_correction():
    """The released settings as they are (noise correction on) do not run on the official LCM scheduler."""
    case = G["cases"]["released_noise_correction"]
    assert case["settings"] == {} and case["steps_done"] == 0
    assert "step_and_update_noise" in case["error"]


@pytest.mark.parametrize("overrides", [["kl_reference=noised"], ["renoise_steps=5"], ["average=false"]],
                         ids=["kl-reference-noised", "renoise-5", "no-averaging"])
def test_the_golden_tells_the_settings_apart(backbone, monkeypatch, overrides):
    """Another KL reference (the project's default: ε at the forward-noised latent), another renoise count
    or no averaging: the inversion is far from the golden, so the comparison can fail."""
    _, base = gi.RENOISE_LOOP_CASES["released"]
    out = _run(backbone, monkeypatch, [*base, *overrides])
    assert rel(out["inverted"][0], G["cases"]["released"]["inverted"]) > 10 * TOL


def test_noise_correction_changes_only_the_reconstruction(backbone, monkeypatch):
    """The project's noise correction (its own for LCM) replaces each step's stored re-noising after that step
    is inverted; the inversion of the steps before it uses theirs, so the inverted latents stay the
    official ones, while the reconstruction moves off the official one, towards the source latent."""
    ref = G["cases"]["released"]
    _, base = gi.RENOISE_LOOP_CASES["released"]
    out = _run(backbone, monkeypatch, [*base, "noise_correction=true"])
    for got, want in zip(out["steps"], ref["steps"], strict=True):
        assert rel(gi.uac_project(got), want["latent"]) < TOL
    assert rel(out["inverted"][0], ref["inverted"]) < TOL
    assert rel(out["reconstruction"], ref["reconstruction"]) > 10 * TOL
    z0 = out["z_0"][0]
    assert rel(out["reconstruction"], z0) < rel(torch.tensor(ref["reconstruction"]), z0)
