"""PIE-Bench's editors beyond the iCD paper's comparison, end to end (golden: pie_baselines.json;
cure-lab/PnPInversion ``models.p2p_editor.P2PEditor`` with ``run_editing_p2p.py``'s arguments, in the
reference's own environment, diffusers 0.10, made by ``tools/conformance/pie_baselines.py``) on
golden_inputs.pnp_components at 10 steps, each against the preset of its PIE-Bench row:

- Direct Inversion + P2P (``directinversion+p2p``, refine and replace) against `direct-inversion-sd15`:
  the edit's target latents and the reconstruction's (7 significant digits stored).

Both sides skip the VAE (the clean latent is given). Tolerance: 1e-4 relative, as pie_p2p.json's
(float32; explicit attention maps on one side, SDPA on the other). The project puts the source rows on
the trajectory where the reference adds a stored offset to them (`diffusion.direct`): rounding only.
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

G = golden("pie_baselines.json")
TOL = 1e-4


@pytest.fixture(scope="module")
def backbone(clip_tokenizer):
    return gi.pnp_backbone(clip_tokenizer)


def _method(backbone, case: int, monkeypatch, *overrides):
    ref = G["cases"][case]
    extra = ["p2p_mode=replace"] if ref["replace"] else []
    spec = resolve_method(gi.PNP_PRESETS[ref["method"]],
                          [f"num_inference_steps={ref['num_steps']}", *extra, *overrides])
    monkeypatch.setattr(backbone, "encode_image", lambda images: gi.pnp_latent(gi.PNP_BASELINE_LATENTS + case))
    monkeypatch.setattr(backbone, "decode", lambda latents: latents)
    sample = EditSample(id="x", image=Image.new("RGB", (8, 8)), source_prompt=ref["source"],
                        target_prompt=ref["target"], blend_words=tuple(ref["blend"]))
    method = METHODS.get(spec.method)(backbone, spec.params)
    gi.reuse_inversion(method)
    return method, sample


def test_the_cases_are_the_ones_the_golden_was_made_from():
    assert [(c["method"], c["source"], c["target"], tuple(c["blend"]), c["replace"]) for c in G["cases"]] \
        == list(gi.PNP_BASELINE_CASES)


@pytest.mark.parametrize("case", range(len(gi.PNP_BASELINE_CASES)))
def test_edit_and_reconstruction_equal_the_official_editor(backbone, case, monkeypatch):
    ref = G["cases"][case]
    method, sample = _method(backbone, case, monkeypatch)
    edit = method.run("edit", [sample], [torch.Generator().manual_seed(0)])[1][0].image
    assert rel(edit, ref["edit"]) < TOL
    recon = method.run("invert", [sample], [torch.Generator().manual_seed(0)])[1][0].image
    assert rel(recon, ref["reconstruction"]) < TOL


def test_without_the_rectified_source_branch_the_edit_is_ddim_p2p_and_misses(backbone, monkeypatch):
    """The same preset with the source branch left to its own guided steps (DDIM + P2P at CFG 7.5) is far
    from the golden: the rectification is what the golden checks."""
    ref = G["cases"][0]
    method, sample = _method(backbone, 0, monkeypatch)
    monkeypatch.setattr(method, "branch_callback", lambda inversion, callback: callback)
    edit = method.run("edit", [sample], [torch.Generator().manual_seed(0)])[1][0].image
    assert rel(edit, ref["edit"]) > 100 * TOL
