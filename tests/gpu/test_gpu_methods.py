"""Every registered method, each of its tasks, at SD1.5 size (512×512, 4×64×64 latents) on random
weights in fp16 and bf16: finite outputs of the right shape, computed in the precision asked for, and
the NFE the same method and settings report on the CPU with the tiny random backbone. The built-in
methods run their SD1.5 presets (Prompt-to-Prompt, local blend, dynamic CFG as published) with fewer
steps; a method registered by a plugin runs with its default parameters."""

from __future__ import annotations

import functools

import pytest
import torch

from icd_bench.backbones import load_backbone
from icd_bench.config import MethodSpec, resolve_method
from icd_bench.registry import METHODS

from .gpu_support import HALF, edit_samples, generators, torch_dtype

pytestmark = pytest.mark.gpu

#: method → (preset, overrides): the SD1.5 preset with few steps. NTI's early stop is off so that its
#: NFE (one UNet row per Adam step) does not depend on the weights' losses.
CASES = {
    "ddim": ("ddim-sd15-w8-dcfg", ["num_inference_steps=6"]),
    "ddim-p2p": ("ddim-p2p-sd15", ["num_inference_steps=4"]),
    "ef-ddpm": ("ef-ddpm-sd15-p2p", ["num_inference_steps=8", "skip=3"]),
    "icd": ("icd-sd15", []),  # 4 + 4 steps: the boundaries are the method
    "infedit": ("infedit-lcm-sd15", ["num_steps=4"]),
    "npi": ("npi-sd15", ["num_inference_steps=4"]),
    # the tiny CPU backbone (the NFE reference) has 4 self-attention layers, and up_blocks.0 is its only up
    # block with attention: the layers MasaCtrl and PnP act on are ones both UNets have
    "masactrl": ("masactrl-sd15", ["num_inference_steps=4", "start_layer=2", "start_step=1"]),
    "pnp": ("pnp-sd15", ["num_inference_steps=4", "attention_start_layer=2",
                         "feature_layer=up_blocks.0.resnets.1"]),
    "nti": ("nti-sd15", ["num_inference_steps=3", "inner_steps=2", "early_stop=0", "early_stop_growth=0"]),
    "renoise": ("renoise-lcm-sd15",
                ["num_steps=2", "renoise_steps=3", "average_range=[2, 4]", "reg_steps=2"]),
}
#: methods that document running in fp32 whatever the backbone's precision
RUN_IN_FP32 = {"nti"}
BATCH = 2
METHOD_TASKS = [(name, task) for name in METHODS.names() for task in METHODS.get(name).tasks]


def spec_of(name: str) -> MethodSpec:
    preset, overrides = CASES.get(name, (name, []))
    spec = resolve_method(preset, overrides)
    assert spec.method == name
    return spec


@functools.cache
def tiny_cpu_backbone():
    return load_backbone("tiny-sd15", device="cpu")


@functools.cache
def cpu_nfe(name: str, task: str) -> int:
    """The per-sample NFE the method reports for ``task`` on the CPU, tiny random backbone, fp32."""
    spec = spec_of(name)
    bb = tiny_cpu_backbone()
    batch = edit_samples(BATCH, bb.resolution)
    with METHODS.get(name)(bb, spec.params) as m:
        _, outs = m.run(task, batch, generators(batch))
    (nfe,) = {o.nfe for o in outs}
    return nfe


def test_the_cases_name_registered_methods_and_their_presets():
    for name in CASES:
        assert name in METHODS, f"{name} is not a registered method: drop it from CASES"
        spec_of(name)  # the preset exists, belongs to the method and takes the overrides


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("name, task", METHOD_TASKS)
def test_method_at_full_size_in_half_precision(name, task, dtype, backbone):
    bb = backbone(dtype)
    batch = edit_samples(BATCH, bb.resolution)
    seen: set[torch.dtype] = set()
    with METHODS.get(name)(bb, spec_of(name).params) as m:
        want = torch.float32 if name in RUN_IN_FP32 else torch_dtype(dtype)
        assert m.backbone.dtype == want
        hook = m.backbone.unet.register_forward_pre_hook(lambda mod, args, kwargs: seen.add(args[0].dtype),
                                                         with_kwargs=True)
        try:
            sources, outs = m.run(task, batch, generators(batch))
        finally:
            hook.remove()
    assert seen == {want}, f"the UNet ran in {seen}, not {want}"
    side = bb.resolution
    assert len(outs) == BATCH
    for o in outs:
        assert o.image.shape == (3, side, side) and o.image.dtype == torch.float32
        assert torch.isfinite(o.image).all(), f"{name} {task} in {dtype}: non-finite output"
        assert 0.0 <= o.image.min() and o.image.max() <= 1.0
    if task != "generate":
        assert sources.shape == (BATCH, 3, side, side)
    nfe = {o.nfe for o in outs}
    assert nfe == {cpu_nfe(name, task)}, f"{name} {task}: NFE {nfe} here, {cpu_nfe(name, task)} on the CPU"
    assert cpu_nfe(name, task) > 0
