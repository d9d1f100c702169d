"""Make the conformance goldens of ``tests/conformance`` from the official code.

    python tools/conformance/make_goldens.py --icd-repo PATH/invertible-cd --pnp-repo PATH/PnPInversion \
        --benchmarks ../shared/benchmarks --out tests/conformance/goldens

(``--icd-commit`` / ``--pnp-commit`` name the commits when the paths are exported trees, not clones.)

Nothing of the references is copied: they are imported from the paths given, and only their outputs
are written, with the repositories' commits and the package versions.

- **iCD** (yandex-research/invertible-cd): ``running/sd1.5/edit.py``'s ``main`` runs over each
  published editing list with the arguments of ``launch_editing_iCD_sd1.5.sh``; its model loading,
  inversion, sampling and metrics are replaced by stand-ins, so each pair's call of
  ``utils.p2p.make_controller`` (which controller, blend words, amplified words) and the controller it
  builds are what the script really computes. ``nltk``'s English stop words are not downloadable
  here: the stand-in module answers with ``--stopwords`` (default: the project's copy of the list).
- **PIE-Bench** (cure-lab/PnPInversion): ``models.p2p.attention_control.make_controller`` with the
  arguments ``run_editing_p2p.py`` passes for every image (refine, cross 0.4, self 0.6, the blend
  words, the target blend word ×2), over the prompts of the PIE-Bench lists.
- **DDIM, NTI, NPI** (PnPInversion): ``NullInversion``'s DDIM inversion, null-text optimisation and
  CFG decoding step on an analytic noise predictor (golden_inputs.AnalyticUNet) with a tiny text
  encoder, 10 steps on PnPInversion's own scheduler grid.
- **iCD end to end** (invertible-cd): the release's weight import, encoding and the P2P edit (replace
  and refine) on tiny weights in the release's formats (golden_inputs.icd_weights).
- **PIE-Bench's P2P editors end to end** (PnPInversion, with ``--pnp-python``: a Python with its own
  environment, diffusers 0.10): ``P2PEditor``'s DDIM + P2P (refine, replace), NPI + P2P and NTI + P2P
  with ``run_editing_p2p.py``'s arguments on golden_inputs.pnp_components, run there by
  ``pnp_p2p_reference.py``.
- **EF-DDPM** (PnPInversion's ``edit_friendly_ddm``): inversion, reconstruction and a prompt-switch
  edit on the analytic noise predictor.
- **iCD training targets**: the official trainer's reverse and forward consistency losses on
  guidance-embedded analytic predictors.
- **ReNoise** (garibida/ReNoise-Inversion, with ``--renoise-repo``): its noise regularisation on given
  tensors with its released strengths.
- **InfEdit** (sled-group/InfEdit, with ``--infedit-repo``): its DDCM sampler step by step on the LCM
  grid of its PIE-Bench run; with ``--infedit-python`` (a Python with its environment, diffusers 0.24)
  also its PIE-Bench editing end to end (``run_pie_bench.inference``: DDCM + unified attention control)
  on golden_inputs.uac_components, run there by ``infedit_uac_reference.py``.
- **PIE-Bench's pixel metrics**: ``evaluation/evaluate.py``'s ``calculate_metric`` (PSNR, MSE, SSIM;
  whole, unedited and edited part) with its run-length ``mask_decode``.
- **Controllers on given tensors**: for three pairs (iCD replace, iCD refine, PIE-Bench refine) the
  reference controller edits attention probabilities of fixed random q, k, v (tests/conformance/
  golden_inputs.py) layer by layer and step by step, and blends fixed latents after each step; each
  layer's output (probs @ v, all four CFG rows) is stored as a fixed random projection.

The tokenizer is Stable Diffusion's CLIP BPE tokenizer built offline from open_clip's vocabulary
(`icd_bench.toy.tokenizer.build_clip_tokenizer`).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.machinery
import importlib.util
import json
import platform
import shlex
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve()
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT / "tests" / "conformance"))
import golden_inputs as gi  # noqa: E402

ICD_ARGS = [  # running/sd1.5/launch_editing_iCD_sd1.5.sh (cross 0.3, self 0.6)
    "--model_id_DM", "unused", "--num_reverse_cons_steps", "4",
    "--reverse_timesteps", "259", "519", "779", "999",
    "--num_forward_cons_steps", "4", "--forward_timesteps", "19", "259", "519", "779",
    "--guidance_scale", "19", "--dynamic_guidance", "True", "--tau1", "0.8", "--tau2", "0.8",
    "--cross_replace_steps", "0.3", "--self_replace_steps", "0.6", "--amplify_factor", "4",
    "--max_forward_timestep_idx", "49", "--start_timestep", "19", "--nti_guidance_scale", "8.0",
    "--use_npi", "False", "--use_nti", "False", "--use_cons_inversion", "True", "--use_cons_editing", "True",
    "--lora_rank", "64", "--w_embed_dim", "512", "--num_ddim_steps", "50",
    "--device", "cpu", "--dtype", "fp32",
    "--is_replacement", "False", "--seed", "30",
]
LISTS = ("editing_coco.csv", "editing_pie_bench_140.csv", "editing_pie_bench_all.csv")


def commit(repo: Path, given: str | None) -> str:
    if given:
        return given
    try:
        return subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def invocation(script: str = "tools/conformance/make_goldens.py") -> str:
    """The command that is making the goldens, with its arguments as given."""
    return shlex.join(["python", script, *sys.argv[1:]])


def environment(*packages: str) -> dict:
    """Python's version and each package's, of the environment the goldens are made in."""
    from importlib.metadata import version

    return {"python": platform.python_version(), **{p: version(p) for p in packages}}


def provenance(references: dict, what: str, command: str | None = None, **extra) -> dict:
    """One golden's provenance: exactly the references that made it (repository, commit), what of
    theirs ran, the environment and the full command — nothing of another golden's."""
    return {**references, "what": what, **extra,
            "environment": environment("torch", "diffusers", "transformers", "numpy"),
            "command": command or invocation()}


def clip_tokenizer():
    from transformers import CLIPTokenizer

    from icd_bench.toy.tokenizer import build_clip_tokenizer

    d = tempfile.mkdtemp(prefix="clip-tokenizer-")
    return CLIPTokenizer.from_pretrained(build_clip_tokenizer(d), model_max_length=77)


