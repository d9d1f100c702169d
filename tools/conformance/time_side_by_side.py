"""Time the official implementations and the project on the same inputs, in one process.

    python tools/conformance/time_side_by_side.py --icd-repo PATH/invertible-cd --pnp-repo PATH/PnPInversion \
        --repeats 5 --out reports/perf/conformance-timing.md

Per method: the official code path of the conformance goldens (make_goldens.py) and the project's
method, each timed ``--repeats`` times after one warm-up (median seconds per edit), and the UNet
evaluations each side spends (counted by a forward hook on every UNet the side runs). The models are
the goldens' tiny SD1.5-shaped weights at 32×32 px on this machine's CPU: the numbers measure each
side's overhead around small UNet calls, not an SD1.5-size edit.

- iCD: encode (fCDm, 4 steps) + P2P edit (CDm, 4 steps; replace), official Generator vs `ICD.edit`;
- NTI: DDIM inversion + null-text optimisation (10 Adam steps per step, 10 steps, CFG 7.5) + CFG
  decoding, PnPInversion's NullInversion vs `NTI` (its prompt-switch edit path, in the project's
  environment);
- with ``--pnp-python``: PIE-Bench's P2P editors end to end (``P2PEditor``: DDIM + P2P, NPI + P2P,
  NTI + P2P, each inversion + reconstruction + P2P edit, 10 steps) in their own environment vs the
  presets, on the PIE-P2P golden's model and cases (``pnp_p2p_reference.py --repeats``), and its EF + P2P
  script (``edit_image_EF``: inversion, P2P edit, prompt-switch decode) vs ``ef-ddpm-sd15-50``; and
  PIE-Bench's other editors (``pie-baselines``: Direct Inversion + P2P) on pie_baselines.json's model and
  first case;
- with ``--masactrl-python``: PIE-Bench's DDIM + MasaCtrl editor in its own environment (diffusers 0.15) vs
  `masactrl-sd15` on pie_baselines.json's first MasaCtrl case (50 steps; ``masactrl_reference.py
  --repeats``; its row says its own repeat count, the reference being slow on the CPU);
- with ``--pnp-editor-python``: PIE-Bench's Plug-and-Play editors (DDIM + PnP, Direct Inversion + PnP) in
  their own environment (diffusers 0.17.1) vs `pnp-sd15` and `direct-inversion-pnp-sd15` on pie_pnp.json's
  cases (10 steps; ``pnp_reference.py --repeats``);
- with ``--pix2pix-zero-python``: PIE-Bench's pix2pix-zero editors in their own environment (diffusers 0.14)
  vs `pix2pix-zero-sd15` and `direct-inversion-pix2pix-zero-sd15` on pie_pix2pix_zero.json's cases (10
  steps; ``pix2pix_zero_reference.py --repeats``);
- with ``--infedit-repo`` / ``--infedit-python``: InfEdit's PIE-Bench run (12 steps, unified attention
  control) in its own environment vs `infedit-lcm-sd15` (``infedit_uac_reference.py --repeats``).

- with ``--turboedit-repo`` / ``--turboedit-python``: TurboEdit's ``main.run`` in its own environment
  (diffusers 0.27.2) vs `turboedit-sdxl-turbo` and `-3step` on turboedit.json's tiny SDXL cases
  (``turboedit_reference.py --repeats``).

- with ``--renoise-repo`` / ``--renoise-python``: ReNoise's ``main.run`` (inversion + reconstruction) in
  its own environment vs `renoise-lcm-sd15` at the golden's settings (``renoise_reference.py --repeats``).

``--only icd,ef`` times only those rows and keeps the report's others.

The reference halves count UNet rows on their UNet's ``forward`` and time their cases after the
recorded run; the two sides then run in different environments (torch 2.13 / diffusers 0.10 or 0.24
there, the project's here), which the report says.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import make_goldens as mk  # noqa: E402

gi = mk.gi


class Counter:
    """UNet rows evaluated, by forward pre-hooks on the given modules."""

    def __init__(self, *unets):
        self.rows = 0
        self.handles = [u.register_forward_pre_hook(self.hook, with_kwargs=True) for u in unets]

    def hook(self, module, args, kwargs):
        x = args[0] if args else kwargs.get("sample")
        self.rows += int(x.shape[0])

    def close(self):
        for h in self.handles:
            h.remove()


def timed_rows(fn, repeats: int, *unets) -> tuple[float, float]:
    """`timed` ``fn`` with a `Counter` on ``unets``: (median seconds, UNet rows per run)."""
    counter = Counter(*unets)
    try:
        seconds, _ = timed(fn, repeats)
        return seconds, counter.rows / (repeats + 1)
    finally:
        counter.close()


def half_row(method: str, reference: str, result: dict, ours_seconds: float, ours_rows: float) -> dict:
    """A report row from a reference half's timed result
    (its ``seconds`` and ``unet_rows``) and the project's."""
    return {"method": method, "reference": reference, "ref_seconds": result["seconds"],
            "ours_seconds": ours_seconds, "ref_unet_rows": result["unet_rows"], "ours_unet_rows": ours_rows}


