"""The SDPA Prompt-to-Prompt processor edits attention as the official controllers do (golden:
p2p_controllers.json): layer by layer over fixed q, k, v of the four CFG rows, step by step with local
blend on fixed latents — iCD's replace and refine edits (4 steps, ``icd-sd15``'s P2P settings) and a
PIE-Bench refine edit (10 steps, ``ddim-p2p-sd15``'s settings).

Tolerance: 1e-5 relative (norm of the difference over the norm, per CFG row) on each layer's projected
output. The reference materialises the attention
probabilities and multiplies them by V; the processor runs SDPA, and for the edited rows
``SDPA(q_src, k_src, A·v)`` — the same sums in another order, float32 rounding (~1e-7) apart.
"""

from __future__ import annotations

import pytest
import torch

from icd_bench.attention.p2p import P2PAttnProcessor, P2PControl
from icd_bench.config import resolve_method
from icd_bench.methods.icd import ICDParams

import golden_inputs as gi
from golden_inputs import golden

CASES = golden("p2p_controllers.json")["cases"]


def _params(name: str):
    return ICDParams() if name.startswith("icd") else resolve_method("ddim-p2p-sd15").params


@pytest.mark.parametrize("name", sorted(CASES))
def test_processor_edits_as_the_reference_controller(clip_tokenizer, name):
    case = CASES[name]
    src, tgt = case["prompts"]
    words = case["blend_words"]
    blend = tuple(w[0] for w in words) if name.startswith("icd") else tuple(words[:2])
    n = case["num_steps"]
    control = P2PControl(clip_tokenizer, [src], [tgt], n, _params(name), blend_words=[blend],
                         blend_resolution=gi.LATENT[-1])
    processor = P2PAttnProcessor(control)
    k = 0
    for step in range(n):
        for layer, (_, cross, _) in enumerate(gi.LAYERS):
            q, key, v = gi.attention_inputs(case["case"], step, layer)
            got = gi.project(processor._attend(q, key, v, cross, None))
            want = torch.tensor(case["outputs"][k], dtype=torch.float64)
            rel = ((got - want).norm(dim=-1) / want.norm(dim=-1)).max()  # per CFG row
            assert rel < 1e-5, (name, step, layer, float(rel))
            k += 1
        x = control.after_step(gi.latents(case["case"], step))
        want = torch.tensor(case["latents"][step], dtype=torch.float64)
        assert torch.allclose(x.double(), want, rtol=1e-6, atol=1e-6), (name, step)
    assert control.step == n


def test_the_golden_cases_exercise_what_they_claim():
    """Each case blends: after every step each target value is its own or the source's, and at some step
    both occur (the mask is neither empty nor full)."""
    for name, case in CASES.items():
        partial = 0
        for step, blended in enumerate(case["latents"]):
            last, x = torch.tensor(blended), gi.latents(case["case"], step)
            copied = (last[1] - x[0]).abs() < 1e-6  # the target took the source's value here
            kept = (last[1] - x[1]).abs() < 1e-6  # ... or kept its own
            assert (copied | kept).all(), (name, step)
            partial += bool(copied.any() and kept.any())
        assert partial >= 2, name
