"""DDIM inversion, null-text inversion and negative-prompt inversion equal PnPInversion's (PIE-Bench's
code for its DDIM / NTI / NPI + P2P rows; golden: ddim_nti_npi.json) on an analytic noise predictor
and a tiny text encoder: 10 steps at CFG 7.5 on the grid of PnPInversion's bare scheduler
(``steps_offset = 0``; its editors run 981…1, as the pipeline constructor resets the offset to 1 —
test_pie_p2p_golden), both sides in float64 (golden_inputs.text_components says why).

Tolerance: 1e-6 relative. The reference takes its DDIM coefficients (√ᾱ) in float32, the project in
float64: ~5e-8 apart per step. The predictor's text term is small enough that null-text inversion's
Adam steps do not overshoot: a 1e-7 change of the input moves the reference's own embeddings by at
most 2e-7 (measured); with a stronger text term they jumped by 1e-4 at one step, on either side.
"""

from __future__ import annotations

import pytest
import torch

from icd_bench.backbones.base import Backbone
from icd_bench.backbones.loaders import SD_SCHEDULER_CONFIG
from icd_bench.methods.ddim import DDIM, DDIMParams
from icd_bench.methods.ddim_p2p import DDIMP2PParams
from icd_bench.methods.npi import NPI
from icd_bench.methods.nti import NTI, NTIParams

import golden_inputs as gi
from golden_inputs import golden, rel

G = golden("ddim_nti_npi.json")



@pytest.fixture()
def backbone():
    from diffusers import DDIMScheduler

    tok, te = gi.text_components()
    return Backbone(kind="sd15", source="analytic", tokenizers=[tok], text_encoders=[te],
                    unet=gi.AnalyticUNet(), vae=None, scheduler=DDIMScheduler(**SD_SCHEDULER_CONFIG),
                    resolution=8, dtype=torch.float64)


def _params(cls=DDIMParams):
    """10 steps at CFG 7.5 on PnPInversion's grid; the P2P methods' prompt-switch path (no P2P)."""
    extra = {} if cls is DDIMParams else {"p2p": False}
    return cls(num_inference_steps=gi.DDIM_STEPS, guidance_scale=gi.DDIM_CFG, steps_offset=0, **extra)


def test_the_grid_is_pnpinversions(backbone):
    m = DDIM(backbone, _params())
    assert m._timesteps() == G["timesteps"] == list(range(900, -1, -100))


def test_ddim_inversion_trajectory(backbone):
    m = DDIM(backbone, _params())
    inv = m.invert(gi.ddim_image(), [gi.DDIM_PROMPT], [torch.Generator()])
    n = gi.DDIM_STEPS
    assert rel(inv.image_latents, G["trajectory"][0]) < 1e-15
    for k in range(1, n + 1):  # the reference's k-th latent: after k inversion steps = our grid step n − k
        assert rel(inv.state["trajectory"][n - k], G["trajectory"][k]) < 1e-6, k
    assert rel(inv.latents, G["trajectory"][-1]) < 1e-6


def test_null_text_inversion_embeddings_and_reconstruction(backbone):
    m = NTI(backbone, _params(NTIParams))
    inv = m.invert(gi.ddim_image(), [gi.DDIM_PROMPT], [torch.Generator()])
    for i, (ours, ref) in enumerate(zip(inv.state["null_embeds"], G["null_embeds"], strict=True)):
        assert rel(ours.embeds, ref) < 1e-6, i
    x0 = m._sample(inv.latents, inv.state["source_cond"], m.unconditional(inv, 1), gi.DDIM_CFG)
    assert rel(x0, G["nti_reconstruction"]) < 1e-6
    # the optimisation really moved the embeddings (the golden is not the plain null prompt's)
    assert rel(backbone.null_embeds(1).embeds, G["null_embeds"][-1]) > 1e-3


def test_negative_prompt_inversion_reconstruction(backbone):
    m = NPI(backbone, _params(DDIMP2PParams))
    inv = m.invert(gi.ddim_image(), [gi.DDIM_PROMPT], [torch.Generator()])
    x0 = m._sample(inv.latents, inv.state["source_cond"], m.unconditional(inv, 1), gi.DDIM_CFG)
    assert rel(x0, G["npi_reconstruction"]) < 1e-6