def module(name: str, **attrs) -> types.ModuleType:
    m = types.ModuleType(name)
    m.__spec__ = importlib.machinery.ModuleSpec(name, None)
    m.__dict__.update(attrs)
    sys.modules[name] = m
    return m


def forget(*prefixes: str) -> None:
    for name in list(sys.modules):
        if name.split(".")[0] in prefixes:
            del sys.modules[name]


def as_list(t) -> list:
    return np.asarray(t.detach().cpu() if torch.is_tensor(t) else t).tolist()


def describe(controller, tokenizer_len: int = 77) -> dict:
    """The reference controller's alignment and weights, as plain lists."""
    base = getattr(controller, "prev_controller", None) or controller
    out = {"controller": type(base).__name__}
    if hasattr(base, "alphas"):  # AttentionRefine
        out["mapper"] = as_list(base.mapper[0])
        out["alphas"] = as_list(base.alphas.reshape(-1))
    else:  # AttentionReplace
        m = base.mapper[0]
        nz = torch.nonzero(m)
        out["replace"] = [[int(i), int(j), float(m[i, j])] for i, j in nz]
    if hasattr(controller, "equalizer"):
        eq = controller.equalizer.reshape(-1)
        out["equalizer"] = {str(i): float(eq[i]) for i in range(len(eq)) if eq[i] != 1}
    lb = controller.local_blend
    if lb is not None:
        a = lb.alpha_layers.reshape(lb.alpha_layers.shape[0], -1)
        out["blend_tokens"] = [torch.nonzero(row).flatten().tolist() for row in a]
        out["blend_start"] = int(lb.start_blend)
    alpha = controller.cross_replace_alpha.reshape(controller.cross_replace_alpha.shape[0], -1)
    out["cross_steps"] = int((alpha[:, 0] > 0).sum())  # steps whose cross-attention is injected
    out["self_steps"] = list(controller.num_self_replace)
    return out


# -- iCD: edit.py's main with stand-ins ----------------------------------------------------------------
def run_icd_edit(repo: Path, csv: Path, tokenizer, stopwords: list[str], captured: list) -> None:
    import diffusers  # noqa: F401  (before the stand-ins: diffusers probes for nltk at import)
    from diffusers import StableDiffusionPipeline  # noqa: F401

    forget("utils", "nltk", "IPython")
    sys.path.insert(0, str(repo))
    try:
        module("nltk")
        module("nltk.corpus", stopwords=types.SimpleNamespace(words=lambda lang: list(stopwords)))
        module("IPython")
        module("IPython.display", display=lambda *a, **k: None)
        zeros = lambda a, b, **k: [0.0] * len(a)  # noqa: E731
        module("utils.metrics", calc_clip_score_images_images=zeros, calc_dinov2_images_images=zeros,
               calc_clip_score_images_prompts=zeros, calc_ir=lambda a, b, **k: 0.0)
        module("utils.inversion", invert=lambda **k: ((np.zeros((8, 8, 3), np.uint8), None), None, None))
        p2p = importlib.import_module("utils.p2p")
        generation = importlib.import_module("utils.generation")
        loading = importlib.import_module("utils.loading")
        import utils  # the real package, for edit.py's `from utils import ...`

        utils.metrics, utils.inversion = sys.modules["utils.metrics"], sys.modules["utils.inversion"]
        real_make = p2p.make_controller

        def make_controller(prompts, is_replace_controller, cross_replace_steps, self_replace_steps,
                            blend_words=None, equilizer_params=None):
            c = real_make(prompts, is_replace_controller, cross_replace_steps, self_replace_steps,
                          blend_words, equilizer_params)
            captured.append({"prompts": list(prompts), "is_replace": bool(is_replace_controller),
                             "cross_replace_steps": cross_replace_steps,
                             "self_replace_steps": self_replace_steps,
                             "blend_words": blend_words, "eq_params": equilizer_params,
                             "num_steps": p2p.NUM_DDIM_STEPS, **describe(c)})
            return c

        p2p.make_controller = make_controller
        generation.Generator = lambda **k: None
        generation.runner = lambda **k: (np.zeros((2, 8, 8, 3), np.uint8), None)
        loading.load_models = lambda **k: (types.SimpleNamespace(tokenizer=tokenizer), None, None)
        spec = importlib.util.spec_from_file_location("icd_edit", repo / "running" / "sd1.5" / "edit.py")
        edit = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(edit)
        edit.DDPMScheduler = types.SimpleNamespace(from_pretrained=lambda *a, **k: None)
        edit.load_models = loading.load_models
        with tempfile.TemporaryDirectory() as out:
            sys.argv = ["edit.py", *ICD_ARGS, "--path_to_prompts", str(csv), "--path_to_images", out,
                        "--saving_dir", out]
            edit.main(edit.parse_args())
        p2p.tokenizer = tokenizer
    finally:
        sys.path.remove(str(repo))


# -- PIE-Bench: PnPInversion's make_controller -------------------------------------------------------
def pnp_module(repo: Path):
    forget("utils", "models")
    sys.path.insert(0, str(repo))
    return importlib.import_module("models.p2p.attention_control")


@contextlib.contextmanager
def cuda_is_cpu():
    """PnPInversion's make_controller does not pass its ``device`` on to the controllers it builds
    (their default is "cuda"): on a machine without one, ``Tensor.to("cuda")`` lands on the CPU."""
    real = torch.Tensor.to

    def to(self, *args, **kwargs):
        args = tuple("cpu" if isinstance(a, str) and a.startswith("cuda") else a for a in args)
        if isinstance(kwargs.get("device"), str) and kwargs["device"].startswith("cuda"):
            kwargs["device"] = "cpu"
        return real(self, *args, **kwargs)

    torch.Tensor.to = to
    try:
        yield
    finally:
        torch.Tensor.to = real


def pnp_controller(ac, tokenizer, source: str, target: str, blend: list[str], num_steps: int = 50):
    """run_editing_p2p.py's call for one image: blend words split from "src tgt", eq on the target's."""
    pipeline = types.SimpleNamespace(tokenizer=tokenizer)
    with cuda_is_cpu():
        return ac.make_controller(pipeline=pipeline, prompts=[source, target], is_replace_controller=False,
                                  cross_replace_steps={"default_": 0.4}, self_replace_steps=0.6,
                                  blend_words=((blend[0],), (blend[1],)) if len(blend) else None,
                                  equilizer_params=({"words": (blend[1],), "values": (2,)}
                                                    if len(blend) else None),
                                  num_ddim_steps=num_steps, device="cpu")


