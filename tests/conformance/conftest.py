"""Conformance goldens: outputs of the official implementations (made by ``tools/conformance``,
provenance inside each file) that the project's implementations must reproduce."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pytest

GOLDENS = Path(__file__).parent / "goldens"


@cache
def golden(name: str) -> dict:
    return json.loads((GOLDENS / name).read_text())


@pytest.fixture(scope="session")
def clip_tokenizer(tmp_path_factory):
    """Stable Diffusion's CLIP tokenizer, built offline from open_clip's BPE vocabulary."""
    from transformers import CLIPTokenizer

    from icd_bench.toy.tokenizer import build_clip_tokenizer

    return CLIPTokenizer.from_pretrained(build_clip_tokenizer(tmp_path_factory.mktemp("clip")), model_max_length=77)