def timed(fn, repeats: int) -> tuple[float, object]:
    fn()  # warm-up
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def icd_side_by_side(repo: Path, repeats: int, work: Path) -> dict:
    from PIL import Image

    from icd_bench.backbones.loaders import load_pretrained
    from icd_bench.config import resolve_method
    from icd_bench.icd.model import FORWARD, REVERSE
    from icd_bench.methods.icd import ICD
    from icd_bench.types import EditSample

    ref = mk.official_icd(repo, work)
    image = gi.icd_image()

    def official():
        latent = mk.official_icd_encode(ref, image)
        x, img, _, _ = mk.official_icd_edit(ref, latent, gi.ICD_TARGET)
        return img

    # the official models: the forward, reverse and teacher pipelines' UNets
    t_ref, nfe_ref = timed_rows(official, repeats, ref.solver.forward_cons_model.unet, ref.reverse.unet)
    sys.path.remove(str(repo))

    w = ref.weights
    spec = resolve_method("icd-sd15", [f"teacher={w['teacher']}", f"forward_lora={w[FORWARD]}",
                                       f"reverse_lora={w[REVERSE]}", "local_blend=false",
                                       "reference_compat=true"])
    method = ICD(load_pretrained(str(w["pipeline"]), device="cpu", dtype=torch.float32), spec.params)
    sample = EditSample(id="x", image=Image.fromarray(image), source_prompt=gi.ICD_SOURCE,
                        target_prompt=gi.ICD_TARGET)

    def ours():
        images = method.backbone.preprocess([sample.image])
        return method.edit(images, [sample], [torch.Generator().manual_seed(gi.ICD_SEED)])

    t_ours, nfe_ours = timed_rows(ours, repeats, method.backbone.unet)
    return {"method": "iCD (encode 4 + P2P edit 4)", "reference": "invertible-cd", "ref_seconds": t_ref,
            "ours_seconds": t_ours, "ref_unet_rows": nfe_ref, "ours_unet_rows": nfe_ours}


