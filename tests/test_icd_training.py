"""iCD training: the objectives' targets and gradient routing, one step on tiny SD1.5/SDXL-shaped
models for both stages, and exact resume."""

from __future__ import annotations

import json

import pytest
import torch

from icd_bench.backbones import tiny_backbone
from icd_bench.diffusion import ddim_step
from icd_bench.diffusion.schedule import CLEAN, clean_at_zero
from icd_bench.icd import Boundaries
from icd_bench.icd.losses import (
    Solver,
    forward_cd_loss,
    forward_preservation_loss,
    guidance_distillation_loss,
    reverse_cd_loss,
    reverse_preservation_loss,
)
from icd_bench.icd.model import FORWARD, REVERSE, read_lora
from icd_bench.icd.pipeline import ICDPipeline
from icd_bench.icd.train import (
    CfgDistillConfig,
    DataConfig,
    ICDTrainConfig,
    adapter_parameters,
    train_cfg_distill,
    train_icd,
)

SET = Boundaries.named("4step-tau0.8")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def solver():
    return Solver(tiny_backbone("sd15").alphas_cumprod.float(), num_steps=50)


def test_solver_grid_and_eq1(solver):
    assert solver.skip == 20 and solver.grid[0] == 19 and solver.grid[-1] == 999 and len(solver.grid) == 50
    t, s = torch.tensor([519, 999, 19]), torch.tensor([499, CLEAN, 0])  # CLEAN: ᾱ = 1; 0: ᾱ_0
    x, e = torch.randn(3, 4, 8, 8), torch.randn(3, 4, 8, 8)
    got = solver.move(x, e, t, s)
    ac = solver.alphas_cumprod.double()
    assert torch.equal(clean_at_zero(torch.tensor([0, 19])), torch.tensor([CLEAN, 19]))
    for i in range(3):
        a_s = 1.0 if s[i] == CLEAN else float(ac[s[i]])
        want = ddim_step(x[i].double(), e[i].double(), float(ac[t[i]]), a_s)
        assert torch.allclose(got[i].double(), want, atol=1e-5)


def test_guidance_distillation_target_is_explicit_cfg(solver):
    x0, noise = torch.randn(3, 4, 8, 8), torch.randn(3, 4, 8, 8)
    t, w = torch.tensor([10, 500, 990]), torch.tensor([1.0, 8.0, 20.0])
    cond = lambda x, t, w: torch.sin(x) + t.view(-1, 1, 1, 1) / 1000  # noqa: E731
    uncond = lambda x, t, w: torch.cos(x)  # noqa: E731

    def explicit(x, t, w):
        return uncond(x, t, w) + w.view(-1, 1, 1, 1) * (cond(x, t, w) - uncond(x, t, w))

    loss, _ = guidance_distillation_loss(explicit, cond, uncond, solver, x0, noise, t, w)
    assert loss.item() < 1e-10
    loss, _ = guidance_distillation_loss(cond, cond, uncond, solver, x0, noise, t, w)  # w ignored: wrong
    assert loss.item() > 1e-3


def test_reverse_target_is_one_teacher_step_then_the_target_net(solver):
    x0, noise = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    # index 13 → t = 279, t − k = 259 = s (boundary condition); index 40 → t = 819 → s = 779
    index, w = torch.tensor([13, 40]), torch.tensor([3.0, 3.0])
    teacher = lambda x, t, w: 0.5 * x  # noqa: E731
    target_net = lambda x, t, w: -0.25 * x  # noqa: E731
    _, info = reverse_cd_loss(lambda x, t, w: 0 * x, target_net, teacher, solver, SET, x0, noise, index, w)
    assert info["t"].tolist() == [279, 819] and info["s"].tolist() == [259, 779]
    x_t = solver.noise(x0, noise, info["t"])
    x_prev = solver.move(x_t, teacher(x_t, 0, 0), info["t"], info["t"] - 20)
    # row 0: at the boundary the target is the teacher's point; row 1: the target net from 799 to 779
    want1 = solver.move(x_prev[1:], target_net(x_prev[1:], 0, 0), torch.tensor([799]), torch.tensor([779]))
    # the student that outputs exactly these targets has zero loss
    wanted = torch.cat([x_prev[:1], want1])

    def perfect(x, t, w):  # invert eq. 1 for ε so that move(x_t, ε, t, s) == wanted
        a_t, a_s = solver.alpha(t, x), solver.alpha(info["s"], x)
        r = (a_s / a_t).sqrt()
        return (wanted - r * x) / ((1 - a_s).sqrt() - r * (1 - a_t).sqrt())

    loss, _ = reverse_cd_loss(perfect, target_net, teacher, solver, SET, x0, noise, index, w)
    assert loss.item() < 1e-8


