"""Run PIE-Bench's Plug-and-Play editors (cure-lab/PnPInversion ``run_editing_pnp.py``) on saved components.

    REFERENCE_PYTHON tools/conformance/pnp_reference.py --repo PATH/PnPInversion --work DIR

Runs in the reference's own environment (its ``environment/pnp_requirements.txt``: diffusers 0.17.1,
transformers 4.30.2), not the project's: ``pie_pnp.py`` writes the components (``DIR/pipeline``) and the
cases (``DIR/cases.pt``) and calls this. Each case is one ``edit_image_ddim_PnP`` or
``edit_image_directinversion_PnP`` call with the script's arguments (CFG 7.5, ``pnp_f_t`` 0.8,
``pnp_attn_t`` 0.5). The script builds its two models when it is imported; what is replaced, and why:

- the hub downloads of Stable Diffusion v1.5 (``from_pretrained`` of each part, the pipeline's among
  them) return the saved components, in float32 (the script asks for float16, which this CPU does not
  run); moving the pipeline to CUDA and xformers attention are no-ops (the injected self-attention
  layers replace their ``forward`` anyway; the others run diffusers' default processor);
- ``Preprocess.get_text_embeds``' default device ``"cuda"`` becomes the CPU, as do the PNP model's device
  and its scheduler's timesteps;
- ``NUM_DDIM_STEPS`` (a module constant, 50) becomes the cases' step count: the constant, the PNP model's
  grid that import set at 50, and its ``n_timesteps``;
- ``sample_loop`` passes tqdm's ``desc`` to the builtin ``enumerate``, a TypeError as released: a
  module-level ``enumerate`` that drops ``desc`` stands in (the loop is unchanged);
- torchvision (module stand-ins), the image files, the VAE (the case's latent is what the encoders
  return; decoding records the latents and returns zeros) and the caption drawing.

Records per case the edit's final latents and after each step, the reconstruction the editor decodes
(DDIM + PnP), and the UNet rows.
"""

from __future__ import annotations

import builtins
import copy
import importlib
import sys
from types import ModuleType

from reference_half import count_rows, load_text_encoder, parse_args, run_cases, save_results  # this folder


