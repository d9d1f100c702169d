"""Run PIE-Bench's P2P editors (cure-lab/PnPInversion ``models.p2p_editor.P2PEditor``) on saved components.

    REFERENCE_PYTHON tools/conformance/pnp_p2p_reference.py --repo PATH/PnPInversion --work DIR

Runs in the reference's own environment (diffusers 0.10, its pinned release: its attention control
patches the ``forward`` of diffusers' old ``CrossAttention`` class), not the project's:
`make_goldens.py --pnp-python` writes the components (``DIR/pipeline``) and the cases
(``DIR/cases.pt``) and calls this. Each case is one ``P2PEditor`` call with ``run_editing_p2p.py``'s
arguments (CFG 7.5, cross 0.4, self 0.6, the blend words, the target blend word ×2; ``replace`` sets
``is_replace_controller``), or one ``run_editing_edit_friendly_p2p.edit_image_EF`` call with its
``main``'s (source CFG 1, target 7.5, cross 0.4, self 0.6; ``NUM_DDIM_STEPS`` and ``SKIP`` set from the
case). Only what is not part of the computation compared is replaced: the hub
download of Stable Diffusion v1.4 (the saved components instead), the image file and the VAE (the
case's latent is what ``image2latent`` / the EF script's ``vae.encode`` return; decoding records the
latents and returns black images) and the caption drawing. Records per case the reconstruction's and
the edit's latents (EF: also its prompt-switch "reconstruction" with the target prompt).
"""

from __future__ import annotations

import functools
import importlib
import sys
from types import SimpleNamespace

from reference_half import count_rows, load_text_encoder, parse_args, save_results, timed  # this folder


class VAE:
    """The EF script's VAE: encoding gives the case's latent (÷ 0.18215, which the script multiplies back),
    decoding records the latents (× 0.18215) and returns a black image."""

    def __init__(self, latent, record: dict):
        self.latent, self.record = latent, record

    def encode(self, image):
        return SimpleNamespace(latent_dist=SimpleNamespace(mode=lambda: self.latent.clone() / 0.18215))

    def decode(self, z):
        import torch

        self.record.setdefault("decoded", []).append(z.detach().clone() * 0.18215)
        return SimpleNamespace(sample=torch.zeros(z.shape[0], 3, 512, 512))


