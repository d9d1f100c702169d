"""Prompt-to-Prompt processors on a real (tiny) UNet: identity, SDPA vs stored maps, restore, blend."""

from __future__ import annotations

import pytest
import torch

from icd_bench.attention.p2p import P2PControl, P2PParams, edited_target_words
from icd_bench.backbones import tiny_backbone
from icd_bench.backbones.base import PromptEmbeds


@pytest.fixture(scope="module")
def bb():
    return tiny_backbone("sd15")


def unet_out(bb, x, prompts, control=None):
    emb = bb.encode_prompt(prompts)
    if control is None:
        return bb.predict_noise(x, 500, emb)
    with control.install(bb.unet):
        return bb.predict_noise(x, 500, emb)


def test_identical_prompts_reproduce_plain_decoding(bb):
    x = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    p = "a red circle on a white background"
    plain = unet_out(bb, x, [p])
    control = P2PControl(bb.tokenizers[0], [p], [p], num_steps=4,
                         config=P2PParams(cross_replace=1.0, self_replace=1.0))
    edited = unet_out(bb, torch.cat([x, x]), [p, p], control)
    assert torch.allclose(edited[0], plain[0], atol=1e-5) and torch.allclose(edited[1], plain[0], atol=1e-5)


@pytest.mark.parametrize("target, mode, amplify", [
    ("a blue circle on a white background", "replace", 1.0),
    ("a blue circle on a white background", "replace", 4.0),
    ("a small red circle on a white background", "refine", 2.0),
])
def test_sdpa_path_equals_the_map_storing_path(bb, target, mode, amplify):
    x = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    src = "a red circle on a white background"
    cfg = P2PParams(cross_replace=1.0, self_replace=1.0, p2p_mode=mode, amplify=amplify, local_blend=False)
    fast = P2PControl(bb.tokenizers[0], [src], [target], 4, cfg)
    slow = P2PControl(bb.tokenizers[0], [src], [target], 4, cfg, store_maps=True)
    a = unet_out(bb, x, [src, target], fast)
    b = unet_out(bb, x, [src, target], slow)
    assert torch.allclose(a, b, atol=1e-5)
    plain = unet_out(bb, x, [src, target])
    assert torch.allclose(a[0], plain[0], atol=1e-5)  # the source branch is untouched
    assert not torch.allclose(a[1], plain[1], atol=1e-4)  # the target branch is steered


def test_schedule_and_restore(bb):
    src, tgt = "a red circle", "a blue circle"
    control = P2PControl(bb.tokenizers[0], [src], [tgt], num_steps=4,
                         config=P2PParams(cross_replace=0.3, self_replace=0.6))
    assert [control.cross_active() for control.step in range(4)] == [True, False, False, False]
    assert [control.self_active() for control.step in range(4)] == [True, True, False, False]
    before = {k: type(v) for k, v in bb.unet.attn_processors.items()}
    with control.install(bb.unet):
        assert all(type(p).__name__ == "P2PAttnProcessor" for p in bb.unet.attn_processors.values())
    assert {k: type(v) for k, v in bb.unet.attn_processors.items()} == before
    control.step = 3  # nothing active: plain attention
    x = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(unet_out(bb, x, [src, tgt], control), unet_out(bb, x, [src, tgt]), atol=1e-5)


def test_local_blend_keeps_the_source_outside_the_words(bb):
    src, tgt = "a red circle on a white background", "a blue circle on a white background"
    control = P2PControl(bb.tokenizers[0], [src], [tgt], 4, P2PParams(blend_start=0.0),
                         blend_words=[("red", "blue")])
    assert control.blending
    x = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(3))
    unet_out(bb, x, [src, tgt], control)  # records the cross-attention maps
    assert control.maps and all(m.shape[0] == 2 and m.shape[-1] == 77 for m in control.maps.values())
    # a hand-made 4x4 map: the blend words attend only to the top-left quadrant
    maps = torch.full((2, 16, 77), 0.01)
    for row in (0, 1):  # the source row reads "red", the target row "blue"
        pos = control.blend_tokens[0][row]
        grid = torch.zeros(4, 4)
        grid[:2, :2] = 1.0
        maps[row][:, pos] = grid.flatten()[:, None]
    control.maps = {16: maps}
    out = control.blend_latents(x)
    assert torch.equal(out[0], x[0])  # the source branch is never touched
    inside = torch.zeros(16, 16, dtype=torch.bool)
    inside[:12, :12] = True  # the quadrant (8x8 of the 16x16 latent) grown by the 3x3 max-pool
    assert torch.allclose(out[1][:, inside], x[1][:, inside], atol=1e-6)
    assert torch.equal(out[1][:, ~inside], x[0][:, ~inside])