def nti_side_by_side(pnp_repo: Path, repeats: int) -> dict:
    from diffusers import DDIMScheduler

    from icd_bench.backbones.base import Backbone
    from icd_bench.backbones.loaders import SD_SCHEDULER_CONFIG
    from icd_bench.backbones.tiny import build_tiny_sd15
    from icd_bench.methods.nti import NTI, NTIParams

    mk.forget("utils", "models")
    sys.path.insert(0, str(pnp_repo))
    from models.p2p.inversion import NullInversion
    from models.p2p.scheduler_dev import DDIMSchedulerDev

    c = build_tiny_sd15(seed=0)
    steps, cfg = gi.DDIM_STEPS, gi.DDIM_CFG
    scheduler = DDIMSchedulerDev(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                 clip_sample=False, set_alpha_to_one=False)
    scheduler.set_timesteps(steps)
    model = types.SimpleNamespace(unet=c["unet"], tokenizer=c["tokenizer"], text_encoder=c["text_encoder"],
                                  scheduler=scheduler, device="cpu")
    x0 = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))

    def official():
        inv = NullInversion(model=model, num_ddim_steps=steps)
        inv.init_prompt(gi.DDIM_PROMPT)
        trajectory = inv.ddim_loop(x0)
        nulls = inv.null_optimization(trajectory, num_inner_steps=10, epsilon=1e-5, guidance_scale=cfg)
        cond = inv.context.chunk(2)[1]
        x = trajectory[-1]
        with torch.no_grad():
            for i, t in enumerate(scheduler.timesteps):
                x = inv.get_noise_pred(x, t, cfg, False, torch.cat([nulls[i], cond]))
        return x

    t_ref, nfe_ref = timed_rows(official, repeats, c["unet"])
    sys.path.remove(str(pnp_repo))

    backbone = Backbone(kind="sd15", source="tiny", tokenizers=[c["tokenizer"]],
                        text_encoders=[c["text_encoder"]], unet=c["unet"], vae=None,
                        scheduler=DDIMScheduler(**SD_SCHEDULER_CONFIG), resolution=16)
    method = NTI(backbone,
                 NTIParams(num_inference_steps=steps, guidance_scale=cfg, steps_offset=0, p2p=False))

    def ours():  # the same work on latents: inversion + optimisation, then the CFG decode
        from icd_bench.types import Inversion

        inv = Inversion(latents=None, prompts=[gi.DDIM_PROMPT], image_latents=x0, state={})
        cond = backbone.encode_prompt([gi.DDIM_PROMPT])
        trajectory = {}
        from icd_bench.diffusion import ddim_invert, guided_noise

        xT = ddim_invert(lambda x, t, i: guided_noise(backbone, x, t, cond, None, 1.0), x0,
                         method._timesteps(), backbone.alphas_cumprod, backbone.final_alpha_cumprod,
                         callback=lambda info: trajectory.__setitem__(info.index, info.x))
        inv.latents, inv.state = xT, {"source_cond": cond, "trajectory": trajectory}
        inv.state["null_embeds"], _ = method.optimise_null(inv)
        return method._sample(xT, cond, method.unconditional(inv, 1), cfg)

    t_ours, nfe_ours = timed_rows(ours, repeats, c["unet"])
    return {"method": "NTI (inversion + null-text optimisation + decode, 10 steps)",
            "reference": "PnPInversion", "ref_seconds": t_ref, "ours_seconds": t_ours,
            "ref_unet_rows": nfe_ref, "ours_unet_rows": nfe_ours}


PNP_TIMED = (0, 2, 3)  # golden_inputs.PNP_CASES: DDIM + P2P refine, NPI + P2P, NTI + P2P


def pie_p2p_side_by_side(pnp_repo: Path, python: Path, repeats: int, work: Path, *, baselines: bool = False
                         ) -> list[dict]:
    """PIE-Bench's P2P editors (pnp_p2p_reference.py, in their own environment) vs the presets, end to end on
    the PIE-P2P golden's model and cases (``baselines``: pie_baselines.json's cases, its first timed)."""
    from PIL import Image

    from icd_bench.config import resolve_method
    from icd_bench.registry import METHODS
    from icd_bench.types import EditSample

    if baselines:
        from pie_baselines import prepare

        cases, timed_cases, first = gi.PNP_BASELINE_CASES, (0,), gi.PNP_BASELINE_LATENTS
    else:
        prepare, cases, timed_cases, first = mk.prepare_pnp, gi.PNP_CASES, PNP_TIMED, 0
    ref = mk.run_reference("pnp_p2p_reference.py", pnp_repo, python, prepare(work), repeats,
                           ",".join(map(str, timed_cases)))
    backbone = gi.pnp_backbone(mk.clip_tokenizer())
    rows = []
    for k in timed_cases:
        name, source, target, blend, _ = cases[k]
        spec = resolve_method(gi.PNP_PRESETS[name], [f"num_inference_steps={gi.PNP_STEPS}"])
        method = METHODS.get(spec.method)(backbone, spec.params)
        latent = gi.pnp_latent(first + k)
        backbone.encode_image = lambda images, latent=latent: latent
        backbone.decode = lambda latents: latents
        sample = EditSample(id="x", image=Image.new("RGB", (8, 8)), source_prompt=source,
                            target_prompt=target, blend_words=blend)

        inverted = gi.reuse_inversion(method)

        def ours(method=method, sample=sample, inverted=inverted):
            # as the official editor: one inversion, then the source reconstruction and the P2P edit
            inverted.clear()
            method.run("invert", [sample], [torch.Generator().manual_seed(0)])
            return method.run("edit", [sample], [torch.Generator().manual_seed(0)])

        t_ours, nfe_ours = timed_rows(ours, repeats, backbone.unet)
        rows.append(half_row(f"{spec.preset} (invert + reconstruct + P2P edit, {gi.PNP_STEPS} steps, "
                             "64² latent)", "PnPInversion P2PEditor (diffusers 0.10)", ref["results"][k],
                             t_ours, nfe_ours))
    return rows


