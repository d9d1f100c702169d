"""iCD's shared math: boundary sets and their mapping, the guidance embedding and its convention."""

from __future__ import annotations

import pytest
import torch

from icd_bench.errors import ConfigError
from icd_bench.icd import BOUNDARY_SETS, Boundaries, guidance_code, guidance_embedding


@pytest.mark.parametrize("name", list(BOUNDARY_SETS))
def test_every_named_set_is_valid_and_chains(name):
    b = Boundaries.named(name)
    rev, fwd = b.reverse_steps(), b.forward_steps()
    assert len(rev) == len(fwd) == b.steps
    assert rev[0][0] == 999 and rev[-1][1] == 0 and fwd[-1][1] == 999 and fwd[0][0] == b.start_timestep == 19
    for (t, s), (t2, _) in zip(rev, rev[1:], strict=False):
        assert s == t2 < t  # each decoding step lands where the next starts
    for (t, u), (t2, _) in zip(fwd, fwd[1:], strict=False):
        assert u == t2 > t
    # encoding visits exactly the points decoding starts from, in the other order
    assert [u for _, u in fwd] == [t for t, _ in reversed(rev)]


def test_the_paper_sd15_set_step_by_step():
    b = Boundaries.named("4step-tau0.8")
    assert b.reverse_steps() == [(999, 779), (779, 519), (519, 259), (259, 0)]
    assert b.forward_steps() == [(19, 259), (259, 519), (519, 779), (779, 999)]
    # s_t^m for any grid point: the lower end of its segment (reverse), the upper end (forward)
    assert [b.reverse_boundary(t) for t in (999, 800, 779, 780, 520, 300, 259, 100, 19)] == \
        [779, 779, 519, 779, 519, 259, 0, 0, 0]
    assert [b.forward_boundary(t) for t in (19, 100, 259, 260, 519, 700, 779, 800, 999)] == \
        [259, 259, 259, 519, 519, 779, 779, 999, 999]
    assert Boundaries.named("4step-tau0.7").reverse == (249, 499, 699, 999)
    assert Boundaries.named("3step").forward_steps() == [(19, 339), (339, 699), (699, 999)]


@pytest.mark.parametrize("reverse, forward, fragment", [
    ((519, 259, 779, 999), (19, 259, 519, 779), "strictly increasing"),
    ((259, 519, 779, 1000), (19, 259, 519, 779), "lie in [0, 1000)"),
    ((259, 519, 999), (19, 259, 519, 779), "same number of steps"),
    ((259, 519, 779, 999), (19, 249, 519, 779), "not consistent"),
    ((), (), "empty"),
    ((259, 999), (300, 259), "strictly increasing"),
    ((259, 999), (259, 259), "strictly increasing"),
])
def test_bad_boundaries_are_clear_errors(reverse, forward, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("[", r"\[").replace(")", r"\)")):
        Boundaries(reverse, forward)
    with pytest.raises(ConfigError, match="unknown boundary set"):
        Boundaries.named("5step")


def test_guidance_embedding_matches_diffusers_lcm():
    from diffusers import LatentConsistencyModelPipeline

    w = torch.tensor([1.0, 8.0, 19.0])
    code = guidance_code(w)
    assert code.tolist() == [0.0, 7.0, 18.0]  # the release's w − 1 convention: 0 = unguided
    ours = guidance_embedding(code, 512)
    theirs = LatentConsistencyModelPipeline.get_guidance_scale_embedding(None, code, embedding_dim=512)
    assert ours.shape == (3, 512) and torch.allclose(ours, theirs, atol=1e-5)
    assert torch.equal(ours[0], torch.cat([torch.zeros(256), torch.ones(256)]))  # unguided: sin 0, cos 0
    assert guidance_embedding(code, 7).shape == (3, 7)


def test_eq3_targets_by_hand():
    from diffusers import DDIMScheduler

    from icd_bench.icd.sampling import consistency_step, icd_decode, icd_encode

    ac = DDIMScheduler(beta_start=0.00085, beta_end=0.012,
                       beta_schedule="scaled_linear").alphas_cumprod.double()
    x = torch.tensor([0.5, -1.0], dtype=torch.float64)
    eps = torch.tensor([0.2, 0.3], dtype=torch.float64)
    t, s = 779, 519
    a_t, a_s = ac[t], ac[s]
    hand = (a_s / a_t).sqrt() * x + eps * ((1 - a_s).sqrt() - (a_s / a_t).sqrt() * (1 - a_t).sqrt())
    assert torch.allclose(consistency_step(x, eps, t, s, ac), hand)
    # the last reverse step lands on the clean end: x_0 = (x_t − √(1−ᾱ_t) ε) / √ᾱ_t exactly
    x0 = consistency_step(x, eps, 259, 0, ac)
    assert torch.allclose(x0, (x - (1 - ac[259]).sqrt() * eps) / ac[259].sqrt())

    b = Boundaries.named("4step-tau0.8")
    seen = []

    def eps_fn(z, t, i):
        seen.append((t, i))
        return torch.zeros_like(z)

    img = torch.ones(2, dtype=torch.float64)
    noise = torch.zeros(2, dtype=torch.float64)
    xT = icd_encode(eps_fn, img, noise, b, ac)
    assert seen == [(19, 0), (259, 1), (519, 2), (779, 3)]
    # with ε = 0 every step rescales by √(ᾱ_u/ᾱ_t): the chain telescopes to √ᾱ_999 · x_0
    assert torch.allclose(xT, ac[999].sqrt() * img)
    seen.clear()
    back = icd_decode(eps_fn, xT, b, ac)
    assert seen == [(999, 0), (779, 1), (519, 2), (259, 3)] and torch.allclose(back, img)