# -- controllers on given tensors --------------------------------------------------------------------
def drive(controller, case: int, num_steps: int) -> dict:
    """The reference controller on golden_inputs' attention calls; per step the projected outputs
    of every layer and the latents after its step callback."""
    controller.num_att_layers = len(gi.LAYERS)
    outs, blended = [], []
    for step in range(num_steps):
        for layer, (place, cross, _) in enumerate(gi.LAYERS):
            q, k, v = gi.attention_inputs(case, step, layer)
            r, h, n, d = q.shape
            qb, kb, vb = (t.reshape(r * h, -1, d) for t in (q, k, v))
            probs = torch.softmax(qb @ kb.transpose(1, 2) * d**-0.5, dim=-1)
            probs = controller(probs, cross, place)
            outs.append(rounded(gi.project((probs @ vb).reshape(r, h, n, d))))
        blended.append(rounded(controller.step_callback(gi.latents(case, step))))
    return {"outputs": outs, "latents": blended}


def rounded(t: torch.Tensor, digits: int = 9) -> list:
    """Nine significant digits by default: far below the float32 tests' tolerances, half the file."""
    return np.vectorize(lambda v: float(f"{v:.{digits}g}"))(t.detach().double().numpy()).tolist()


def ddim_goldens(scheduler_cls) -> dict:
    """PnPInversion's NullInversion (DDIM inversion, null-text optimisation) and its decoding step with
    given unconditional embeddings (NTI: the optimised ones; NPI: the source prompt's) on
    golden_inputs' analytic noise predictor, 10 steps at CFG 7.5 on its scheduler's grid, in float64."""
    from models.p2p.inversion import NullInversion

    tok, te = gi.text_components()
    scheduler = scheduler_cls(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False)  # as models/p2p_editor.py builds it
    scheduler.set_timesteps(gi.DDIM_STEPS)
    model = types.SimpleNamespace(unet=gi.AnalyticUNet().double(), tokenizer=tok, text_encoder=te,
                                  scheduler=scheduler, device="cpu")
    inv = NullInversion(model=model, num_ddim_steps=gi.DDIM_STEPS)
    inv.init_prompt(gi.DDIM_PROMPT)
    x0 = gi.ddim_image() * 2 - 1
    trajectory = inv.ddim_loop(x0)
    nulls = inv.null_optimization(trajectory, num_inner_steps=10, epsilon=1e-5, guidance_scale=gi.DDIM_CFG)
    cond = inv.context.chunk(2)[1]

    def decode(unconds):  # p2p_guidance_forward's loop without a controller: CFG, DDIM prev_step
        x = trajectory[-1]
        with torch.no_grad():
            for i, t in enumerate(scheduler.timesteps):
                x = inv.get_noise_pred(x, t, gi.DDIM_CFG, False, torch.cat([unconds[i], cond]))
        return x

    full = 17  # float64 goldens at full precision
    return {"timesteps": [int(t) for t in scheduler.timesteps],
            "trajectory": [rounded(x, full) for x in trajectory],
            "null_embeds": [rounded(u, full) for u in nulls],
            "nti_reconstruction": rounded(decode(nulls), full),
            "npi_reconstruction": rounded(decode([cond] * gi.DDIM_STEPS), full)}


def official_icd(repo: Path, work: Path) -> types.SimpleNamespace:
    """The official iCD SD1.5 path on tiny weights (golden_inputs.icd_weights): ``utils.loading.load_models``
    (the release's weight import) and ``utils.generation.Generator`` with the launch script's boundaries
    (259/519/779/999 and 19/259/519/779). Leaves the repository on ``sys.path`` (its ``utils``)."""
    forget("utils", "models")
    sys.path.insert(0, str(repo))
    module("IPython")
    module("IPython.display", display=lambda *a, **k: None)
    p2p = importlib.import_module("utils.p2p")
    generation = importlib.import_module("utils.generation")
    loading = importlib.import_module("utils.loading")
    from diffusers import DDPMScheduler

    from icd_bench.icd.model import FORWARD, REVERSE

    w = gi.icd_weights(work)
    ldm, reverse, forward = loading.load_models(
        model_id=str(w["pipeline"]), device="cpu", reverse_checkpoint=str(w[REVERSE]),
        forward_checkpoint=str(w[FORWARD]), r=gi.LORA_RANK, w_embed_dim=512,
        teacher_checkpoint=str(w["teacher"]), dtype="fp32")
    noise_scheduler = DDPMScheduler.from_pretrained(str(w["pipeline"]), subfolder="scheduler")
    solver = generation.Generator(model=ldm, noise_scheduler=noise_scheduler, n_steps=50,
                                  forward_cons_model=forward, reverse_cons_model=reverse, num_endpoints=4,
                                  num_forward_endpoints=4, max_forward_timestep_index=49,
                                  reverse_timesteps=[259, 519, 779, 999],
                                  forward_timesteps=[19, 259, 519, 779], start_timestep=19)
    p2p.tokenizer, p2p.device = ldm.tokenizer, "cpu"
    return types.SimpleNamespace(p2p=p2p, generation=generation, solver=solver, reverse=reverse, weights=w)


@torch.no_grad()
def official_icd_encode(ref, image) -> torch.Tensor:
    ref.solver.init_prompt([gi.ICD_SOURCE], None)
    _, (latent,) = ref.solver.cons_inversion(image, guidance_scale=0.0, w_embed_dim=512, seed=gi.ICD_SEED)
    return latent


@torch.no_grad()
def official_icd_edit(ref, latent, target: str):
    """edit.py's controller for the pair (replace for equal word counts, amplify 4 on the target words not
    in the source) and what ``generation.runner`` then calls, without its fixed 512-px latent shape:
    guidance 19 as the embedding's code, τ 0.8, cross 0.3, self 0.6, no local blend (see icd_goldens)."""
    prompts = [gi.ICD_SOURCE, target]
    ref.p2p.NUM_DDIM_STEPS = 4  # edit.py: the reverse model's step count
    is_replace = len(prompts[0].split(" ")) == len(prompts[1].split(" "))
    words = [x for x in target.split(" ") if x not in gi.ICD_SOURCE.split(" ")]
    controller = ref.p2p.make_controller(prompts, is_replace, {"default_": 0.3}, 0.6, None,
                                         {"words": tuple(words), "values": (4.0,) * len(words)})
    ref.p2p.register_attention_control(ref.reverse, controller)
    ref.solver.init_prompt(prompts, None)
    x = ref.solver.cons_generation(latent.expand(2, *latent.shape[1:]), guidance_scale=19.0, w_embed_dim=512,
                                   dynamic_guidance=True, tau1=0.8, tau2=0.8, controller=controller)[-1]
    return x, ref.generation.latent2image(ref.reverse.vae, x), controller, words


