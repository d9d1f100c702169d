"""Prompt-to-Prompt word alignment on a real CLIP BPE tokenizer (the toy world's)."""

from __future__ import annotations

import pytest
import torch

from icd_bench.attention import refine_mapper, replace_mapper, word_token_positions
from icd_bench.toy.model import load_tokenizer


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


def test_word_positions(tok):
    # "a red circle": BOS a red circle EOS; "zebra" is five character tokens here
    assert word_token_positions(tok, "a red circle", "red") == [2]
    assert word_token_positions(tok, "a red circle", 2) == [3]
    assert word_token_positions(tok, "a zebra on a red square", "zebra") == [2, 3, 4, 5, 6]
    assert word_token_positions(tok, "a zebra on a red square", "red") == [9]
    assert word_token_positions(tok, "a red circle", "blue") == []


def test_replace_one_token_words(tok):
    M = replace_mapper(tok, "a red circle on a white background", "a blue circle on a white background")
    L = tok.model_max_length
    assert M.shape == (L, L)
    assert torch.equal(M, torch.eye(L))  # same token counts everywhere: the identity, word for word
    attn = torch.rand(3, L)
    assert torch.allclose(attn @ M, attn)


def test_replace_words_of_different_token_counts(tok):
    # "red" is 1 token, "zebra" 5: red's attention spreads as 1/5 over zebra's tokens,
    # and every later word still lines up with itself
    M = replace_mapper(tok, "a red circle", "a zebra circle")
    assert torch.allclose(M[2, 2:7], torch.full((5,), 0.2)) and M[2].sum() == pytest.approx(1.0)
    assert M[3, 7] == 1 and M[4, 8] == 1  # circle → circle, EOS → EOS (shifted by 4)
    attn = torch.zeros(1, tok.model_max_length)
    attn[0, 2] = 1.0
    out = attn @ M
    assert torch.allclose(out[0, 2:7], torch.full((5,), 0.2)) and out.sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same number of words"):
        replace_mapper(tok, "a red circle", "a big red circle")


def test_refine_alignment(tok):
    mapper, alphas = refine_mapper(tok, "a circle on a white background",
                                   "a small circle on a white background")
    # target: BOS a small circle on a white background EOS ; "small" is new
    assert mapper[:9].tolist() == [0, 1, 0, 2, 3, 4, 5, 6, 7]
    assert alphas[:9].tolist() == [1, 1, 0, 1, 1, 1, 1, 1, 1]
    assert alphas[9:].eq(1).all() and mapper[9] == 9  # after EOS, position j reads j (P2P's rule)
    same, ones = refine_mapper(tok, "a red circle", "a red circle")
    assert torch.equal(same, torch.arange(tok.model_max_length)) and ones.eq(1).all()


def test_blend_words_with_punctuation_keep_local_blend(tok):
    """The published lists carry blend words such as "water." (as the prompt writes them): they match
    their word exactly, as the official get_word_inds; a blend word without the punctuation falls back to
    the punctuation-stripped match (the official code finds nothing and blends with an empty mask)."""
    import warnings

    from icd_bench.data.base import checked_blend_words

    source, target = "a red circle.", "a blue circle."
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "local blend is off" warning
        assert (checked_blend_words("x", source, target, ("circle.", "circle."))
                == (("circle.", "circle."), ()))
        assert checked_blend_words("x", source, target, ("circle", "circle")) == (("circle", "circle"), ())
    exact = word_token_positions(tok, source, "circle.")
    assert exact and exact == word_token_positions(tok, source, "circle.", exact=True)
    assert word_token_positions(tok, source, "circle") == exact  # the fallback finds the same word
    assert word_token_positions(tok, source, "circle", exact=True) == []
