"""Word alignment between a source and a target prompt, for Prompt-to-Prompt (Hertz et al.).

Attention maps are over token positions (BOS, the prompt's tokens, EOS, padding up to the
tokenizer's length). Editing injects the source branch's cross-attention into the target branch,
so target position j must know which source positions it corresponds to:

- **replace** (same number of words, some swapped): a matrix M (L×L) with
  ``attn_target = attn_source @ M``; swapped words map block to block (a word of n source tokens
  onto a word of m target tokens spreads each source token's attention as 1/m over the m);
- **refine** (words added or removed): a global (Needleman–Wunsch) alignment of the two token
  sequences, giving for every target position its source position (or −1 for a new token) and a
  0/1 weight saying whether the source map is used there.

Written by hand because no maintained library exposes P2P's alignment. One deliberate deviation
from the original ``seq_aligner``: after the last swapped word the original maps position j to j;
here the running source position i maps to j, which differs when the swapped words have
different token counts (the original then misaligns the rest of the prompt).
"""

from __future__ import annotations

import torch

SCORE_MATCH, SCORE_MISMATCH, SCORE_GAP = 1, -1, 0


def _ids(tokenizer, text: str) -> list[int]:
    """Token ids with BOS and EOS, no padding, truncated to the tokenizer's length."""
    return tokenizer(text, truncation=True, max_length=tokenizer.model_max_length).input_ids


def word_token_positions(tokenizer, prompt: str, word: str | int) -> list[int]:
    """Token positions (BOS = 0) of a word of ``prompt``, given as the word or its index.

    A word string matches every occurrence (after lower-casing and stripping punctuation
    as the tokenizer does); a missing word gives an empty list.
    """
    words = prompt.split()
    if isinstance(word, int):
        targets = {word}
    else:
        key = word.lower().strip()
        targets = {i for i, w in enumerate(words) if w.lower().strip(".,!?;:") == key}
    positions, cursor = [], 1
    for i, w in enumerate(words):
        n = len(_ids(tokenizer, w)) - 2
        if i in targets:
            positions += list(range(cursor, cursor + n))
        cursor += n
    return [p for p in positions if p < tokenizer.model_max_length - 1]


def _word_spans(tokenizer, words: list[str]) -> list[tuple[int, int]]:
    spans, cursor = [], 1
    for w in words:
        n = len(_ids(tokenizer, w)) - 2
        spans.append((cursor, cursor + n))
        cursor += n
    return spans


def replace_mapper(tokenizer, source: str, target: str) -> torch.Tensor:
    """The L×L replace matrix M (``attn_target = attn_source @ M``) for prompts of equal word count."""
    L = tokenizer.model_max_length
    sw, tw = source.split(), target.split()
    if len(sw) != len(tw):
        raise ValueError(f"a replace edit needs prompts with the same number of words ({len(sw)} vs {len(tw)}); "
                         f"use refine for added or removed words")
    src_spans, tgt_spans = _word_spans(tokenizer, sw), _word_spans(tokenizer, tw)
    M = torch.zeros(L, L)
    M[0, 0] = 1.0  # BOS
    i = j = 1
    for k, (a, b) in enumerate(zip(sw, tw, strict=True)):
        (s0, s1), (t0, t1) = src_spans[k], tgt_spans[k]
        if a == b and s1 - s0 == t1 - t0:
            for d in range(s1 - s0):
                if s0 + d < L and t0 + d < L:
                    M[s0 + d, t0 + d] = 1.0
        else:
            for t in range(t0, min(t1, L)):
                M[s0:min(s1, L), t] = 1.0 / (t1 - t0)
        i, j = s1, t1
    while i < L and j < L:  # EOS and padding keep their order
        M[i, j] = 1.0
        i += 1
        j += 1
    return M


def _global_align(x: list[int], y: list[int]) -> list[int]:
    """For every position of y, the aligned position of x or −1 (Needleman–Wunsch, P2P's scores)."""
    n, m = len(x), len(y)
    score = [[0] * (m + 1) for _ in range(n + 1)]
    back = [[0] * (m + 1) for _ in range(n + 1)]  # 1 diagonal, 2 up (gap in y), 3 left (gap in x)
    for i in range(1, n + 1):
        score[i][0], back[i][0] = i * SCORE_GAP, 2
    for j in range(1, m + 1):
        score[0][j], back[0][j] = j * SCORE_GAP, 3
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            diag = score[i - 1][j - 1] + (SCORE_MATCH if x[i - 1] == y[j - 1] else SCORE_MISMATCH)
            up, left = score[i - 1][j] + SCORE_GAP, score[i][j - 1] + SCORE_GAP
            best = max(diag, up, left)
            score[i][j] = best
            back[i][j] = 1 if best == diag else (2 if best == up else 3)
    out = [-1] * m
    i, j = n, m
    while i > 0 or j > 0:
        move = back[i][j]
        if move == 1:
            out[j - 1] = i - 1
            i, j = i - 1, j - 1
        elif move == 2:
            i -= 1
        else:
            j -= 1
    return out


def refine_mapper(tokenizer, source: str, target: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(mapper, alphas), both of length L: target position j reads source position mapper[j]
    where alphas[j] = 1, and keeps its own attention where alphas[j] = 0 (a new token)."""
    L = tokenizer.model_max_length
    x, y = _ids(tokenizer, source), _ids(tokenizer, target)
    aligned = _global_align(x, y)
    mapper = torch.arange(L)
    alphas = torch.ones(L)
    for j, i in enumerate(aligned):
        mapper[j] = max(i, 0)
        alphas[j] = 0.0 if i < 0 else 1.0
    # padding after the target's EOS follows the source's padding in order
    mapper[len(y):] = torch.arange(len(x), len(x) + L - len(y)).clamp(max=L - 1)
    return mapper, alphas
