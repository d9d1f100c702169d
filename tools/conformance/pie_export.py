"""PIE-Bench's own evaluator on a run exported by ``icd-bench export``: the golden ``pie_export.json``.

golden_inputs.pie_export_tree writes a PIE-Bench data folder (four edits, one of each mask case), a run of
edits (``icd-bench import``'s folder layout) and its export (``--layout piebench --name ddim+p2p``: the
folder evaluate.py's ``1_ddim+p2p`` entry reads). Then ``evaluation/evaluate.py`` runs as a script, unchanged
(``__main__``, its default eight metrics, ``--tgt_methods 1_ddim+p2p``), from the export folder; the golden
keeps the CSV it writes and the SHA-256 of every exported file it read.

Its ``MetricsCalculator.__init__`` loads three models from hubs; each is answered with random weights as
the other PIE-Bench goldens answer them (pie_model_metrics.py, make_goldens.pie_metric_goldens):

- ``torch.hub.load('facebookresearch/dino:main', 'dino_vitb8')`` → the checkout's
  ``hubconf.dino_vitb8(pretrained=False)`` loaded with golden_inputs.dino_state_dict (``--dino-repo``);
  ``Resize`` without antialiasing (PIE-Bench's torchvision 0.13.1);
- ``CLIPScore(model_name_or_path="openai/clip-vit-large-patch14")`` → the same class on a local folder of
  golden_inputs.clip_hf_state_dict's tiny CLIP, with transformers' slow image processor and the feature
  methods returning tensors (transformers 4's interface);
- ``LearnedPerceptualImagePatchSimilarity(net_type='squeeze')`` → its SqueezeNet trunk is
  golden_inputs.lpips_trunk (torchvision's ImageNet download is not reachable).

``--device cpu`` answers its default ``cuda``.

Usage (the project's environment, ~1 min):
    python tools/conformance/pie_export.py --pnp-repo PATH/PnPInversion --dino-repo PATH/dino
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import runpy
import sys
import tempfile
from contextlib import ExitStack, contextmanager
from pathlib import Path

import torch

HERE = Path(__file__).resolve()
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT / "tests" / "conformance"))
sys.path.insert(0, str(HERE.parent))
from make_goldens import commit, forget, random_lpips_trunk  # noqa: E402
from pie_model_metrics import clip_score_on, dino_from, provenance, unantialiased, write_clip_folder  # noqa: E402

import golden_inputs as gi  # noqa: E402

COMMAND = "python tools/conformance/pie_export.py --pnp-repo PATH/PnPInversion --dino-repo PATH/dino"


@contextmanager
def patched(module, name: str, value):
    real = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, real)


@contextmanager
def chdir(path: Path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pie_export_golden(pnp_repo: Path, dino_repo: Path) -> dict:
    torch.set_num_threads(2)
    forget("utils", "models", "evaluation")
    sys.path.insert(0, str(pnp_repo))
    try:
        mc = importlib.import_module("evaluation.matrics_calculator")
        with tempfile.TemporaryDirectory() as d, ExitStack() as stack:
            tree = gi.pie_export_tree(Path(d))
            clip_folder = write_clip_folder(Path(d) / "openai-clip-golden")
            real_clip, real_resize = mc.CLIPScore, mc.Resize

            def clip_score(model_name_or_path):
                if model_name_or_path != "openai/clip-vit-large-patch14":
                    raise RuntimeError(f"unexpected CLIP {model_name_or_path}")
                return clip_score_on(real_clip, clip_folder)

            stack.enter_context(patched(mc, "CLIPScore", clip_score))
            stack.enter_context(patched(mc, "Resize", unantialiased(real_resize)))
            stack.enter_context(dino_from(dino_repo))
            stack.enter_context(random_lpips_trunk())
            stack.enter_context(chdir(tree["eval"]))
            result = Path(d) / "evaluation_result.csv"
            argv = ["evaluate.py", "--annotation_mapping_file", str(tree["data"] / "mapping_file.json"),
                    "--src_image_folder", str(tree["data"] / "annotation_images"),
                    "--tgt_methods", f"1_{gi.PIE_EXPORT_METHOD}",
                    "--result_path", str(result), "--device", "cpu"]
            stack.enter_context(patched(sys, "argv", argv))
            runpy.run_path(str(pnp_repo / "evaluation" / "evaluate.py"), run_name="__main__")
            files = {str(p.relative_to(tree["eval"])): sha256(p)
                     for p in sorted(tree["images"].rglob("*")) if p.is_file()}
            return {"evaluation_result_csv": result.read_text(), "exported_files": files,
                    "evaluate_argv": argv[1:]}
    finally:
        sys.path.remove(str(pnp_repo))


WHAT = ("evaluation/evaluate.py run as a script (its default metrics, --tgt_methods 1_ddim+p2p, "
        "--device cpu) from the folder `icd-bench export --layout piebench --name ddim+p2p` wrote for "
        "golden_inputs.pie_export_tree's run; DINO ViT-B/8 = hubconf.dino_vitb8 on "
        "golden_inputs.dino_state_dict (Resize without antialiasing, as torchvision 0.13.1), CLIPScore on "
        "golden_inputs.clip_hf_state_dict (slow CLIPImageProcessor), LPIPS SqueezeNet trunk "
        "golden_inputs.lpips_trunk")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pnp-repo", type=Path, required=True)
    ap.add_argument("--dino-repo", type=Path, required=True, help="facebookresearch/dino (hubconf.py)")
    ap.add_argument("--pnp-commit")
    ap.add_argument("--dino-commit")
    ap.add_argument("--out", type=Path, default=gi.GOLDENS)
    args = ap.parse_args()
    data = pie_export_golden(args.pnp_repo.resolve(), args.dino_repo.resolve())
    prov = provenance(commit(args.pnp_repo, args.pnp_commit),
                      commit(args.dino_repo, args.dino_commit), WHAT, COMMAND)
    (args.out / "pie_export.json").write_text(json.dumps({"provenance": prov, **data}, indent=1) + "\n")
    print(data["evaluation_result_csv"])


if __name__ == "__main__":
    main()
