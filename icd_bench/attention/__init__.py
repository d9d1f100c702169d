"""Prompt-to-Prompt control shared by every P2P-based method: word alignment (`align`) and
attention processors on SDPA with local blend (`p2p`: `P2PParams`, `P2PControl` and `p2p_decode`, the
one P2P decode of iCD, DDIM + P2P, NTI, NPI and EF-DDPM), and InfEdit's unified attention control (`uac`)."""

from icd_bench.attention.align import refine_mapper, replace_mapper, word_token_positions
from icd_bench.attention.p2p import P2PControl, P2PParams, p2p_decode

__all__ = ["P2PControl", "P2PParams", "p2p_decode", "refine_mapper", "replace_mapper", "word_token_positions"]
