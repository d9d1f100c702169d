"""Run PIE-Bench's pix2pix-zero editors (cure-lab/PnPInversion ``run_editing_pix2pix_zero.py``) on saved
components.

    REFERENCE_PYTHON tools/conformance/pix2pix_zero_reference.py --repo PATH/PnPInversion --work DIR

Runs in the reference's own environment (its ``environment/pix2pix_zero_requirements.txt``: diffusers 0.14,
whose ``CrossAttention`` class the editor's processor is written for), not the project's:
``pie_pix2pix_zero.py`` writes the components (``DIR/pipeline``) and the cases (``DIR/cases.pt``) and calls
this. Each case is one ``edit_image_ddim_pix2pix_zero`` or ``edit_image_directinversion_pix2pix_zero`` call
with the script's arguments (CFG 7.5, cross-attention guidance 0.1). The script builds its models when
it is imported; what is replaced, and why:

- BLIP (``lavis``, which captions the image for the inversion and as the negative prompt): a stand-in
  whose caption is the case's ``caption`` (the project inverts with the source prompt, which is what the
  cases give);
- the hub downloads of Stable Diffusion v1.4 (each pipeline's ``from_pretrained``) build the pipelines
  from the saved components, each with its own copy (the script's two loads give two sets of modules);
- ``NUM_DDIM_STEPS`` (a module constant, 50) becomes the cases' step count;
- diffusers 0.14.0's own ``CrossAttention.prepare_attention_mask`` fails when called without a batch size
  (``deprecate()`` given a ``message`` keyword it does not take), which the editor's processor does on
  every call: the module's ``deprecate`` becomes a no-op (the method then returns the mask, None, as
  0.13 and 0.15 do);
- the VAE: the inversion's ``vae.encode(x).latent_dist.sample()`` returns the case's latent (/ 0.18215,
  which the pipeline multiplies back), so no posterior draw; decoding records the latents and returns
  zeros; the image file is a blank PNG; the caption drawing returns zeros.

Records per case the inversion's latents, the reconstruction and the edit (the latents the two decodes
end with), the edit's latents after each step, the auto-correlation rolls the inversion drew (in order),
and the UNet rows (the forward passes; the guidance's backward passes are not counted).
"""

from __future__ import annotations

import copy
import importlib
import sys
from types import ModuleType, SimpleNamespace

from reference_half import count_rows, load_text_encoder, parse_args, run_cases, save_results  # this folder