def test_edited_words():
    # the official iCD editing script: target words not in the source, stop words skipped
    assert edited_target_words("a red circle", "a blue circle") == ["blue"]
    assert edited_target_words("a circle", "a small circle") == ["small"]
    assert edited_target_words("a cat on a mat", "a dog on the mat") == ["dog"]  # "the" is a stop word
    assert edited_target_words("a cat", "a cat") == []
    with pytest.raises(ValueError):
        P2PParams(p2p_mode="swap")


def test_prompt_embeds_used_here_are_batched_as_sources_then_targets():
    a = PromptEmbeds(torch.zeros(1, 2, 3))
    b = PromptEmbeds(torch.ones(1, 2, 3))
    assert PromptEmbeds.cat([a, b]).embeds[:, 0, 0].tolist() == [0.0, 1.0]


def test_self_attention_injection_only_on_small_maps(bb):
    src, tgt = "a red circle", "a blue square"
    x = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(3))
    plain = unet_out(bb, x, [src, tgt])

    def injected(max_tokens):
        cfg = P2PParams(cross_replace=0.0, self_replace=1.0, local_blend=False, self_max_tokens=max_tokens)
        return unet_out(bb, x, [src, tgt],
                        P2PControl(bb.tokenizers[0], [src], [tgt], num_steps=4, config=cfg))

    assert torch.allclose(injected(0), plain, atol=1e-5)  # no map small enough: nothing injected
    # the target takes the source's pattern
    assert not torch.allclose(injected(32 * 32)[1], plain[1], atol=1e-4)
    assert torch.allclose(injected(32 * 32)[0], plain[0], atol=1e-5)  # the source branch is untouched


def test_p2p_decode_refuses_a_sampler_that_skips_a_step_or_changes_the_layout(bb):
    from icd_bench.attention.p2p import p2p_decode
    from icd_bench.diffusion.loop import StepInfo

    x = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    src, tgt = ["a red circle"], ["a blue circle"]

    def sampler(steps, rows=None):
        def sample(latents, cond, callback):
            for i in range(steps):
                latents = callback(StepInfo(i, 900 - 100 * i, 800 - 100 * i, 0.1, 0.2, latents))
            return latents if rows is None else latents[:rows]
        return sample

    out = p2p_decode(bb, sampler(4), x, src, tgt, 4, P2PParams())
    assert out.shape == x.shape
    with pytest.raises(RuntimeError, match="saw 3 steps, the sampler should have reported 4"):
        p2p_decode(bb, sampler(3), x, src, tgt, 4, P2PParams())
    assert p2p_decode(bb, sampler(3), x, src, tgt, 4, P2PParams(), steps_run=3).shape == x.shape
    with pytest.raises(RuntimeError, match=r"\[sources; targets\] layout of 2 rows, got 1"):
        p2p_decode(bb, sampler(4, rows=1), x, src, tgt, 4, P2PParams())

    def dropping(latents, cond, callback):  # a sampler that loses the source rows on the way
        return callback(StepInfo(0, 900, 800, 0.1, 0.2, latents[1:]))

    with pytest.raises(RuntimeError, match="layout of 2 rows, got 1"):
        p2p_decode(bb, dropping, x, src, tgt, 1, P2PParams())


def test_p2p_and_uac_controls_share_one_base_and_each_keeps_its_own_step_rule(bb):
    """InfEdit's control is not a P2P control with other rules: both derive `AttentionControl` (matrices,
    map store, installation, step counter), each with its own parameters, windows and callback."""
    from icd_bench.attention.p2p import AttentionControl
    from icd_bench.attention.uac import UACControl, UACParams
    from icd_bench.diffusion.loop import StepInfo

    p, q = "a red circle on a white background", "a blue circle on a white background"
    states = bb.encode_prompt([p]).embeds, bb.encode_prompt([q]).embeds
    uac = UACControl(bb.tokenizers[0], [p], [q], 4, *states, config=UACParams(cross_replace=0.6),
                     blend_words=["circle"])
    p2p = P2PControl(bb.tokenizers[0], [p], [q], num_steps=4, config=P2PParams(cross_replace=0.6))
    assert isinstance(uac, AttentionControl) and isinstance(p2p, AttentionControl)
    assert not isinstance(uac, P2PControl) and not isinstance(uac.cfg, P2PParams)
    assert uac.layout == ("source", "target", "mutual") and p2p.layout == ("sources", "targets")
    # the same fraction, each method's own window: UAC's (i + 1)/N <= f, P2P's i < int(f (N + 1))
    windows = []
    for control, rows in ((uac, 3), (p2p, 2)):
        seen = []
        for i in range(4):
            seen.append(control.cross_active())
            x = torch.zeros(rows, 4, 2, 2)
            control.step_callback(StepInfo(i, 0, 0, 0.5, 0.6, x))
        control.check_finished()
        windows.append(seen)
    assert windows == [[True, True, False, False], [True, True, True, False]]
    with pytest.raises(RuntimeError, match="layout"):
        uac.step_callback(StepInfo(0, 0, 0, 0.5, 0.6, torch.zeros(2, 4, 2, 2)))
