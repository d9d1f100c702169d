"""``npi``: Negative-prompt inversion (Miyake et al., 2023) — DDIM inversion, then decoding with the
source prompt's embedding in place of the null embedding, no optimisation; edits with
Prompt-to-Prompt (PIE-Bench's "NPI + P2P"). With identical source and target prompts CFG cancels
(ε_∅ = ε_c), so decoding retraces the unguided inversion: reconstruction as good as DDIM's at w = 1.
"""

from __future__ import annotations

from collections.abc import Callable

from icd_bench.backbones.base import PromptEmbeds
from icd_bench.methods.ddim_p2p import DDIMP2P
from icd_bench.registry import METHODS
from icd_bench.types import Inversion


@METHODS.register("npi")
class NPI(DDIMP2P):
    """Negative-prompt inversion: the source prompt replaces ∅ in CFG; P2P editing."""


    def unconditional(self, inversion: Inversion | None, n: int) -> Callable[[int], PromptEmbeds]:
        if inversion is None:  # generation has no source prompt: plain CFG
            return super().unconditional(inversion, n)
        source = inversion.state["source_cond"]
        return lambda i: source