def masactrl_side_by_side(pnp_repo: Path, python: Path, repeats: int, work: Path) -> dict:
    """PIE-Bench's DDIM + MasaCtrl (``masactrl_reference.py``, in its own environment: inversion, the target
    prompt's plain synthesis it shows beside the edit, the MasaCtrl decode) vs `masactrl-sd15` (inversion and
    the MasaCtrl decode, whose source row is the reconstruction), on pie_baselines.json's first MasaCtrl
    case at its 50 steps."""
    from pie_baselines import prepare_masactrl
    from PIL import Image

    from icd_bench.config import resolve_method
    from icd_bench.registry import METHODS
    from icd_bench.types import EditSample

    ref = mk.run_reference("masactrl_reference.py", pnp_repo, python, prepare_masactrl(work), repeats, "0")
    backbone = gi.pnp_backbone(mk.clip_tokenizer())
    name, source, target = gi.PNP_MASACTRL_CASES[0]
    spec = resolve_method(gi.PNP_PRESETS[name], [f"num_inference_steps={gi.PNP_MASACTRL_STEPS}"])
    method = METHODS.get(spec.method)(backbone, spec.params)
    latent = gi.pnp_latent(gi.PNP_MASACTRL_LATENTS)
    backbone.encode_image = lambda images: latent
    backbone.decode = lambda latents: latents
    sample = EditSample(id="x", image=Image.new("RGB", (8, 8)), source_prompt=source, target_prompt=target)

    def ours():
        return method.run("edit", [sample], [torch.Generator().manual_seed(0)])

    t_ours, rows_ours = timed_rows(ours, repeats, backbone.unet)
    label = (f"{spec.preset} (invert + MasaCtrl edit, {gi.PNP_MASACTRL_STEPS} steps, 64² latent; "
             f"median of {repeats})")
    return half_row(label, "PnPInversion MasaCtrlEditor (diffusers 0.15)", ref["results"][0], t_ours,
                    rows_ours)


def time_edit(backbone, preset: str, overrides: list[str], latent: torch.Tensor, source: str, target: str,
              repeats: int, seed: int = 0) -> tuple[str, float, float]:
    """The project's side of an editor's row: ``preset`` (with ``overrides``) editing ``source`` → ``target``
    on ``backbone`` patched so that ``latent`` is the encoding and decoding is the identity (the references
    skip the VAE too); (the preset's name, median seconds per edit, UNet rows per edit)."""
    from PIL import Image

    from icd_bench.config import resolve_method
    from icd_bench.registry import METHODS
    from icd_bench.types import EditSample

    spec = resolve_method(preset, overrides)
    method = METHODS.get(spec.method)(backbone, spec.params)
    backbone.encode_image = lambda images: latent
    backbone.decode = lambda latents: latents
    sample = EditSample(id="x", image=Image.new("RGB", (8, 8)), source_prompt=source, target_prompt=target)

    def ours():
        return method.run("edit", [sample], [torch.Generator().manual_seed(seed)])

    return (spec.preset, *timed_rows(ours, repeats, backbone.unet))


def pnp_side_by_side(pnp_repo: Path, python: Path, repeats: int, work: Path) -> list[dict]:
    """PIE-Bench's Plug-and-Play editors (``pnp_reference.py``, in their own environment: inversion, the
    DDIM reconstruction it runs for both, the three-row PnP decode) vs `pnp-sd15` (with its official switch)
    and `direct-inversion-pnp-sd15`, on pie_pnp.json's two cases at their 10 steps."""
    from pie_pnp import prepare

    ref = mk.run_reference("pnp_reference.py", pnp_repo, python, prepare(work), repeats, "0,1")
    backbone = gi.pnp_backbone(mk.clip_tokenizer())
    rows = []
    for k, (name, source, target) in enumerate(gi.PIE_PNP_CASES):
        official = ["reference_compat=true"] if name == "ddim+pnp" else []
        preset, t_ours, rows_ours = time_edit(backbone, gi.PNP_PRESETS[name],
                                              [f"num_inference_steps={gi.PIE_PNP_STEPS}", *official],
                                              gi.pnp_latent(gi.PIE_PNP_LATENTS + k), source, target, repeats)
        label = f"{preset} (invert + PnP edit, {gi.PIE_PNP_STEPS} steps, 64² latent; median of {repeats})"
        rows.append(half_row(label, f"PnPInversion run_editing_pnp {name} (diffusers 0.17.1)",
                             ref["results"][k], t_ours, rows_ours))
    return rows