def test_the_first_solver_step_is_anchored_at_the_clean_end(solver):
    """Index 0 (t_n = 19), as the official trainer draws it: the teacher steps to t = 0 and the target is
    that point (the boundary condition of the first segment); never a wrap-around to ᾱ[-1] = ᾱ_999."""
    x0, noise = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    index, w = torch.tensor([0, 0]), torch.tensor([1.0, 3.0])
    teacher = lambda x, t, w: 0.5 * x  # noqa: E731
    _, info = reverse_cd_loss(lambda x, t, w: 0 * x, teacher, teacher, solver, SET, x0, noise, index, w)
    assert info["t"].tolist() == [19, 19] and info["s"].tolist() == [0, 0]
    x_t = solver.noise(x0, noise, info["t"])
    for clean, a_end in ((True, torch.tensor(1.0)), (False, solver.alphas_cumprod[0])):
        a_t = solver.alphas_cumprod[19]
        eps = teacher(x_t, 0, 0)
        x_end = ((a_end / a_t).sqrt() * x_t
                 + ((1 - a_end).sqrt() - (a_end / a_t).sqrt() * (1 - a_t).sqrt()) * eps)
        x_pred = x_t * 0 + x_end  # a student that lands exactly there (it maps to the clean end, s = 0)

        def student(x, t, w, x_pred=x_pred):  # ε with move(x_t, ε, 19, 0) == x_pred at the clean end
            r = (1 / solver.alpha(t, x)).sqrt()
            return (x_pred - r * x) / (-r * (1 - solver.alpha(t, x)).sqrt())

        loss, _ = reverse_cd_loss(student, teacher, teacher, solver, SET, x0, noise,
                                  index, w, clean_anchor=clean)
        assert loss.item() < 1e-8, clean
    assert (1 - solver.alphas_cumprod[0]) > 1e-4  # the two anchors really differ
    with pytest.raises(ValueError, match="out of range"):
        reverse_cd_loss(teacher, teacher, teacher, solver, SET, x0, noise, torch.tensor([0, 50]), w)
    with pytest.raises(ValueError, match="out of range"):
        forward_cd_loss(teacher, teacher, teacher, solver, SET, x0, noise, torch.tensor([-1, 3]))


def test_forward_boundaries(solver):
    x0, noise = torch.randn(3, 4, 8, 8), torch.randn(3, 4, 8, 8)
    f = lambda x, t, w: 0 * x  # noqa: E731
    _, info = forward_cd_loss(f, f, f, solver, SET, x0, noise, torch.tensor([0, 11, 48]))
    assert info["t"].tolist() == [19, 239, 979] and info["u"].tolist() == [259, 259, 999]


@pytest.fixture()
def pipe():
    bb = tiny_backbone("sd15", seed=0)
    pipe = ICDPipeline(bb, SET, lora_rank=4)
    with torch.no_grad():  # non-zero B so both LoRA factors get gradients
        for n, p in bb.unet.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05, generator=torch.Generator().manual_seed(len(n)))
    for name in (FORWARD, REVERSE):
        for p in adapter_parameters(bb.unet, name).values():
            p.requires_grad_(True)
    return pipe


