"""PIE-Bench's editors beyond the iCD paper's comparison, end to end (golden: pie_baselines.json;
cure-lab/PnPInversion ``models.p2p_editor.P2PEditor`` with ``run_editing_p2p.py``'s arguments, in the
reference's own environment, diffusers 0.10, made by ``tools/conformance/pie_baselines.py``) on
golden_inputs.pnp_components at 10 steps, each against the preset of its PIE-Bench row:

- Direct Inversion + P2P (``directinversion+p2p``, refine and replace) against `direct-inversion-sd15`:
  the edit's target latents and the reconstruction's (7 significant digits stored);
- MasaCtrl (``run_editing_masactrl.MasaCtrlEditor``, in its own environment, diffusers 0.15): DDIM +
  MasaCtrl against `masactrl-sd15` and Direct Inversion + MasaCtrl against
  `direct-inversion-masactrl-sd15`, at the 50 steps its MasaCtrl decode always runs: the edit and the
  source branch (against the method's reconstruction: the empty prompt's DDIM decode, or with Direct
  Inversion the encoding).

Both sides skip the VAE (the clean latent is given). Tolerance: 1e-4 relative, as pie_p2p.json's
(float32; explicit attention maps on one side, SDPA on the other). The project puts the source rows on
the trajectory where the reference adds a stored offset to them (`diffusion.direct`): rounding only.
"""

from __future__ import annotations

import pytest
import torch

import golden_inputs as gi
from golden_inputs import golden, rel

G = golden("pie_baselines.json")
TOL = 1e-4


@pytest.fixture(scope="module")
def backbone(clip_tokenizer):
    return gi.pnp_backbone(clip_tokenizer)


def _method(backbone, case: int, monkeypatch, *overrides):
    return gi.pnp_editor(backbone, monkeypatch, G["cases"][case],
                         gi.pnp_latent(gi.PNP_BASELINE_LATENTS + case), *overrides)


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


def _masactrl(backbone, case: int, monkeypatch, *overrides):
    return gi.pnp_editor(backbone, monkeypatch, G["masactrl_cases"][case],
                         gi.pnp_latent(gi.PNP_MASACTRL_LATENTS + case), *overrides)


def test_the_masactrl_cases_are_the_ones_the_golden_was_made_from_on_the_presets_grid(backbone):
    cases = [(c["method"], c["source"], c["target"]) for c in G["masactrl_cases"]]
    assert cases == list(gi.PNP_MASACTRL_CASES)
    from icd_bench.diffusion import ddim_timesteps

    for c in G["masactrl_cases"]:
        assert c["steps_offset"] == 1  # the pipeline constructor's correction, as for the P2P editors
        grid = ddim_timesteps(backbone.scheduler, c["num_steps"], None)
        assert sorted(c["timesteps"], reverse=True) == grid


@pytest.mark.parametrize("case", range(len(gi.PNP_MASACTRL_CASES)))
def test_masactrl_edit_and_source_branch_equal_the_official_editor(backbone, case, monkeypatch):
    ref = G["masactrl_cases"][case]
    method, sample = _masactrl(backbone, case, monkeypatch)
    edit = method.run("edit", [sample], [torch.Generator().manual_seed(0)])[1][0].image
    assert rel(edit, ref["edit"]) < TOL
    source = method.run("invert", [sample], [torch.Generator().manual_seed(0)])[1][0].image
    assert rel(source, ref["source_branch"]) < TOL


def test_without_mutual_self_attention_the_masactrl_edit_misses(backbone, monkeypatch):
    """Mutual self-attention switched off (it would start after the last step): far from the golden."""
    ref = G["masactrl_cases"][0]
    method, sample = _masactrl(backbone, 0, monkeypatch, "start_step=1000")
    edit = method.run("edit", [sample], [torch.Generator().manual_seed(0)])[1][0].image
    assert rel(edit, ref["edit"]) > 100 * TOL
