"""Run ReNoise's SD inversion and reconstruction (garibida/ReNoise-Inversion ``main.run`` with the pipes of
``src.utils.enums_utils.get_pipes(Model_Type.SD15, Scheduler_Type.LCM)``) on saved components.

    REFERENCE_PYTHON tools/conformance/renoise_reference.py --repo PATH/ReNoise-Inversion --work DIR

Runs in the reference's own environment (diffusers 0.24, which its pipelines are written for), not the
project's: `renoise_loop.py` writes the components (``DIR/pipeline``, diffusers layout) and the inputs
(``DIR/inputs.pt``: the clean latent, the prompt, the noise list, the runs) and calls this. ``get_pipes``
itself makes the pipelines (``SDDDIMPipeline`` for the inversion, the img2img pipeline for the
reconstruction, ``MyLCMScheduler.from_config`` for both, SD's ``add_noise`` stub) and ``main.run`` runs
them with ``RunConfig``s. Only what is not part of the computation compared is replaced: the hub
download (the saved components instead), ``main.create_noise_list`` (hard-wired to 512 px fp16 on CUDA:
the stand-in draws the same latents from the same generator at this latent size on the CPU, and checks
them against the given list), the VAE encoding (the clean latent is given as the image, which the
pipelines take as latents), the decoding (``output_type="latent"``) and ``pyrallis`` (only ``main``'s
command-line decorator). It records, per run, the generator's draws, the latent and the noise list after
every inversion step (``all_latents``), the inverted latent, the reconstruction and the UNet rows; a run
that raises is recorded as its error.
"""

from __future__ import annotations

import importlib
import sys
import types

from reference_half import count_rows, load_text_encoder, parse_args, save_results, timed  # this folder


def main() -> None:
    args = parse_args(__doc__.split("\n\n")[0])

    import torch

    torch.set_num_threads(2)
    inputs = torch.load(args.work / "inputs.pt")
    sys.modules["pyrallis"] = types.SimpleNamespace(wrap=lambda *a, **k: (lambda fn: fn))
    sys.path.insert(0, str(args.repo))

    from diffusers import AutoencoderKL, LCMScheduler, StableDiffusionImg2ImgPipeline, UNet2DConditionModel
    from diffusers.utils.torch_utils import randn_tensor
    from transformers import CLIPTokenizer

    # the reference, from --repo
    eunms = importlib.import_module("src.eunms")
    config = importlib.import_module("src.config")
    enums_utils = importlib.import_module("src.utils.enums_utils")
    sd_inversion = importlib.import_module("src.pipes.sd_inversion_pipeline")
    ref_main = importlib.import_module("main")

    d = args.work / "pipeline"
    loaded = StableDiffusionImg2ImgPipeline(
        vae=AutoencoderKL.from_pretrained(d / "vae"), text_encoder=load_text_encoder(d / "text_encoder"),
        tokenizer=CLIPTokenizer.from_pretrained(d / "tokenizer", model_max_length=77),
        unet=UNet2DConditionModel.from_pretrained(d / "unet"),
        scheduler=LCMScheduler.from_pretrained(d / "scheduler"), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)
    # the hub download
    StableDiffusionImg2ImgPipeline.from_pretrained = classmethod(lambda cls, *a, **k: loaded)
    try:
        pipe_inversion, pipe_inference = enums_utils.get_pipes(eunms.Model_Type.SD15,
                                                               eunms.Scheduler_Type.LCM, device="cpu")
    finally:
        del StableDiffusionImg2ImgPipeline.from_pretrained  # the inherited one again
    for pipe in (pipe_inversion, pipe_inference):
        pipe.set_progress_bar_config(disable=True)

    record: dict = {}
    latent, noises = inputs["latent"], inputs["noises"]

    def create_noise_list(model_type, length, generator=None):  # main.create_noise_list at this latent size
        drawn = [randn_tensor(tuple(latent.shape), dtype=torch.float32, device=torch.device("cpu"),
                              generator=generator) for _ in range(length)]
        if len(drawn) != len(noises) or not all(torch.equal(a, b)
                                                for a, b in zip(drawn, noises, strict=True)):
            raise RuntimeError("the generator does not draw the given noise list")
        record["drawn"] = [z.clone() for z in drawn]
        return drawn

    ref_main.create_noise_list = create_noise_list
    inversion_step = sd_inversion.inversion_step

    def kept_step(pipe, z_t, t, *a, **k):  # the noise list after each inversion step
        out = inversion_step(pipe, z_t, t, *a, **k)
        record["steps"].append({"t": int(t), "latent": out.clone(),
                                "noises": [z.clone() for z in pipe.scheduler.noise_list]})
        return out

    sd_inversion.inversion_step = kept_step

    class Inference:  # the reconstruction pipeline, asked for latents (no VAE decoding)
        def __getattr__(self, name):
            return getattr(pipe_inference, name)

        def __call__(self, **kw):
            return pipe_inference(**kw, output_type="latent")

    rows = count_rows(pipe_inversion.unet)  # the two pipelines share the UNet
    s = inputs["run"]
    base = {**s, "model_type": eunms.Model_Type[s["model_type"]],
            "scheduler_type": eunms.Scheduler_Type[s["scheduler_type"]]}

    def run(cfg):
        return ref_main.run(latent, inputs["prompt"], cfg, pipe_inversion=pipe_inversion,
                            pipe_inference=Inference())

    results = {}
    for k, (name, overrides) in enumerate(inputs["cases"].items()):
        if args.repeats > 0 and k not in args.time_cases:
            continue
        cfg = config.RunConfig(**{**base, **overrides})
        record.clear()
        record["steps"] = []
        rows.clear()
        try:
            reconstruction, inverted, noise_list, all_latents = run(cfg)
        except Exception as exc:  # noqa: BLE001 — recorded: the official code cannot run these settings
            results[name] = {"settings": overrides, "error": f"{type(exc).__name__}: {exc}",
                             "steps_done": len(record["steps"])}
            continue
        results[name] = {
            "settings": overrides, "drawn": record["drawn"], "forward_noise": pipe_inversion.noise.clone(),
            "z_0": pipe_inversion.z_0.clone(),
            "timesteps": [int(t) for t in pipe_inversion.scheduler.timesteps],
            "all_latents": [z.clone() for z in all_latents], "steps": list(record["steps"]),
            "inverted": inverted.clone(), "noise_list": [z.clone() for z in noise_list],
            "reconstruction": reconstruction.clone(), "unet_rows": sum(rows),
            "seconds": timed(lambda cfg=cfg: run(cfg), args.repeats if k in args.time_cases else 0)}


    save_results(args.work, results)


if __name__ == "__main__":
    main()
