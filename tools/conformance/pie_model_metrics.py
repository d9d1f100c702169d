"""PIE-Bench's model-based metrics as its own evaluation code computes them: the golden
``pie_model_metrics.json`` (structure distance and CLIP similarity).

``evaluation/evaluate.py``'s ``calculate_metric`` with a ``MetricsCalculator`` whose two model-based
members are built as its ``__init__`` builds them, on random weights (the hubs are not reachable):

- ``structure_distance``: ``LossG`` with PIE-Bench's configuration; its ``torch.hub.load(
  'facebookresearch/dino:main', 'dino_vitb8')`` is answered by ``hubconf.dino_vitb8(pretrained=False)``
  of a facebookresearch/dino checkout given with ``--dino-repo``, loaded (strictly) with
  golden_inputs.dino_state_dict. PIE-Bench's environment is torchvision 0.13.1, whose tensor ``Resize``
  does not antialias; current torchvision does by default, so the driver's ``Resize`` passes
  ``antialias=False`` (the only stand-in).
- ``clip_similarity_*``: torchmetrics' ``CLIPScore`` loading a local folder laid out as the hub's
  ``openai/clip-vit-large-patch14`` (golden_inputs.clip_hf_state_dict's tiny CLIP, the full CLIP BPE
  tokenizer, the checkpoint's image processor settings: shorter side 224 bicubic, centre crop 224,
  OpenAI mean/std), with transformers' slow (PIL) ``CLIPImageProcessor``, the only one of PIE-Bench's
  transformers releases. torchmetrics reads ``get_image_features`` / ``get_text_features`` as tensors,
  as transformers 4 returns them; transformers 5 wraps them in an output object whose
  ``pooler_output`` is that tensor, so the driver hands torchmetrics the tensor.

Usage (the project's environment; make_goldens.py runs it with ``--dino-repo``):
    python tools/conformance/pie_model_metrics.py --pnp-repo PATH/PnPInversion --dino-repo PATH/dino
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve()
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT / "tests" / "conformance"))
sys.path.insert(0, str(HERE.parent))
from make_goldens import commit, forget, invocation  # noqa: E402

import golden_inputs as gi  # noqa: E402

WHAT = ("evaluation/evaluate.py calculate_metric with MetricsCalculator's structure distance "
        "(LossG, dino_vitb8 = hubconf.dino_vitb8 on golden_inputs.dino_state_dict, Resize without "
        "antialiasing as torchvision 0.13.1) and CLIP similarity (torchmetrics CLIPScore on "
        "golden_inputs.clip_hf_state_dict, slow CLIPImageProcessor)")
STRUCTURE_METRICS = ("structure_distance",)
CLIP_METRICS = ("clip_similarity_source_image", "clip_similarity_target_image",
                "clip_similarity_target_image_edit_part")


@contextmanager
def dino_from(repo: Path):
    """``torch.hub.load('facebookresearch/dino:main', name)`` → the checkout's hub entry point without
    download, loaded strictly with golden_inputs.dino_state_dict."""
    sys.path.insert(0, str(repo))
    real = torch.hub.load

    def load(source, name, *a, **kw):
        if source != "facebookresearch/dino:main" or name != "dino_vitb8":
            raise RuntimeError(f"unexpected hub load {source} {name}")
        hubconf = importlib.import_module("hubconf")
        model = hubconf.dino_vitb8(pretrained=False)
        model.load_state_dict(gi.dino_state_dict(), strict=True)
        return model

    torch.hub.load = load
    try:
        yield
    finally:
        torch.hub.load = real
        sys.path.remove(str(repo))


def write_clip_folder(folder: Path) -> Path:
    """The tiny CLIP as a local ``openai/clip-vit-large-patch14``-style folder for ``CLIPScore``."""
    from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

    from icd_bench.toy.tokenizer import build_clip_tokenizer

    config, weights = gi.clip_hf_state_dict()
    model = CLIPModel(config)
    model.load_state_dict(weights, strict=True)
    model.save_pretrained(folder)
    tok_dir = build_clip_tokenizer(Path(tempfile.mkdtemp(prefix="clip-tok-")))
    CLIPTokenizer.from_pretrained(tok_dir, model_max_length=77).save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}, resample=3,
                       image_mean=[0.48145466, 0.4578275, 0.40821073],
                       image_std=[0.26862954, 0.26130258, 0.27577711]).save_pretrained(folder)
    return folder


def as_tensors(model) -> None:
    """``get_image_features`` / ``get_text_features`` returning the projected features as a tensor (the
    transformers 4 interface torchmetrics was written for)."""
    for name in ("get_image_features", "get_text_features"):
        real = getattr(model, name)

        def features(*a, _real=real, **kw):
            out = _real(*a, **kw)
            return out if torch.is_tensor(out) else out.pooler_output

        setattr(model, name, features)


def clip_score_on(clip_score_cls, folder: Path):
    """torchmetrics' ``CLIPScore`` (the class given: PIE-Bench's import of it) on the local CLIP ``folder``,
    with transformers' slow image processor (PIE-Bench's transformers has no other; 5 defaults to the fast
    one) and the feature methods returning tensors (`as_tensors`)."""
    from transformers import CLIPImageProcessor

    metric = clip_score_cls(model_name_or_path=str(folder))
    if type(metric.processor.image_processor) is not CLIPImageProcessor:
        metric.processor.image_processor = CLIPImageProcessor.from_pretrained(folder)
    as_tensors(metric.model)
    return metric


def unantialiased(resize):
    """torchvision's ``Resize`` as PIE-Bench's torchvision 0.13.1 applied it to tensors:
    without antialiasing."""
    return lambda size, max_size=None: resize(size, max_size=max_size, antialias=False)


def provenance(pnp_commit: str, dino_commit: str, what: str = "", command: str = "") -> dict:
    import torchmetrics
    import torchvision
    import transformers

    return {"pie": {"repository": "cure-lab/PnPInversion", "commit": pnp_commit},
            "dino": {"repository": "facebookresearch/dino", "commit": dino_commit},
            "versions": {"torch": torch.__version__, "torchvision": torchvision.__version__,
                         "torchmetrics": torchmetrics.__version__, "transformers": transformers.__version__},
            "what": what or WHAT, "command": command or invocation("tools/conformance/pie_model_metrics.py")}


def pie_model_metric_goldens(pnp_repo: Path, dino_repo: Path) -> dict:
    from PIL import Image
    from torchmetrics.multimodal import CLIPScore

    torch.set_num_threads(2)
    forget("utils", "models", "evaluation")
    sys.path.insert(0, str(pnp_repo))
    mc = real_resize = None
    try:
        evaluate = importlib.import_module("evaluation.evaluate")
        mc = sys.modules["evaluation.matrics_calculator"]
        real_resize = mc.Resize
        mc.Resize = unantialiased(real_resize)
        calc = evaluate.MetricsCalculator.__new__(evaluate.MetricsCalculator)
        calc.device = "cpu"
        with dino_from(dino_repo):
            calc.structure_distance_metric_calculator = mc.LossG(cfg={
                'dino_model_name': 'dino_vitb8', 'dino_global_patch_size': 224, 'lambda_global_cls': 10.0,
                'lambda_global_ssim': 1.0, 'lambda_global_identity': 1.0, 'entire_A_every': 75,
                'lambda_entire_cls': 10, 'lambda_entire_ssim': 1.0}, device="cpu")
        structure = []
        for case in gi.pie_structure_cases():
            src, tgt = Image.fromarray(case["source"]), Image.fromarray(case["edited"])
            structure.append({m: float(evaluate.calculate_metric(calc, m, src, tgt, None, None, "", ""))
                              for m in STRUCTURE_METRICS})
        with tempfile.TemporaryDirectory() as d:
            folder = write_clip_folder(Path(d) / "openai-clip-golden")
            calc.clip_metric_calculator = clip_score_on(CLIPScore, folder)
            clip = []
            for case, (src_prompt, tgt_prompt) in zip(gi.pie_metric_cases(), gi.CLIP_PROMPTS, strict=True):
                mask = evaluate.mask_decode(case["runs"], [gi.PIE_SIDE, gi.PIE_SIDE])
                mask3 = mask[:, :, np.newaxis].repeat([3], axis=2)
                src, tgt = Image.fromarray(case["source"]), Image.fromarray(case["edited"])
                clip.append({m: float(evaluate.calculate_metric(calc, m, src, tgt, mask3, mask3, src_prompt,
                                                                tgt_prompt)) for m in CLIP_METRICS})
        return {"structure": structure, "clip": clip}
    finally:
        if real_resize is not None:
            mc.Resize = real_resize
        sys.path.remove(str(pnp_repo))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pnp-repo", type=Path, required=True)
    ap.add_argument("--dino-repo", type=Path, required=True, help="facebookresearch/dino (hubconf.py)")
    ap.add_argument("--pnp-commit")
    ap.add_argument("--dino-commit")
    ap.add_argument("--out", type=Path, default=gi.GOLDENS)
    args = ap.parse_args()
    data = pie_model_metric_goldens(args.pnp_repo, args.dino_repo)
    prov = provenance(commit(args.pnp_repo, args.pnp_commit), commit(args.dino_repo, args.dino_commit))
    (args.out / "pie_model_metrics.json").write_text(json.dumps({"provenance": prov, **data}, indent=1))
    print(json.dumps(data, indent=1))


if __name__ == "__main__":
    main()