@torch.no_grad()
def official_icd_generate(ref, prompt: str, code: float, seed: int) -> torch.Tensor:
    """``running/sd1.5/generate.py``'s call for one prompt (its launch script: guidance 7.0 as the code,
    τ 1: no dynamic guidance, an AttentionStore controller) as ``generation.runner`` runs it: the start
    latent drawn by ``init_latent`` from the seeded generator, at the tiny latent size."""
    ref.p2p.NUM_DDIM_STEPS = 4
    controller = ref.p2p.AttentionStore()
    ref.p2p.register_attention_control(ref.reverse, controller)
    ref.solver.init_prompt([prompt], None)
    latent = torch.randn((1, 4, 16, 16), generator=torch.Generator().manual_seed(seed))
    return ref.solver.cons_generation(latent, guidance_scale=code, w_embed_dim=512, dynamic_guidance=False,
                                      tau1=1.0, tau2=1.0, controller=controller)[-1]


def icd_goldens(repo: Path, work: Path) -> dict:
    """iCD encode and P2P edits (replace, refine) by the official code on tiny weights. Local blend is
    left out here: the official LocalBlend reads 16×16 maps from fixed layer slots of SD1.5 at 512 px
    (its own golden covers it on given tensors)."""
    try:
        ref = official_icd(repo, work)
        latent = official_icd_encode(ref, gi.icd_image())
        out = {"encoded": rounded(latent)}
        for label, target in (("replace", gi.ICD_TARGET), ("refine", gi.ICD_REFINE_TARGET)):
            x, image, controller, words = official_icd_edit(ref, latent, target)
            out[label] = {"prompts": [gi.ICD_SOURCE, target],
                          "controller": type(controller.prev_controller).__name__,
                          "amplified": words, "latents": rounded(x), "image": image.tolist()}
        out["generate"] = {"prompt": gi.ICD_TARGET, "code": 7.0, "seed": gi.ICD_SEED,
                           "latents": rounded(official_icd_generate(ref, gi.ICD_TARGET, 7.0, gi.ICD_SEED))}
        return out
    finally:
        sys.path.remove(str(repo))


@contextlib.contextmanager
def random_lpips_trunk():
    """torchvision's pretrained-weight lookup answers with golden_inputs.lpips_trunk (no download)."""
    from torchvision.models._api import WeightsEnum

    real = WeightsEnum.get_state_dict
    WeightsEnum.get_state_dict = lambda self, *a, **k: gi.lpips_trunk()
    try:
        yield
    finally:
        WeightsEnum.get_state_dict = real


def pie_metric_goldens(repo: Path) -> dict:
    """PIE-Bench's ``evaluation/evaluate.py`` (``mask_decode``, ``calculate_metric``) with its
    ``MetricsCalculator``'s PSNR, MSE, SSIM and LPIPS, whole, unedited part and edited part, on
    golden_inputs.pie_metric_cases. Its ``__init__`` also builds CLIP and DINO from hubs; the driver
    gives it only these four, built as that ``__init__`` builds them — LPIPS (torchmetrics, SqueezeNet)
    on golden_inputs.lpips_trunk in place of ImageNet's trunk, which torchvision would download."""
    from PIL import Image
    from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure
    from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity
    from torchmetrics.regression import MeanSquaredError

    forget("utils", "models", "evaluation")
    sys.path.insert(0, str(repo))
    try:
        evaluate = importlib.import_module("evaluation.evaluate")
        calc = evaluate.MetricsCalculator.__new__(evaluate.MetricsCalculator)
        calc.device = "cpu"
        calc.psnr_metric_calculator = PeakSignalNoiseRatio(data_range=1.0)
        calc.mse_metric_calculator = MeanSquaredError()
        calc.ssim_metric_calculator = StructuralSimilarityIndexMeasure(data_range=1.0)
        out = []
        for case in gi.pie_metric_cases():
            mask = evaluate.mask_decode(case["runs"], [gi.PIE_SIDE, gi.PIE_SIDE])
            mask3 = mask[:, :, np.newaxis].repeat([3], axis=2)
            src, tgt = Image.fromarray(case["source"]), Image.fromarray(case["edited"])
            values = {}
            for metric in gi.PIE_METRICS:
                for suffix in ("", "_unedit_part", "_edit_part"):
                    v = evaluate.calculate_metric(calc, metric + suffix, src, tgt, mask3, mask3, "", "")
                    values[metric + suffix] = float(v)
            lpips = {}
            with random_lpips_trunk():
                calc.lpips_metric_calculator = LearnedPerceptualImagePatchSimilarity(net_type="squeeze")
                for suffix in ("", "_unedit_part", "_edit_part"):
                    lpips["lpips" + suffix] = float(evaluate.calculate_metric(calc, "lpips" + suffix, src,
                                                                               tgt, mask3, mask3, "", ""))
            out.append({"mask": mask.astype(int).tolist(), "values": values, "lpips": lpips})
        return {"cases": out}
    finally:
        sys.path.remove(str(repo))