def pix2pix_zero_side_by_side(pnp_repo: Path, python: Path, repeats: int, work: Path) -> list[dict]:
    """PIE-Bench's pix2pix-zero editors (``pix2pix_zero_reference.py``, in their own environment: the
    regularised inversion, the reference decode, the guided edit) vs `pix2pix-zero-sd15` and
    `direct-inversion-pix2pix-zero-sd15`, on pie_pix2pix_zero.json's two cases at their 10 steps."""
    from pie_pix2pix_zero import prepare

    ref = mk.run_reference("pix2pix_zero_reference.py", pnp_repo, python, prepare(work), repeats, "0,1")
    backbone = gi.pnp_backbone(mk.clip_tokenizer())
    rows = []
    for k, (name, source, target) in enumerate(gi.PIE_P2PZ_CASES):
        preset, t_ours, rows_ours = time_edit(backbone, gi.PNP_PRESETS[name],
                                              [f"num_inference_steps={gi.PIE_P2PZ_STEPS}"],
                                              gi.pnp_latent(gi.PIE_P2PZ_LATENTS + k), source, target, repeats)
        label = (f"{preset} (regularised inversion + guided edit, {gi.PIE_P2PZ_STEPS} steps, 64² latent; "
                 f"median of {repeats})")
        rows.append(half_row(label, f"PnPInversion run_editing_pix2pix_zero {name} (diffusers 0.14)",
                             ref["results"][k], t_ours, rows_ours))
    return rows


def turboedit_side_by_side(repo: Path, python: Path, repeats: int, work: Path) -> list[dict]:
    """TurboEdit's ``main.run`` (``turboedit_reference.py``, in its own environment: the noised latents and
    the three-row SDXL img2img decode) vs `turboedit-sdxl-turbo` and `turboedit-sdxl-turbo-3step`, on
    turboedit.json's 16² cases."""
    from turboedit_golden import prepare

    from icd_bench.backbones.tiny import tiny_backbone

    ref = mk.run_reference("turboedit_reference.py", repo, python, prepare(work), repeats, "0,1")
    backbone = tiny_backbone("sdxl", seed=gi.TURBO_SEED)
    rows = []
    for k, (steps, side, source, target) in enumerate(gi.TURBO_CASES[:2]):
        preset, t_ours, rows_ours = time_edit(backbone, gi.TURBO_PRESETS[steps], [], gi.turbo_latent(k),
                                              source, target, repeats, seed=gi.TURBO_RUN_SEED)
        label = f"{preset} ({steps} steps, tiny SDXL, {side}² latent; median of {repeats})"
        rows.append(half_row(label, "GiilDe/turbo-edit main.run (diffusers 0.27.2)", ref["results"][k],
                             t_ours, rows_ours))
    return rows


