"""The reference half of ``icd_metrics.py``: the iCD code's ``utils/metrics.py`` on the inputs the driver
wrote, in the environment that code was written for (transformers 4, piq, the ``image-reward`` package,
pytorch-fid's Inception in ``utils/inception.py``). Run by the driver with that environment's Python:

    PY tools/conformance/icd_metrics_reference.py --repo PATH/invertible-cd --work DIR

``DIR`` holds ``weights/`` (the project's weight layout, from golden_inputs.write_icd_metric_weights),
``cases/`` (``K-source.png``, ``K-output.png``, ``cases.json`` with the prompts) and ``fid/`` (the
generated images); the outputs go to ``DIR/reference.json`` and ``DIR/activations.npz``.

What the official code downloads is laid out where it looks, before it is imported: the hub repositories
``facebook/dinov2-base``, ``openai/clip-vit-large-patch14`` and ``bert-base-uncased`` as a Hugging Face
cache (``HF_HUB_CACHE``, offline), torchvision's VGG-16 and piq's ``lpips_weights.pt`` in torch's hub
cache (``TORCH_HOME``), ``ImageReward.pt`` and ``med_config.json`` in ``~/.cache/ImageReward`` (``HOME``).
The only stand-in: ``calc_all`` and ``calc_inversion`` pass ``device='cuda'`` to the metric functions,
which is answered with the CPU (``torch.cuda.amp.autocast()`` is then inert, as on any CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

HUB_REPOS = {"facebook/dinov2-base": "dinov2-base", "openai/clip-vit-large-patch14": "clip-vit-large-patch14",
             "bert-base-uncased": "bert-base-uncased"}
REVISION = "0" * 40


def lay_out_downloads(work: Path) -> None:
    """Put the weights where the official code's downloads would find them;
    set the variables before import."""
    weights, cache = work / "weights", work / "hf-cache"
    for repo, key in HUB_REPOS.items():
        base = cache / ("models--" + repo.replace("/", "--"))
        snapshot = base / "snapshots" / REVISION
        snapshot.mkdir(parents=True, exist_ok=True)
        (base / "refs").mkdir(exist_ok=True)
        (base / "refs" / "main").write_text(REVISION)
        for f in (weights / key).iterdir():
            if not (snapshot / f.name).exists():
                (snapshot / f.name).symlink_to(f.resolve())
    checkpoints = work / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    for key, name in (("lpips-vgg", "vgg16-397923af.pth"), ("lpips-piq", "lpips_weights.pt")):
        if not (checkpoints / name).exists():
            (checkpoints / name).symlink_to((weights / key / name).resolve())
    ir_cache = work / "home" / ".cache" / "ImageReward"
    ir_cache.mkdir(parents=True, exist_ok=True)
    for name in ("ImageReward.pt", "med_config.json"):
        if not (ir_cache / name).exists():
            (ir_cache / name).symlink_to((weights / "imagereward-v1" / name).resolve())
    os.environ.update(HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                      TORCH_HOME=str(work / "torch"), HOME=str(work / "home"))


def on_cpu(metrics) -> None:
    """``calc_all`` / ``calc_inversion`` call the metric functions with ``device='cuda'``: the CPU answers."""
    for name in ("calc_clip_score_images_images", "calc_dinov2_images_images",
                 "calc_clip_score_images_prompts", "calc_ir", "calculate_psnr", "calculate_lpips"):
        real = getattr(metrics, name)

        def cpu(*a, _real=real, **kw):
            kw["device"] = "cpu"
            return _real(*a, **kw)

        setattr(metrics, name, cpu)


def floats(text: str) -> list[float]:
    """The values ``calc_all`` / ``calc_inversion`` wrote as ``str(list(np.array(...)))``."""
    import re

    return [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?|inf", text)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repo", type=Path, required=True, help="a checkout of yandex-research/invertible-cd")
    ap.add_argument("--work", type=Path, required=True)
    args = ap.parse_args()
    work = args.work.resolve()
    lay_out_downloads(work)
    sys.path.insert(0, str(args.repo.resolve()))

    import numpy as np
    import torch
    from PIL import Image

    torch.set_num_threads(2)
    from utils import metrics  # noqa: E402  (after the caches are laid out)
    from utils.inception import InceptionV3

    cases = json.loads((work / "cases" / "cases.json").read_text())
    n = len(cases["prompts"])
    identical = cases["identical"]
    sources = [Image.open(work / "cases" / f"{k}-source.png").convert("RGB") for k in range(n)]
    outputs = [Image.open(work / "cases" / f"{k}-output.png").convert("RGB") for k in range(n)]
    prompts = cases["prompts"]
    out: dict = {}

    # 1. the images in memory, as sd1.5/edit.py and generate.py score them
    out["memory"] = {
        "clip_t": [float(v)
                   for v in metrics.calc_clip_score_images_prompts(outputs, prompts, "cpu", batch_size=16)],
        "clip_i": [float(v)
                   for v in metrics.calc_clip_score_images_images(sources, outputs, "cpu", batch_size=16)],
        "dinov2": [float(v)
                   for v in metrics.calc_dinov2_images_images(sources, outputs, "cpu", batch_size=16)],
        "imagereward": [float(v) for v in metrics.calc_ir(outputs, prompts, "cpu")],
        "lpips": [float(v) for v in metrics.calculate_lpips(outputs, sources, "cpu", batch_size=50)],
    }
    pairs = [k for k in range(n) if k != identical]
    out["memory"]["psnr_pairs"] = pairs
    out["memory"]["psnr"] = [float(v) for v in metrics.calculate_psnr([outputs[k] for k in pairs],
                                                                      [sources[k] for k in pairs], "cpu")]
    whole = metrics.calculate_psnr(outputs, sources, "cpu")  # with the identical pair: one inf for the list
    out["memory"]["psnr_whole_list"] = whole if isinstance(whole, float) else [float(v) for v in whole]

    # 2. calc_all over saved edits: edited_images/<j>.jpg as edit.py saves them, the sources as dataset files
    on_cpu(metrics)
    edits = work / "calc_all"
    shutil.rmtree(edits, ignore_errors=True)
    (edits / "edited_images").mkdir(parents=True)
    (edits / "orig").mkdir()
    rows = ["file_name,old_caption,edited_caption,blended_words"]
    for k in range(n):
        sources[k].save(edits / "orig" / f"{k}.png")
        outputs[k].save(edits / "edited_images" / f"{k}.jpg")
        rows.append(f"{k}.png,\"source {k}\",\"{prompts[k]}\",\" \"")
    (edits / "benchmark.csv").write_text("\n".join(rows) + "\n")
    metrics.calc_all(str(edits / "orig"), str(edits / "edited_images"), str(edits / "benchmark.csv"),
                     str(edits / "out"), "cuda")
    written = json.loads((edits / "out" / "editing_metrics_values.json").read_text())
    out["calc_all"] = {key: floats(value) for key, value in written.items()}

    # 3. calc_inversion over generate.py's saved pairs (both as <j>.jpg), without the identical pair (its
    #    PSNR makes calculate_psnr return one inf, on which calc_inversion then fails)
    inv = work / "calc_inversion"
    shutil.rmtree(inv, ignore_errors=True)
    for sub in ("generated_images", "real_images"):
        (inv / sub).mkdir(parents=True)
    for j, k in enumerate(pairs):
        outputs[k].save(inv / "generated_images" / f"{j}.jpg")
        sources[k].save(inv / "real_images" / f"{j}.jpg")
    listed = (os.listdir(inv / "generated_images"), os.listdir(inv / "real_images"))
    metrics.calc_inversion(str(inv), "cuda")
    written = json.loads((inv / "preservation_metrics_values.json").read_text())
    out["calc_inversion"] = {key: floats(value) for key, value in written.items()}
    # calc_inversion pairs the two folders by os.listdir order: the pair j of each list, by file name
    out["calc_inversion"]["pairs"] = [[pairs[int(a.split(".")[0])], pairs[int(b.split(".")[0])]]
                                      for a, b in zip(*listed, strict=True)]

    # 4. FID of generated images (calculate_fid) against reference statistics; the activations themselves
    fid_images = [Image.open(p).convert("RGB") for p in sorted((work / "fid").glob("*.png"))]
    inception = str(work / "weights" / "fid-inception-pytorch" / "pt_inception-2015-12-05-6726825d.pth")
    ref = str(work / "weights" / "fid-stats-mscoco512-val" / "fid_stats_mscoco512_val.npz")
    out["fid"] = float(metrics.calculate_fid(fid_images, ref, device="cpu", batch_size=40, dims=2048,
                                             num_workers=0, inception_path=inception))
    model = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]], inception_path=inception).to("cpu")
    acts = metrics.get_activations(fid_images, model, batch_size=5, dims=2048, device="cpu", num_workers=0)
    np.savez(work / "activations.npz", activations=acts)

    import importlib.metadata as md

    out["versions"] = {p: md.version(p) for p in ("torch", "torchvision", "transformers", "piq",
                                                  "image-reward", "timm", "scipy", "numpy", "pillow",
                                                  "huggingface_hub")}
    out["python"] = sys.version.split()[0]
    (work / "reference.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