def _eps(pipe, adapter, cond):
    unet = pipe.unet

    def f(x, t, w):
        unet.set_adapter(adapter)
        for name in (FORWARD, REVERSE):
            for p in adapter_parameters(unet, name).values():
                p.requires_grad_(True)
        return unet(x, t, timestep_cond=pipe.guidance_cond(1.0, len(x)), **cond.unet_kwargs()).sample
    return f


def _grads(unet, name):
    return [p.grad for p in adapter_parameters(unet, name).values()]


@pytest.mark.parametrize("which, trained, frozen", [
    ("forward_preservation", FORWARD, REVERSE),
    ("reverse_preservation", REVERSE, FORWARD),
    ("reverse_cd", REVERSE, FORWARD),
    ("forward_cd", FORWARD, REVERSE),
])
def test_each_loss_reaches_only_its_adapter(pipe, solver, which, trained, frozen):
    bb = pipe.backbone
    cond = bb.encode_prompt(["a red circle", "a blue square"])
    x0, noise = torch.randn(2, 4, 16, 16), torch.randn(2, 4, 16, 16)
    fwd, rev = _eps(pipe, FORWARD, cond), _eps(pipe, REVERSE, cond)
    if which == "forward_preservation":
        loss, _ = forward_preservation_loss(fwd, rev, solver, SET, x0, noise, torch.tensor([0, 3]))
    elif which == "reverse_preservation":
        loss, _ = reverse_preservation_loss(fwd, rev, solver, SET, x0, noise, torch.tensor([1, 2]))
    elif which == "reverse_cd":
        loss, _ = reverse_cd_loss(rev, rev, fwd, solver, SET, x0, noise, torch.tensor([5, 30]), torch.ones(2))
    else:
        loss, _ = forward_cd_loss(fwd, fwd, rev, solver, SET, x0, noise, torch.tensor([5, 30]))
    loss.backward()
    assert any(g is not None and g.abs().sum() > 0 for g in _grads(bb.unet, trained))
    assert all(g is None or g.abs().sum() == 0 for g in _grads(bb.unet, frozen))
    base = [p for n, p in bb.unet.named_parameters() if "lora_" not in n]
    assert all(p.grad is None for p in base)


def test_preservation_is_zero_for_an_exact_inverse_pair(solver):
    """With ε-models that are the same function, fCD(CD(x)) = x exactly (DDIM steps invert)."""
    x0, noise = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    same = lambda x, t, w: torch.zeros_like(x) + 0.3  # noqa: E731  (a constant ε: both moves are affine)
    lf, _ = forward_preservation_loss(same, same, solver, SET, x0, noise, torch.tensor([0, 2]))
    lr, _ = reverse_preservation_loss(same, same, solver, SET, x0, noise, torch.tensor([1, 3]))
    assert lf.item() < 1e-10 and lr.item() < 1e-10


def test_reverse_preservation_lands_on_the_clean_image_in_the_first_segment(solver):
    """Eq. 4: CD lands on its boundary — x_0 itself (s = 0) in the first segment, not the noisy
    x_19 encoding starts from; in the other segments the segment's start."""
    x0, noise = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    truth = lambda x, t, w: noise  # noqa: E731  (the true ε: every DDIM move stays on x0's noising line)
    loss, info = reverse_preservation_loss(truth, truth, solver, SET, x0, noise, torch.tensor([0, 2]))
    assert info["s"].tolist() == [0, SET.forward[2]] and loss.item() < 1e-10
    c = lambda x, t, w: torch.full_like(x, 0.3)  # noqa: E731
    loss, _ = reverse_preservation_loss(c, c, solver, SET, x0, noise, torch.tensor([0, 0]))
    a, b, clean = (torch.full((2,), v) for v in (19, SET.forward[1], CLEAN))
    x_b = solver.move(solver.noise(x0, noise, a), c(x0, a, 1), a, b)
    expected = torch.nn.functional.mse_loss(solver.move(x_b, c(x_b, b, 1), b, clean), x0)
    torch.testing.assert_close(loss, expected)


