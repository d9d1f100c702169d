"""Run InfEdit's PIE-Bench editing (sled-group/InfEdit ``run_pie_bench.inference``) on saved components.

    REFERENCE_PYTHON tools/conformance/infedit_uac_reference.py --repo PATH/InfEdit --work DIR

Runs in the reference's own environment (diffusers 0.24, as its ``ptp_utils`` attention processor
needs: ``to_out[0](..., scale=)``), not the project's: `make_goldens.py --infedit-python` writes the
components (``DIR/pipeline``, diffusers layout) and the cases (``DIR/cases.pt``) and calls this. Only
what is not part of the computation compared is replaced: the hub download of the model (the saved
components instead), the VAE encoding (the case's clean latent is given as the image, which the
pipeline takes as latents) and decoding (``output_type="latent"``), and the modules the script
imports for its demo (``gradio``, ``utils``). It records, per case, the noises the pipeline draws, the
three branches' latents and the local-blend mask after every step, and the final x̂_0.
"""

from __future__ import annotations

import functools
import importlib
import sys
import types

from reference_half import count_rows, load_text_encoder, parse_args, save_results, timed  # this folder


def main() -> None:
    args = parse_args(__doc__.split("\n\n")[0])

    import torch
    from PIL import Image

    torch.set_num_threads(2)
    cases = torch.load(args.work / "cases.pt")
    sys.modules["gradio"] = types.ModuleType("gradio")
    sys.modules["utils"] = types.SimpleNamespace(is_google_colab=lambda: False)
    sys.path.insert(0, str(args.repo))

    import diffusers
    from diffusers import AutoencoderKL, LCMScheduler, UNet2DConditionModel
    from transformers import CLIPTokenizer

    pipeline_ead = importlib.import_module("pipeline_ead")  # the reference, from --repo

    d = args.work / "pipeline"
    scheduler = LCMScheduler.from_pretrained(d / "scheduler")
    pipe = pipeline_ead.EditPipeline(
        vae=AutoencoderKL.from_pretrained(d / "vae"), text_encoder=load_text_encoder(d / "text_encoder"),
        tokenizer=CLIPTokenizer.from_pretrained(d / "tokenizer", model_max_length=77),
        unet=UNet2DConditionModel.from_pretrained(d / "unet"), scheduler=scheduler, safety_checker=None,
        feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    pipeline_ead.EditPipeline.from_pretrained = classmethod(lambda cls, *a, **k: pipe)
    diffusers.LCMScheduler.from_config = classmethod(lambda cls, *a, **k: scheduler)
    rpb = importlib.import_module("run_pie_bench")

    record: dict = {}

    class Pipe:  # the module's pipeline, fed the clean latent and asked for x̂_0
        def __getattr__(self, name):
            return getattr(pipe, name)

        def __call__(self, **kw):
            kw.update(image=record["latent"], output_type="latent")
            return pipe(**kw)

    rpb.pipe = Pipe()
    step_callback = rpb.AttentionRefine.step_callback

    def kept_step(self, i, t, x_s, x_t, x_m, alpha_prod):
        out_m, out_t = step_callback(self, i, t, x_s, x_t, x_m, alpha_prod)
        record["steps"].append({"t": int(t), "x_s": x_s.clone(), "x_t": x_t.clone(), "x_m": x_m.clone(),
                                "x_t_blended": out_t.clone(), "mask": record.pop("mask", None)})
        return out_m, out_t

    rpb.AttentionRefine.step_callback = kept_step
    get_mask = rpb.LocalBlend.get_mask

    def kept_mask(self, x_t, maps, word_idx, thresh, i):
        mask = get_mask(self, x_t, maps, word_idx, thresh, i)
        record.setdefault("mask", mask.clone())  # the first of each call: mask_e, the blend word's
        return mask

    rpb.LocalBlend.get_mask = kept_mask
    randn = torch.randn

    def kept_randn(*a, **k):  # the pipeline's noises: its start latent (randn_tensor), then one per step
        out = randn(*a, **k)
        record["noises"].append(out.clone())
        return out

    s = cases["settings"]
    results = []
    rows = count_rows(pipe.unet)

    def edit(source, target, local):
        return rpb.inference(source, target, "", "", local, "", s["guidance_s"], s["guidance_t"],
                             num_inference_steps=s["num_inference_steps"], width=512, height=512, seed=0,
                             img=Image.new("RGB", (512, 512)), strength=s["strength"],
                             cross_replace_steps=s["cross_replace_steps"],
                             self_replace_steps=s["self_replace_steps"], eta=s["eta"], thresh_e=s["thresh_e"],
                             thresh_m=s["thresh_m"], denoise=s["denoise"])

    for k, (source, target, local, latent) in enumerate(cases["cases"]):
        if args.repeats > 0 and k not in args.time_cases:
            results.append(None)
            continue
        record.clear()
        record.update(latent=latent, steps=[], noises=[])
        torch.randn = kept_randn
        rows.clear()
        try:
            out = edit(source, target, local)
        finally:
            torch.randn = randn
        results.append({"pred_x0": out.clone(), "steps": list(record["steps"]),
                        "noises": list(record["noises"]),
                        "timesteps": [int(t) for t in scheduler.timesteps], "unet_rows": sum(rows),
                        "seconds": timed(functools.partial(edit, source, target, local),
                                         args.repeats if k in args.time_cases else 0)})

    save_results(args.work, results)


if __name__ == "__main__":
    main()