def ef_side_by_side(pnp_repo: Path, python: Path, repeats: int, work: Path) -> dict:
    """PIE-Bench's EF + P2P script (``edit_image_EF``: one inversion, the P2P edit, its prompt-switch decode;
    in its own environment) vs `ef-ddpm-sd15-50` doing the same work (one inversion shared by the P2P edit and
    the prompt-switch decode) on the PIE-P2P golden's model and first EF case."""
    from PIL import Image

    from icd_bench.config import resolve_method
    from icd_bench.registry import METHODS
    from icd_bench.types import EditSample

    k = len(gi.PNP_CASES)  # the reference half's index of the first EF case
    ref = mk.run_reference("pnp_p2p_reference.py", pnp_repo, python, mk.prepare_pnp(work), repeats, str(k))
    backbone = gi.pnp_backbone(mk.clip_tokenizer())
    steps = [f"num_inference_steps={gi.PNP_EF_STEPS}", f"skip={gi.PNP_EF_SKIP}", "zero_last_noise=true"]
    spec = resolve_method("ef-ddpm-sd15-50", steps)
    method = METHODS.get(spec.method)(backbone, spec.params)
    switch = METHODS.get(spec.method)(backbone,
                                      resolve_method("ef-ddpm-sd15-50", [*steps, "p2p=false"]).params)
    backbone.encode_image = lambda images: gi.pnp_latent(k)
    backbone.decode = lambda latents: latents
    source, target = gi.PNP_EF_CASES[0]
    sample = EditSample(id="x", image=Image.new("RGB", (8, 8)), source_prompt=source, target_prompt=target)
    inverted = gi.reuse_inversion(method)
    switch.invert = lambda images, prompts, generators: inverted["inv"]

    def ours():
        inverted.clear()
        method.run("edit", [sample], [torch.Generator().manual_seed(0)])
        return switch.run("edit", [sample], [torch.Generator().manual_seed(0)])

    t_ours, nfe_ours = timed_rows(ours, repeats, backbone.unet)
    return half_row(f"ef-ddpm-sd15-50 (invert + P2P edit + prompt-switch decode, {gi.PNP_EF_STEPS} steps, "
                    f"skip {gi.PNP_EF_SKIP}, 64² latent)", "PnPInversion edit_image_EF (diffusers 0.10)",
                    ref["results"][k], t_ours, nfe_ours)


def renoise_side_by_side(repo: Path, python: Path, repeats: int, work: Path) -> dict:
    """ReNoise's ``main.run`` (inversion + reconstruction, ``get_pipes(SD15, LCM)``, in its own environment)
    vs `renoise-lcm-sd15` at the golden's settings (its "released" case) on the ReNoise-loop
    golden's model."""
    import renoise_loop
    from PIL import Image

    from icd_bench.config import resolve_method
    from icd_bench.methods.renoise import ReNoise
    from icd_bench.types import EditSample

    ref = mk.run_reference("renoise_reference.py", repo, python, renoise_loop.prepare(work), repeats, "0")
    backbone = gi.renoise_loop_backbone(mk.clip_tokenizer())
    _, overrides = gi.RENOISE_LOOP_CASES["released"]
    method = ReNoise(backbone, resolve_method("renoise-lcm-sd15", overrides).params)
    noises, forward, _ = gi.renoise_loop_draws(len(method.timesteps))
    method.draw_noises = lambda generators, count: [*noises, forward][:count]
    backbone.encode_image = lambda images: gi.renoise_loop_latent()
    backbone.decode = lambda latents: latents
    sample = EditSample(id="x", image=Image.new("RGB", (backbone.resolution,) * 2),
                        source_prompt=gi.RENOISE_LOOP_PROMPT, target_prompt=gi.RENOISE_LOOP_PROMPT)
    t_ours, nfe_ours = timed_rows(lambda: method.run("invert", [sample], [torch.Generator().manual_seed(0)]),
                                  repeats, backbone.unet)
    return half_row("renoise-lcm-sd15 (4-step LCM inversion, 9 renoising iterations, regularisation, + "
                    "reconstruction, 32² latent)", "ReNoise main.run (diffusers 0.24)",
                    ref["results"]["released"], t_ours, nfe_ours)


def infedit_side_by_side(repo: Path, python: Path, repeats: int, work: Path) -> dict:
    """InfEdit's PIE-Bench run (infedit_uac_reference.py, in its own environment) vs `infedit-lcm-sd15` on the
    InfEdit golden's model and first case."""
    from PIL import Image

    from icd_bench.config import resolve_method
    from icd_bench.methods.infedit import InfEdit
    from icd_bench.types import EditSample

    tok = mk.clip_tokenizer()
    ref = mk.run_reference("infedit_uac_reference.py", repo, python, mk.prepare_uac(tok, work), repeats, "0")
    backbone = gi.uac_backbone(tok)
    method = InfEdit(backbone, resolve_method("infedit-lcm-sd15").params)
    noises = gi.uac_pipeline_noises(len(method.timesteps))
    method.draw_noises = lambda generators, count: [*noises[1:], noises[0]]
    backbone.encode_image = lambda images: gi.uac_latent(0)
    backbone.decode = lambda latents: latents
    source, target, blend = gi.UAC_CASES[0]
    sample = EditSample(id="x", image=Image.new("RGB", (8, 8)), source_prompt=source, target_prompt=target,
                        blend_words=(blend, blend))
    t_ours, nfe_ours = timed_rows(lambda: method.run("edit", [sample], [torch.Generator().manual_seed(0)]),
                                  repeats, backbone.unet)
    return half_row("InfEdit (12 DDCM steps, unified attention control, 40² latent)",
                    "InfEdit run_pie_bench (diffusers 0.24)", ref["results"][0], t_ours, nfe_ours)