# -- the trainers end to end ---------------------------------------------------------------------------
def _cfg_recipe(backbone, steps=1, **kw):
    return {"data": DataConfig(source="toy"),
            "train": CfgDistillConfig(backbone=backbone, steps=steps, batch_size=2, guidance_dim=16,
                                      threads=1, checkpoint_every=1, log_every=1, **kw)}


def _icd_recipe(backbone, teacher="", steps=1, **kw):
    kw = {"batch_size": 2, "lora_rank": 4, "lora_alpha": 4.0, **kw}
    return {"data": DataConfig(source="toy"),
            "train": ICDTrainConfig(backbone=backbone, teacher=teacher, steps=steps, threads=1,
                                    checkpoint_every=1, log_every=1, **kw)}


@pytest.mark.parametrize("backbone", ["tiny-sd15", "tiny-sdxl"])
def test_one_step_of_both_stages(tmp_path, backbone):
    student = train_cfg_distill(_cfg_recipe(backbone), tmp_path / "s1", progress=False, log=lambda *a: None)
    assert student.is_file() and (tmp_path / "s1" / "loss.csv").read_text().count("\n") == 2
    paths = train_icd(_icd_recipe(backbone, teacher=str(student)), tmp_path / "s2", progress=False,
                      log=lambda *a: None)
    for key in ("forward_lora", "reverse_lora"):
        state, info = read_lora(paths[key])
        assert info["rank"] == 4 and info["alpha"] == 4.0
        assert any(v.abs().sum() > 0 for k, v in state.items() if "lora_B" in k)  # trained away from zero
    meta = json.loads((tmp_path / "s2" / "icd.json").read_text())
    assert meta["boundaries"]["reverse"] == [259, 519, 779, 999] and "torch" in meta["versions"]
    header = (tmp_path / "s2" / "loss.csv").read_text().splitlines()[0]
    assert header.startswith("step,cd,fcd,preserve_f,preserve_r")
    from PIL import Image

    with Image.open(tmp_path / "s2" / "loss.png") as png:  # the curves, drawn at the checkpoint
        assert png.size[0] > 4 * png.size[1] / 2 and png.getextrema() != ((255, 255),) * 3


@pytest.mark.parametrize("target", ["online", "ema"])
def test_resume_continues_exactly(tmp_path, target):
    """Also for the EMA target network, whose weights are swapped in for the target and must not
    disturb the student's backward pass, and whose state travels with the checkpoint."""
    quiet = {"progress": False, "log": lambda *a: None}
    full = train_icd(_icd_recipe("tiny-sd15", steps=3, target=target), tmp_path / "full", **quiet)
    train_icd(_icd_recipe("tiny-sd15", steps=2, target=target), tmp_path / "cut", **quiet)  # "interrupted"
    resumed = train_icd(_icd_recipe("tiny-sd15", steps=3, target=target), tmp_path / "cut", **quiet)
    for key in ("forward_lora", "reverse_lora"):
        a, _ = read_lora(full[key])
        b, _ = read_lora(resumed[key])
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows = (tmp_path / "cut" / "loss.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3"]


