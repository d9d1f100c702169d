"""The fast path's properties (not its timings): one UNet call per iCD step at every τ, the
unconditional branch spent only on guided steps, batched Prompt-to-Prompt equal to one sample at a
time and to separate decodes, half precision close to fp32, no copies of the UNet's weights."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from icd_bench.attention.p2p import P2PParams
from icd_bench.backbones import load_backbone, tiny_backbone
from icd_bench.config import resolve_method
from icd_bench.icd.guidance import guidance_code, guidance_embedding
from icd_bench.imaging import psnr
from icd_bench.registry import METHODS
from icd_bench.runner import open_dataset, sample_seed
from icd_bench.studies.bench import CallCounter
from icd_bench.types import EditSample

pytestmark = pytest.mark.usefixtures("one_thread")

PAIRS = [("a red cat on grass", "a red dog on grass"), ("a blue car", "a green car"),
         ("a small house", "a small wooden house")]


def samples(n: int) -> list[EditSample]:
    colours = [(200, 40, 40), (40, 60, 200), (90, 160, 60)]
    return [EditSample(id=f"s{k}", image=Image.new("RGB", (32, 32), colours[k % 3]), source_prompt=src,
                       target_prompt=tgt, blend_words=(src.split()[2], tgt.split()[2]))
            for k, (src, tgt) in enumerate(PAIRS[:n])]


def gens(batch: list[EditSample]) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(sample_seed(0, s.id)) for s in batch]


def icd_method(*overrides: str, backbone=None):
    spec = resolve_method("icd", list(overrides))
    return METHODS.get("icd")(backbone or tiny_backbone("sd15"), spec.params)


@pytest.mark.parametrize("tau", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("p2p", [False, True])
def test_icd_spends_one_unet_call_per_step_at_every_tau(tau, p2p):
    m = icd_method(f"tau={tau}", "guidance_scale=7", f"p2p={str(p2p).lower()}")
    batch = samples(2)
    conds: list[torch.Tensor] = []
    hook = m.backbone.unet.register_forward_pre_hook(
        lambda mod, args, kwargs: conds.append(kwargs["timestep_cond"]), with_kwargs=True)
    counter = CallCounter(m.backbone)
    with counter.counting():
        _, outs = m.run("edit", batch, gens(batch))
    hook.remove()
    # 4 encoding calls of B rows; 4 decoding calls of B rows (2B with P2P's two branches), never 2×
    assert counter.calls["unet"] == ({2: 4, 4: 4} if p2p else {2: 8})
    assert [o.nfe for o in outs] == [8, 8]
    # guidance travels in the embedding: w = 1 while t/T > τ, w = 7 at or below τ; P2P's source rows
    # (the first B of each decoding call) always decode unguided, as the official edit
    T = m.backbone.num_train_timesteps
    expected = [1.0] * 4 + [1.0 if t / T > tau else 7.0 for t, _ in m.pipe.boundaries.reverse_steps()]
    dim = m.backbone.unet.config.time_cond_proj_dim
    for k, (cond, w) in enumerate(zip(conds, expected, strict=True)):
        target = cond[2:] if p2p and k >= 4 else cond
        assert torch.allclose(target, guidance_embedding(guidance_code(w), dim).expand_as(target))
        if p2p and k >= 4:
            assert torch.allclose(cond[:2], guidance_embedding(guidance_code(1.0), dim).expand_as(cond[:2]))


def test_dynamic_cfg_runs_the_unconditional_branch_only_on_guided_steps():
    spec = resolve_method("ddim", ["num_inference_steps=10", "guidance_scale=8", "tau=0.5"])
    m = METHODS.get("ddim")(tiny_backbone("sd15"), spec.params)
    batch = samples(2)
    counter = CallCounter(m.backbone)
    with counter.counting():
        _, outs = m.run("edit", batch, gens(batch))
    guided = sum(t / 1000 <= 0.5 for t in m._timesteps())
    assert 0 < guided < 10
    assert counter.calls["unet"] == {2: 10 + (10 - guided), 4: guided}  # inversion unguided; decoding d.CFG
    assert outs[0].nfe == 10 + (10 - guided) + 2 * guided


def test_batched_prompt_to_prompt_equals_one_sample_at_a_time():
    # refine and replace pairs, amplify and local blend: every part of the control indexes samples
    m = icd_method("p2p=true", "p2p_mode=auto", "amplify=2", "local_blend=true",
                   "tau=0.8", "guidance_scale=5")
    batch = samples(3)
    _, together = m.run("edit", batch, gens(batch))
    for k, s in enumerate(batch):
        _, alone = m.run("edit", [s], gens([s]))
        # batched kernels round differently (~3e-5 here, with or without P2P); a mixed-up sample is ~1e-1
        assert torch.allclose(together[k].image, alone[0].image, atol=1e-4)


def test_prompt_to_prompt_branches_in_one_call_equal_separate_decodes():
    m = icd_method("tau=0.8", "guidance_scale=5")
    pipe, bb = m.pipe, m.backbone
    batch = samples(2)
    src, tgt = [s.source_prompt for s in batch], [s.target_prompt for s in batch]
    noise = torch.randn(bb.latent_shape(2), generator=torch.Generator().manual_seed(3))
    alone_src = pipe.decode(noise, bb.encode_prompt(src), 5.0, 0.8)
    alone_tgt = pipe.decode(noise, bb.encode_prompt(tgt), 5.0, 0.8)
    off = P2PParams(cross_replace=0.0, self_replace=0.0, local_blend=False)
    assert torch.allclose(pipe.decode_p2p(noise, src, tgt, 5.0, 0.8, off), alone_tgt, atol=1e-5)
    # with the edit on, the target changes and the source branch is still the plain source decode
    seen = {}
    original = pipe.decode

    def spy(x, *args, **kwargs):
        seen["out"] = original(x, *args, **kwargs)
        return seen["out"]

    pipe.decode = spy
    edited = pipe.decode_p2p(noise, src, tgt, 5.0, 0.8,
                             P2PParams(cross_replace=0.5, self_replace=0.5, local_blend=False))
    assert torch.allclose(seen["out"][:2], alone_src, atol=1e-5)
    assert not torch.allclose(edited, alone_tgt, atol=1e-3)


def test_icd_equips_the_backbone_unet_without_copying_its_weights():
    bb = tiny_backbone("sd15")
    original = {p.data_ptr() for p in bb.unet.parameters()}
    m = icd_method(backbone=bb)
    equipped = dict(m.backbone.unet.named_parameters())
    assert m.backbone.unet.config.time_cond_proj_dim == 512
    # every original tensor is in the equipped UNet (under peft's base layers); new are only the
    # guidance projection and the two adapters' LoRA matrices
    assert original <= {p.data_ptr() for p in equipped.values()}
    new = [n for n, p in equipped.items() if p.data_ptr() not in original]
    assert new and all("lora_" in n or n == "time_embedding.cond_proj.weight" for n in new)


@pytest.mark.parametrize("dtype, min_db", [(torch.float16, 55.0), (torch.bfloat16, 40.0)])
def test_half_precision_edits_are_close_to_fp32_on_the_toy_world(dtype, min_db):
    ds = open_dataset("demo")
    batch = [ds.load(ds.ids()[0])]
    spec = resolve_method("icd-toy", [])
    out = {}
    for dt in (torch.float32, dtype):
        m = METHODS.get(spec.method)(load_backbone("toy", dtype=dt), spec.params)
        _, o = m.run("edit", batch, gens(batch))
        out[dt] = torch.stack([x.image for x in o])
    assert torch.isfinite(out[dtype]).all()
    values = psnr(out[dtype], out[torch.float32])
    assert values.min() >= min_db, values  # measured: fp16 ~71 dB, bf16 ~52 dB
    assert values.max() < 100  # really computed in the lower precision