def ef_goldens(repo: Path) -> dict:
    """PnPInversion's edit-friendly DDPM (``models/edit_friendly_ddm/inversion_utils.py``:
    ``inversion_forward_process``, then ``inversion_reverse_process`` with the source prompt and scale
    (reconstruction) and with a target prompt (a prompt-switch edit)) on the analytic noise predictor in
    float64, 10 steps, η 1, skip 3, CFG 3.5 / 7.5, SD's scheduler config (its EF script's)."""
    from diffusers import DDIMScheduler

    from icd_bench.backbones.loaders import SD_SCHEDULER_CONFIG

    forget("utils", "models")
    sys.path.insert(0, str(repo))
    try:
        ef = importlib.import_module("models.edit_friendly_ddm.inversion_utils")
        tok, te = gi.text_components()
        scheduler = DDIMScheduler(**SD_SCHEDULER_CONFIG)
        scheduler.set_timesteps(gi.EF_STEPS)
        model = types.SimpleNamespace(unet=gi.AnalyticUNet().double(), tokenizer=tok, text_encoder=te,
                                      scheduler=scheduler, device="cpu")
        x0 = gi.ddim_image() * 2 - 1
        torch.manual_seed(gi.EF_SEED)
        torch.set_default_dtype(torch.float64)  # its xts / zs buffers are made with the default dtype
        _, zs, wts = ef.inversion_forward_process(model, x0, etas=1, prompt=gi.DDIM_PROMPT,
                                                  cfg_scale=gi.EF_SOURCE_CFG, num_inference_steps=gi.EF_STEPS)
        n, skip, full = gi.EF_STEPS, gi.EF_SKIP, 17
        rec, _ = ef.inversion_reverse_process(model, xT=wts[n - skip], etas=1, prompts=[gi.DDIM_PROMPT],
                                              cfg_scales=[gi.EF_SOURCE_CFG], zs=zs[:(n - skip)])
        edit, _ = ef.inversion_reverse_process(model, xT=wts[n - skip], etas=1, prompts=[gi.EF_TARGET],
                                               cfg_scales=[gi.EF_TARGET_CFG], zs=zs[:(n - skip)])
        torch.set_default_dtype(torch.float32)
        return {"timesteps": [int(t) for t in scheduler.timesteps], "zs": rounded(zs, full),
                "xts": rounded(wts, full), "reconstruction": rounded(rec, full), "edit": rounded(edit, full)}
    finally:
        torch.set_default_dtype(torch.float32)
        sys.path.remove(str(repo))


def training_goldens(repo: Path) -> dict:
    """The official trainer's consistency losses (``training/src/train.py``: ``reverse_train_step``,
    ``forward_train_step``; pseudo-Huber c = 0.001, as its launch script — its l2 branch names an
    undefined ``F``) with ``src.lcm.DDIMSolver`` over SD's schedule, the 4-step boundaries, guidance-
    embedded analytic predictors (student seed 11, teacher seed 12) and discrete w codes; the indices it
    draws come from ``torch.manual_seed``. Optimiser and accelerator are stand-ins that do nothing: only
    the returned loss is recorded."""
    from diffusers import DDPMScheduler

    from icd_bench.backbones.loaders import SD_SCHEDULER_CONFIG

    forget("src")
    sys.path.insert(0, str(repo / "training"))
    try:
        train = importlib.import_module("src.train")
        lcm = importlib.import_module("src.lcm")
        noise_scheduler = DDPMScheduler(**{k: v for k, v in SD_SCHEDULER_CONFIG.items()
                                           if k != "set_alpha_to_one"})
        solver = lcm.DDIMSolver(noise_scheduler.alphas_cumprod.numpy(), timesteps=1000, ddim_timesteps=50,
                                num_endpoints=4, num_forward_endpoints=4, endpoints="0,259,519,779",
                                forward_endpoints="259,519,779,999")
        args = types.SimpleNamespace(num_ddim_timesteps=50, embed_guidance=True, loss_type="huber",
                                     huber_c=0.001, max_grad_norm=1.0)
        nothing = types.SimpleNamespace(backward=lambda loss: None, sync_gradients=False, step=lambda: None,
                                        zero_grad=lambda **k: None)
        tok, te = gi.text_components()
        with torch.no_grad():
            cond = te.float()(tok([gi.DDIM_PROMPT] * gi.TRAIN_BATCH, padding="max_length", max_length=77,
                                  return_tensors="pt").input_ids)[0]
        student, teacher = (gi.AnalyticUNet(seed=11, guidance_dim=512),
                            gi.AnalyticUNet(seed=12, guidance_dim=512))
        x0, noise = gi.train_inputs()
        w = torch.tensor(gi.TRAIN_CODES).reshape(-1, 1, 1, 1)
        out = {}
        for name, step in (("reverse_cd", train.reverse_train_step),
                           ("forward_cd", train.forward_train_step)):
            seed = gi.TRAIN_SEEDS[name]
            torch.manual_seed(seed)
            loss = step(args, nothing, x0, noise, cond, None, {}, student, teacher, solver,
                        w if name == "reverse_cd" else torch.zeros_like(w), noise_scheduler, nothing, nothing,
                        torch.float32, device="cpu")
            out[name] = {"seed": seed, "loss": float(loss)}
        return out
    finally:
        sys.path.remove(str(repo / "training"))


def renoise_goldens(repo: Path) -> dict:
    """ReNoise's ``noise_regularization`` (``src/renoise_inversion.py``) with its released strengths
    (λ_KL 0.065, λ_ac 20, 4 steps, 5 rolls; ``src/config.py``) and a seeded generator for its random
    rolls, on golden_inputs.renoise_inputs."""
    forget("src")
    sys.path.insert(0, str(repo))
    try:
        rn = importlib.import_module("src.renoise_inversion")
        eps, reference = gi.renoise_inputs()
        out = rn.noise_regularization(eps, reference, lambda_kl=0.065, lambda_ac=20.0, num_reg_steps=4,
                                      num_ac_rolls=5,
                                      generator=torch.Generator().manual_seed(gi.RENOISE_SEED))
        only_ac = rn.noise_regularization(eps, reference, lambda_kl=0.0, lambda_ac=20.0, num_reg_steps=4,
                                          num_ac_rolls=5,
                                          generator=torch.Generator().manual_seed(gi.RENOISE_SEED))
        return {"regularised": rounded(out), "ac_only": rounded(only_ac)}
    finally:
        sys.path.remove(str(repo))


