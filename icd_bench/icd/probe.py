"""A fixed probe of trained iCD models against their teacher: is each consistency step where the
teacher's trajectory is?

The teacher is the guidance-distilled UNet with the adapters off, run as DDIM on the solver grid
(skip k = T / N, 50 steps for SD's schedule). On the same inputs:

- ``rev_rmse_<t>_<s>`` — the reverse model (CDm) jumps once from the teacher's x_t to the segment's
  boundary s; RMSE to the teacher's own x_s (s = 0: its clean end). Guided at ``w`` and unguided
  (``w = 1``). ``ddim_rmse_<t>_<s>`` is the same jump by one plain DDIM step of the untrained
  teacher: what a consistency step must beat.
- ``fwd_rmse_<a>_<b>`` — the forward model (fCDm) jumps from the teacher's DDIM inversion at a to b;
  RMSE to the inversion's x_b (unguided, as fCDm runs).
- ``enc_std`` vs ``ddim_enc_std`` — the std of the full fCDm encoding of the images at T − 1, and of
  the teacher's DDIM inversion (≈ 1 for a well-behaved encoder); ``cross_rmse`` — CDm decoding the
  *teacher's* inversion back, RMSE to the images (the co-adaptation check: the pair may invert each
  other but not the teacher), next to ``self_rmse`` (CDm decoding fCDm's own encoding).
- ``hf_icd`` vs ``hf_ddim`` — high-frequency energy (mean squared difference to a 3 × 3 box blur) of
  unguided samples from N(0, I): CDm in its steps, the teacher with DDIM on the grid.
- ``recon_psnr`` — encode + unguided decode of the images, PSNR in dB of the decoded [0, 1] images.

All from fixed seeds: the numbers of two trained model pairs are comparable run to run.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from icd_bench.backbones.base import PromptEmbeds
from icd_bench.diffusion.ddim import ddim_path, ddim_sample, ddim_step
from icd_bench.icd.losses import Solver
from icd_bench.icd.model import FORWARD, REVERSE, active_adapter, adapters_off
from icd_bench.icd.pipeline import ICDPipeline
from icd_bench.icd.sampling import boundary_alpha, noise_to_start


def _rmse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).pow(2).mean().sqrt())


def high_frequency_energy(images: torch.Tensor) -> float:
    """Mean squared difference of B×C×H×W images to their 3 × 3 box blur (reflect-padded)."""
    x = images.float()
    blur = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), 3, stride=1)
    return float((x - blur).pow(2).mean())


class Probe:
    """The probe of one `ICDPipeline` on images and prompts (see the module doc)."""

    def __init__(self, pipe: ICDPipeline, solver_steps: int = 50):
        self.pipe, self.bb = pipe, pipe.backbone
        self.alphas = self.bb.alphas_cumprod
        self.grid = Solver(self.alphas, solver_steps).grid.flip(0).tolist()  # descending: T − 1, …, k − 1

    def _eps(self, x: torch.Tensor, t: int, cond: PromptEmbeds, w: float) -> torch.Tensor:
        return self.bb.predict_noise(x, t, cond, self.pipe.guidance_cond(w, x.shape[0]))

    def _a(self, t: int) -> float:
        return boundary_alpha(self.alphas, t)

    @torch.no_grad()
    def teacher_sample(self, x: torch.Tensor, cond: PromptEmbeds, w: float
                       ) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]:
        """DDIM on the grid from x at T − 1 to the clean end: x at every grid point and at 0, and the
        teacher's ε at every grid point."""
        traj, eps = {self.grid[0]: x}, {}

        def teacher(x, t, i):
            eps[t] = self._eps(x, t, cond, w)
            return eps[t]

        def keep(step):  # the clean end (`schedule.CLEAN`) under iCD's name for it, 0
            traj[max(step.t_to, 0)] = step.x

        with adapters_off(self.pipe.unet):
            ddim_sample(teacher, x, self.grid, self.alphas, 1.0, callback=keep)
        return traj, eps

    @torch.no_grad()
    def teacher_invert(self, x: torch.Tensor, cond: PromptEmbeds) -> dict[int, torch.Tensor]:
        """Unguided DDIM inversion on the grid from x at its lowest point (k − 1) to T − 1, ε at the
        point each step leaves (the training solver's inversion step)."""
        traj = {self.grid[-1]: x}

        def keep(step):
            traj[step.t_to] = step.x

        with adapters_off(self.pipe.unet):
            ddim_path(lambda x, t, i: self._eps(x, t, cond, 1.0), x, self.grid[::-1], self.alphas,
                      callback=keep)
        return traj

    @torch.no_grad()
    def run(self, images: torch.Tensor, prompts: Sequence[str], w: float, seed: int = 0) -> dict[str, float]:
        pipe, bb, b = self.pipe, self.bb, self.pipe.boundaries
        g = torch.Generator().manual_seed(seed)
        x0 = bb.encode_image(images)
        cond = bb.encode_prompt(list(prompts))
        noise = torch.randn(x0.shape, generator=g).to(x0)
        x_T = torch.randn(x0.shape, generator=g).to(x0)
        out: dict[str, float] = {}
        # reverse: one CDm jump per segment from the teacher's trajectory, guided and unguided, beside the
        # teacher's own DDIM jump over the segment (its ε at x_t, from the trajectory)
        for label, scale in (("", w), ("_w1", 1.0)):
            traj, teacher_eps = self.teacher_sample(x_T, cond, scale)
            with active_adapter(pipe.unet, REVERSE):
                for t, s in b.reverse_steps():
                    jump = ddim_step(traj[t], self._eps(traj[t], t, cond, scale), self._a(t), self._a(s))
                    out[f"rev_rmse{label}_{t}_{s}"] = _rmse(jump, traj[s])
                    plain = ddim_step(traj[t], teacher_eps[t], self._a(t), self._a(s))
                    out[f"ddim_rmse{label}_{t}_{s}"] = _rmse(plain, traj[s])
        unguided_sample = traj[0]  # the last pass: w = 1
        # forward: one fCDm jump per segment from the teacher's inversion
        start = noise_to_start(x0, noise, b.start_timestep, self.alphas)
        inv = self.teacher_invert(start, cond) if b.start_timestep == self.grid[-1] else None
        if inv is not None:
            with active_adapter(pipe.unet, FORWARD):
                for a, u in b.forward_steps():
                    jump = ddim_step(inv[a], self._eps(inv[a], a, cond, 1.0), self._a(a), self._a(u))
                    out[f"fwd_rmse_{a}_{u}"] = _rmse(jump, inv[u])
        encoded = pipe.encode(x0, cond, noise)
        out["enc_std"] = float(encoded.float().std())
        if inv is not None:
            out["ddim_enc_std"] = float(inv[self.grid[0]].float().std())
            out["cross_rmse"] = _rmse(pipe.decode(inv[self.grid[0]], cond, 1.0, 1.0), x0)
        decoded = pipe.decode(encoded, cond, 1.0, 1.0)
        out["self_rmse"] = _rmse(decoded, x0)
        mse = float((bb.decode(decoded) - images.to(bb.device).float()).pow(2).mean())
        out["recon_psnr"] = float(10 * torch.log10(torch.tensor(1.0 / max(mse, 1e-12))))
        # unguided samples from N(0, I)
        out["hf_icd"] = high_frequency_energy(bb.decode(pipe.decode(x_T, cond, 1.0, 1.0)))
        out["hf_ddim"] = high_frequency_energy(bb.decode(unguided_sample))
        return out
