"""Run PIE-Bench's MasaCtrl editors (cure-lab/PnPInversion ``run_editing_masactrl.MasaCtrlEditor``) on
saved components.

    REFERENCE_PYTHON tools/conformance/masactrl_reference.py --repo PATH/PnPInversion --work DIR

Runs in the reference's own environment (its ``environment/masactrl_requirements.txt``: diffusers 0.15,
whose ``Attention`` class the editor's hook looks for by name), not the project's:
``pie_baselines.py`` writes the components (``DIR/pipeline``) and the cases (``DIR/cases.pt``) and calls
this. Each case is one ``MasaCtrlEditor`` call with ``run_editing_masactrl.py``'s arguments (CFG 7.5,
step 4, layer 10; ``ddim+masactrl`` or ``directinversion+masactrl``). Only what is not part of the
computation compared is replaced: torchvision's image file functions (module stand-ins), the hub
download of Stable Diffusion v1.4 (the saved components instead), the image file and the VAE (the
case's latent is what the editor's image encoders return; decoding records the latents and returns
black images) and the caption drawing. Records per case the MasaCtrl decode's two rows (the source
branch, the edit), the target prompt's plain synthesis the editor also runs, and the UNet rows.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

from reference_half import count_rows, load_text_encoder, parse_args, save_results, timed  # this folder


def main() -> None:
    args = parse_args(__doc__.split("\n\n")[0])

    import numpy as np
    import torch

    torch.set_num_threads(2)
    cases = torch.load(args.work / "cases.pt")
    sys.path.insert(0, str(args.repo))
    # torchvision's image reading and saving serve only the editor's file handling, replaced below (PyPI's
    # torchvision does not load beside the CPU torch wheel these environments use)
    for name, attrs in (("torchvision", {}), ("torchvision.io", {"read_image": None}),
                        ("torchvision.utils", {"save_image": None})):
        sys.modules.setdefault(name, ModuleType(name)).__dict__.update(attrs)

    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTokenizer

    d = args.work / "pipeline"
    parts = dict(vae=AutoencoderKL(block_out_channels=(32, 64), down_block_types=("DownEncoderBlock2D",) * 2,
                                   up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=16),  # never run
                 text_encoder=load_text_encoder(d / "text_encoder"),
                 tokenizer=CLIPTokenizer.from_pretrained(d / "tokenizer", model_max_length=77),
                 unet=UNet2DConditionModel.from_pretrained(d / "unet"))
    module = importlib.import_module("run_editing_masactrl")
    pipeline_cls = module.MasaCtrlPipeline
    inversion = importlib.import_module("models.p2p.inversion")
    record: dict = {}

    def from_pretrained(cls, *a, scheduler=None, **k):
        return cls(**parts, scheduler=scheduler, safety_checker=None, feature_extractor=None,
                   requires_safety_checker=False)

    pipeline_cls.from_pretrained = classmethod(from_pretrained)

    def decoded(self, latents, return_type="np"):  # MasaCtrlPipeline.latent2image
        record.setdefault("decoded", []).append(latents.detach().clone())
        if return_type == "np":
            return np.zeros((512, 512, 3), dtype=np.uint8)
        return torch.zeros(latents.shape[0], 3, 512, 512)

    pipeline_cls.latent2image = decoded
    pipeline_cls.image2latent = lambda self, image: record["latent"].clone()
    inversion.image2latent = lambda vae, image: record["latent"].clone()  # DirectInversion's encoder
    inversion.latent2image = lambda vae, latents: np.zeros((1, 512, 512, 3), dtype=np.uint8)
    module.load_image = lambda path, device: torch.zeros(1, 3, 512, 512)
    module.load_512 = lambda path: np.zeros((512, 512, 3), dtype=np.uint8)
    module.txt_draw = lambda text: np.zeros((512, 512, 3), dtype=np.uint8)

    editor = module.MasaCtrlEditor(["ddim+masactrl", "directinversion+masactrl"], torch.device("cpu"),
                                   num_ddim_steps=cases["num_steps"])
    rows = count_rows(editor.model.unet)
    assert isinstance(editor.model.scheduler, DDIMScheduler)

    def run(case):
        record.clear()
        record["latent"] = case["latent"]
        module.setup_seed()  # run_editing_masactrl.py seeds before every edit (nothing here draws from it)
        editor(case["method"], image_path="unused", prompt_src=case["source"], prompt_tar=case["target"],
               guidance_scale=7.5, step=4, layper=10)
        # decoded: the target prompt's plain synthesis ("image_fixed"), then the MasaCtrl decode's two rows
        return {"fixed": record["decoded"][-2], "masactrl": record["decoded"][-1]}

    results = []
    for k, case in enumerate(cases["cases"]):
        if args.repeats > 0 and k not in args.time_cases:
            results.append(None)
            continue
        rows.clear()
        out = run(case)
        unet_rows = sum(rows)
        repeats = args.repeats if k in args.time_cases else 0
        results.append({**out, "unet_rows": unet_rows, "seconds": timed(lambda case=case: run(case), repeats),
                        "steps_offset": int(editor.model.scheduler.config.steps_offset),
                        "timesteps": [int(t) for t in editor.model.scheduler.timesteps]})
    save_results(args.work, results)


if __name__ == "__main__":
    main()
