"""Prompt-to-Prompt control shared by every P2P-based method: word alignment (`align`) and
attention processors on SDPA with local blend (`p2p`, entry point `prompt_to_prompt`, used by iCD,
DDIM + P2P, NTI, NPI and EF-DDPM), and InfEdit's unified attention control (`uac`)."""

from icd_bench.attention.align import refine_mapper, replace_mapper, word_token_positions
from icd_bench.attention.p2p import P2PConfig, P2PControl

__all__ = ["P2PConfig", "P2PControl", "refine_mapper", "replace_mapper", "word_token_positions"]
