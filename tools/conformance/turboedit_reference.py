"""Run TurboEdit (GiilDe/turbo-edit ``main.run``) on saved tiny SDXL-shaped components.

    REFERENCE_PYTHON tools/conformance/turboedit_reference.py --repo PATH/turbo-edit --work DIR

Runs in the reference's own environment (its ``requirements.txt``: diffusers 0.27.2, transformers 4.43.3,
ml-collections, json-with-comments), not the project's: ``turboedit_golden.py`` writes the components
(``DIR/pipeline``, the diffusers layout) and the cases (``DIR/cases.pt``) and calls this. Each case is one
``main.run(image_path, src_prompt, tgt_prompt, seed, w1, num_timesteps, pipeline)`` with its ``__main__``'s
defaults (seed 2, w 1.5) and the case's step count (its ``run_configs``). What is replaced, and why:

- ``load_pipe`` (the hub download of stabilityai/sdxl-turbo): the img2img pipeline built from the saved
  components, with a ``DDPMScheduler`` of the case's scheduler config (SDXL-Turbo's: SD's β schedule,
  trailing timestep spacing), as ``load_pipe`` builds it from the hub's;
- ``encode_image`` (the VAE; its ``argmax`` is the posterior mean): returns the case's latent;
- the image file: a blank PNG (only ``encode_image`` reads it).

Records per case the edit's latents after every step (the scheduler's ``step`` output, row 2: the target)
and the timesteps it stepped at,
the noised latents ``x_ts`` and the UNet rows; the run's decoded image is not compared (the VAE is
skipped on both sides).
"""

from __future__ import annotations

import copy
import importlib
import os
import sys

from reference_half import count_rows, load_text_encoder, parse_args, run_cases, save_results  # this folder


def main() -> None:
    args = parse_args(__doc__.split("\n\n")[0])

    import torch
    from PIL import Image

    torch.set_num_threads(2)
    cases = torch.load(args.work / "cases.pt")
    sys.path.insert(0, str(args.repo))
    os.chdir(args.repo)  # set_pipeline reads run_configs/*.yaml relative to the checkout
    import diffusers
    from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionXLImg2ImgPipeline, UNet2DConditionModel
    from transformers import CLIPTokenizer

    assert diffusers.__version__ == "0.27.2", diffusers.__version__
    d = args.work / "pipeline"
    loaded = StableDiffusionXLImg2ImgPipeline(
        vae=AutoencoderKL.from_pretrained(d / "vae"), unet=UNet2DConditionModel.from_pretrained(d / "unet"),
        text_encoder=load_text_encoder(d / "text_encoder"),
        text_encoder_2=load_text_encoder(d / "text_encoder_2", projection=True),
        tokenizer=CLIPTokenizer.from_pretrained(d / "tokenizer"),
        tokenizer_2=CLIPTokenizer.from_pretrained(d / "tokenizer_2"),
        scheduler=DDPMScheduler.from_config(cases["scheduler"]), force_zeros_for_empty_prompt=True)
    module = importlib.import_module("main")
    record: dict = {}

    def pipeline():
        pipe = copy.deepcopy(loaded)
        pipe.scheduler = DDPMScheduler.from_config(cases["scheduler"])
        return pipe

    module.encode_image = lambda image, pipe, generator: record["latent"].clone()
    get_scheduler = module.get_ddpm_inversion_scheduler

    def recorded_scheduler(scheduler, config, timesteps, latents, x_ts):
        out = get_scheduler(scheduler, config, timesteps, latents, x_ts)
        step = out.step
        record["x_ts"] = [x.detach().clone() for x in x_ts]

        def stepped(model_output, timestep, sample, *a, **k):
            res = step(model_output, timestep, sample, *a, **k)
            record.setdefault("steps", []).append(res[0][2].detach().clone())
            record.setdefault("timesteps", []).append(int(timestep))
            return res

        out.step = stepped
        return out

    module.get_ddpm_inversion_scheduler = recorded_scheduler
    image = args.work / "image.png"
    Image.new("RGB", (512, 512)).save(image)
    rows: list[int] = []

    def run(case):
        # a fresh pipeline per run: set_pipeline wraps the pipeline's __call__ in the run's settings each
        # time, so one pipeline can serve one configuration only (the script runs one per process)
        pipe = pipeline()
        rows[:] = []
        counted = count_rows(pipe.unet)
        record.clear()
        record["latent"] = case["latent"]
        module.run(str(image), case["source"], case["target"], seed=case["seed"], w1=case["w1"],
                   num_timesteps=case["num_steps"], pipeline=pipe)
        rows.extend(counted)
        return {"steps": torch.stack(record["steps"]), "x_ts": torch.cat(record["x_ts"]),
                "timesteps": list(record["timesteps"])}

    save_results(args.work, run_cases(args, cases["cases"], run, [rows]))


if __name__ == "__main__":
    main()
