"""Prompt-to-Prompt's word alignment, controller choice, reweighting and blend tokens equal the official
code's on every prompt pair of the published editing lists (golden: p2p_alignment.json).

- iCD: what ``running/sd1.5/edit.py`` builds per pair with its launch script's arguments, against the
  ``icd-sd15`` preset (`ICDParams`' defaults);
- PIE-Bench: what ``run_editing_p2p.py`` builds per image, against the ``ddim-p2p-sd15`` preset (NTI and
  NPI share its P2P fields).

Exact equality: alignments are integers and 0/1 (or 1/m) weights.
"""

from __future__ import annotations

import pytest
import torch

from icd_bench.attention.align import refine_mapper, replace_mapper, word_token_positions
from icd_bench.attention.p2p import P2PControl
from icd_bench.config import resolve_method
from icd_bench.methods.icd import ICDParams

from golden_inputs import golden

ICD = golden("p2p_alignment.json")["icd"]
PIE = golden("p2p_alignment.json")["pie"]


def _replace_matrix(record) -> torch.Tensor:
    m = torch.zeros(77, 77)
    for i, j, v in record["replace"]:
        m[i, j] = v
    return m


def _effective(record, eq_len: int = 77) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference controller as the project's (A, B): target maps = P_src @ A + P_tgt @ B."""
    eq = torch.ones(eq_len)
    for pos, value in record.get("equalizer", {}).items():
        eq[int(pos)] = value
    if record["controller"] == "AttentionReplace":
        return _replace_matrix(record) * eq, torch.zeros(77, 77)
    mapper, alphas = torch.tensor(record["mapper"]), torch.tensor(record["alphas"])
    A = torch.zeros(77, 77)
    keep = alphas > 0
    A[mapper[keep], torch.arange(77)[keep]] = alphas[keep]
    return A * eq, torch.diag(1 - alphas) * eq


def _project_control(tok, record, config, blend_words, num_steps):
    src, tgt = record["prompts"]
    return P2PControl(tok, [src], [tgt], num_steps, config, blend_words=[blend_words])


def test_goldens_cover_every_published_pair():
    assert len(ICD) == 562 and len(PIE) == 420  # 142 COCO + 420 PIE-Bench pairs; PIE-Bench's 420
    assert {r["controller"] for r in ICD} == {"AttentionReplace", "AttentionRefine"}


def test_icd_controller_choice_alignment_and_reweighting(clip_tokenizer):
    """``reference_compat`` for the replace matrix's tail (its default: the test below)."""
    cfg = ICDParams(reference_compat=True)
    for r in ICD:
        src, tgt = r["prompts"]
        blend = tuple(w[0] for w in r["blend_words"]) if r["blend_words"] else None
        control = _project_control(clip_tokenizer, r, cfg, blend, r["num_steps"])
        A, B = _effective(r)
        assert torch.equal(control.A[0], A), (src, tgt)
        assert torch.equal(control.B[0], B), (src, tgt)


def test_replace_mapper_equals_the_reference_with_official_tail(clip_tokenizer):
    """The default differs from the reference only after the last swapped word of a swap that changes
    the token count (the reference's j → j there misaligns the rest of the prompt)."""
    differ = 0
    for r in (r for r in ICD if r["controller"] == "AttentionReplace"):
        src, tgt = r["prompts"]
        ref = _replace_matrix(r)
        assert torch.equal(replace_mapper(clip_tokenizer, src, tgt, official_tail=True), ref), (src, tgt)
        default = replace_mapper(clip_tokenizer, src, tgt)
        if not torch.equal(default, ref):
            differ += 1
            counts = [(len(clip_tokenizer(a).input_ids), len(clip_tokenizer(b).input_ids))
                      for a, b in zip(src.split(), tgt.split(), strict=True) if a != b]
            assert any(m != n for m, n in counts), (src, tgt)
            assert torch.allclose(default.sum(0)[:40], ref.sum(0)[:40])  # both map every target token once
    assert 0 < differ < 100


def test_refine_mapper_equals_the_reference(clip_tokenizer):
    for r in (r for r in ICD + PIE if r["controller"] == "AttentionRefine"):
        src, tgt = r["prompts"]
        mapper, alphas = refine_mapper(clip_tokenizer, src, tgt)
        ref_mapper, ref_alphas = torch.tensor(r["mapper"]), torch.tensor(r["alphas"])
        assert torch.equal(alphas, ref_alphas), (src, tgt)
        keep = ref_alphas > 0  # the reference writes -1 where alpha is 0 (never read)
        assert torch.equal(mapper[keep], ref_mapper[keep]), (src, tgt)