def test_the_official_optimiser_schedule(tmp_path, monkeypatch):
    """optimizer_steps = per_term: an optimiser step after each loss term, one optimiser per adapter (the
    reverse one steps for CD and L_r, the forward one for fCD and L_f), with shared_noise one noise draw
    per batch; it trains other weights than the summed default, and resumes exactly too."""
    import icd_bench.icd.train as train_module

    steps = []
    real = torch.optim.AdamW.step

    def counting(self, *a, **k):
        steps.append(sum(p.numel() for g in self.param_groups for p in g["params"]))
        return real(self, *a, **k)

    monkeypatch.setattr(torch.optim.AdamW, "step", counting)
    quiet = {"progress": False, "log": lambda *a: None}
    summed = train_icd(_icd_recipe("tiny-sd15", steps=2), tmp_path / "summed", **quiet)
    n_summed = list(steps)
    steps.clear()
    official = train_icd(_icd_recipe("tiny-sd15", steps=2, optimizer_steps="per_term", shared_noise=True),
                         tmp_path / "official", **quiet)
    assert len(n_summed) == 2 and len(set(n_summed)) == 1  # one step over both adapters per batch
    assert len(steps) == 8 and len(set(steps)) == 1 and steps[0] * 2 == n_summed[0]  # 4 terms × 2 batches
    a, _ = read_lora(summed["reverse_lora"])
    b, _ = read_lora(official["reverse_lora"])
    assert any(not torch.equal(a[k], b[k]) for k in a)
    monkeypatch.setattr(torch.optim.AdamW, "step", real)
    train_icd(_icd_recipe("tiny-sd15", steps=1, optimizer_steps="per_term", shared_noise=True),
              tmp_path / "cut", **quiet)
    resumed = train_icd(_icd_recipe("tiny-sd15", steps=2, optimizer_steps="per_term", shared_noise=True),
                        tmp_path / "cut", **quiet)
    c, _ = read_lora(resumed["reverse_lora"])
    assert all(torch.equal(b[k], c[k]) for k in b)
    assert train_module.ICDTrainConfig(optimizer_steps="per_term").optimizer_steps == "per_term"
    with pytest.raises(ValueError, match="optimizer_steps"):
        ICDTrainConfig(optimizer_steps="sometimes")


def test_ablations_switch_terms_off(tmp_path):
    paths = train_icd(_icd_recipe("tiny-sd15", train_forward=False, lambda_r=0.0), tmp_path / "r",
                      progress=False, log=lambda *a: None)
    assert paths["forward_lora"] is None and paths["reverse_lora"]
    assert (tmp_path / "r" / "loss.csv").read_text().splitlines()[0].startswith("step,cd,lr")
    with pytest.raises(ValueError, match="nothing to train"):
        ICDTrainConfig(train_forward=False, train_reverse=False)


def test_guided_reverse_preservation_is_an_option_and_off_by_default(solver):
    """L_r unguided by default (the release); ``w`` guides only its CD leg, and fCD stays unguided."""
    x0, noise = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    seen = []

    def forward(x, t, w):
        seen.append(("f", w.tolist()))
        return torch.full_like(x, 0.3)

    def reverse(x, t, w):
        seen.append(("r", w.tolist()))
        return torch.full_like(x, 0.3) * w.view(-1, 1, 1, 1)  # the scale changes the step

    seg = torch.tensor([0, 2])
    plain, _ = reverse_preservation_loss(forward, reverse, solver, SET, x0, noise, seg)
    assert seen == [("f", [1.0, 1.0]), ("r", [1.0, 1.0])]
    seen.clear()
    guided, _ = reverse_preservation_loss(forward, reverse, solver, SET, x0, noise, seg,
                                          w=torch.tensor([5.0, 3.0]))
    assert seen == [("f", [1.0, 1.0]), ("r", [5.0, 3.0])] and not torch.isclose(plain, guided)
    with pytest.raises(ValueError, match="preserve_scales"):
        ICDTrainConfig(preserve_scales=())


