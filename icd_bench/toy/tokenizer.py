"""The toy world's tokenizer: a real CLIP BPE tokenizer restricted to the toy vocabulary.

It keeps the 512 byte-level base tokens of CLIP (so any text still tokenizes, character by
character) plus exactly the CLIP merges that the toy words use, in CLIP's order, so every toy word
splits as CLIP splits it. Written as ``vocab.json`` + ``merges.txt`` for
`transformers.CLIPTokenizer.from_pretrained`, the same path Stable Diffusion's tokenizer takes.
Ids are renumbered densely (a ~600-token vocabulary keeps the text encoder tiny). Built once from
the BPE vocabulary that open_clip ships; the result is bundled.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from icd_bench.backbones.tiny import BOS, EOS, bytes_to_unicode
from icd_bench.toy import scenes

N_CLIP_MERGES = 49152 - 256 - 2  # the merges CLIP uses (open_clip's SimpleTokenizer)


def toy_words() -> list[str]:
    words: set[str] = set()
    for phrase in (list(scenes.OBJECT_COLORS) + list(scenes.BACKGROUNDS) + list(scenes.SHAPES)
                   + list(scenes.SIZES) + list(scenes.POSITION_PHRASES.values())
                   + list(scenes.RELATION_PHRASES.values()) + ["a an on background", "empty scene"]):
        words.update(phrase.split())
    return sorted(words)


def default_bpe_path() -> Path:
    try:
        from open_clip.tokenizer import default_bpe
    except ImportError:
        raise RuntimeError("building the toy tokenizer needs open_clip's BPE vocabulary: "
                           "pip install -e '.[metrics]' (open_clip_torch), or pass bpe_path") from None
    return Path(default_bpe())


def _bpe(word: str, ranks: dict[tuple[str, str], int]) -> tuple[list[str], set[tuple[str, str]]]:
    """CLIP's BPE on one lower-case word; returns its tokens and the merges it applied."""
    table = bytes_to_unicode()
    chars = [table[b] for b in word.encode("utf-8")]
    parts = chars[:-1] + [chars[-1] + "</w>"]
    used: set[tuple[str, str]] = set()
    while len(parts) > 1:
        pairs = {(parts[i], parts[i + 1]) for i in range(len(parts) - 1)}
        best = min(pairs, key=lambda p: ranks.get(p, float("inf")))
        if best not in ranks:
            break
        used.add(best)
        merged, i = [], 0
        while i < len(parts):
            if i < len(parts) - 1 and (parts[i], parts[i + 1]) == best:
                merged.append(parts[i] + parts[i + 1])
                i += 2
            else:
                merged.append(parts[i])
                i += 1
        parts = merged
    return parts, used


def build_toy_tokenizer(out_dir: str | Path, bpe_path: str | Path | None = None) -> Path:
    """Write the toy tokenizer (vocab.json, merges.txt, configs) into ``out_dir``."""
    merges = _clip_merges(bpe_path)
    ranks = {m: i for i, m in enumerate(merges)}
    used: set[tuple[str, str]] = set()
    for w in toy_words():
        used |= _bpe(w, ranks)[1]
    return _write_tokenizer(out_dir, [m for m in merges if m in used])


def _clip_merges(bpe_path: str | Path | None = None) -> list[tuple[str, ...]]:
    """CLIP's merges in rank order, from open_clip's BPE file (or ``bpe_path``)."""
    path = Path(bpe_path) if bpe_path else default_bpe_path()
    lines = gzip.open(path).read().decode("utf-8").split("\n")[1:N_CLIP_MERGES + 1]
    return [tuple(line.split()) for line in lines]


def _write_tokenizer(out_dir: str | Path, merges: list[tuple[str, ...]]) -> Path:
    """A CLIP BPE tokenizer folder: the 512 byte tokens, the given merges in order, BOS and EOS."""
    base = list(bytes_to_unicode().values())
    tokens = base + [c + "</w>" for c in base] + ["".join(m) for m in merges] + [BOS, EOS]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}, ensure_ascii=False),
                                    encoding="utf-8")
    (out / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges),
                                    encoding="utf-8")
    config = {"model_max_length": 77, "bos_token": BOS, "eos_token": EOS, "unk_token": EOS,
              "pad_token": EOS, "do_lower_case": True, "tokenizer_class": "CLIPTokenizer"}
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    (out / "special_tokens_map.json").write_text(json.dumps(
        {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}, indent=2))
    return out


def build_clip_tokenizer(out_dir: str | Path, bpe_path: str | Path | None = None) -> Path:
    """Write Stable Diffusion's CLIP tokenizer (the full 49408-token BPE vocabulary, ids as open_clip's
    and the hub's ``openai/clip-vit-large-patch14``) for `transformers.CLIPTokenizer.from_pretrained`:
    the word alignment of Prompt-to-Prompt is compared with its reference on it."""
    return _write_tokenizer(out_dir, _clip_merges(bpe_path))
