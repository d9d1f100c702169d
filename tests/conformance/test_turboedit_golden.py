"""TurboEdit end to end (golden: turboedit.json; GiilDe/turbo-edit ``main.run`` with its defaults, the 4- and
the 3-step configuration, in the reference's own environment, diffusers 0.27.2, made by
``tools/conformance/turboedit_golden.py``) on the tiny SDXL-shaped model (icd_bench.backbones.tiny, seed
golden_inputs.TURBO_SEED), against `turboedit-sdxl-turbo` and `turboedit-sdxl-turbo-3step`: the grid, the
shifted noised latents (the same noise drawn from the same seeded generator) and the edit's latents after
every step. Both sides skip the VAE (the clean latent is given) and run float32. Tolerance: 1e-5 relative.
"""

from __future__ import annotations

import pytest
import torch
from PIL import Image

import golden_inputs as gi
from golden_inputs import golden, rel

G = golden("turboedit.json")
TOL = 1e-5


@pytest.fixture(scope="module")
def backbone():
    from icd_bench.backbones.tiny import tiny_backbone

    return tiny_backbone("sdxl", seed=gi.TURBO_SEED)


def _run(backbone, case: int, monkeypatch, *overrides):
    from icd_bench.config import resolve_method
    from icd_bench.diffusion import turboedit as te
    from icd_bench.registry import METHODS
    from icd_bench.types import EditSample

    ref = G["cases"][case]
    spec = resolve_method(gi.TURBO_PRESETS[ref["num_steps"]], list(overrides))
    method = METHODS.get(spec.method)(backbone, spec.params)
    latent = gi.turbo_latent(case)
    monkeypatch.setattr(backbone, "encode_image", lambda images: latent)
    # SDXL's time ids: the reference's img2img pipeline takes the size from the latents (VAE factor 2 here)
    monkeypatch.setattr(backbone, "resolution", 2 * ref["side"])
    monkeypatch.setattr(backbone, "decode", lambda latents: latents)
    steps: list[torch.Tensor] = []
    decode = te.turbo_decode
    monkeypatch.setattr(te, "turbo_decode", lambda *a, **k: decode(
        *a, **k, callback=lambda info: steps.append(info.x.clone())))
    sample = EditSample(id="x", image=Image.new("RGB", (8, 8)), source_prompt=ref["source"],
                        target_prompt=ref["target"])
    inv = method.invert(None, [ref["source"]], [torch.Generator().manual_seed(ref["seed"])])
    with backbone.nfe.measure() as rows:
        out = method.run("edit", [sample], [torch.Generator().manual_seed(ref["seed"])])[1][0]
    return method, inv, steps, out, rows[0]


def test_the_cases_are_the_ones_the_golden_was_made_from(backbone):
    assert [(c["num_steps"], c["side"], c["source"], c["target"]) for c in G["cases"]] == list(gi.TURBO_CASES)
    assert G["provenance"]["scheduler"] == gi.TURBO_SCHEDULER


@pytest.mark.parametrize("case", range(len(gi.TURBO_CASES)))
def test_grid_noised_latents_and_edit_equal_the_official_code(backbone, case, monkeypatch):
    ref = G["cases"][case]
    method, inv, steps, out, rows = _run(backbone, case, monkeypatch)
    assert method._timesteps() == ref["timesteps"]
    assert rel(torch.cat(inv.state["targets"]), ref["x_ts"]) < TOL
    assert len(steps) == ref["num_steps"]
    for i, (x, want) in enumerate(zip(steps, ref["steps"], strict=True)):
        assert rel(x, [want]) < TOL, i
    assert rel(out.image, [ref["steps"][-1]]) < TOL
    assert rows == ref["unet_rows"]  # three rows per step on both sides


@pytest.mark.parametrize(("case", "overrides"), [(0, ("w=1",)), (0, ("noise_shift_delta=0",)),
                                                 (2, ("max_norms=-1,-1,-1,-1",))])
def test_without_what_the_golden_pins_the_edit_misses(backbone, case, overrides, monkeypatch):
    """The target's weight at 1 (a plain prompt switch), the noise unshifted, the norm cap off (case 2, whose
    last inversion noise exceeds it): far from the golden."""
    ref = G["cases"][case]
    _, _, _, out, _ = _run(backbone, case, monkeypatch, *overrides)
    assert rel(out.image, [ref["steps"][-1]]) > 100 * TOL
