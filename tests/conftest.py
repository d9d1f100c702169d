"""Shared fixtures. Tests never reach a model hub: offline mode is forced before any import."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

# the conformance inputs (golden_inputs) are shared by tests outside tests/conformance too
sys.path.insert(0, str(Path(__file__).resolve().parent / "conformance"))

import pytest  # noqa: E402
import torch  # noqa: E402

from helpers import make_image, write_prompts  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))

REPO = Path(__file__).resolve().parents[1]
#: The official iCD repository's published benchmark lists, unchanged, beside the checkout (never copied in).
BENCHMARKS = REPO.parent / "shared" / "benchmarks"


def published(name: str) -> Path:
    """A published benchmark list from ``../shared/benchmarks/``; the test is skipped,
    with the reason, without it."""
    path = BENCHMARKS / name
    if not path.is_file():
        pytest.skip(f"{path} not found: the published benchmark lists are not beside this checkout")
    return path


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models are all threading overhead: one intra-op thread is ~100× faster on a busy CPU.
    Modules of tiny-model tests use it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def images_dir(tmp_path: Path) -> Path:
    """A folder dataset of 5 good images."""
    root = tmp_path / "images"
    root.mkdir()
    colors = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30), (30, 200, 200)]
    rows = []
    for k, c in enumerate(colors):
        make_image(root / f"img{k}.png", color=c)
        rows.append((f"img{k}.png", f"a circle number {k}", f"a square number {k}", "circle square"))
    write_prompts(root, rows)
    return root


@pytest.fixture(scope="session")
def tiny_sd15_dir(tmp_path_factory) -> Path:
    from icd_bench.backbones.tiny import save_tiny

    return save_tiny(tmp_path_factory.mktemp("models") / "tiny-sd15", kind="sd15", seed=0)


@pytest.fixture(scope="session")
def clip_tokenizer(tmp_path_factory):
    """Stable Diffusion's CLIP tokenizer, built offline from open_clip's BPE vocabulary (the conformance
    goldens of Prompt-to-Prompt's word alignment were made on it)."""
    from transformers import CLIPTokenizer

    from icd_bench.toy.tokenizer import build_clip_tokenizer

    return CLIPTokenizer.from_pretrained(build_clip_tokenizer(tmp_path_factory.mktemp("clip")),
                                         model_max_length=77)


BENCH_DIR = Path(__file__).parent / "bench"


def pytest_collection_modifyitems(config, items):
    """Everything in tests/bench is a benchmark: marked ``bench``, left out of the default run
    (``-m 'not bench'`` in pyproject's addopts);
    ``pytest tests/bench -m bench`` or ``nox -s bench`` runs it."""
    for item in items:
        if BENCH_DIR in Path(item.fspath).parents:
            item.add_marker(pytest.mark.bench)


@pytest.fixture(scope="module")
def pie_export_tree(tmp_path_factory):
    """golden_inputs.pie_export_tree (PIE-Bench data, a run of its edits, the run exported), with the ``pie``
    flavour's golden weights as ICD_BENCH_WEIGHTS for the module."""
    from icd_bench.metrics import weights

    import golden_inputs as gi

    root = tmp_path_factory.mktemp("pie-export")
    tree = gi.pie_export_tree(root)
    weights_root = gi.write_pie_weights(root / "weights")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(weights.ENV, str(weights_root))
        yield tree
