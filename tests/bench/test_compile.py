"""``torch.compile`` of the UNet keeps a method's output (up to the compiled kernels' rounding) with
adapters switched between encoding and decoding and Prompt-to-Prompt processors installed. Slow on
a CPU (about a minute of compilation), hence in the benchmark suite."""

from __future__ import annotations

import torch
from PIL import Image

from icd_bench.backbones import tiny_backbone
from icd_bench.config import resolve_method
from icd_bench.registry import METHODS
from icd_bench.types import EditSample


def test_compiled_icd_edit_matches_eager():
    spec = resolve_method("icd", ["p2p=true", "tau=0.8", "guidance_scale=5"])
    sample = [EditSample(id="a", image=Image.new("RGB", (32, 32), (200, 30, 30)), source_prompt="a red cat",
                         target_prompt="a red dog")]
    out = {}
    for mode in (None, "default"):
        m = METHODS.get("icd")(tiny_backbone("sd15"), spec.params)
        if mode:
            m.backbone.compile_unet(mode)
        _, o = m.run("edit", sample, [torch.Generator().manual_seed(0)])
        out[mode] = o[0].image
    assert torch.allclose(out[None], out["default"], atol=1e-3)