def ddcm_goldens(repo: Path) -> dict:
    """InfEdit's ``ddcm_sampler`` (``pipeline_ead.py``) step by step over the LCM grid of its PIE-Bench run
    (``run_pie_bench.py``: LCMScheduler, 12 steps, eta 1) on golden_inputs.ddcm_inputs."""
    from diffusers import LCMScheduler

    from icd_bench.backbones.loaders import SD_SCHEDULER_CONFIG

    forget("pipeline_ead")
    sys.path.insert(0, str(repo))
    try:
        ead = importlib.import_module("pipeline_ead")
        config = {k: v for k, v in SD_SCHEDULER_CONFIG.items() if k not in ("clip_sample",)}
        scheduler = LCMScheduler(**config)
        scheduler.set_timesteps(gi.DDCM_STEPS)
        steps = []
        for i, t in enumerate(scheduler.timesteps):
            x = gi.ddcm_inputs(i)
            prev_xs, prev_xt, pred_x0 = ead.ddcm_sampler(scheduler, x["x_s"], x["x_t"], t, x["e_s"], x["e_t"],
                                                         x["x_0"], noise=x["noise"], eta=1.0)
            steps.append({"t": int(t), "x_s": rounded(prev_xs), "x_t": rounded(prev_xt),
                          "pred_x0": rounded(pred_x0)})
        return {"timesteps": [int(t) for t in scheduler.timesteps], "steps": steps}
    finally:
        sys.path.remove(str(repo))


def save_components(components: dict, directory: Path) -> None:
    """Components in the diffusers layout; the tokenizer as its vocabulary files (which every transformers
    release reads), not as the current release saves it."""
    from icd_bench.toy.tokenizer import build_clip_tokenizer

    for name, part in components.items():
        if name == "tokenizer":
            build_clip_tokenizer(directory / name)
        else:
            part.save_pretrained(directory / name)


def prepare_uac(tokenizer, work: Path) -> Path:
    """``work`` for ``infedit_uac_reference.py``: golden_inputs.uac_components and the cases."""
    save_components(gi.uac_components(tokenizer), work / "pipeline")
    cases = [(s, t, b, gi.uac_latent(k)) for k, (s, t, b) in enumerate(gi.UAC_CASES)]
    torch.save({"cases": cases, "settings": gi.UAC_SETTINGS}, work / "cases.pt")
    return work


def prepare_pnp(work: Path) -> Path:
    """``work`` for ``pnp_p2p_reference.py``: golden_inputs.pnp_components and the cases."""
    save_components(gi.pnp_components(clip_tokenizer()), work / "pipeline")
    from icd_bench.backbones.loaders import SD_SCHEDULER_CONFIG

    cases = [{"method": m, "source": s, "target": t, "blend": list(b), "replace": r,
              "num_steps": gi.PNP_STEPS, "latent": gi.pnp_latent(k)}
             for k, (m, s, t, b, r) in enumerate(gi.PNP_CASES)]
    cases += [{"method": "edit-friendly-inversion+p2p", "source": s, "target": t,
               "num_steps": gi.PNP_EF_STEPS, "skip": gi.PNP_EF_SKIP,
               "latent": gi.pnp_latent(len(gi.PNP_CASES) + k)}
              for k, (s, t) in enumerate(gi.PNP_EF_CASES)]
    torch.save({"cases": cases, "scheduler": dict(SD_SCHEDULER_CONFIG)}, work / "cases.pt")
    return work