def main() -> None:
    args = parse_args(__doc__.split("\n\n")[0])

    import numpy as np
    import torch

    torch.set_num_threads(2)
    cases = torch.load(args.work / "cases.pt")
    steps = cases["num_steps"]
    sys.path.insert(0, str(args.repo))
    import diffusers
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    # torchvision serves only the script's image loading, replaced below (PyPI's torchvision does not load
    # beside the CPU torch wheel these environments use); put in after transformers looked for it
    tv = sys.modules.setdefault("torchvision", ModuleType("torchvision"))
    tv.transforms = sys.modules.setdefault("torchvision.transforms", ModuleType("torchvision.transforms"))

    d = args.work / "pipeline"
    loaded = dict(vae=AutoencoderKL(block_out_channels=(32, 64), norm_num_groups=16,  # never run
                                    down_block_types=("DownEncoderBlock2D",) * 2,
                                    up_block_types=("UpDecoderBlock2D",) * 2),
                  text_encoder=load_text_encoder(d / "text_encoder"),
                  tokenizer=CLIPTokenizer.from_pretrained(d / "tokenizer", model_max_length=77),
                  unet=UNet2DConditionModel.from_pretrained(d / "unet"))
    # each from_pretrained call gives its own copy, as the script's hub loads give its two models
    # (Preprocess and PNP) separate modules: PNP's injection patches its own UNet only
    build = {name: (lambda part=part: copy.deepcopy(part)) for name, part in loaded.items()}
    scheduler_config = cases["scheduler"]

    class Pipe:  # what PNP reads of StableDiffusionPipeline.from_pretrained(...).to("cuda")
        def __init__(self):
            self.__dict__.update({name: make() for name, make in build.items()})

        def to(self, device):
            return self

        def enable_xformers_memory_efficient_attention(self):
            pass

    patched = {
        (AutoencoderKL, "from_pretrained"): lambda *a, **k: build["vae"](),
        (CLIPTokenizer, "from_pretrained"): lambda *a, **k: build["tokenizer"](),
        (CLIPTextModel, "from_pretrained"): lambda *a, **k: build["text_encoder"](),
        (UNet2DConditionModel, "from_pretrained"): lambda *a, **k: build["unet"](),
        (StableDiffusionPipeline, "from_pretrained"): lambda *a, **k: Pipe(),
        (DDIMScheduler, "from_pretrained"): lambda *a, **k: DDIMScheduler(**scheduler_config),
    }
    saved = {key: key[0].__dict__.get(key[1]) for key in patched}  # None: inherited
    set_timesteps = DDIMScheduler.set_timesteps
    for (cls, name), fn in patched.items():
        setattr(cls, name, staticmethod(fn))
    DDIMScheduler.set_timesteps = lambda self, n, device=None: set_timesteps(self, n, device="cpu")
    try:
        module = importlib.import_module("run_editing_pnp")  # builds Preprocess and PNP
    finally:
        for (cls, name), fn in saved.items():
            if fn is None:
                delattr(cls, name)
            else:
                setattr(cls, name, fn)
        DDIMScheduler.set_timesteps = set_timesteps
    assert diffusers.__version__ == "0.17.1", diffusers.__version__

    model, pnp = module.model, module.pnp
    module.NUM_DDIM_STEPS = steps
    pnp.device = torch.device("cpu")
    pnp.scheduler.set_timesteps(steps)
    pnp.n_timesteps = steps
    get_text_embeds = module.Preprocess.get_text_embeds
    module.Preprocess.get_text_embeds = lambda self, p, n, device="cuda": get_text_embeds(self, p, n, "cpu")
    module.enumerate = lambda iterable, desc=None: builtins.enumerate(iterable)

    record: dict = {}
    model.load_img = lambda path: torch.zeros(1, 3, 512, 512)
    model.encode_imgs = lambda imgs: record["latent"].clone()

    def decoded(latents):  # Preprocess.decode_latents and PNP.decode_latent
        record.setdefault("decoded", []).append(latents.detach().clone())
        return torch.zeros(latents.shape[0], 3, 512, 512)

    model.decode_latents = decoded
    pnp.decode_latent = decoded
    pnp.get_data = lambda path: torch.zeros(3, 512, 512)
    denoise_step = pnp.denoise_step

    def stepped(*a, **k):
        out = denoise_step(*a, **k)
        record.setdefault("steps", []).append(out.detach().clone())
        return out

    pnp.denoise_step = stepped
    module.load_512 = lambda path: np.zeros((512, 512, 3), dtype=np.uint8)
    module.txt_draw = lambda text: np.zeros((512, 512, 3), dtype=np.uint8)
    module.latent2image = lambda model, latents: np.zeros((1, 512, 512, 3), dtype=np.uint8)
    editors = {"ddim+pnp": module.edit_image_ddim_PnP,
               "directinversion+pnp": module.edit_image_directinversion_PnP}
    rows = (count_rows(model.unet), count_rows(pnp.unet))  # the inversion's and reconstruction's, the edit's

    def run(case):
        record.clear()
        record["latent"] = case["latent"]
        module.setup_seed()  # run_editing_pnp.py seeds before every edit (nothing here draws from it)
        editors[case["method"]](image_path="unused", prompt_src=case["source"], prompt_tar=case["target"],
                                guidance_scale=7.5)
        # decoded: the reconstruction (Preprocess.extract_latents), then the edit (PNP.sample_loop)
        return {"reconstruction": record["decoded"][0], "edit": record["decoded"][-1],
                "edit_steps": torch.cat(record["steps"]),
                "timesteps": [int(t) for t in pnp.scheduler.timesteps]}

    save_results(args.work, run_cases(args, cases["cases"], run, rows))


if __name__ == "__main__":
    main()
