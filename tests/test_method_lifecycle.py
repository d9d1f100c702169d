"""A method changes its backbone only for its lifetime: `close` (or leaving ``with method:``) gives the
backbone back as it was loaded — its own UNet without adapters, its dtype — and the runner closes
every method it builds."""

from __future__ import annotations

import torch
from test_baselines import gens, samples

from icd_bench.backbones.tiny import tiny_backbone
from icd_bench.config import resolve_method
from icd_bench.icd.model import attach_adapter, shared_copy
from icd_bench.registry import METHODS


def _unet_out(bb, unet=None):
    unet = unet or bb.unet
    g = torch.Generator().manual_seed(0)
    x = torch.randn(bb.latent_shape(1), generator=g).to(bb.device, bb.dtype)
    return unet(x, torch.tensor([500]), **bb.null_embeds(1).unet_kwargs()).sample


def test_icd_gives_the_backbone_back_after_equipping_it():
    bb = tiny_backbone()
    own, before = bb.unet, _unet_out(bb)
    with METHODS.get("icd")(bb, resolve_method("icd", ["boundaries=4step-tau0.8"]).params) as m:
        assert bb.unet is not own and bb.unet.config.time_cond_proj_dim  # the guidance-embedded copy
        m.run("edit", samples(bb), gens())
    assert bb.unet is own and not getattr(own, "peft_config", None)
    assert own.config.time_cond_proj_dim is None
    assert torch.equal(_unet_out(bb), before)


def test_nti_casts_to_fp32_only_while_it_runs():
    bb = tiny_backbone(dtype=torch.bfloat16)
    m = METHODS.get("nti")(bb, resolve_method("nti", ["num_inference_steps=2", "inner_steps=1"]).params)
    assert bb.dtype == torch.float32
    m.close()
    assert bb.dtype == torch.bfloat16 and next(bb.unet.parameters()).dtype == torch.bfloat16


def test_adapters_on_a_shared_copy_leave_the_original_untouched():
    bb = tiny_backbone(time_cond_proj_dim=8)
    own = bb.unet
    copy = shared_copy(own)
    attach_adapter(copy, "lcm", rank=4, alpha=4.0)
    assert not getattr(own, "peft_config", None) and copy.peft_config
    shared = {p.data_ptr() for p in own.parameters()}
    # no second copy
    assert all(p.data_ptr() in shared for n, p in copy.named_parameters() if "lora_" not in n)
    tc = torch.zeros(1, 8)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(bb.latent_shape(1), generator=g)
    kw = bb.null_embeds(1).unet_kwargs()
    # a zero-initialised LoRA changes nothing: the copy computes what the original does
    assert torch.equal(copy(x, torch.tensor([500]), timestep_cond=tc, **kw).sample,
                       own(x, torch.tensor([500]), timestep_cond=tc, **kw).sample)


def test_the_runner_closes_the_method(tmp_path, monkeypatch):
    from icd_bench.runner import RunConfig, Runner

    seen = {}
    real = METHODS.get("icd").close

    def close(self):
        real(self)
        seen["unet"], seen["peft"] = self.backbone.unet, getattr(self.backbone.unet, "peft_config", None)

    monkeypatch.setattr(METHODS.get("icd"), "close", close)
    Runner(RunConfig(method="icd", dataset="folder", data_dir="datasets/examples", backbone="tiny-sd15",
                     task="invert", limit=1, out=tmp_path / "r")).run()
    assert "unet" in seen and not seen["peft"]


def test_icd_gives_back_a_backbone_whose_unet_already_has_a_guidance_input():
    # no teacher, and the backbone's own UNet already has `time_cond_proj_dim`: iCD's adapters go into a
    # copy over the same tensors, never into the backbone's own module
    bb = tiny_backbone(time_cond_proj_dim=8)
    own = bb.unet
    tc = torch.zeros(1, 8)
    before = _unet_out(bb, lambda x, t, **kw: own(x, t, timestep_cond=tc, **kw))
    with METHODS.get("icd")(bb, resolve_method("icd", ["boundaries=4step-tau0.8"]).params) as m:
        assert bb.unet is not own and bb.unet.peft_config
        assert not getattr(own, "peft_config", None)
        m.run("edit", samples(bb), gens())
    assert bb.unet is own and not getattr(own, "peft_config", None)
    assert own.config.time_cond_proj_dim == 8
    assert torch.equal(_unet_out(bb, lambda x, t, **kw: own(x, t, timestep_cond=tc, **kw)), before)