def test_cross_and_self_windows_match_the_reference(clip_tokenizer):
    for r, params in ((ICD[0], ICDParams()), (PIE[0], resolve_method("ddim-p2p-sd15").params)):
        n = r["num_steps"] if "num_steps" in r else 50
        control = _project_control(clip_tokenizer, r, params, None, n)
        cross = self_ = 0
        for step in range(n):
            control.step = step
            cross += control.cross_active()
            self_ += control.self_active()
        assert cross == min(r["cross_steps"], n) and [0, self_] == r["self_steps"]


def test_injection_windows_for_any_step_count(clip_tokenizer):
    """Cross-attention is injected for int(f·(N + 1)) steps (the reference's N + 1 weight rows), self-
    attention for int(f·N): for N in 4, 8, 10, 50 and f from 0.2 to 1."""
    windows = golden("p2p_alignment.json")["windows"]
    assert len(windows) == 28
    for w in windows:
        n, f = w["num_steps"], w["fraction"]
        params = ICDParams(cross_replace=f, self_replace=f, local_blend=False)
        control = P2PControl(clip_tokenizer, ["a cat"], ["a dog"], n, params)
        active = []
        for step in range(n):
            control.step = step
            active.append((control.cross_active(), control.self_active()))
        assert sum(c for c, _ in active) == min(w["cross_steps"], n), w
        assert [0, sum(s for _, s in active)] == w["self_steps"], w
        assert all(active[i][0] >= active[i + 1][0] for i in range(n - 1))  # a prefix of the steps


def test_pie_bench_presets_build_the_reference_controller(clip_tokenizer):
    """Exactly with ``reference_compat``; by default the blend word is also found with its punctuation
    ("pizza" in "pizza,"), where the reference amplifies nothing — the only difference."""
    for preset in ("ddim-p2p-sd15", "nti-sd15", "npi-sd15"):
        params = resolve_method(preset).params
        compat = resolve_method(preset, ["reference_compat=true"]).params
        differ = 0
        for r in PIE:
            blend = tuple(r["blend_words"]) if r["blend_words"] else None
            A, B = _effective(r)
            control = _project_control(clip_tokenizer, r, compat, blend, 50)
            assert torch.equal(control.A[0], A) and torch.equal(control.B[0], B), (preset, r["prompts"])
            default = _project_control(clip_tokenizer, r, params, blend, 50)
            if not torch.equal(default.A[0], A):
                differ += 1
                assert r["equalizer"] == {} and blend[1] not in r["prompts"][1].split(), r["prompts"]
        assert differ == 3, differ  # of the 420 pairs


@pytest.mark.parametrize("which", ["icd", "pie"])
def test_blend_tokens_match_the_reference(clip_tokenizer, which):
    """``exact`` (the reference's rule) everywhere; the default also finds a blend word written without
    its punctuation ("napkin" in "napkin,"), where the reference finds nothing: its mask is empty and
    its local blend turns the target into the source."""
    records = ICD if which == "icd" else PIE
    coco = found = 0
    for r in records:
        src, tgt = r["prompts"]
        if not r.get("blend_tokens"):
            continue
        if r["list"] == "editing_coco.csv":
            # the official script splits the COCO list's tuple text "('child', 'lion')" on spaces: no word
            # matches, its blend mask is empty; the project reads the tuple (a deviation, README)
            assert r["blend_tokens"] == [[], []]
            coco += 1
            continue
        # as the reference
        words = [w[0] for w in r["blend_words"]] if which == "icd" else r["blend_words"][:2]
        for p, w, ref in zip((src, tgt), words, r["blend_tokens"], strict=True):
            assert word_token_positions(clip_tokenizer, p, w, exact=True) == ref, (p, w)
            ours = word_token_positions(clip_tokenizer, p, w)
            if ours != ref:
                assert ref == [] and ours and w not in p.split(), (p, w)
                found += 1
    assert coco == (142 if which == "icd" else 0)
    assert found == 8, found  # prompt words of 420 PIE-Bench pairs found only without punctuation
