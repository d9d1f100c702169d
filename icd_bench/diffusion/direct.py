"""Direct Inversion (Ju et al., "PnP Inversion: Boosting Diffusion-based Editing with 3 Lines of
Code", ICLR 2024): a two-branch editor's source branch is put back on the inversion trajectory after
every sampling step, so the target branch is steered by the source's exact features while the
target's own latents stay untouched.

The official code (PnPInversion ``DirectInversion.offset_calculate``) first walks the source branch
down the trajectory once more to store the offset x*_{t_{i+1}} − step_i(x*_{t_i}) of every step, and
adds it to the source rows after each step of the edit. The source rows of the edit are x*_{t_i}
there too (the attention control leaves them alone), so the sum is x*_{t_{i+1}}: this puts the rows
there directly, without the second walk — the same latents up to float rounding (the conformance
golden ``pie_baselines.json`` bounds it) at no extra UNet call.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from icd_bench.diffusion.loop import Callback, StepInfo, apply_callback


def rectify_source(landings: Sequence[torch.Tensor], rows: int, then: Callback | None = None) -> Callback:
    """A sampler callback: after sampling step i, the first ``rows`` rows (the source branch) become
    ``landings[i]`` (the inversion's latents where step i lands); then ``then`` (P2P's local blend, which
    reads the source rows) sees the rectified latents and may replace them in turn."""

    def callback(info: StepInfo) -> torch.Tensor:
        x = info.x.clone()
        x[:rows] = landings[info.index].to(x.dtype)
        return apply_callback(then, StepInfo(info.index, info.t_from, info.t_to, info.alpha_from,
                                             info.alpha_to, x))

    return callback


def trajectory_landings(trajectory: dict[int, torch.Tensor], clean: torch.Tensor, num_steps: int
                        ) -> list[torch.Tensor]:
    """Where each of ``num_steps`` sampling steps lands on a DDIM inversion's trajectory (``trajectory[i]``:
    the latents at grid timestep t_i): x*_{t_{i+1}}, the ``clean`` latents last."""
    return [trajectory[i + 1] for i in range(num_steps - 1)] + [clean]
