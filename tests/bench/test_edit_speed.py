"""pytest-benchmark timings of the toy world (CPU or GPU): an iCD edit, a DDIM + P2P edit and the bare
UNet forward, each on the same batch in one session, so their ratios compare like with like. The
numbers go to pytest-benchmark's table (and ``--benchmark-json``); nothing here asserts a time."""

from __future__ import annotations

import pytest
import torch

from icd_bench.backbones import load_backbone
from icd_bench.config import resolve_method
from icd_bench.registry import METHODS
from icd_bench.runner import open_dataset, sample_seed
from icd_bench.studies.bench import bare_unet_seconds

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture(scope="module")
def demo_batch():
    ds = open_dataset("demo")
    return [ds.load(i) for i in ds.ids()[:4]]


def _method(preset: str):
    spec = resolve_method(preset, [])
    return METHODS.get(spec.method)(load_backbone(spec.backbone, device=DEVICE), spec.params)


@pytest.mark.parametrize("preset", ["icd-toy", "ddim-p2p-toy", "infedit-toy"])
def test_edit_batch_of_four(benchmark, preset, demo_batch):
    m = _method(preset)

    def edit():
        gens = [torch.Generator().manual_seed(sample_seed(0, s.id)) for s in demo_batch]
        return m.run("edit", demo_batch, gens)[1]

    outs = benchmark.pedantic(edit, rounds=3, warmup_rounds=1)
    benchmark.extra_info["nfe_per_edit"] = outs[0].nfe
    assert all(torch.isfinite(o.image).all() for o in outs)


def test_bare_unet_forward_rows_8(benchmark):
    bb = load_backbone("toy", device=DEVICE)
    benchmark.extra_info["median_seconds_direct"] = bare_unet_seconds(bb, 8, repeats=3)
    x = torch.randn(bb.latent_shape(8), device=bb.device)
    cond = bb.null_embeds(8)
    with torch.no_grad():
        benchmark.pedantic(lambda: bb.unet(x, torch.full((8,), 500, device=bb.device), **cond.unet_kwargs()),
                           rounds=5, warmup_rounds=1)