def main() -> None:
    args = parse_args(__doc__.split("\n\n")[0])

    import numpy as np
    import torch

    torch.set_num_threads(2)
    cases = torch.load(args.work / "cases.pt")
    sys.path.insert(0, str(args.repo))

    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTokenizer

    d = args.work / "pipeline"
    parts = dict(vae=AutoencoderKL(block_out_channels=(32, 64), down_block_types=("DownEncoderBlock2D",) * 2,
                                   up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=16),  # never run
                 text_encoder=load_text_encoder(d / "text_encoder"),
                 tokenizer=CLIPTokenizer.from_pretrained(d / "tokenizer", model_max_length=77),
                 unet=UNet2DConditionModel.from_pretrained(d / "unet"))

    def pipeline(cls, *a, scheduler=None, **k):  # without one (the EF script): SD's, which it replaces anyway
        scheduler = scheduler or DDIMScheduler(**cases["scheduler"])
        return StableDiffusionPipeline(**parts, scheduler=scheduler,
                                       safety_checker=None, feature_extractor=None)

    StableDiffusionPipeline.from_pretrained = classmethod(pipeline)
    real_to = torch.Tensor.to

    def to(self, *a, **k):  # make_controller builds its controllers on "cuda" whatever device it is given
        a = tuple("cpu" if isinstance(x, str) and x.startswith("cuda") else x for x in a)
        if isinstance(k.get("device"), str) and k["device"].startswith("cuda"):
            k["device"] = "cpu"
        return real_to(self, *a, **k)

    torch.Tensor.to = to
    editor_module = importlib.import_module("models.p2p_editor")
    inversion = importlib.import_module("models.p2p.inversion")
    record: dict = {}

    def decoded(model, latents, return_type="np"):
        record.setdefault("decoded", []).append(latents.detach().clone())
        return np.zeros((latents.shape[0], 512, 512, 3), dtype=np.uint8)

    inversion.image2latent = lambda model, image: record["latent"].clone()
    inversion.latent2image = decoded
    editor_module.latent2image = decoded
    editor_module.load_512 = lambda path: np.zeros((512, 512, 3), dtype=np.uint8)
    editor_module.txt_draw = lambda text: np.zeros((512, 512, 3), dtype=np.uint8)

    def edit_friendly(case, module):  # run_editing_edit_friendly_p2p.edit_image_EF with its main's arguments
        module.NUM_DDIM_STEPS, module.SKIP = case["num_steps"], case["skip"]
        module.ldm_stable.scheduler.set_timesteps(case["num_steps"])
        record.clear()
        torch.manual_seed(1234)  # its setup_seed: the inversion's noise is drawn from it
        module.edit_image_EF("edit-friendly-inversion+p2p", "unused", case["source"], case["target"],
                             source_guidance_scale=1, target_guidance_scale=7.5, cross_replace_steps=0.4,
                             self_replace_steps=0.6)
        # decoded in this order: the edit's two rows, the prompt switch
        edit, source, switch = record["decoded"]
        return {"edit": edit, "reconstruction": source, "prompt_switch": switch}

    ef_module = None
    results = []
    rows = count_rows(parts["unet"])  # the EF code calls unet.forward directly

    def edit(case, editor):
        blend = case["blend"]
        record.clear()
        record["latent"] = case["latent"]
        torch.manual_seed(1234)  # run_editing_p2p.setup_seed (nothing here draws from it)
        editor(case["method"], image_path="unused", prompt_src=case["source"], prompt_tar=case["target"],
               guidance_scale=7.5, cross_replace_steps=0.4, self_replace_steps=0.6,
               blend_word=(((blend[0],), (blend[1],))) if len(blend) else None,
               eq_params={"words": (blend[1],), "values": (2,)} if len(blend) else None,
               proximal="l0", quantile=0.75, use_inversion_guidance=True, recon_lr=1, recon_t=400,
               is_replace_controller=case["replace"])
        # the inversion decodes the clean latent first (its image_rec); then the reconstruction, the edit
        return {"reconstruction": record["decoded"][-2], "edit": record["decoded"][-1]}

    for k, case in enumerate(cases["cases"]):
        if args.repeats > 0 and k not in args.time_cases:
            results.append(None)
            continue
        if case["method"] == "edit-friendly-inversion+p2p":
            if ef_module is None:  # loads "Stable Diffusion" and its DDIM scheduler at import
                DDIMScheduler.from_config = classmethod(
                    lambda cls, *a, **kw: DDIMScheduler(**cases["scheduler"]))
                ef_module = importlib.import_module("run_editing_edit_friendly_p2p")
                ef_module.load_512 = lambda path: np.zeros((512, 512, 3), dtype=np.uint8)
                ef_module.txt_draw = lambda text: np.zeros((512, 512, 3), dtype=np.uint8)
            ef_module.ldm_stable.vae = VAE(case["latent"], record)
            run = functools.partial(edit_friendly, case, ef_module)
        else:
            run = functools.partial(edit, case, editor_module.P2PEditor([case["method"]], torch.device("cpu"),
                                                                        num_ddim_steps=case["num_steps"]))
        rows.clear()
        out = run()
        unet_rows = sum(rows)  # of this one run (the timed runs below add theirs)
        results.append({**out, "unet_rows": unet_rows,
                        "seconds": timed(run, args.repeats if k in args.time_cases else 0)})
    torch.Tensor.to = real_to
    save_results(args.work, results)


if __name__ == "__main__":
    main()
