"""Prompt-to-Prompt control shared by every P2P-based method: word alignment (`align`) and
attention processors on SDPA with local blend (`p2p`). No method uses them yet."""

from icd_bench.attention.align import refine_mapper, replace_mapper, word_token_positions
from icd_bench.attention.p2p import P2PConfig, P2PControl

__all__ = ["P2PConfig", "P2PControl", "refine_mapper", "replace_mapper", "word_token_positions"]