PARTS = ("icd", "nti", "pie-p2p", "pie-baselines", "masactrl", "pnp", "pix2pix-zero", "ef", "infedit",
         "renoise", "turboedit")


def kept_rows(report: Path) -> dict[str, str]:
    """The table rows of an earlier report, by method (``--only`` replaces some and keeps the rest)."""
    if not report.exists():
        return {}
    rows = {}
    for line in report.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 6 and cells[0] not in ("method", "---"):
            rows[cells[0]] = line
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--icd-repo", type=Path, required=True)
    ap.add_argument("--pnp-repo", type=Path, required=True)
    ap.add_argument("--pnp-python", type=Path,
                    help="PnPInversion's environment (diffusers 0.10): its P2P editors")
    ap.add_argument("--masactrl-python", type=Path,
                    help="PnPInversion's MasaCtrl environment (diffusers 0.15): its MasaCtrl editor")
    ap.add_argument("--pnp-editor-python", type=Path,
                    help="PnPInversion's Plug-and-Play environment (diffusers 0.17.1): its PnP editors")
    ap.add_argument("--pix2pix-zero-python", type=Path,
                    help="PnPInversion's pix2pix-zero environment (diffusers 0.14): its pix2pix-zero editors")
    ap.add_argument("--infedit-repo", type=Path)
    ap.add_argument("--infedit-python", type=Path, help="InfEdit's environment (diffusers 0.24)")
    ap.add_argument("--renoise-repo", type=Path)
    ap.add_argument("--renoise-python", type=Path, help="ReNoise's environment (diffusers 0.24)")
    ap.add_argument("--turboedit-repo", type=Path)
    ap.add_argument("--turboedit-python", type=Path, help="TurboEdit's environment (diffusers 0.27.2)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("reports/perf/conformance-timing.md"))
    ap.add_argument("--only", help=f"a comma list of {', '.join(PARTS)}: time only these and keep the "
                                   "report's other rows (default: all the given repositories allow)")
    args = ap.parse_args()
    only = set(args.only.split(",")) if args.only else set(PARTS)
    if only - set(PARTS):
        ap.error(f"--only: unknown {', '.join(sorted(only - set(PARTS)))} (use {', '.join(PARTS)})")
    torch.set_num_threads(2)
    rows = []
    with tempfile.TemporaryDirectory() as work:
        if "icd" in only:
            rows.append(icd_side_by_side(args.icd_repo, args.repeats, Path(work)))
        if "nti" in only:
            rows.append(nti_side_by_side(args.pnp_repo, args.repeats))
    if args.pnp_python and "pie-p2p" in only:
        with tempfile.TemporaryDirectory() as work:
            rows += pie_p2p_side_by_side(args.pnp_repo, args.pnp_python, args.repeats, Path(work))
    if args.pnp_python and "pie-baselines" in only:
        with tempfile.TemporaryDirectory() as work:
            rows += pie_p2p_side_by_side(args.pnp_repo, args.pnp_python, args.repeats, Path(work),
                                         baselines=True)
    if args.masactrl_python and "masactrl" in only:
        with tempfile.TemporaryDirectory() as work:
            rows.append(masactrl_side_by_side(args.pnp_repo, args.masactrl_python, args.repeats, Path(work)))
    if args.pnp_editor_python and "pnp" in only:
        with tempfile.TemporaryDirectory() as work:
            rows += pnp_side_by_side(args.pnp_repo, args.pnp_editor_python, args.repeats, Path(work))
    if args.pix2pix_zero_python and "pix2pix-zero" in only:
        with tempfile.TemporaryDirectory() as work:
            rows += pix2pix_zero_side_by_side(args.pnp_repo, args.pix2pix_zero_python, args.repeats,
                                              Path(work))
    if args.pnp_python and "ef" in only:
        with tempfile.TemporaryDirectory() as work:
            rows.append(ef_side_by_side(args.pnp_repo, args.pnp_python, args.repeats, Path(work)))
    if args.infedit_repo and args.infedit_python and "infedit" in only:
        with tempfile.TemporaryDirectory() as work:
            rows.append(infedit_side_by_side(args.infedit_repo, args.infedit_python,
                                             args.repeats, Path(work)))
    if args.renoise_repo and args.renoise_python and "renoise" in only:
        with tempfile.TemporaryDirectory() as work:
            rows.append(renoise_side_by_side(args.renoise_repo, args.renoise_python,
                                             args.repeats, Path(work)))
    if args.turboedit_repo and args.turboedit_python and "turboedit" in only:
        with tempfile.TemporaryDirectory() as work:
            rows += turboedit_side_by_side(args.turboedit_repo, args.turboedit_python, args.repeats,
                                           Path(work))
    import diffusers

    command = (f"python tools/conformance/time_side_by_side.py --icd-repo {args.icd_repo.name} --pnp-repo "
               f"{args.pnp_repo.name}")
    if args.pnp_python:
        command += " --pnp-python PNP_VENV/bin/python"
    if args.masactrl_python:
        command += " --masactrl-python MASACTRL_VENV/bin/python"
    if args.pnp_editor_python:
        command += " --pnp-editor-python PNP_EDITOR_VENV/bin/python"
    if args.pix2pix_zero_python:
        command += " --pix2pix-zero-python PIX2PIX_ZERO_VENV/bin/python"
    if args.infedit_repo and args.infedit_python:
        command += f" --infedit-repo {args.infedit_repo.name} --infedit-python INFEDIT_VENV/bin/python"
    if args.turboedit_repo and args.turboedit_python:
        command += (f" --turboedit-repo {args.turboedit_repo.name} "
                    "--turboedit-python TURBOEDIT_VENV/bin/python")
    if args.renoise_repo and args.renoise_python:
        command += f" --renoise-repo {args.renoise_repo.name} --renoise-python INFEDIT_VENV/bin/python"
    lines = ["# The official implementations and the project, side by side", "",
             f"`{command} --repeats {args.repeats}` (each repository's checkout; the venvs of "
             f"tools/conformance/README.md) — the project: torch {torch.__version__}, "
             f"diffusers {diffusers.__version__}; {torch.get_num_threads()} CPU threads, fp32, median of "
             f"{args.repeats} after a warm-up. The models are the conformance goldens' small random weights "
             "(iCD, NTI: tiny SD1.5-shaped at 32×32 px; the P2P editors and InfEdit: SD1.5's UNet layout at "
             "small width, 64² and 40² latents), so the times measure each side's work around small UNet "
             "calls, not an SD1.5-size edit. The rows marked with a diffusers release ran the reference in "
             "its own environment (torch 2.13.0 CPU, that diffusers release), the others in the project's."
             + (f" The rows of {args.only} were last remade with `--only {args.only}`, the others kept "
                "from the previous run." if args.only else ""), "",
             "| method | reference | reference s / edit | project s / edit | reference ÷ project | "
             "UNet rows (reference / project) |",
             "|---|---|---:|---:|---:|---|"]
    table = kept_rows(args.out) if args.only else {}
    for r in rows:
        table[r["method"]] = (f"| {r['method']} | {r['reference']} | {r['ref_seconds']:.3f} | "
                              f"{r['ours_seconds']:.3f} | {r['ref_seconds'] / r['ours_seconds']:.2f}× | "
                              f"{r['ref_unet_rows']:.0f} / {r['ours_unet_rows']:.0f} |")
    lines += list(table.values())
    lines += ["", "UNet rows: every row of every UNet call (the reference's iCD runs its CFG batch of "
              "[uncond, cond] rows and keeps the conditional half; the project runs only the rows it uses; "
              "PnPInversion's Direct Inversion walks its source branch once more to store its offsets, "
              "and again for the reconstruction, where the project puts the source rows on the trajectory "
              "inside the edit)."]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
