"""iCD inference on tiny SD1.5/SDXL-shaped models: adapters, release-format import, dynamic CFG, P2P."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from icd_bench.backbones import tiny_backbone
from icd_bench.config import resolve_method
from icd_bench.errors import ConfigError
from icd_bench.icd import Boundaries
from icd_bench.icd.guidance import guidance_embedding
from icd_bench.icd.model import FORWARD, PEFT_PREFIX, REVERSE, read_lora, save_adapter
from icd_bench.icd.pipeline import ICDPipeline
from icd_bench.methods.icd import ICD, ICDParams
from icd_bench.types import EditSample

from helpers import make_image

SET = Boundaries.named("4step-tau0.8")


pytestmark = pytest.mark.usefixtures("one_thread")


def _gen(seed):
    return torch.Generator().manual_seed(seed)


# -- presets ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("preset, reverse_steps, forward_steps, w, tau, p2p", [
    ("icd-sd15", [(999, 779), (779, 519), (519, 259), (259, 0)],
     [(19, 259), (259, 519), (519, 779), (779, 999)], 20.0, 0.8, True),
    ("icd-sd15-3step", [(999, 699), (699, 339), (339, 0)],
     [(19, 339), (339, 699), (699, 999)], 20.0, 0.7, True),
    ("icd-sdxl", [(999, 699), (699, 499), (499, 249), (249, 0)],
     [(19, 249), (249, 499), (499, 699), (699, 999)], 8.0, 0.7, False),
    ("icd-toy", [(999, 779), (779, 519), (519, 259), (259, 0)],
     [(19, 259), (259, 519), (519, 779), (779, 999)], 5.0, 0.8, True),  # toy: the paper's tau 0.8
])
def test_every_preset_maps_its_boundaries(preset, reverse_steps, forward_steps, w, tau, p2p):
    resolved = resolve_method(preset)
    params = resolved.params
    b = params.boundary_set()
    assert resolved.method == "icd"
    assert b.reverse_steps() == reverse_steps and b.forward_steps() == forward_steps
    assert (params.guidance_scale, params.tau, params.p2p) == (w, tau, p2p)


def test_custom_boundaries_and_their_errors():
    p = ICDParams(reverse_boundaries=(499, 999), forward_boundaries=(19, 499))
    assert p.boundary_set().reverse_steps() == [(999, 499), (499, 0)]
    with pytest.raises(ValueError, match="both"):
        ICDParams(reverse_boundaries=(499, 999))
    with pytest.raises(ConfigError, match="not consistent"):
        ICDParams(reverse_boundaries=(499, 999), forward_boundaries=(19, 399)).boundary_set()
    with pytest.raises(ValueError, match="unknown boundary set"):
        ICDParams(boundaries="5step")


# -- the guidance-embedded base and the adapters ----------------------------------------------------
def test_zero_initialised_pipeline_is_the_backbone_unet_for_every_w():
    bb, ref = tiny_backbone("sd15", seed=0), tiny_backbone("sd15", seed=0)
    pipe = ICDPipeline(bb, SET, lora_rank=4)
    assert bb.unet.config.time_cond_proj_dim == 512 and set(bb.unet.peft_config) == {FORWARD, REVERSE}
    x = torch.randn(1, 4, 16, 16, generator=_gen(0))
    cond = bb.encode_prompt(["a red circle"])
    plain = ref.predict_noise(x, 500, cond)
    for w in (1.0, 19.0):
        bb.unet.set_adapter(REVERSE)
        assert torch.allclose(bb.predict_noise(x, 500, cond, pipe.guidance_cond(w, 1)), plain, atol=1e-5)
    assert not pipe.trained


def test_guidance_code_is_w_minus_one():
    bb = tiny_backbone("sd15", seed=0)
    pipe = ICDPipeline(bb, SET, lora_rank=4)
    assert torch.equal(pipe.guidance_cond(1.0, 2), guidance_embedding(torch.zeros(2), 512))
    assert torch.equal(pipe.guidance_cond(19.0, 1), guidance_embedding(torch.tensor([18.0]), 512))


def _write_release(tmp_path, seed=0):
    """A tiny guidance-distilled UNet `.pt` and two LoRA files as the public release writes them."""
    src = tiny_backbone("sd15", seed=seed, time_cond_proj_dim=32)
    g = _gen(seed + 1)
    with torch.no_grad():  # a non-trivial guidance projection
        src.unet.time_embedding.cond_proj.weight.normal_(0, 0.05, generator=g)
    torch.save(src.unet.state_dict(), tmp_path / "cfg_distill.pt")
    rank, loras = 4, {}
    modules = {n: m for n, m in src.unet.named_modules()
               if n.split(".")[-1] in ("to_q", "to_k", "to_v", "conv1") or n.endswith("to_out.0")}
    for name in (FORWARD, REVERSE):
        state = {}
        for path, m in modules.items():
            if isinstance(m, torch.nn.Conv2d):
                a = torch.randn(rank, m.in_channels, *m.kernel_size, generator=g) * 0.1
                b = torch.randn(m.out_channels, rank, 1, 1, generator=g) * 0.1
            else:
                a = torch.randn(rank, m.in_features, generator=g) * 0.1
                b = torch.randn(m.out_features, rank, generator=g) * 0.1
            state[f"{PEFT_PREFIX}{path}.lora_A.weight"] = a
            state[f"{PEFT_PREFIX}{path}.lora_B.weight"] = b
        save_file(state, str(tmp_path / f"{name}.safetensors"))
        loras[name] = state
    return tmp_path / "cfg_distill.pt", loras, rank


def _merged_unet(pt_path, lora, rank, alpha):
    """The reference semantics by hand: W + (alpha / rank) · B A in every targeted module."""
    bb = tiny_backbone("sd15", seed=0, time_cond_proj_dim=32)
    bb.unet.load_state_dict(torch.load(pt_path, weights_only=True))
    modules = dict(bb.unet.named_modules())
    with torch.no_grad():
        for key, a in lora.items():
            if not key.endswith("lora_A.weight"):
                continue
            path = key[len(PEFT_PREFIX):-len(".lora_A.weight")]
            b = lora[key.replace("lora_A", "lora_B")]
            w = modules[path].weight
            delta = b.flatten(1) @ a.flatten(1)
            w += (alpha / rank) * delta.view_as(w)
    return bb


def test_release_format_round_trip(tmp_path):
    pt, loras, rank = _write_release(tmp_path)
    bb = tiny_backbone("sd15", seed=0)  # a plain SD1.5-shaped backbone, as `--backbone` gives
    pipe = ICDPipeline(bb, SET, teacher=pt, forward_lora=tmp_path / f"{FORWARD}.safetensors",
                       reverse_lora=tmp_path / f"{REVERSE}.safetensors")
    assert pipe.trained and pipe.adapters[FORWARD]["alpha"] == 8.0 and pipe.adapters[FORWARD]["rank"] == rank
    x = torch.randn(2, 4, 16, 16, generator=_gen(3))
    cond = bb.encode_prompt(["a red circle", "a blue square"])
    for name in (FORWARD, REVERSE):
        ref = _merged_unet(pt, loras[name], rank, 8.0)
        tc = pipe.guidance_cond(7.0, 2)
        bb.unet.set_adapter(name)
        got = bb.predict_noise(x, 600, cond, tc)
        want = ref.predict_noise(x, 600, cond, tc)
        assert torch.allclose(got, want, atol=1e-4), (name, (got - want).abs().max())
    # and the two adapters really differ (the per-call switch matters)
    bb.unet.set_adapter(FORWARD)
    f = bb.predict_noise(x, 600, cond, tc)
    bb.unet.set_adapter(REVERSE)
    assert not torch.allclose(f, bb.predict_noise(x, 600, cond, tc), atol=1e-4)


def test_saved_adapters_reload_identically(tmp_path):
    bb = tiny_backbone("sd15", seed=0)
    pipe = ICDPipeline(bb, SET, lora_rank=4, lora_alpha=4.0)
    with torch.no_grad():
        for n, p in bb.unet.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1, generator=_gen(len(n)))
    for name in (FORWARD, REVERSE):
        save_adapter(bb.unet, name, tmp_path / f"{name}.safetensors")
    state, info = read_lora(tmp_path / f"{FORWARD}.safetensors")
    assert info["rank"] == 4 and info["alpha"] == 4.0 and all(k.endswith((".lora_A.weight", ".lora_B.weight"))
                                                               for k in state)
    bb2 = tiny_backbone("sd15", seed=0)
    pipe2 = ICDPipeline(bb2, SET, forward_lora=tmp_path / f"{FORWARD}.safetensors",
                        reverse_lora=tmp_path / f"{REVERSE}.safetensors")
    x0 = torch.randn(1, 4, 16, 16, generator=_gen(1))
    noise = torch.randn(1, 4, 16, 16, generator=_gen(2))
    c1, c2 = bb.encode_prompt(["a cat"]), bb2.encode_prompt(["a cat"])
    assert torch.allclose(pipe.encode(x0, c1, noise), pipe2.encode(x0, c2, noise), atol=1e-5)
    assert torch.allclose(pipe.decode(noise, c1, 3.0, 0.8), pipe2.decode(noise, c2, 3.0, 0.8), atol=1e-5)


@pytest.mark.parametrize("bad, fragment", [
    ({"x.weight": torch.zeros(2, 2)}, "not a peft-style LoRA"),
    ({f"{PEFT_PREFIX}nowhere.to_q.lora_A.weight": torch.zeros(4, 8),
      f"{PEFT_PREFIX}nowhere.to_q.lora_B.weight": torch.zeros(8, 4)}, "does not have"),
])
def test_bad_lora_files_are_clear_errors(tmp_path, bad, fragment):
    save_file(bad, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ConfigError, match=fragment):
        ICDPipeline(tiny_backbone("sd15"), SET, forward_lora=tmp_path / "bad.safetensors")


def test_teacher_must_be_guidance_distilled_and_a_state_dict(tmp_path):
    torch.save(tiny_backbone("sd15").unet.state_dict(), tmp_path / "plain.pt")
    with pytest.raises(ConfigError, match="guidance"):
        ICDPipeline(tiny_backbone("sd15"), SET, teacher=tmp_path / "plain.pt")
    torch.save({"model": object()}, tmp_path / "pickle.pt")
    with pytest.raises(ConfigError, match="weights_only"):
        ICDPipeline(tiny_backbone("sd15"), SET, teacher=tmp_path / "pickle.pt")
    with pytest.raises(ConfigError, match="not found"):
        ICDPipeline(tiny_backbone("sd15"), SET, teacher=tmp_path / "missing.pt")


# -- dynamic CFG and the step structure -------------------------------------------------------------
@pytest.mark.parametrize("tau, codes", [
    (0.8, [0.0, 18.0, 18.0, 18.0]),
    (0.779, [0.0, 18.0, 18.0, 18.0]),  # t/T = 0.779 <= tau: guided
    (0.778, [0.0, 0.0, 18.0, 18.0]),
    (1.0, [18.0, 18.0, 18.0, 18.0]),
])
def test_dynamic_cfg_switches_exactly_at_tau(tau, codes, monkeypatch):
    bb = tiny_backbone("sd15", seed=0)
    pipe = ICDPipeline(bb, SET, lora_rank=4)
    seen = []
    real = pipe.guidance_cond
    monkeypatch.setattr(pipe, "guidance_cond", lambda w, rows: seen.append(w - 1) or real(w, rows))
    pipe.decode(torch.randn(1, 4, 16, 16), bb.encode_prompt(["x"]), 19.0, tau)
    assert seen == codes


def test_encode_is_unguided_and_walks_the_forward_boundaries(monkeypatch):
    bb = tiny_backbone("sd15", seed=0)
    pipe = ICDPipeline(bb, SET, lora_rank=4)
    calls = []
    real = bb.predict_noise

    def spy(x, t, cond, tc=None, **kw):
        calls.append((int(t), bb.unet.active_adapters(), torch.equal(tc[0], pipe.guidance_cond(1.0, 1)[0])))
        return real(x, t, cond, tc, **kw)

    monkeypatch.setattr(bb, "predict_noise", spy)
    pipe.encode(torch.zeros(1, 4, 16, 16), bb.encode_prompt(["x"]), torch.randn(1, 4, 16, 16))
    assert calls == [(t, [FORWARD], True) for t in (19, 259, 519, 779)]


# -- editing with Prompt-to-Prompt -----------------------------------------------------------------
def _nonzero_adapters(bb, seed=0):
    with torch.no_grad():
        for n, p in bb.unet.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05, generator=_gen(seed + len(n)))


def test_p2p_with_identical_prompts_reproduces_plain_decoding():
    bb = tiny_backbone("sd15", seed=0)
    pipe = ICDPipeline(bb, SET, lora_rank=4)
    _nonzero_adapters(bb)
    x = torch.randn(2, 4, 16, 16, generator=_gen(5))
    prompts = ["a red circle on a white background", "a blue square"]
    # w = 1: the source branch (always unguided) and the target branch take the same guidance
    plain = pipe.decode(x, bb.encode_prompt(prompts), 1.0, 0.8)
    cfg = ICDParams(cross_replace=1.0, self_replace=1.0)
    edited = pipe.decode_p2p(x, prompts, prompts, 1.0, 0.8, cfg, blend_words=[("circle", "circle"), None])
    assert torch.allclose(edited, plain, atol=1e-4)


def test_p2p_decodes_the_source_branch_unguided_and_the_target_with_step_cfg(monkeypatch):
    """The official SD1.5 edit: guidance codes [0 | w − 1] over [source | target] rows where t/T <= tau,
    and code 0 for every row above tau."""
    bb = tiny_backbone("sd15", seed=0)
    pipe = ICDPipeline(bb, SET, lora_rank=4)
    seen = []
    real = bb.predict_noise

    def spy(x, t, cond, timestep_cond=None, **kw):
        seen.append((int(t), timestep_cond.clone()))
        return real(x, t, cond, timestep_cond, **kw)

    monkeypatch.setattr(bb, "predict_noise", spy)
    prompts = ["a red circle", "a blue square"]
    pipe.decode_p2p(torch.randn(2, 4, 16, 16, generator=_gen(5)), prompts,
                    ["a big red circle", "a blue cube"], 20.0, 0.8, ICDParams())
    assert [t for t, _ in seen] == [999, 779, 519, 259]
    code0, code19 = (guidance_embedding(torch.tensor([c]), 512)[0] for c in (0.0, 19.0))
    for t, tc in seen:
        assert all(torch.equal(row, code0) for row in tc[:2])  # the source rows: unguided at every step
        assert all(torch.equal(row, code0 if t > 800 else code19) for row in tc[2:])


@pytest.mark.parametrize("kind", ["sd15", "sdxl"])
def test_method_runs_every_task_with_the_paper_step_counts(kind, tmp_path):
    bb = tiny_backbone(kind, seed=0)
    p2p = kind == "sd15"
    method = ICD(bb, ICDParams(lora_rank=4, p2p=p2p, guidance_scale=3.0))
    image = make_image(tmp_path / "a.png", size=32)
    from PIL import Image

    sample = EditSample(id="a", image=Image.open(image).convert("RGB"), source_prompt="a red circle",
                        target_prompt="a blue circle", blend_words=("circle", "circle") if p2p else None)
    for task, nfe in (("edit", 8), ("invert", 8), ("generate", 4)):
        sources, outs = method.run(task, [sample], [_gen(0)])
        assert outs[0].nfe == nfe, task
        assert outs[0].image.shape == (3, bb.resolution, bb.resolution)
        assert 0 <= outs[0].image.min() and outs[0].image.max() <= 1
    # the same seed gives the same edit; the start noise comes from the sample's generator
    a = method.run("edit", [sample], [_gen(1)])[1][0].image
    b = method.run("edit", [sample], [_gen(1)])[1][0].image
    assert torch.equal(a, b)


def test_bundled_paths_name_files_inside_the_package(tmp_path):
    from icd_bench.icd.model import read_state_dict
    from icd_bench.paths import ASSETS, user_path

    assert user_path("bundled:toy/teacher") == ASSETS / "toy" / "teacher"
    state = read_state_dict("bundled:toy/teacher/unet/diffusion_pytorch_model.safetensors")
    assert "conv_in.weight" in state
    with pytest.raises(ConfigError, match="not found"):
        read_state_dict("bundled:toy/no-such-file.safetensors")


def test_icd_toy_uses_the_bundled_trained_models():
    """`--method icd-toy` loads the bundled student and adapters; they change the pipeline's output
    and invert the demo images (measured: ~34.2 dB on these 7; the boundary-step DDIM of the
    zero-initialised pipeline gets ~33 dB here)."""
    from icd_bench.backbones import load_backbone
    from icd_bench.data.piebench import Demo
    from icd_bench.imaging import psnr
    from icd_bench.paths import user_path

    spec = resolve_method("icd-toy", ["p2p=false", "guidance_scale=1.0", "tau=1.0"])
    for key in ("teacher", "forward_lora", "reverse_lora"):
        assert (getattr(spec.params, key).startswith("bundled:toy/icd/")
                and user_path(getattr(spec.params, key)).is_file())
    demo = Demo()
    samples = [demo.load(i) for i in demo.ids()[::10]]
    values, images = {}, {}
    for label, params in (("trained", spec.params),
                          ("untrained", ICDParams(**{**spec.params_dict(), "teacher": None,
                                                     "forward_lora": None, "reverse_lora": None,
                                                     "lora_rank": 4}))):
        method = ICD(load_backbone("toy"), params)
        assert method.pipe.trained == (label == "trained")
        sources, outs = method.run("invert", samples, [_gen(i) for i in range(len(samples))])
        images[label] = torch.stack([o.image for o in outs])
        values[label] = psnr(images[label], sources.float()).mean().item()
    assert values["trained"] > 28.0 and values["untrained"] > 28.0, values
    assert (images["trained"] - images["untrained"]).abs().mean() > 1e-3  # the adapters are applied


def test_a_guidance_scale_outside_the_trained_ones_is_said_once_and_kept(tmp_path):
    """The bundled toy adapters were trained at w in {1, 3, 5, 7} (their icd.json): w 9 is said once per run
    (the summary's notes, the manifest's ``notes``); w 7 and 1 are not."""
    import json

    from icd_bench.icd.model import trained_guidance_scales
    from icd_bench.runner import RunConfig, Runner

    scales, where = trained_guidance_scales("bundled:toy/icd/cfg_distill.safetensors",
                                            "bundled:toy/icd/cdm.safetensors")
    assert scales == [1.0, 3.0, 5.0, 7.0] and where.endswith("icd.json")
    for w, said in ((9.0, True), (7.0, False)):
        out = tmp_path / f"w{w:g}"
        summary = Runner(RunConfig(method="icd-toy", dataset="demo", limit=1,
                                   overrides=[f"guidance_scale={w}"], device="cpu", out=out)).run()
        manifest = json.loads((out / "manifest.json").read_text())
        assert bool(summary.notes) == said and ("notes" in manifest) == said
        if said:
            assert "guidance_scale 9 is outside" in summary.notes[0] and manifest["notes"] == summary.notes