def golden_main(doc: str, make, out: Path, repo_help: str, python_help: str, what: str) -> None:
    """The command line of a single-reference golden maker: ``--repo`` (a clone or an exported tree),
    ``--python`` (the reference's environment), ``--commit`` (the commit of an exported tree), ``--out``;
    writes ``make(repo, python, commit)`` there and says how many ``what`` it holds."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--repo", type=Path, required=True, help=f"{repo_help} (a clone or an exported tree)")
    ap.add_argument("--python", type=Path, required=True, help=python_help)
    ap.add_argument("--commit", help="the commit of --repo when it is an exported tree")
    ap.add_argument("--out", type=Path, default=out)
    args = ap.parse_args()
    golden = make(args.repo, args.python, args.commit)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(golden))
    print(f"{len(golden['cases'])} {what} → {args.out} ({args.out.stat().st_size // 1024} KiB)")


def run_reference(script: str, repo: Path, python: Path, work: Path, repeats: int = 0,
                  time_cases: str = "0") -> dict:
    """Run a reference half (this folder's ``script``) under ``python`` on a prepared ``work``; its
    outputs (``repeats`` > 0: also the median seconds of the ``time_cases``)."""
    subprocess.run([str(python), str(HERE.parent / script), "--repo", str(repo), "--work", str(work),
                    "--repeats", str(repeats), "--time-cases", time_cases], check=True)
    return torch.load(work / "reference.pt")


def infedit_uac_goldens(repo: Path, python: Path, tokenizer, work: Path) -> dict:
    """InfEdit end to end (``run_pie_bench.inference`` with its ``main``'s arguments: DDCM and the unified
    attention control) on golden_inputs.uac_components, run by ``infedit_uac_reference.py`` under the
    reference's own environment (``python``): the per-step latents of its three branches (projected),
    its local-blend masks and the final x̂_0."""
    ref = run_reference("infedit_uac_reference.py", repo, python, prepare_uac(tokenizer, work))
    out = []
    for (source, target, blend), r in zip(gi.UAC_CASES, ref["results"], strict=True):
        steps = [{"t": st["t"],
                  **{k: rounded(gi.uac_project(st[k])) for k in ("x_s", "x_t", "x_m", "x_t_blended")},
                  "mask": (None if st["mask"] is None
                           else np.packbits(st["mask"].flatten().numpy()).tobytes().hex())}
                 for st in r["steps"]]
        out.append({"source": source, "target": target, "blend": blend, "timesteps": r["timesteps"],
                    "noises": [rounded(gi.uac_project(z)) for z in r["noises"]], "steps": steps,
                    "pred_x0": rounded(r["pred_x0"])})
    return {"cases": out, "reference_versions": ref["versions"]}


PIE_P2P_WHAT = ("models/p2p_editor.P2PEditor (ddim+p2p, negative-prompt-inversion+p2p, "
                "null-text-inversion+p2p) with run_editing_p2p.py's arguments and "
                "run_editing_edit_friendly_p2p.edit_image_EF with its main's, on "
                "golden_inputs.pnp_components, via tools/conformance/pnp_p2p_reference.py")


def pnp_p2p_goldens(repo: Path, python: Path, work: Path) -> dict:
    """PIE-Bench's P2P editors end to end (``P2PEditor`` with ``run_editing_p2p.py``'s arguments: DDIM +
    P2P refine and replace, NPI + P2P, NTI + P2P; and ``run_editing_edit_friendly_p2p.edit_image_EF``) on
    golden_inputs.pnp_components, run by ``pnp_p2p_reference.py`` under the reference's own environment
    (``python``, diffusers 0.10): the reconstruction's and the edit's target latents."""
    ref = run_reference("pnp_p2p_reference.py", repo, python, prepare_pnp(work))
    cases = torch.load(work / "cases.pt")["cases"]
    out, ef = [], []
    for c, r in zip(cases, ref["results"], strict=True):
        common = {k: c[k] for k in ("method", "source", "target", "num_steps")}
        if c["method"] == "edit-friendly-inversion+p2p":
            ef.append({**common, "skip": c["skip"],
                       **{k: rounded(r[k][0], 7) for k in ("edit", "reconstruction", "prompt_switch")}})
        else:
            out.append({**common, "blend": c["blend"], "replace": c["replace"],
                        "reconstruction": rounded(r["reconstruction"][0], 7),
                        "edit": rounded(r["edit"][1], 7)})
    return {"cases": out, "ef_cases": ef, "reference_versions": ref["versions"]}


def read_pairs(benchmarks: Path) -> list[tuple[str, str, str, str]]:
    import pandas as pd

    pairs, seen = [], set()
    for name in LISTS:
        for _, row in pd.read_csv(benchmarks / name).iterrows():
            key = (row["old_caption"], row["edited_caption"], str(row["blended_words"]))
            if key not in seen:
                seen.add(key)
                pairs.append((name, *key))
    return pairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--icd-repo", type=Path, required=True)
    ap.add_argument("--pnp-repo", type=Path, required=True)
    ap.add_argument("--benchmarks", type=Path, required=True,
                    help="the published lists (../shared/benchmarks)")
    ap.add_argument("--out", type=Path, default=ROOT / "tests" / "conformance" / "goldens")
    ap.add_argument("--icd-commit", help="the commit of --icd-repo when it is an exported tree, not a clone")
    ap.add_argument("--pnp-commit", help="the same for --pnp-repo")
    ap.add_argument("--renoise-repo", type=Path,
                    help="garibida/ReNoise-Inversion (its noise regularisation golden)")
    ap.add_argument("--renoise-commit", help="the commit of --renoise-repo when it is an exported tree")
    ap.add_argument("--infedit-repo", type=Path, help="sled-group/InfEdit (its DDCM sampler golden)")
    ap.add_argument("--infedit-commit", help="the commit of --infedit-repo when it is an exported tree")
    ap.add_argument("--pnp-python", type=Path,
                    help="a Python with PnPInversion's environment (diffusers 0.10): "
                         "its P2P editors' end-to-end golden")
    ap.add_argument("--infedit-python", type=Path,
                    help="a Python with InfEdit's environment (diffusers 0.24): its end-to-end golden")
    ap.add_argument("--renoise-python", type=Path,
                    help="a Python with ReNoise's environment (diffusers 0.24): its inversion loop's golden")
    ap.add_argument("--dino-repo", type=Path,
                    help="facebookresearch/dino (hubconf.py): PIE-Bench's structure distance and CLIP golden")
    ap.add_argument("--dino-commit", help="the commit of --dino-repo when it is an exported tree")
    ap.add_argument("--stopwords", type=Path, help="NLTK's English stop words, one per line")
    args = ap.parse_args()
    from icd_bench.words import STOPWORDS

    stopwords = (args.stopwords.read_text().split() if args.stopwords else sorted(STOPWORDS))
    tok = clip_tokenizer()
    torch.set_num_threads(2)

    icd = []
    for name in LISTS:
        captured: list = []
        run_icd_edit(args.icd_repo, args.benchmarks / name, tok, stopwords, captured)
        icd += [{"list": name, **c} for c in captured]
    p2p = sys.modules["utils.p2p"]
    p2p.device = "cpu"
    icd_cases = {}
    for label, want_replace in (("icd_replace", True), ("icd_refine", False)):
        c = next(c for c in icd if c["is_replace"] == want_replace and c["blend_words"]
                 and all(c["blend_tokens"]) and c.get("equalizer") and c["list"] != "editing_coco.csv")
        p2p.NUM_DDIM_STEPS = c["num_steps"]
        controller = p2p.make_controller(c["prompts"], c["is_replace"], c["cross_replace_steps"],
                                         c["self_replace_steps"], c["blend_words"], c["eq_params"])
        icd_cases[label] = {"prompts": c["prompts"], "blend_words": c["blend_words"],
                            "num_steps": c["num_steps"], "case": len(icd_cases),
                            **drive(controller, len(icd_cases), c["num_steps"])}
    windows = []  # the injection windows for other step counts and fractions
    for n in (4, 8, 10, 50):
        for f in (0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 1.0):
            p2p.NUM_DDIM_STEPS = n
            d = describe(p2p.make_controller(icd[0]["prompts"], False, {"default_": f}, f, None, None))
            windows.append({"num_steps": n, "fraction": f, "cross_steps": d["cross_steps"],
                            "self_steps": d["self_steps"]})
    # one record per distinct pair (the 140 list is a part of the 420 one); JSON-friendly arguments
    unique: dict = {}
    for c in icd:
        unique.setdefault((tuple(c["prompts"]), str(c["blend_words"])), c)
    icd = list(unique.values())
    for c in icd:
        c["blend_words"] = [list(w) for w in c["blend_words"]] if c["blend_words"] else None
        c["eq_params"] = {k: list(v) for k, v in c["eq_params"].items()} if c["eq_params"] else None

    ac = pnp_module(args.pnp_repo)
    pie = []
    for name, src, tgt, blend in read_pairs(args.benchmarks):
        if name == "editing_coco.csv":
            continue
        words = blend.split(" ") if blend not in ("", "nan") else []
        pie.append({"list": name, "prompts": [src, tgt], "blend_words": words,
                    **describe(pnp_controller(ac, tok, src, tgt, words))})
    ac.LATENT_SIZE = tuple(gi.LATENT[2:])  # the module's latent side (64 at 512 px) for the tensor case
    c = next(c for c in pie if c["blend_words"] and all(c["blend_tokens"]))
    steps = 10
    pie_case = {"prompts": c["prompts"], "blend_words": c["blend_words"], "num_steps": steps, "case": 2,
                **drive(pnp_controller(ac, tok, *c["prompts"], c["blend_words"], steps), 2, steps)}

    from models.p2p.scheduler_dev import DDIMSchedulerDev

    ddim = ddim_goldens(DDIMSchedulerDev)
    with tempfile.TemporaryDirectory() as work:
        icd_e2e = icd_goldens(args.icd_repo, Path(work))
    pie_metrics = pie_metric_goldens(args.pnp_repo)
    ef = ef_goldens(args.pnp_repo)
    training = training_goldens(args.icd_repo)
    renoise = renoise_goldens(args.renoise_repo) if args.renoise_repo else None
    ddcm = ddcm_goldens(args.infedit_repo) if args.infedit_repo else None
    pie_p2p = None
    if args.pnp_python:
        with tempfile.TemporaryDirectory() as work:
            pie_p2p = pnp_p2p_goldens(args.pnp_repo, args.pnp_python, Path(work))
    uac = None
    if args.infedit_repo and args.infedit_python:
        with tempfile.TemporaryDirectory() as work:
            uac = infedit_uac_goldens(args.infedit_repo, args.infedit_python, tok, Path(work))

    renoise_loop = None
    if args.renoise_repo and args.renoise_python:
        from renoise_loop import renoise_loop_goldens

        renoise_loop = renoise_loop_goldens(args.renoise_repo, args.renoise_python, args.renoise_commit)
    model_metrics = None
    if args.dino_repo:
        from pie_model_metrics import pie_model_metric_goldens

        model_metrics = pie_model_metric_goldens(args.pnp_repo, args.dino_repo)

    icd_ref = {"repository": "yandex-research/invertible-cd",
               "commit": commit(args.icd_repo, args.icd_commit)}
    pie_ref = {"repository": "cure-lab/PnPInversion", "commit": commit(args.pnp_repo, args.pnp_commit)}
    words = {"tokenizer": "CLIP ViT-L/14 BPE (open_clip's vocabulary), model_max_length 77",
             "stopwords": "nltk stand-in: " + ("--stopwords file" if args.stopwords
                                               else "icd_bench.words.STOPWORDS")}
    both = {"icd": {**icd_ref, "what": "running/sd1.5/edit.py main() with launch_editing_iCD_sd1.5.sh's "
                                       "arguments; utils.p2p.make_controller"},
            "pie": {**pie_ref, "what": "models/p2p/attention_control.make_controller with "
                                       "run_editing_p2p.py's arguments"}}
    goldens = {
        "p2p_alignment.json": ({"provenance": provenance(both, "the two references' seq_aligner and word "
                                                               "positions on the published lists", **words),
                                "icd": icd, "pie": pie, "windows": windows}),
        "p2p_controllers.json": {"provenance": provenance(both, "the two references' P2P controllers on "
                                                                "given attention maps", **words),
                                 "cases": {**icd_cases, "pie_refine": pie_case}},
        "ddim_nti_npi.json": {"provenance": provenance(
            {"pie": pie_ref}, "models/p2p/inversion.NullInversion (ddim_loop, null_optimization, "
                              "get_noise_pred) with models/p2p/scheduler_dev.DDIMSchedulerDev on "
                              "golden_inputs.AnalyticUNet"), **ddim},
        "icd_sd15.json": {"provenance": provenance(
            {"icd": icd_ref}, "utils/loading.load_models, utils/generation.Generator.cons_inversion / "
                              "cons_generation, utils/p2p.make_controller on "
                              "golden_inputs.icd_weights", **words),
            **icd_e2e},
        "pie_metrics.json": {"provenance": provenance(
            {"pie": pie_ref}, "evaluation/evaluate.py mask_decode + calculate_metric with "
                              "MetricsCalculator's PSNR / MSE / SSIM (torchmetrics) and LPIPS (torchmetrics, "
                              "SqueezeNet; trunk golden_inputs.lpips_trunk)"), **pie_metrics},
        "ef_ddpm.json": {"provenance": provenance(
            {"pie": pie_ref}, "models/edit_friendly_ddm/inversion_utils.py inversion_forward_process / "
                              "inversion_reverse_process on golden_inputs.AnalyticUNet (float64)"), **ef},
        "icd_training.json": {"provenance": provenance(
            {"icd": icd_ref}, "training/src/train.py reverse_train_step / forward_train_step with "
                              "src.lcm.DDIMSolver on golden_inputs' guidance-embedded analytic "
                              "predictors"), **training},
    }
    if renoise is not None:
        goldens["renoise.json"] = {"provenance": provenance(
            {"renoise": {"repository": "garibida/ReNoise-Inversion",
                         "commit": commit(args.renoise_repo, args.renoise_commit)}},
            "src/renoise_inversion.py noise_regularization (released strengths, seeded rolls)"), **renoise}
    infedit_ref = {"repository": "sled-group/InfEdit",
                   "commit": commit(args.infedit_repo, args.infedit_commit)}
    if ddcm is not None:
        goldens["infedit_ddcm.json"] = {"provenance": provenance(
            {"infedit": infedit_ref},
            "pipeline_ead.py ddcm_sampler, LCMScheduler 12 steps, eta 1 (run_pie_bench.py)"), **ddcm}
    if pie_p2p is not None:
        goldens["pie_p2p.json"] = {"provenance": provenance(
            {"pie": pie_ref}, PIE_P2P_WHAT, reference_versions=pie_p2p.pop("reference_versions"), **words),
            **pie_p2p}
    if uac is not None:
        goldens["infedit_uac.json"] = {"provenance": provenance(
            {"infedit": infedit_ref},
            "run_pie_bench.py inference() with main()'s arguments (EditPipeline, AttentionRefine, "
            "LocalBlend) on golden_inputs.uac_components, via tools/conformance/infedit_uac_reference.py",
            reference_versions=uac.pop("reference_versions"), **words), **uac}
    if renoise_loop is not None:
        goldens["renoise_loop.json"] = renoise_loop
    if model_metrics is not None:
        from pie_model_metrics import provenance as model_metrics_provenance

        prov = model_metrics_provenance(commit(args.pnp_repo, args.pnp_commit),
                                        commit(args.dino_repo, args.dino_commit), command=invocation())
        goldens["pie_model_metrics.json"] = {"provenance": prov, **model_metrics}
    args.out.mkdir(parents=True, exist_ok=True)
    for name, golden in goldens.items():
        (args.out / name).write_text(json.dumps(golden,
                                                indent=1 if name == "pie_model_metrics.json" else None))
    print(f"{len(icd)} iCD pairs, {len(pie)} PIE-Bench pairs, 3 controller cases → {args.out}")


if __name__ == "__main__":
    main()