def test_gradient_accumulation_takes_micro_batches_in_order_and_resumes_exactly(tmp_path):
    """accumulate = k: optimiser step s averages micro-batches k·s … k·s + k − 1, each the data and
    draws an unaccumulated run would use at that index; so with lr 0 its logged loss is the mean of
    those steps' losses. And an accumulating run resumes exactly."""
    quiet = {"progress": False, "log": lambda *a: None}

    def losses(out):
        import csv

        with open(out / "loss.csv") as f:
            return [{k: float(v) for k, v in r.items() if k in ("cd", "fcd", "preserve_f", "preserve_r")}
                    for r in csv.DictReader(f)]
    train_icd(_icd_recipe("tiny-sd15", steps=4, batch_size=1, lr=0.0), tmp_path / "k1", **quiet)
    train_icd(_icd_recipe("tiny-sd15", steps=2, batch_size=1, lr=0.0, accumulate=2), tmp_path / "k2", **quiet)
    one, two = losses(tmp_path / "k1"), losses(tmp_path / "k2")
    assert len(one) == 4 and len(two) == 2
    for s in range(2):
        for key in two[s]:
            assert two[s][key] == pytest.approx((one[2 * s][key] + one[2 * s + 1][key]) / 2,
                                                rel=1e-4, abs=1e-6)
    full = train_icd(_icd_recipe("tiny-sd15", steps=2, batch_size=1, accumulate=2),
                     tmp_path / "full", **quiet)
    train_icd(_icd_recipe("tiny-sd15", steps=1, batch_size=1, accumulate=2), tmp_path / "cut", **quiet)
    resumed = train_icd(_icd_recipe("tiny-sd15", steps=2, batch_size=1, accumulate=2),
                        tmp_path / "cut", **quiet)
    a, _ = read_lora(full["reverse_lora"])
    b, _ = read_lora(resumed["reverse_lora"])
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="accumulate"):
        ICDTrainConfig(accumulate=0)


def test_a_continued_training_starts_from_the_given_adapters_and_decays_its_rate(tmp_path):
    """init_forward_lora / init_reverse_lora: step 0 of a continued training is the earlier run's adapters
    (zero steps of it save them unchanged); lr_decay = cosine ends the learning rate at 0."""
    from icd_bench.training_utils import warmup_schedule

    quiet = {"progress": False, "log": lambda *a: None}
    first = train_icd(_icd_recipe("tiny-sd15", steps=2), tmp_path / "first", **quiet)
    init = {"init_forward_lora": first["forward_lora"], "init_reverse_lora": first["reverse_lora"]}
    same = train_icd(_icd_recipe("tiny-sd15", steps=0, **init), tmp_path / "same", **quiet)
    more = train_icd(_icd_recipe("tiny-sd15", steps=1, **init), tmp_path / "more", **quiet)
    for key in ("forward_lora", "reverse_lora"):
        a, b, c = (read_lora(p[key])[0] for p in (first, same, more))
        assert all(torch.equal(a[k], b[k]) for k in a)
        assert any(not torch.equal(a[k], c[k]) for k in a)  # and training goes on from there
    # a wider adapter (rank 8, scale alpha / rank = 2 instead of 1) starts as the same update B A
    wide = train_icd(_icd_recipe("tiny-sd15", steps=0, lora_rank=8, lora_alpha=16.0, **init),
                     tmp_path / "wide", **quiet)
    a, _ = read_lora(first["reverse_lora"])
    w, info = read_lora(wide["reverse_lora"])
    assert info["rank"] == 8
    for k in a:
        if k.endswith("lora_B.weight"):
            up = k.replace("lora_B", "lora_A")
            # B A, convolutions flattened
            torch.testing.assert_close(2.0 * w[k].flatten(1) @ w[up].flatten(1),
                                       a[k].flatten(1) @ a[up].flatten(1))
            assert not w[k][:, 4:].any()
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = warmup_schedule(opt, 2, "cosine", 6)
    rates = []
    for _ in range(7):
        rates.append(schedule.get_last_lr()[0])
        opt.step()
        schedule.step()
    assert rates[:3] == pytest.approx([0.5, 1.0, 1.0]) and rates[4] == pytest.approx(0.5) and rates[6] == 0.0
    with pytest.raises(ValueError, match="lr_decay"):
        ICDTrainConfig(lr_decay="linear")
