"""PIE-Bench's pix2pix-zero editors end to end (golden: pie_pix2pix_zero.json; cure-lab/PnPInversion
``run_editing_pix2pix_zero.py``'s ``edit_image_ddim_pix2pix_zero`` and
``edit_image_directinversion_pix2pix_zero`` with its arguments, in the reference's own environment,
diffusers 0.14, made by ``tools/conformance/pie_pix2pix_zero.py``) on golden_inputs.pnp_components at 10
steps, against the presets of its PIE-Bench rows (`pix2pix-zero-sd15`, `direct-inversion-pix2pix-zero-sd15`):
the regularised inversion, the edit's latents after every step (projected) and at the end, and the
reconstruction.

The caption BLIP would give is the source prompt on both sides (the project's stand-in). The inversion's
auto-correlation rolls are the reference's (Python's ``random``, recorded in the golden) replayed in order:
the project draws its own from the sample's generator. Both sides skip the VAE and run float32. Tolerance:
1e-4 relative, as the other PIE-Bench editor goldens (the reference's autograd gradients of the
regularisation and of the guidance loss, closed forms and SDPA here).
"""

from __future__ import annotations

import pytest
import torch

import golden_inputs as gi
from golden_inputs import golden, rel

G = golden("pie_pix2pix_zero.json")
TOL = 1e-4


@pytest.fixture(scope="module")
def backbone(clip_tokenizer):
    return gi.pnp_backbone(clip_tokenizer)


def _replay_rolls(monkeypatch, rolls: list[int]) -> list[int]:
    """The inversion's auto-correlation rolls taken from ``rolls`` in order (what is left is returned)."""
    from icd_bench.diffusion import renoise

    left = list(rolls)

    def replay(levels, generator):
        c, n = levels[0].shape[0], len(levels)
        drawn = [left.pop(0) for _ in range(c * n)]
        return torch.tensor(drawn).view(c, n)

    monkeypatch.setattr(renoise, "_draw_rolls", replay)
    return left


def _run(backbone, case: int, monkeypatch, *overrides):
    """The edit (its latents after every step, before Direct Inversion's offset, and at the end), the
    inversion and the reconstruction of golden case ``case``, the reference's rolls replayed."""
    from icd_bench.diffusion import pix2pix_zero as p2pz

    ref = G["cases"][case]
    left = _replay_rolls(monkeypatch, ref["rolls"])
    method, sample = gi.pnp_editor(backbone, monkeypatch, ref, gi.pnp_latent(gi.PIE_P2PZ_LATENTS + case),
                                   *overrides)
    steps: list[torch.Tensor] = []
    decode = p2pz.guided_decode
    monkeypatch.setattr(p2pz, "guided_decode", lambda *a, **k: decode(
        *a, **k, callback=lambda info: steps.append(info.x.clone())))
    with backbone.nfe.measure() as rows:
        edit = method.run("edit", [sample], [torch.Generator().manual_seed(0)])[1][0].image
    inverted = method.invert(None, [ref["source"]], [torch.Generator()]).latents  # the reused inversion
    recon = method.run("invert", [sample], [torch.Generator().manual_seed(0)])[1][0].image
    return {"edit": edit, "steps": steps, "inverted": inverted, "reconstruction": recon, "rows": rows[0],
            "rolls_left": left}


def test_the_cases_are_the_ones_the_golden_was_made_from_on_the_presets_grid(backbone):
    from icd_bench.diffusion import ddim_timesteps

    assert [(c["method"], c["source"], c["target"]) for c in G["cases"]] == list(gi.PIE_P2PZ_CASES)
    for c in G["cases"]:
        assert c["caption"] == c["source"]
        assert c["timesteps"] == ddim_timesteps(backbone.scheduler, c["num_steps"], None)


@pytest.mark.parametrize("case", range(len(gi.PIE_P2PZ_CASES)))
def test_inversion_edit_and_reconstruction_equal_the_official_editor(backbone, case, monkeypatch):
    ref = G["cases"][case]
    got = _run(backbone, case, monkeypatch)
    assert got["rolls_left"] == []  # the inversion drew exactly as many rolls as the reference
    assert rel(got["inverted"], ref["inverted"]) < TOL
    assert len(got["steps"]) == ref["num_steps"]
    for i, (x, want) in enumerate(zip(got["steps"], ref["edit_steps"], strict=True)):
        assert rel(gi.uac_project(x), want) < TOL, i
    assert rel(got["edit"], ref["edit"]) < TOL
    assert rel(got["reconstruction"], ref["reconstruction"]) < TOL
    # UNet rows: the reference runs its reference decode as CFG of two identical rows, the project one row
    assert got["rows"] + ref["num_steps"] == ref["unet_rows"]


@pytest.mark.parametrize("overrides", [("xa_guidance=0",), ("reg_steps=0",)])
def test_without_the_guidance_or_the_regularisation_the_edit_misses(backbone, overrides, monkeypatch):
    """The guidance off, or the inversion unregularised (its rolls then go unused): far from the golden (the
    guidance moves this small random UNet's edit by 4e-3 relative, 40 times the tolerance)."""
    ref = G["cases"][0]
    got = _run(backbone, 0, monkeypatch, *overrides)
    assert rel(got["edit"], ref["edit"]) > 10 * TOL
