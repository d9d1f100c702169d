"""Every sampler loop lives in `icd_bench.diffusion` and reports its steps through one callback
(`loop.StepInfo`): `ddim_path` (either direction; `ddim_sample` is its walk down to the clean end), ReNoise's
inversion and edit-friendly DDPM inversion; the clean end is `schedule.CLEAN` everywhere, with iCD's
"0 = clean" boundaries translated by `clean_at_zero` alone."""

from __future__ import annotations

import torch

from icd_bench.diffusion import ddim_path, ddim_sample, ddim_step, edit_friendly_inversion
from icd_bench.diffusion.lcm import lcm_timesteps
from icd_bench.diffusion.renoise import ReNoiseConfig, renoise_invert
from icd_bench.diffusion.schedule import CLEAN, alpha_rows, clean_at_zero

AC = torch.linspace(0.9991, 0.0047, 1000, dtype=torch.float64)


def _eps(x, t, i):
    return 0.4 * x + 0.01 * t / 1000


def test_ddim_path_walks_either_way_evaluating_eps_where_each_step_leaves():
    x = torch.randn(2, 3, 4, 4)
    for path in ([999, 499, 19, CLEAN], [19, 259, 779, 999]):
        seen = []
        got = ddim_path(_eps, x, path, AC, callback=seen.append)
        want = x
        for j in range(len(path) - 1):
            a = [1.0 if v == CLEAN else float(AC[v]) for v in path[j:j + 2]]
            want = ddim_step(want, _eps(want, path[j], j), *a)
        assert torch.equal(got, want)
        steps = [(j, path[j], path[j + 1]) for j in range(len(path) - 1)]
        assert [(s.index, s.t_from, s.t_to) for s in seen] == steps
    down = [999, 499, 19]
    assert torch.equal(ddim_sample(_eps, x, down, AC, 1.0), ddim_path(_eps, x, [*down, CLEAN], AC))


def test_renoise_and_edit_friendly_inversion_report_every_step():
    x0 = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    steps = lcm_timesteps(4)
    seen = []
    xT, _ = renoise_invert(_eps, x0, steps, AC, [torch.randn_like(x0) for _ in steps], torch.randn_like(x0),
                           ReNoiseConfig(renoise_steps=2, average=False), [torch.Generator().manual_seed(1)],
                           callback=seen.append)
    # upwards: undo sampling step 3, 2, 1, 0; the last report is the returned noise latents
    assert [s.index for s in seen] == [3, 2, 1, 0]
    assert [s.t_to for s in seen] == steps[::-1] and seen[0].t_from == CLEAN and seen[0].alpha_from == 1.0
    assert torch.equal(seen[-1].x, xT)
    grid = [999, 749, 499, 249]
    noise = torch.randn(len(grid), *x0.shape, generator=torch.Generator().manual_seed(2))
    seen.clear()
    x_start, zs = edit_friendly_inversion(_eps, x0, grid, AC, 1.0, noise, start=1, callback=seen.append)
    assert [(s.index, s.t_from, s.t_to) for s in seen] == [(1, 749, 499), (2, 499, 249), (3, 249, CLEAN)]
    assert len(zs) == 3 and torch.allclose(seen[-1].x, x0, atol=1e-5)  # the retrace lands on the image


def test_clean_end_rows_and_ics_zero_boundaries():
    like = torch.zeros(3, 2)
    a = alpha_rows(AC, torch.tensor([CLEAN, 0, 999]), like)
    assert a.shape == (3, 1) and a[0].item() == 1.0 and a[1].item() == float(AC[0].float())
    assert alpha_rows(AC, torch.tensor([CLEAN]), like, clean=0.5).item() == 0.5
    assert clean_at_zero(0) == CLEAN and clean_at_zero(19) == 19
    assert clean_at_zero(torch.tensor([0, 259])).tolist() == [CLEAN, 259]