def main() -> None:
    args = parse_args(__doc__.split("\n\n")[0])

    import numpy as np
    import torch
    from PIL import Image

    torch.set_num_threads(2)
    cases = torch.load(args.work / "cases.pt")
    sys.path.insert(0, str(args.repo))
    record: dict = {}

    class Blip:  # lavis' blip_caption: generate({"image": ...}) -> [caption]
        def generate(self, inputs):
            return [record["caption"]]

    lavis = sys.modules.setdefault("lavis", ModuleType("lavis"))
    lavis.models = sys.modules.setdefault("lavis.models", ModuleType("lavis.models"))
    lavis.models.load_model_and_preprocess = lambda **k: (Blip(), {"eval": lambda im: torch.zeros(3, 8, 8)},
                                                          None)

    import diffusers.models.cross_attention as xattn
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTokenizer

    # diffusers 0.14.0's CrossAttention.prepare_attention_mask, called without a batch size (as the editor's
    # processor calls it), passes deprecate() a `message` keyword it does not take: a TypeError on every
    # attention call. Its deprecation is a warning only; with no mask the method returns None either way.
    xattn.deprecate = lambda *a, **k: None

    d = args.work / "pipeline"
    loaded = dict(vae=AutoencoderKL(block_out_channels=(32, 64), norm_num_groups=16,  # replaced below
                                    down_block_types=("DownEncoderBlock2D",) * 2,
                                    up_block_types=("UpDecoderBlock2D",) * 2),
                  text_encoder=load_text_encoder(d / "text_encoder"),
                  tokenizer=CLIPTokenizer.from_pretrained(d / "tokenizer", model_max_length=77),
                  unet=UNet2DConditionModel.from_pretrained(d / "unet"))
    base = importlib.import_module("models.pix2pix_zero.base_pipeline")

    def from_pretrained(cls, *a, **k):
        parts = {name: copy.deepcopy(part) for name, part in loaded.items()}
        return cls(**parts, scheduler=DDIMScheduler(**cases["scheduler"]), safety_checker=None,
                   feature_extractor=None, requires_safety_checker=False)

    base.BasePipeline.from_pretrained = classmethod(from_pretrained)

    def decoded(self, latents):  # BasePipeline.decode_latents
        record.setdefault("decoded", []).append(latents.detach().clone())
        return np.zeros((latents.shape[0], 512, 512, 3), dtype=np.float32)

    base.BasePipeline.decode_latents = decoded
    module = importlib.import_module("run_editing_pix2pix_zero")  # builds both pipelines
    import diffusers

    assert diffusers.__version__ == "0.14.0", diffusers.__version__
    module.NUM_DDIM_STEPS = cases["num_steps"]
    module.txt_draw = lambda text: np.zeros((512, 512, 3), dtype=np.uint8)

    class Encoded:  # what vae.encode(x) returns to DDIMInversion: its latent_dist.sample()
        def __init__(self, latent):
            self.latent_dist = SimpleNamespace(sample=lambda: latent / 0.18215)

    module.pipe.vae = SimpleNamespace(encode=lambda x: Encoded(record["latent"].clone()))
    inv_module = sys.modules["models.pix2pix_zero.ddim_inv"]
    randrange = inv_module.randrange

    def drawn(n):  # the inversion's auto-correlation rolls, recorded in order
        r = randrange(n)
        record.setdefault("rolls", []).append(r)
        return r

    inv_module.randrange = drawn
    call = module.pipe.__class__.__call__

    def inverted(self, *a, **k):
        out = call(self, *a, **k)
        record["inversion"] = [x.detach().clone() for x in out[0]]
        return out

    module.pipe.__class__.__call__ = inverted
    step = module.edit_pipe.scheduler.__class__.step

    def stepped(self, *a, **k):  # both decodes' steps: the reference's, then the edit's
        out = step(self, *a, **k)
        record.setdefault("steps", []).append(out.prev_sample.detach().clone())
        return out

    module.edit_pipe.scheduler.__class__.step = stepped
    image = args.work / "image.png"
    Image.new("RGB", (512, 512)).save(image)
    editors = {"ddim+pix2pix-zero": module.edit_image_ddim_pix2pix_zero,
               "directinversion+pix2pix-zero": module.edit_image_directinversion_pix2pix_zero}
    rows = (count_rows(module.pipe.unet), count_rows(module.edit_pipe.unet))

    def run(case):
        record.clear()
        record.update(latent=case["latent"], caption=case["caption"])
        module.setup_seed()  # run_editing_pix2pix_zero.py seeds before every edit: the rolls draw from it
        editors[case["method"]](image_path=str(image), prompt_src=case["source"], prompt_tar=case["target"],
                                guidance_scale=7.5)
        # decoded: the inversion's first-stage check and its end, the reconstruction, then the edit; the
        # edit's steps (before Direct Inversion's offset) are the last num_steps
        return {"inversion": torch.cat(record["inversion"]), "reconstruction": record["decoded"][-2],
                "edit": record["decoded"][-1], "steps": torch.cat(record["steps"][-case["num_steps"]:]),
                "rolls": list(record["rolls"]),
                "timesteps": [int(t) for t in module.edit_pipe.scheduler.timesteps]}

    save_results(args.work, run_cases(args, cases["cases"], run, rows))


if __name__ == "__main__":
    main()
