"""Word alignment between a source and a target prompt, for Prompt-to-Prompt (Hertz et al.).

Attention maps are over token positions (BOS, the prompt's tokens, EOS, padding up to the
tokenizer's length). Editing injects the source branch's cross-attention into the target branch,
so target position j must know which source positions it corresponds to:

- **replace** (same number of words, some swapped): a matrix M (L×L) with
  ``attn_target = attn_source @ M``; a swapped word of n source tokens onto one of m target
  tokens maps token to token when n = m, else spreads each source token's attention as 1/m over
  the m;
- **refine** (words added or removed): a global (Needleman–Wunsch) alignment of the two token
  sequences, giving for every target position its source position (or −1 for a new token) and a
  0/1 weight saying whether the source map is used there; positions after the target's EOS read
  the same position of the source.

Written by hand because no maintained library exposes P2P's alignment. It equals the original
``seq_aligner`` (Prompt-to-Prompt, also in the iCD and PIE-Bench code; golden-tested in
``tests/conformance``) but for one deliberate deviation: after the last swapped word of a replace
edit the original maps position j to j; here the running source position i maps to j, which
differs when the swapped words have different token counts (the original then misaligns the rest
of the prompt). ``official_tail=True`` gives the original's matrix.
"""

from __future__ import annotations

import torch

from icd_bench.words import normalize_word

SCORE_MATCH, SCORE_MISMATCH, SCORE_GAP = 1, -1, 0


def token_ids(tokenizer, text: str) -> list[int]:
    """Token ids with BOS and EOS, no padding, truncated to the tokenizer's length."""
    return tokenizer(text, truncation=True, max_length=tokenizer.model_max_length).input_ids


def word_token_positions(tokenizer, prompt: str, word: str | int, exact: bool = False) -> list[int]:
    """Token positions (BOS = 0) of a word of ``prompt``, given as the word or its index.

    A word string matches every occurrence of exactly that word, as the original ``get_word_inds``;
    where there is none, every occurrence after `icd_bench.words.normalize_word` on both sides (so
    "water" finds "water."; the original finds nothing and blends with an empty mask) unless
    ``exact``; a missing word gives an empty list.
    """
    words = prompt.split()
    if isinstance(word, int):
        targets = {word}
    else:
        targets = {i for i, w in enumerate(words) if w == word}
        if not targets and not exact:
            key = normalize_word(word)
            targets = {i for i, w in enumerate(words) if normalize_word(w) == key}
    positions, cursor = [], 1
    for i, w in enumerate(words):
        n = len(token_ids(tokenizer, w)) - 2
        if i in targets:
            positions += list(range(cursor, cursor + n))
        cursor += n
    return [p for p in positions if p < tokenizer.model_max_length - 1]


def _word_spans(tokenizer, words: list[str]) -> list[tuple[int, int]]:
    spans, cursor = [], 1
    for w in words:
        n = len(token_ids(tokenizer, w)) - 2
        spans.append((cursor, cursor + n))
        cursor += n
    return spans


def replace_mapper(tokenizer, source: str, target: str, official_tail: bool = False) -> torch.Tensor:
    """The L×L replace matrix M (``attn_target = attn_source @ M``) for prompts of equal word count;
    ``official_tail``: after the last swapped word map j to j as the original code (module doc)."""
    L = tokenizer.model_max_length
    sw, tw = source.split(), target.split()
    if len(sw) != len(tw):
        raise ValueError(f"a replace edit needs prompts with the same number of words "
                         f"({len(sw)} vs {len(tw)}); use refine for added or removed words")
    src_spans, tgt_spans = _word_spans(tokenizer, sw), _word_spans(tokenizer, tw)
    swapped = [k for k, (a, b) in enumerate(zip(sw, tw, strict=True)) if a != b]
    words = len(sw) if not (official_tail and swapped) else swapped[-1] + 1
    M = torch.zeros(L, L)
    M[0, 0] = 1.0  # BOS
    i = j = 1
    for k in range(words):
        (s0, s1), (t0, t1) = src_spans[k], tgt_spans[k]
        if s1 - s0 == t1 - t0:  # the same word, or a swap of as many tokens: token to token
            for d in range(s1 - s0):
                if s0 + d < L and t0 + d < L:
                    M[s0 + d, t0 + d] = 1.0
        else:
            for t in range(t0, min(t1, L)):
                M[s0:min(s1, L), t] = 1.0 / (t1 - t0)
        i, j = s1, t1
    while i < L and j < L:  # the rest (EOS, padding) in order; the original: j to j
        M[j if official_tail else i, j] = 1.0
        i += 1
        j += 1
    return M


def _global_align(x: list[int], y: list[int]) -> list[int]:
    """For every position of y, the aligned position of x or −1 (Needleman–Wunsch, P2P's scores)."""
    n, m = len(x), len(y)
    score = [[0] * (m + 1) for _ in range(n + 1)]
    back = [[0] * (m + 1) for _ in range(n + 1)]  # 1 diagonal, 2 up (gap in y), 3 left (gap in x)
    # ties prefer left, then up, then the diagonal, as the original seq_aligner
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
            back[i][j] = 3 if best == left else (2 if best == up else 1)
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
    x, y = token_ids(tokenizer, source), token_ids(tokenizer, target)
    aligned = _global_align(x, y)
    mapper = torch.arange(L)
    alphas = torch.ones(L)
    for j, i in enumerate(aligned):
        mapper[j] = max(i, 0)
        alphas[j] = 0.0 if i < 0 else 1.0
    # after the target's EOS, position j reads the source's position j (the original's rule)
    return mapper, alphas


def infedit_refine_mapper(tokenizer, source: str, target: str, source_states: torch.Tensor,
                          target_states: torch.Tensor,
                          blend_word: str = "") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """InfEdit's refine alignment (its ``seq_aligner.get_mapper``): (mapper, alphas, blend), each of
    length L.

    The global alignment of `refine_mapper`, then in every run of new target tokens that replaces
    deleted source tokens, the one (target, source) pair of highest cosine similarity of the text
    encoder's token states is aligned as well — with the official indexing, the source prompt's state
    at the target position against the target's at the source position. ``blend`` marks the target
    tokens of ``blend_word`` (its tokens matched in order from the left, as the official loop) and the
    re-aligned tokens whose source token is one of them: the local-blend words of the unified attention
    control. ``*_states``: (L, D) token states of the padded prompts.
    """
    L = tokenizer.model_max_length
    x, y, e = token_ids(tokenizer, source), token_ids(tokenizer, target), token_ids(tokenizer, blend_word)
    mapper, alphas = refine_mapper(tokenizer, source, target)
    mapper[: len(y)][alphas[: len(y)] == 0] = -1
    blend = torch.zeros(L)
    i = 0
    while i < len(y):
        if alphas[i] == 0:
            start = i
            while alphas[i] == 0:
                i += 1
            best, pair = float("-inf"), None
            for t in range(start, i):
                for s in range(int(mapper[start - 1]) + 1, int(mapper[i])):
                    sim = float(torch.nn.functional.cosine_similarity(source_states[t], target_states[s],
                                                                      dim=0))
                    if sim > best:
                        best, pair = sim, (t, s)
            if pair is not None:
                mapper[pair[0]], alphas[pair[0]] = pair[1], 1.0
                if x[pair[1]] in e:
                    blend[pair[0]] = 1.0
        i += 1
    i = j = 1
    while i < len(y) - 1 and j < len(e) - 1:
        while e[j] != y[i] and i < len(y) - 1:
            i += 1
        if i < len(y) - 1:
            blend[i] = 1.0
        j += 1
    return mapper.clamp_min(0), alphas, blend
