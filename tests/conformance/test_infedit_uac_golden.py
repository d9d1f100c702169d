"""InfEdit end to end equals its official PIE-Bench run (golden: infedit_uac.json; sled-group/InfEdit
``run_pie_bench.inference`` with ``main``'s arguments, in the reference's own environment, diffusers
0.24, by ``tools/conformance/infedit_uac_reference.py``): DDCM under the unified attention control,
`infedit-lcm-sd15`'s parameters, on golden_inputs.uac_components (an SD1.5-layout UNet at a 40² latent)
for three PIE-style pairs — a word added and a word swapped with a blend word, a word swapped and one
removed with a blend word, and a swap without one. Compared: the source, target and mutual latents
after every step (projected), the target after local blend, the blend mask, and the final x̂_0.

Both sides skip the VAE (the clean latent is given) and use the pipeline's noises: the global
generator seeded 0, the start latent, then one per step. Tolerance: 1e-4 relative (float32 through 12
steps of 3 branches, explicit softmax on one side and SDPA on the other: measured 1e-6 after the first
step, growing to 3e-5 by the eleventh; x̂_0 ≤ 2e-5); masks identical at every step.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from icd_bench.attention.uac import UACControl
from icd_bench.config import resolve_method
from icd_bench.diffusion import lcm
from icd_bench.methods import infedit
from icd_bench.types import EditSample

import golden_inputs as gi
from golden_inputs import golden, rel

G = golden("infedit_uac.json")
TOL = 1e-4


@pytest.fixture(scope="module")
def backbone(clip_tokenizer):
    return gi.uac_backbone(clip_tokenizer)


def _unpack(hex_mask: str) -> torch.Tensor:
    bits = np.unpackbits(np.frombuffer(bytes.fromhex(hex_mask), dtype=np.uint8))[: gi.UAC_SIDE**2]
    return torch.from_numpy(bits.astype(bool)).view(gi.UAC_SIDE, gi.UAC_SIDE)


def _run(backbone, case: int, monkeypatch, *overrides) -> dict:
    """Edit golden case ``case`` with `infedit-lcm-sd15`; the per-step latents and masks, and x̂_0."""
    ref = G["cases"][case]
    method = infedit.InfEdit(backbone, resolve_method("infedit-lcm-sd15", list(overrides)).params)
    noises = gi.uac_pipeline_noises(len(method.timesteps))
    monkeypatch.setattr(method, "draw_noises", lambda gens, count: [*noises[1:], noises[0]])
    monkeypatch.setattr(backbone, "encode_image", lambda images: gi.uac_latent(case))
    monkeypatch.setattr(backbone, "decode", lambda latents: latents)
    seen: dict = {"ddcm": [], "steps": []}
    real_step, real_after = lcm.ddcm_step, UACControl.advance

    def ddcm(*a):
        out = real_step(*a)
        seen["ddcm"].append(out)
        return out

    def after(self, x_t, x_m, alpha_t, blend=True):
        self.last_masks = {}
        out = real_after(self, x_t, x_m, alpha_t, blend)
        seen["steps"].append({"x_s": seen["ddcm"][-2][0], "x_t": x_t, "x_m": x_m, "x_t_blended": out,
                              "mask": self.last_masks.get(0)})
        return out

    monkeypatch.setattr(lcm, "ddcm_step", ddcm)  # the DDCM loop's step
    monkeypatch.setattr(UACControl, "advance", after)
    blend = (ref["blend"], ref["blend"]) if ref["blend"] else None
    sample = EditSample(id="x", image=Image.new("RGB", (8, 8)), source_prompt=ref["source"],
                        target_prompt=ref["target"], blend_words=blend)
    _, outs = method.run("edit", [sample], [torch.Generator().manual_seed(0)])
    seen["x0"] = outs[0].image
    seen["noises"] = noises
    seen["timesteps"] = method.timesteps
    return seen


@pytest.mark.parametrize("case", range(len(gi.UAC_CASES)))
def test_infedit_edit_equals_the_official_pie_bench_run(backbone, case, monkeypatch):
    ref = G["cases"][case]
    out = _run(backbone, case, monkeypatch)
    assert out["timesteps"] == ref["timesteps"]
    for z, want in zip(out["noises"], ref["noises"], strict=True):  # the same draws on both sides
        assert rel(gi.uac_project(z), want) < 1e-6
    assert len(out["steps"]) == len(ref["steps"])
    # the last step: the official sampler re-noises to the same timestep (and its blend cannot reach the
    # output), the project stops at x̂_0; only x̂_0 is compared there
    for i, (got, want) in enumerate(zip(out["steps"][:-1], ref["steps"][:-1], strict=True)):
        for key in ("x_s", "x_t", "x_m", "x_t_blended"):
            assert rel(gi.uac_project(got[key]), want[key]) < TOL, (case, i, key)
        if want["mask"] is not None:
            official = _unpack(want["mask"])
            if got["mask"] is None:  # no blend word: the official mask is empty, the target kept
                assert not official.any() and torch.equal(got["x_t_blended"], got["x_t"]), (case, i)
            else:
                assert torch.equal(got["mask"].reshape(official.shape), official), (case, i)
    assert rel(out["x0"], ref["pred_x0"]) < TOL


def test_the_golden_tells_the_attention_control_apart(backbone, monkeypatch):
    """Without UAC (DDCM and a prompt switch) the edit is far from the golden: the test can fail."""
    ref = G["cases"][0]
    out = _run(backbone, 0, monkeypatch, "uac=false")
    assert rel(out["x0"], ref["pred_x0"]) > 100 * TOL
