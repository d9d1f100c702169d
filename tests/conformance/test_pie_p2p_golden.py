"""PIE-Bench's P2P editors end to end (golden: pie_p2p.json; cure-lab/PnPInversion ``models.p2p_editor.
P2PEditor`` called with ``run_editing_p2p.py``'s arguments, in the reference's own environment,
diffusers 0.10, by ``tools/conformance/pnp_p2p_reference.py``): DDIM + P2P (refine; and replace,
``is_replace_controller``), NPI + P2P and NTI + P2P against the `ddim-p2p-sd15`, `npi-sd15` and
`nti-sd15` presets (at 10 steps) on golden_inputs.pnp_components — an SD1.5-layout UNet at the 64²
latent of a 512-px image, a tiny text encoder on SD's CLIP tokenizer — with a blend word each: the
edit's target latents and the source reconstruction's (stored to 7 significant digits).

Both sides skip the VAE (the clean latent is given). Tolerance: 1e-4 relative (float32; explicit
attention maps on one side, SDPA on the other; NTI's Adam steps amplify rounding, measured below).
"""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from icd_bench.config import resolve_method
from icd_bench.registry import METHODS
from icd_bench.types import EditSample

import golden_inputs as gi
from golden_inputs import golden, rel

G = golden("pie_p2p.json")
TOL = 1e-4


@pytest.fixture(scope="module")
def backbone(clip_tokenizer):
    return gi.pnp_backbone(clip_tokenizer)


def _method(backbone, case: int, monkeypatch, *overrides):
    return gi.pnp_editor(backbone, monkeypatch, G["cases"][case], gi.pnp_latent(case), *overrides)


def _edit(backbone, case, monkeypatch, *overrides) -> torch.Tensor:
    method, sample = _method(backbone, case, monkeypatch, *overrides)
    return method.run("edit", [sample], [torch.Generator().manual_seed(0)])[1][0].image


@pytest.mark.parametrize("case", range(len(gi.PNP_CASES)))
def test_edit_and_reconstruction_equal_the_official_editor(backbone, case, monkeypatch):
    ref = G["cases"][case]
    method, sample = _method(backbone, case, monkeypatch)
    edit = method.run("edit", [sample], [torch.Generator().manual_seed(0)])[1][0].image
    assert rel(edit, ref["edit"]) < TOL
    recon = method.run("invert", [sample], [torch.Generator().manual_seed(0)])[1][0].image
    assert rel(recon, ref["reconstruction"]) < TOL


def test_the_official_editors_run_the_checkpoint_grid(backbone, monkeypatch):
    """PnPInversion builds its DDIM scheduler without ``steps_offset``, but diffusers' pipeline constructor
    resets it to 1 (with a deprecation warning): its editors run 981…1, the presets' grid. On 980…0 the
    edit is far from the golden."""
    ref = G["cases"][0]
    assert rel(_edit(backbone, 0, monkeypatch, "steps_offset=0"), ref["edit"]) > 100 * TOL


def _ef_run(backbone, case: int, monkeypatch, *overrides) -> dict:
    """`ef-ddpm-sd15-50` (PIE-Bench's EF + P2P) at the golden's steps and skip, on EF golden case ``case``,
    with the reference's noise (torch.manual_seed(1234), one draw per grid timestep from the lowest up)."""
    ref = G["ef_cases"][case]
    spec = resolve_method("ef-ddpm-sd15-50", [f"num_inference_steps={ref['num_steps']}",
                                              f"skip={ref['skip']}", *overrides])
    method = METHODS.get(spec.method)(backbone, spec.params)
    g = torch.Generator().manual_seed(1234)
    draws = [torch.randn(1, 4, gi.PNP_SIDE, gi.PNP_SIDE, generator=g) for _ in range(ref["num_steps"])]
    monkeypatch.setattr(method, "draw_noise", lambda generators, steps: torch.stack(draws[::-1]))
    monkeypatch.setattr(backbone, "encode_image", lambda images: gi.pnp_latent(len(gi.PNP_CASES) + case))
    monkeypatch.setattr(backbone, "decode", lambda latents: latents)
    sample = EditSample(id="x", image=Image.new("RGB", (8, 8)), source_prompt=ref["source"],
                        target_prompt=ref["target"])
    out = {}
    for task, key in (("edit", "edit"), ("invert", "reconstruction")):
        out[key] = method.run(task, [sample], [torch.Generator().manual_seed(0)])[1][0].image
    switch = METHODS.get(spec.method)(backbone, resolve_method("ef-ddpm-sd15-50", [
        f"num_inference_steps={ref['num_steps']}", f"skip={ref['skip']}", "p2p=false",
        *overrides]).params)  # the script's "reconstruction": the target prompt at CFG 7.5, no P2P
    monkeypatch.setattr(switch, "draw_noise", lambda generators, steps: torch.stack(draws[::-1]))
    out["prompt_switch"] = switch.run("edit", [sample], [torch.Generator().manual_seed(0)])[1][0].image
    return out


@pytest.mark.parametrize("case", range(len(gi.PNP_EF_CASES)))
def test_edit_friendly_p2p_equals_the_official_script(backbone, case, monkeypatch):
    """PIE-Bench's EF + P2P (``edit_image_EF``: replace for equal word counts, refine otherwise; windows over
    the whole grid; its zeroed last noise map, ``zero_last_noise = true``): the edit's target, its source
    row (the reconstruction at source CFG 1) and the script's prompt-switch decode at CFG 7.5."""
    ref = G["ef_cases"][case]
    out = _ef_run(backbone, case, monkeypatch, "zero_last_noise=true")
    for key in ("edit", "reconstruction", "prompt_switch"):
        assert rel(out[key], ref[key]) < TOL, key


def test_the_exact_final_noise_map_is_the_one_ef_deviation(backbone, monkeypatch):
    """By default the final noise map is kept (exact reconstruction): then, and only then, the EF results
    differ from the script's."""
    ref = G["ef_cases"][0]
    out = _ef_run(backbone, 0, monkeypatch)
    assert all(rel(out[k], ref[k]) > 100 * TOL for k in ("edit", "reconstruction", "prompt_switch"))
