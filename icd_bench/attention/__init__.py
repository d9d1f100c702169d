"""Prompt-to-Prompt control shared by every P2P-based method. For now: the word alignment
between source and target prompts (replace and refine mappers, edited-word positions); the
attention processors arrive with the iCD editing pipeline."""

from icd_bench.attention.align import refine_mapper, replace_mapper, word_token_positions

__all__ = ["refine_mapper", "replace_mapper", "word_token_positions"]
