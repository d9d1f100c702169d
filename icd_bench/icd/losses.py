"""iCD's training objectives as functions of noise-prediction callables (paper §3.1–3.3, App. A).

Every model enters as ``eps(x, t, w) -> ε`` over a batch (``t``: a (B,) long tensor of timesteps,
``w``: a (B,) tensor of CFG scales in the paper's convention, 1 = unguided). The solver grid is
the teacher's coarse DDIM grid with skip k = T / N (SD1.5: k = 20, grid 19, 39, …, 999).

- **Guidance distillation** (stage 1):
  ε_student(x_t, t, c, w) ≈ ε(x_t, t, ∅) + w (ε(x_t, t, c) − ε(x_t, t, ∅)).
- **CD, reverse** (eq. 3 on the guided process): the student at t_n maps to its segment's lower
  boundary s; the target is the target network at t_{n−1} = t_n − k, after ONE teacher DDIM step
  from t_n with guidance w (the boundary condition: the teacher's point itself when t_{n−1} = s).
  t_n ranges over the whole grid as the official trainer's index 0–49: at t_n = k − 1 (19) the
  teacher steps to the clean end, the first segment's anchor. The official solver lands that step
  on the schedule's ᾱ_0 instead (0.99915 for SD), ``clean_anchor=False``.
- **fCD, forward** (unguided): the mirror — the student at t_n maps to the segment's upper end u;
  the target is the target network at t_{n+1} after one teacher DDIM inversion step.
- **Preservation** (unguided): L_f = ‖fCD(CD(x_b)) − x_b‖ with gradients to the forward model,
  L_r = ‖CD(fCD(x_a)) − x_s‖ with gradients to the reverse model, for a segment [a, b] of the
  forward steps (a = 19 for the first one, as the reference) and CD's boundary s (= a, except the
  clean image s = 0 in the first segment, as eq. 4 — see `reverse_preservation_loss`).

Each loss function returns (loss, info) and runs the non-trained models under ``torch.no_grad``,
so calling ``backward`` on a loss reaches only the model whose output it trains.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from icd_bench.diffusion.ddim import ddim_step
from icd_bench.diffusion.guidance import cfg_combine
from icd_bench.diffusion.schedule import alpha_rows, clean_at_zero, q_sample
from icd_bench.icd.boundaries import Boundaries

Eps = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Solver:
    """The teacher's coarse grid and the schedule: one place for the DDIM moves of training."""

    alphas_cumprod: torch.Tensor  # (T,) float
    num_steps: int = 50  # N: grid of k = T / N

    @property
    def skip(self) -> int:
        return len(self.alphas_cumprod) // self.num_steps

    @property
    def grid(self) -> torch.Tensor:
        """Ascending solver timesteps k−1, 2k−1, …, T−1."""
        k = self.skip
        return torch.arange(1, self.num_steps + 1) * k - 1

    def alpha(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """ᾱ_t per row, shaped to broadcast against ``like``; `schedule.CLEAN` rows: the clean end
        (ᾱ = 1)."""
        return alpha_rows(self.alphas_cumprod, t, like)

    def move(self, x: torch.Tensor, eps: torch.Tensor, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """Eq. 1 per row, from t to s (either direction; timesteps of the schedule, `schedule.CLEAN`
        for the clean end — iCD's boundaries, where 0 is the clean end, pass through `clean_at_zero`)."""
        return ddim_step(x, eps, self.alpha(t, x), self.alpha(s, x))

    def noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """q(x_t | x_0)."""
        return q_sample(x0, noise, self.alpha(t, x0))


def distance(a: torch.Tensor, b: torch.Tensor, kind: str = "l2", huber_c: float = 0.001) -> torch.Tensor:
    """Mean squared error, or the pseudo-Huber loss sqrt(d² + c²) − c of the reference code."""
    if kind == "l2":
        return torch.nn.functional.mse_loss(a.float(), b.float())
    if kind == "huber":
        return (((a.float() - b.float()) ** 2 + huber_c**2).sqrt() - huber_c).mean()
    raise ValueError(f"loss must be l2 or huber, got {kind!r}")


def _check_index(index: torch.Tensor, n: int) -> None:
    if len(index) and (int(index.min()) < 0 or int(index.max()) >= n):
        raise ValueError(f"solver index out of range: need 0 <= index < {n}, got {index.tolist()}")


def _reverse_boundaries(boundaries: Boundaries, t: torch.Tensor) -> torch.Tensor:
    return torch.tensor([boundaries.reverse_boundary(int(v)) for v in t], dtype=torch.long)


def _forward_boundaries(boundaries: Boundaries, t: torch.Tensor) -> torch.Tensor:
    return torch.tensor([boundaries.forward_boundary(int(v)) for v in t], dtype=torch.long)


def guidance_distillation_loss(student: Eps, teacher_cond: Eps, teacher_uncond: Eps, solver: Solver,
                               x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, w: torch.Tensor,
                               kind: str = "l2") -> tuple[torch.Tensor, dict]:
    """Stage 1: the w-embedded student reproduces the teacher's classifier-free-guided ε."""
    x_t = solver.noise(x0, noise, t)
    with torch.no_grad():
        e_c, e_u = teacher_cond(x_t, t, w), teacher_uncond(x_t, t, w)
        target = cfg_combine(e_u, e_c, w.to(x_t).view(-1, *([1] * (x_t.ndim - 1))))
    return distance(student(x_t, t, w), target, kind), {}


def _consistency(student: Eps, target_net: Eps, teacher: Eps, solver: Solver, x0: torch.Tensor,
                 noise: torch.Tensor, t: torch.Tensor, t_adj: torch.Tensor, boundary: torch.Tensor,
                 w: torch.Tensor, kind: str, clean_anchor: bool = True) -> torch.Tensor:
    """Both directions' consistency loss: the student maps x_t to ``boundary``; the target is one
    teacher step t → ``t_adj`` (t_{n−1} or t_{n+1}) and then the target net to the same boundary —
    or the teacher's point itself when ``t_adj`` is the boundary."""
    x_t = solver.noise(x0, noise, t)
    # the target first: an EMA target network swaps weights in place, which must not happen while
    # the student's graph is alive
    with torch.no_grad():
        # t_adj = 0: the clean end, or timestep 0 of the schedule (ᾱ_0) without ``clean_anchor``
        x_adj = solver.move(x_t, teacher(x_t, t, w), t, clean_at_zero(t_adj) if clean_anchor else t_adj)
        target = solver.move(x_adj, target_net(x_adj, t_adj, w), t_adj, clean_at_zero(boundary))
        at_boundary = (t_adj == boundary).to(x_t.device).view(-1, *([1] * (x_t.ndim - 1)))
        target = torch.where(at_boundary, x_adj, target)
    pred = solver.move(x_t, student(x_t, t, w), t, clean_at_zero(boundary))
    return distance(pred, target, kind)


def reverse_cd_loss(student: Eps, target_net: Eps, teacher: Eps, solver: Solver, boundaries: Boundaries,
                    x0: torch.Tensor, noise: torch.Tensor, index: torch.Tensor, w: torch.Tensor,
                    kind: str = "l2", clean_anchor: bool = True) -> tuple[torch.Tensor, dict]:
    """CDm on the guided process; ``index`` (B,) in 0..N − 1 picks t_n = grid[index]; at index 0
    t_{n−1} is the clean end (see the module doc for ``clean_anchor``)."""
    _check_index(index, solver.num_steps)
    t = solver.grid[index]
    s = _reverse_boundaries(boundaries, t)
    t_prev = (t - solver.skip).clamp_min(0)
    loss = _consistency(student, target_net, teacher, solver, x0, noise, t, t_prev, s, w, kind, clean_anchor)
    return loss, {"t": t, "s": s}


def forward_cd_loss(student: Eps, target_net: Eps, teacher: Eps, solver: Solver, boundaries: Boundaries,
                    x0: torch.Tensor, noise: torch.Tensor, index: torch.Tensor,
                    kind: str = "l2") -> tuple[torch.Tensor, dict]:
    """fCDm on the unguided process; ``index`` (B,) picks t_n = grid[index], index ≤ N − 2."""
    _check_index(index, solver.num_steps - 1)
    t = solver.grid[index]
    u = _forward_boundaries(boundaries, t + solver.skip)
    loss = _consistency(student, target_net, teacher, solver, x0, noise, t, t + solver.skip, u,
                        torch.ones(len(t)), kind)
    return loss, {"t": t, "u": u}


def _segments(boundaries: Boundaries, segment: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    steps = boundaries.forward_steps()  # (a, b): a = 19 for the first, b = T − 1 for the last
    a = torch.tensor([steps[int(m)][0] for m in segment], dtype=torch.long)
    b = torch.tensor([steps[int(m)][1] for m in segment], dtype=torch.long)
    return a, b


def _there_and_back(frozen: Eps, trained: Eps, solver: Solver, x0: torch.Tensor, noise: torch.Tensor,
                    start: torch.Tensor, end: torch.Tensor, kind: str,
                    land: torch.Tensor | None = None, w_back: torch.Tensor | None = None) -> torch.Tensor:
    """Both preservation losses: x_start → ``frozen`` (no gradient, unguided) → x_end →
    ``trained`` (unguided, or at the scales ``w_back``) → back to ``land`` (default: start),
    compared with x_start — or with the clean image x_0 where ``land`` is 0."""
    land = start if land is None else land
    w = torch.ones(len(start))
    x = solver.noise(x0, noise, start)
    with torch.no_grad():
        there = solver.move(x, frozen(x, start, w), start, end)
    back = solver.move(there, trained(there, end, w if w_back is None else w_back), end, clean_at_zero(land))
    target = torch.where((land == 0).to(x.device).view(-1, *([1] * (x.ndim - 1))), x0, x)
    return distance(back, target, kind)


def forward_preservation_loss(forward: Eps, reverse: Eps, solver: Solver, boundaries: Boundaries,
                              x0: torch.Tensor, noise: torch.Tensor, segment: torch.Tensor,
                              kind: str = "l2") -> tuple[torch.Tensor, dict]:
    """L_f = ‖fCD(CD(x_b)) − x_b‖, unguided; gradients reach only the forward model."""
    a, b = _segments(boundaries, segment)
    return _there_and_back(reverse, forward, solver, x0, noise, b, a, kind), {"a": a, "b": b}


def reverse_preservation_loss(forward: Eps, reverse: Eps, solver: Solver, boundaries: Boundaries,
                              x0: torch.Tensor, noise: torch.Tensor, segment: torch.Tensor,
                              kind: str = "l2", w: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """L_r = ‖CD(fCD(x_a)) − x_s‖, unguided; gradients reach only the reverse model.

    ``w``: guidance scales for the CD leg (fCD stays unguided, as it encodes in editing). The paper
    and the release train L_r unguided only ("Preserve losses work only for CFG=0"); a guided CD leg
    is this project's option (the recipe's ``preserve_scales``), off by default.

    CD lands on its own boundary s, the segment's lower end — the clean image (s = 0) in the first
    segment, as in the paper's eq. 4, where the reference code instead lands on the noisy x_19 the
    encoding starts from. The difference is invisible in SD's latent space but not in pixel space
    (the toy world): there x_19 carries noise of std 0.13, which CD then learns to reproduce in
    every image it decodes. Elsewhere s = a.
    """
    a, b = _segments(boundaries, segment)
    s = torch.where(a == boundaries.start_timestep, torch.zeros_like(a), a)
    return (_there_and_back(forward, reverse, solver, x0, noise, a, b, kind, land=s, w_back=w),
            {"a": a, "b": b, "s": s})
