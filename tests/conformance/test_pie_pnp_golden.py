"""PIE-Bench's Plug-and-Play editors end to end (golden: pie_pnp.json; cure-lab/PnPInversion
``run_editing_pnp.py``'s ``edit_image_ddim_PnP`` and ``edit_image_directinversion_PnP`` with its arguments, in
the reference's own environment, diffusers 0.17.1, made by ``tools/conformance/pie_pnp.py``) on
golden_inputs.pnp_components at 10 steps, each against the preset of its PIE-Bench row (`pnp-sd15` with its
official switch ``reference_compat``, `direct-inversion-pnp-sd15`): the edit's latents after every step
(projected) and at the end, and DDIM + PnP's reconstruction.

Both sides skip the VAE (the clean latent is given) and run float32 (the reference asks for float16, which
this CPU does not run). Tolerance: 1e-4 relative, as the other PIE-Bench editor goldens (explicit attention
on the reference's injected layers, SDPA here).
"""

from __future__ import annotations

import pytest
import torch

import golden_inputs as gi
from golden_inputs import golden, rel

G = golden("pie_pnp.json")
TOL = 1e-4
OFFICIAL = {"ddim+pnp": ("reference_compat=true",), "directinversion+pnp": ()}


@pytest.fixture(scope="module")
def backbone(clip_tokenizer):
    return gi.pnp_backbone(clip_tokenizer)


def _method(backbone, case: int, monkeypatch, *overrides):
    ref = G["cases"][case]
    return gi.pnp_editor(backbone, monkeypatch, ref, gi.pnp_latent(gi.PIE_PNP_LATENTS + case),
                         *OFFICIAL[ref["method"]], *overrides)


def _edit(method, sample, monkeypatch) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The edit's final latents and its latents after each step."""
    from icd_bench.attention.pnp import PnPControl

    steps: list[torch.Tensor] = []
    step_callback = PnPControl.step_callback

    def recorded(self, info):
        steps.append(info.x.clone())
        return step_callback(self, info)

    monkeypatch.setattr(PnPControl, "step_callback", recorded)
    edit = method.run("edit", [sample], [torch.Generator().manual_seed(0)])[1][0].image
    return edit, steps


def test_the_cases_are_the_ones_the_golden_was_made_from_on_the_presets_grid(backbone):
    from icd_bench.diffusion import ddim_timesteps

    assert [(c["method"], c["source"], c["target"]) for c in G["cases"]] == list(gi.PIE_PNP_CASES)
    for c in G["cases"]:
        assert c["timesteps"] == ddim_timesteps(backbone.scheduler, c["num_steps"], None)


@pytest.mark.parametrize("case", range(len(gi.PIE_PNP_CASES)))
def test_edit_equals_the_official_editor_at_every_step(backbone, case, monkeypatch):
    ref = G["cases"][case]
    method, sample = _method(backbone, case, monkeypatch)
    with backbone.nfe.measure() as rows:
        edit, steps = _edit(method, sample, monkeypatch)
    assert len(steps) == len(ref["edit_steps"]) == ref["num_steps"]
    for i, (got, want) in enumerate(zip(steps, ref["edit_steps"], strict=True)):
        assert rel(gi.uac_project(got), want) < TOL, i
    assert rel(edit, ref["edit"]) < TOL
    # UNet rows: the edit's three per step are counted as 2 (predict_noise), so add the source's; the
    # reference also runs its DDIM reconstruction for Direct Inversion, where the project needs none
    steps = ref["num_steps"]
    assert rows[0] + steps == ref["unet_rows"] - (steps if ref["method"] == "directinversion+pnp" else 0)


def test_ddim_pnp_reconstruction_equals_the_official_editor(backbone, monkeypatch):
    ref = G["cases"][0]
    assert ref["method"] == "ddim+pnp"
    method, sample = _method(backbone, 0, monkeypatch)
    recon = method.run("invert", [sample], [torch.Generator().manual_seed(0)])[1][0].image
    assert rel(recon, ref["reconstruction"]) < TOL


@pytest.mark.parametrize(("case", "overrides"), [
    (0, ("reference_compat=false",)),  # the corrected source row: one step earlier on the reconstruction
    (1, ("feature_injection=0", "attention_injection=0")),  # no injection: a plain prompt switch
    (1, ("feature_injection=0",)),  # the self-attention injection alone
])
def test_without_what_the_golden_pins_the_edit_misses(backbone, case, overrides, monkeypatch):
    ref = G["cases"][case]
    method, sample = _method(backbone, case, monkeypatch, *overrides)
    edit, _ = _edit(method, sample, monkeypatch)
    assert rel(edit, ref["edit"]) > 100 * TOL
