"""Inputs shared by the conformance goldens' driver (``tools/conformance``) and the tests: the same
seeds give the same tensors on both sides, so only the reference's outputs are stored.

The attention schedule imitates one SD1.5 UNet step at a small width: cross-attention layers at
32² and 16² positions in the order the reference's ``AttentionStore`` files them (its local blend
reads ``down_cross[2:4] + up_cross[:3]``, the 16² maps), and two self-attention layers.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import torch

GOLDENS = Path(__file__).parent / "goldens"


@cache
def golden(name: str) -> dict:
    """A golden file of this folder (its provenance inside)."""
    return json.loads((GOLDENS / name).read_text())


def rel(a: torch.Tensor, b) -> float:
    """‖a − b‖ / ‖b‖ in float64, ``b`` a golden's nested list or a tensor."""
    b = torch.as_tensor(b, dtype=torch.float64)
    return float((a.double() - b).norm() / b.norm())

ROWS, HEADS, DIM, TOKENS = 4, 2, 4, 77  # [uncond src, uncond tgt, cond src, cond tgt]; 2 heads of 4
LAYERS = (  # (place, cross?, side)
    ("down", True, 32), ("down", True, 32), ("down", False, 32), ("down", True, 16), ("down", True, 16),
    ("up", True, 16), ("up", True, 16), ("up", False, 16), ("up", True, 16),
    ("up", True, 32), ("up", True, 32), ("up", True, 32),
)
LATENT = (2, 4, 16, 16)  # the [source, target] latents local blend acts on
PROJECTION = 8  # each layer's output is stored as ROWS × PROJECTION numbers (a fixed random projection)


def _gen(*keys: int) -> torch.Generator:
    seed = 0
    for k in keys:
        seed = (seed * 1_000_003 + k) % (2**62)
    return torch.Generator().manual_seed(seed)


def attention_inputs(case: int, step: int, layer: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k, v of one attention call, each (ROWS, HEADS, positions, DIM). The queries share a field per
    case and resolution (the same places attend to the same words at every layer and step, so local
    blend's mask has a shape), and cross-attention keys are scaled up so the maps are peaked."""
    _, cross, side = LAYERS[layer]
    n = side * side
    g = _gen(case, step, layer)
    field = torch.randn(1, 1, n, DIM, generator=_gen(case, side, 555))
    q = field + 0.5 * torch.randn(ROWS, HEADS, n, DIM, generator=g)
    m = TOKENS if cross else n
    k = torch.randn(ROWS, HEADS, m, DIM, generator=g) * (3.0 if cross else 1.0)
    v = torch.randn(ROWS, HEADS, m, DIM, generator=g)
    return q, k, v


def latents(case: int, step: int) -> torch.Tensor:
    return torch.randn(*LATENT, generator=_gen(case, step, 999))


def projection(n: int) -> torch.Tensor:
    """(n, PROJECTION): the fixed random projection of a flattened row of a layer's output."""
    return torch.randn(n, PROJECTION, generator=_gen(7, n))


def project(out: torch.Tensor) -> torch.Tensor:
    """A layer output (ROWS, HEADS, positions, DIM) → (ROWS, PROJECTION)."""
    flat = out.reshape(out.shape[0], -1).double()
    return flat @ projection(flat.shape[1]).double()


# -- DDIM, NTI and NPI on an analytic noise predictor -------------------------------------------------
DDIM_STEPS, DDIM_PROMPT, DDIM_CFG = 10, "a red circle on a white background", 7.5


class AnalyticUNet(torch.nn.Module):
    """ε(x, t, c) = tanh(W·x · (1 + t/1000)) + ½·P·mean_tokens(c): a smooth stand-in for a UNet
    (called as a diffusers UNet by both sides), differentiable in the text states as null-text
    inversion needs. Fixed weights from a seed; 3 channels, so images are its latents (no VAE). P is
    small (0.02): the text term cannot be driven to the target within ten Adam steps, so no step
    overshoots and the optimisation is well conditioned (see test_ddim_nti_npi_golden)."""

    def __init__(self, channels: int = 3, hidden: int = 32, seed: int = 4242, guidance_dim: int = 0):
        super().__init__()
        from types import SimpleNamespace

        g = _gen(seed)
        self.w = torch.nn.Parameter(torch.randn(channels, channels, generator=g) * 0.5)
        self.p = torch.nn.Parameter(torch.randn(channels, hidden, generator=g) * 0.02)
        # a guidance-embedded predictor also reads timestep_cond (the w embedding): + tanh(Q·emb)/5
        self.q = (torch.nn.Parameter(torch.randn(guidance_dim, channels, generator=g) * 0.05) if guidance_dim
                  else None)
        self.config = SimpleNamespace(in_channels=channels, sample_size=8, time_cond_proj_dim=None)
        self.in_channels, self.sample_size = channels, 8  # read as attributes by PnPInversion's EF code

    def forward(self, sample, timestep, encoder_hidden_states=None, timestep_cond=None,
                return_dict=True, **kw):
        t = torch.as_tensor(timestep, dtype=sample.dtype, device=sample.device).reshape(-1)
        t = t.expand(sample.shape[0]) if t.numel() == 1 else t
        h = torch.einsum("oc,bchw->bohw", self.w, sample) * (1 + t / 1000).view(-1, 1, 1, 1)
        c = encoder_hidden_states.mean(1) @ self.p.T
        eps = torch.tanh(h) + 0.5 * c[:, :, None, None]
        if self.q is not None and timestep_cond is not None:
            eps = eps + 0.2 * torch.tanh(timestep_cond.to(eps) @ self.q)[:, :, None, None]
        if not return_dict:
            return (eps,)
        from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

        return UNet2DConditionOutput(sample=eps)  # out["sample"] and out.sample, as diffusers


def ddim_image() -> torch.Tensor:
    """The (1, 3, 8, 8) image in [0, 1] both sides invert (its latents are 2·image − 1), float32 values
    (images reach a backbone in float32) held in float64."""
    return torch.rand(1, 3, 8, 8, generator=_gen(31337)).double()


def text_components():
    """The tiny SD1.5-shaped tokenizer and text encoder (seed 0) both sides encode prompts with, in
    float64: null-text inversion's Adam steps amplify float32 rounding ~10⁴-fold within ten steps on
    this predictor (measured on the reference itself), float64 keeps both sides comparable."""
    from icd_bench.backbones.tiny import build_tiny_sd15

    c = build_tiny_sd15(seed=0)
    return c["tokenizer"], c["text_encoder"].double()


# -- iCD end to end on tiny weights ---------------------------------------------------------------------
ICD_SOURCE, ICD_TARGET = "a red circle on a white background", "a blue circle on a white background"
ICD_REFINE_TARGET = "a big red circle on a white background"
ICD_SEED = 30  # the official script's --seed
LORA_RANK = 4


def icd_weights(root: Path) -> dict[str, Path]:
    """Tiny iCD weights in the release's formats, the same on both sides: a tiny SD1.5 pipeline folder
    (seed 0), its "guidance-distilled" UNet as a ``.pt`` state dict (seed 1, time_cond_proj_dim 512) and
    forward / reverse LoRA ``.safetensors`` with peft keys (rank 4, alpha 8, random weights that fp16
    represents exactly: the official loader casts them to fp16)."""
    from icd_bench.backbones.tiny import build_tiny_sd15, save_tiny
    from icd_bench.icd.model import FORWARD, REVERSE, attach_adapter, save_adapter

    root = Path(root)
    out = {"pipeline": save_tiny(root / "pipeline", "sd15", seed=0), "teacher": root / "teacher.pt"}
    unet = build_tiny_sd15(seed=1, time_cond_proj_dim=512)["unet"]
    torch.save(unet.state_dict(), out["teacher"])
    for k, name in enumerate((FORWARD, REVERSE)):
        attach_adapter(unet, name, rank=LORA_RANK, alpha=8.0)
        g = _gen(77, k)
        with torch.no_grad():
            for n, p in sorted(unet.named_parameters()):
                if f".{name}." in n and "lora_" in n:
                    p.copy_((torch.randn(p.shape, generator=g) * 0.05).half().float())
        out[name] = save_adapter(unet, name, root / f"{name}.safetensors")
    return out


def icd_image():
    """The 32×32 8-bit RGB image both sides encode."""
    return (torch.rand(32, 32, 3, generator=_gen(2024)) * 255).round().to(torch.uint8).numpy()


# -- PIE-Bench's pixel metrics -------------------------------------------------------------------------
PIE_METRICS = ("psnr", "mse", "ssim")
PIE_SIDE = 64


def pie_metric_cases() -> list[dict]:
    """Source / edited 8-bit images (64 px) and run-length masks on their grid (PIE-Bench's
    (start, length) pairs): a mostly unchanged edit, a heavier one, and a mask that overruns the end."""
    cases = []
    for k, (runs, noise) in enumerate(((([200, 300, 1500, 800], 8.0)), (([0, 2048], 40.0)),
                                       (([4000, 5000], 20.0)))):
        g = _gen(99, k)
        base = torch.rand(3, PIE_SIDE, PIE_SIDE, generator=g)
        src = (base * 255).round()
        edited = (src + noise * torch.randn(3, PIE_SIDE, PIE_SIDE, generator=g)).clamp(0, 255).round()
        cases.append({"source": src.to(torch.uint8).permute(1, 2, 0).numpy(),
                      "edited": edited.to(torch.uint8).permute(1, 2, 0).numpy(), "runs": runs})
    return cases


def lpips_trunk() -> dict[str, torch.Tensor]:
    """A random SqueezeNet 1.1 state dict (torchvision's layout, seed 21): the LPIPS trunk both sides load
    (ImageNet's is not reachable here; the lin layers are the calibrated ones both wheels ship)."""
    import torchvision

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(21)
        return torchvision.models.squeezenet1_1().state_dict()


# -- edit-friendly DDPM -----------------------------------------------------------------------------------
EF_STEPS, EF_SKIP, EF_SOURCE_CFG, EF_TARGET_CFG, EF_SEED = 10, 3, 3.5, 7.5, 7
EF_TARGET = "a blue square on a white background"


def ef_noise() -> torch.Tensor:
    """(EF_STEPS, 1, 3, 8, 8): the noise of each grid timestep (descending t), as PnPInversion's
    ``sample_xts_from_x0`` draws it after ``torch.manual_seed(EF_SEED)``: one ``randn_like`` per step, from
    the lowest timestep up."""
    g = torch.Generator().manual_seed(EF_SEED)
    draws = [torch.randn(1, 3, 8, 8, generator=g, dtype=torch.float64) for _ in range(EF_STEPS)]
    return torch.stack(draws[::-1])


# -- iCD training targets ----------------------------------------------------------------------------------
TRAIN_BATCH, TRAIN_SEED = 6, 5
TRAIN_CODES = (0.0, 7.0, 11.0, 19.0, 15.0, 0.0)  # the official trainer's discrete w codes ("0,7,11,15,19")


def train_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """x_0 latents and the batch's noise (TRAIN_BATCH, 3, 8, 8)."""
    g = _gen(606)
    return torch.randn(TRAIN_BATCH, 3, 8, 8, generator=g), torch.randn(TRAIN_BATCH, 3, 8, 8, generator=g)


TRAIN_SEEDS = {"reverse_cd": 20, "forward_cd": 2}  # seed 20's reverse indices hold 0 twice: the anchor case


def train_index(high: int, seed: int) -> torch.Tensor:
    """The solver indices the official trainer draws: ``torch.randint(0, high, (B,))`` after
    ``torch.manual_seed(seed)``."""
    return torch.randint(0, high, (TRAIN_BATCH,), generator=torch.Generator().manual_seed(seed))


# -- ReNoise's noise regularisation ------------------------------------------------------------------------
RENOISE_SEED = 3


def renoise_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """ε to regularise and the reference ε at the forward-noised latents, (1, 4, 16, 16) each (the KL's
    4×4×4 patches need 4 channels); the ε made correlated so the auto-correlation term has work to do."""
    g = _gen(1234)
    eps = torch.randn(1, 4, 16, 16, generator=g)
    eps = eps + 0.5 * torch.roll(eps, 1, dims=-1)
    return eps, torch.randn(1, 4, 16, 16, generator=g)


# -- InfEdit's DDCM sampler ---------------------------------------------------------------------------------
DDCM_STEPS = 12  # run_pie_bench.py: 12 steps, eta 1, strength 1


def ddcm_inputs(step: int) -> dict[str, torch.Tensor]:
    """Per step: source / target latents, their ε, the clean source latent and the fresh noise
    (1, 4, 8, 8)."""
    g = _gen(515, step)
    names = ("x_s", "x_t", "e_s", "e_t", "x_0", "noise")
    return {k: torch.randn(1, 4, 8, 8, generator=g) for k in names}


# -- InfEdit end to end: DDCM + unified attention control ------------------------------------------------
UAC_SIDE = 40  # latent side: the official local blend picks its maps by their place in a store that keeps
# only maps of ≤ 32² positions, which is SD's 16² layers only when the top level (here 40²) is above that
UAC_CASES = (  # (source, target, the target's blend word or "") as run_pie_bench.py takes them
    ("a red circle on a white background", "a big blue circle on a white background", "blue"),
    ("a cat sitting on a wooden table", "a dog sitting on a table", "dog"),
    ("a photo of a house in the snow", "a painting of a house in the snow", ""),
)
UAC_SETTINGS = dict(num_inference_steps=12, guidance_s=1, guidance_t=2.3, strength=1,
                    cross_replace_steps=0.7, self_replace_steps=0.7, eta=1, thresh_e=0.55, thresh_m=0.6,
                    denoise=False)  # run_pie_bench.main


def _sd15_layout(side: int, heads: int, tokenizer, seed: int) -> dict:
    """A small UNet of SD1.5's layout (its four blocks, attention in the top three, 2 layers each) at
    latent ``side`` with ``heads`` heads (seed ``seed``), a tiny text encoder on SD's CLIP ``tokenizer``
    (seed + 1) and the tiny VAE (seed + 2)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            sample_size=side, in_channels=4, out_channels=4, layers_per_block=2,
            block_out_channels=(16, 16, 32, 32),
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, cross_attention_dim=32,
            attention_head_dim=heads, norm_num_groups=8).eval()
        torch.manual_seed(seed + 1)
        config = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37,
                                num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=77,
                                projection_dim=32, bos_token_id=tokenizer.bos_token_id,
                                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        text_encoder = CLIPTextModel(config).eval()
        torch.manual_seed(seed + 2)
        vae = AutoencoderKL(in_channels=3, out_channels=3, block_out_channels=(32, 64), layers_per_block=1,
                            down_block_types=("DownEncoderBlock2D",) * 2,
                            up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=16,
                            sample_size=2 * side).eval()
    return {"tokenizer": tokenizer, "text_encoder": text_encoder, "unet": unet, "vae": vae}


def uac_components(tokenizer) -> dict:
    """The components both sides build InfEdit's pipeline from: `_sd15_layout` at UAC_SIDE with 8 heads
    (seeds 5, 6, 7) and LCM-Dreamshaper's scheduler (LCMScheduler on SD's schedule)."""
    from diffusers import LCMScheduler

    from icd_bench.backbones.loaders import SD_SCHEDULER_CONFIG

    scheduler = LCMScheduler(**{k: v for k, v in SD_SCHEDULER_CONFIG.items() if k != "clip_sample"})
    return {**_sd15_layout(UAC_SIDE, 8, tokenizer, seed=5), "scheduler": scheduler}


def uac_backbone(tokenizer):
    """The project's backbone on uac_components."""
    from icd_bench.backbones.base import Backbone

    return Backbone.from_components(uac_components(tokenizer), kind="sd15", source="uac-golden")


def uac_pipeline_noises(steps: int) -> list[torch.Tensor]:
    """The noises InfEdit's pipeline draws after ``torch.manual_seed(0)``: its start latent, then one per step
    (a project method takes them as ``[*noises[1:], noises[0]]``: the steps', then the start's)."""
    g = torch.Generator().manual_seed(0)
    return [torch.randn(1, 4, UAC_SIDE, UAC_SIDE, generator=g) for _ in range(steps + 1)]


def uac_latent(case: int) -> torch.Tensor:
    """The clean source latent (1, 4, UAC_SIDE, UAC_SIDE) of a case (both sides skip the VAE)."""
    return torch.randn(1, 4, UAC_SIDE, UAC_SIDE, generator=_gen(4242, case))


UAC_PROJECTION = 16


def uac_project(x: torch.Tensor) -> torch.Tensor:
    """A latent (1, 4, S, S) as UAC_PROJECTION numbers (a fixed random projection), for per-step goldens."""
    p = torch.randn(x[0].numel(), UAC_PROJECTION, generator=_gen(4243), dtype=torch.float64)
    return x.double().flatten() @ p


# -- PIE-Bench's P2P editors end to end (DDIM + P2P, NPI, NTI) ---------------------------------------------
PNP_SIDE = 64  # PnPInversion's editors expand x_T to 64² and read local-blend maps as 16² (512 px)
PNP_STEPS = 10
PNP_CASES = (  # (P2PEditor method, source, target, blend words "src tgt", replace controller)
    ("ddim+p2p", "a cat sitting on a wooden table", "a cat sitting on a big wooden table",
     ("table", "table"), False),
    ("ddim+p2p", "a cat sitting on a wooden table", "a dog sitting on a wooden table", ("cat", "dog"), True),
    ("negative-prompt-inversion+p2p", "a cat sitting on a wooden table",
     "a cat sitting on a big wooden table", ("table", "table"), False),
    ("null-text-inversion+p2p", "a cat sitting on a wooden table", "a cat sitting on a big wooden table",
     ("table", "table"), False),
)


PNP_PRESETS = {"ddim+p2p": "ddim-p2p-sd15", "negative-prompt-inversion+p2p": "npi-sd15",
               "null-text-inversion+p2p": "nti-sd15"}  # P2PEditor's method → the preset of its PIE-Bench row
# PIE-Bench's other editors, golden pie_baselines.json (tools/conformance/pie_baselines.py): the same
# components and steps; the cases' latents are pnp_latent(PNP_BASELINE_LATENTS + k)
PNP_BASELINE_CASES = (  # (P2PEditor method, source, target, blend words "src tgt", replace controller)
    ("directinversion+p2p", "a cat sitting on a wooden table", "a cat sitting on a big wooden table",
     ("table", "table"), False),
    ("directinversion+p2p", "a cat sitting on a wooden table", "a dog sitting on a wooden table",
     ("cat", "dog"), True),
)
PNP_BASELINE_LATENTS = 100
PNP_PRESETS["directinversion+p2p"] = "direct-inversion-sd15"
# PIE-Bench's MasaCtrl editors (run_editing_masactrl.MasaCtrlEditor: the source branch decodes the empty
# prompt): (method, source, target); latents pnp_latent(PNP_MASACTRL_LATENTS + k). Its MasaCtrl decode
# runs the pipeline's default 50 steps whatever the editor's step count, so the cases run 50 throughout.
PNP_MASACTRL_CASES = (
    ("ddim+masactrl", "a cat sitting on a wooden table", "a dog sitting on a wooden table"),
    ("directinversion+masactrl", "a cat sitting on a wooden table", "a cat sitting on a big wooden table"),
)
PNP_MASACTRL_STEPS = 50
PNP_MASACTRL_LATENTS = 200
PNP_PRESETS["ddim+masactrl"] = "masactrl-sd15"
PNP_PRESETS["directinversion+masactrl"] = "direct-inversion-masactrl-sd15"
# PIE-Bench's Plug-and-Play editors (run_editing_pnp.py; golden pie_pnp.json, tools/conformance/pie_pnp.py):
# (method, source, target); latents pnp_latent(PIE_PNP_LATENTS + k); the script's NUM_DDIM_STEPS made small
PIE_PNP_CASES = (
    ("ddim+pnp", "a cat sitting on a wooden table", "a dog sitting on a wooden table"),
    ("directinversion+pnp", "a cat sitting on a wooden table", "a cat sitting on a big wooden table"),
)
PIE_PNP_STEPS = 10
PIE_PNP_LATENTS = 300
PNP_PRESETS["ddim+pnp"] = "pnp-sd15"
PNP_PRESETS["directinversion+pnp"] = "direct-inversion-pnp-sd15"
# PIE-Bench's pix2pix-zero editors (run_editing_pix2pix_zero.py; golden pie_pix2pix_zero.json,
# tools/conformance/pie_pix2pix_zero.py): (method, source, target); the BLIP caption given as the source
# prompt (what the project inverts with); latents pnp_latent(PIE_P2PZ_LATENTS + k); NUM_DDIM_STEPS made small
PIE_P2PZ_CASES = (
    ("ddim+pix2pix-zero", "a cat sitting on a wooden table", "a dog sitting on a wooden table"),
    ("directinversion+pix2pix-zero", "a cat sitting on a wooden table",
     "a cat sitting on a big wooden table"),
)
PIE_P2PZ_STEPS = 10
PIE_P2PZ_LATENTS = 400
PNP_PRESETS["ddim+pix2pix-zero"] = "pix2pix-zero-sd15"
PNP_PRESETS["directinversion+pix2pix-zero"] = "direct-inversion-pix2pix-zero-sd15"
PNP_EF_STEPS, PNP_EF_SKIP = 10, 3  # run_editing_edit_friendly_p2p.py's NUM_DDIM_STEPS / SKIP, made small
PNP_EF_CASES = (  # (source, target): its controller is replace for equal word counts, else refine
    ("a cat sitting on a wooden table", "a cat sitting on a big wooden table"),
    ("a cat sitting on a wooden table", "a dog sitting on a wooden table"),
)


def pnp_components(tokenizer) -> dict:
    """`_sd15_layout` at PNP_SIDE with 1 head (the reference keeps every attention map: 4096² positions at
    the top level), seeds 11, 12, 13; the scheduler is the reference's own (PnPInversion's DDIM)."""
    return _sd15_layout(PNP_SIDE, 1, tokenizer, seed=11)


def pnp_backbone(tokenizer):
    """The project's backbone on pnp_components, with SD's DDIM scheduler config."""
    from diffusers import DDIMScheduler

    from icd_bench.backbones.base import Backbone
    from icd_bench.backbones.loaders import SD_SCHEDULER_CONFIG

    parts = {**pnp_components(tokenizer), "scheduler": DDIMScheduler(**SD_SCHEDULER_CONFIG)}
    return Backbone.from_components(parts, kind="sd15", source="pie-p2p-golden")


def reuse_inversion(method) -> dict:
    """Make ``method`` invert once and hand that inversion (NTI: with its optimisation) to its next tasks, as
    the official editors reconstruct and edit from one; clear the returned dict to invert anew."""
    inverted: dict = {}
    real_invert = method.invert

    def invert(images, prompts, generators):
        if "inv" not in inverted:
            inverted["inv"] = real_invert(images, prompts, generators)
        return inverted["inv"]

    method.invert = invert
    return inverted


def pnp_editor(backbone, monkeypatch, ref: dict, latent: torch.Tensor, *overrides: str):
    """The project's method for a PIE-Bench editor golden case ``ref`` (its method's preset at the case's
    steps, ``p2p_mode=replace`` where the case's controller replaces, then ``overrides``), on ``backbone``
    patched so that ``latent`` is the encoding and decoding is the identity, inverting once for the edit
    and the reconstruction; and the case's sample. Returns (method, sample)."""
    from PIL import Image

    from icd_bench.config import resolve_method
    from icd_bench.registry import METHODS
    from icd_bench.types import EditSample

    extra = ["p2p_mode=replace"] if ref.get("replace") else []
    spec = resolve_method(PNP_PRESETS[ref["method"]],
                          [f"num_inference_steps={ref['num_steps']}", *extra, *overrides])
    monkeypatch.setattr(backbone, "encode_image", lambda images: latent)
    monkeypatch.setattr(backbone, "decode", lambda latents: latents)
    sample = EditSample(id="x", image=Image.new("RGB", (8, 8)), source_prompt=ref["source"],
                        target_prompt=ref["target"], blend_words=tuple(ref.get("blend", ())))
    method = METHODS.get(spec.method)(backbone, spec.params)
    reuse_inversion(method)
    return method, sample


def pnp_latent(case: int) -> torch.Tensor:
    """The clean source latent (1, 4, PNP_SIDE, PNP_SIDE) of a case (both sides skip the VAE)."""
    return torch.randn(1, 4, PNP_SIDE, PNP_SIDE, generator=_gen(5151, case))


# -- TurboEdit (GiilDe/turbo-edit main.run; golden turboedit.json, tools/conformance/turboedit_golden.py) ---
#: tiny SDXL (icd_bench.backbones.tiny, seed TURBO_SEED) with SDXL-Turbo's scheduler; (steps, latent side,
#: source, target): the 64² case's last inversion noise exceeds the 15.5 norm cap, the 16² ones' do not
TURBO_SEED = 31
TURBO_CASES = (
    (4, 16, "a cat sitting on a wooden table", "a dog sitting on a wooden table"),
    (3, 16, "a red car in front of a house", "a blue car in front of a house"),
    (4, 64, "a cat sitting on a wooden table", "a cat sitting on a big wooden table"),
)
TURBO_RUN_SEED, TURBO_W = 2, 1.5  # main.py's --seed and --w defaults
TURBO_PRESETS = {4: "turboedit-sdxl-turbo", 3: "turboedit-sdxl-turbo-3step"}
#: SDXL-Turbo's scheduler as load_pipe builds it (DDPMScheduler.from_pretrained of the hub's config): SD's β
#: schedule, trailing spacing, no x̂0 clipping
TURBO_SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                       beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False,
                       steps_offset=1, timestep_spacing="trailing")


def turbo_latent(case: int) -> torch.Tensor:
    """The clean latent (1, 4, side, side) of a TurboEdit case (both sides skip the VAE)."""
    side = TURBO_CASES[case][1]
    return torch.randn(1, 4, side, side, generator=_gen(6161, case))


# -- PIE-Bench's model-based metrics: structure distance (DINO ViT-B/8) and CLIP similarity -------------
DINO_SEED, CLIP_SEED = 23, 29
#: PIE-Bench's extractor reshapes ``qkv`` by ViT-B's width and heads and reads block 11: the full ViT-B/8.
DINO_WIDTH, DINO_DEPTH, DINO_HEADS, DINO_PATCH, DINO_GRID = 768, 12, 12, 8, 28
#: The prompts of the CLIP cases: (source prompt, target prompt) per pie_metric_cases entry.
CLIP_PROMPTS = (("a cat sitting on a wooden table", "a dog sitting on a wooden table"),
                ("a red car in front of a house", "a blue car in front of a house"),
                ("a bowl of fruit", "a bowl of oranges on a table"))


def _fill(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    """Random weights in a fixed key order, independent of any library's initialisation: LayerNorm
    weights 1 + N(0, 0.1²), everything else N(0, 0.02²)."""
    g = _gen(seed)
    out = {}
    for key, shape in shapes.items():
        t = torch.randn(*shape, generator=g)
        is_norm = any(n in key for n in ("norm", "ln_", "layer_norm", "layrnorm")) and key.endswith("weight")
        out[key] = 1 + 0.1 * t if is_norm else 0.02 * t
    return out


def dino_state_dict() -> dict[str, torch.Tensor]:
    """A random DINO ViT-B/8 in facebookresearch/dino's ``vit_base(patch_size=8, num_classes=0)`` layout
    (seed DINO_SEED): what PIE-Bench's ``torch.hub.load('facebookresearch/dino:main', 'dino_vitb8')``
    would return with these weights."""
    d, mlp = DINO_WIDTH, 4 * DINO_WIDTH
    shapes: dict[str, tuple[int, ...]] = {"cls_token": (1, 1, d), "pos_embed": (1, 1 + DINO_GRID ** 2, d),
                                          "patch_embed.proj.weight": (d, 3, DINO_PATCH, DINO_PATCH),
                                          "patch_embed.proj.bias": (d,)}
    for i in range(DINO_DEPTH):
        b = f"blocks.{i}."
        shapes.update({b + "norm1.weight": (d,), b + "norm1.bias": (d,), b + "attn.qkv.weight": (3 * d, d),
                       b + "attn.qkv.bias": (3 * d,), b + "attn.proj.weight": (d, d),
                       b + "attn.proj.bias": (d,), b + "norm2.weight": (d,), b + "norm2.bias": (d,),
                       b + "mlp.fc1.weight": (mlp, d), b + "mlp.fc1.bias": (mlp,),
                       b + "mlp.fc2.weight": (d, mlp), b + "mlp.fc2.bias": (d,)})
    shapes.update({"norm.weight": (d,), "norm.bias": (d,)})
    return _fill(shapes, DINO_SEED)


def write_dino_vit(folder: Path) -> Path:
    """dino_state_dict as transformers' ``ViTModel`` folder (config.json + model.safetensors), the layout of
    the hub's ``facebook/dino-vitb8`` that the project loads: ``qkv`` split into query / key / value."""
    from transformers import ViTConfig, ViTModel

    config = ViTConfig(hidden_size=DINO_WIDTH, num_hidden_layers=DINO_DEPTH, num_attention_heads=DINO_HEADS,
                       intermediate_size=4 * DINO_WIDTH, patch_size=DINO_PATCH,
                       image_size=DINO_PATCH * DINO_GRID, qkv_bias=True, hidden_act="gelu")
    with torch.device("meta"):
        model = ViTModel(config, add_pooling_layer=False)
    names = set(model.state_dict())
    v5 = "layers.0.attention.q_proj.weight" in names  # transformers 5 names; 4 nests attention.attention.*
    src, out = dino_state_dict(), {}
    out["embeddings.cls_token"], out["embeddings.position_embeddings"] = src["cls_token"], src["pos_embed"]
    for p in ("weight", "bias"):
        out[f"embeddings.patch_embeddings.projection.{p}"] = src[f"patch_embed.proj.{p}"]
        out[f"layernorm.{p}"] = src[f"norm.{p}"]
    for i in range(DINO_DEPTH):
        b, o = f"blocks.{i}.", (f"layers.{i}." if v5 else f"encoder.layer.{i}.")
        qkv = {p: src[b + f"attn.qkv.{p}"].chunk(3) for p in ("weight", "bias")}
        att = {"q": "attention.q_proj", "k": "attention.k_proj", "v": "attention.v_proj",
               "o": "attention.o_proj", "mlp1": "mlp.fc1", "mlp2": "mlp.fc2"} if v5 else {
            "q": "attention.attention.query", "k": "attention.attention.key",
            "v": "attention.attention.value", "o": "attention.output.dense",
            "mlp1": "intermediate.dense", "mlp2": "output.dense"}
        for p in ("weight", "bias"):
            for j, name in enumerate("qkv"):
                out[o + f"{att[name]}.{p}"] = qkv[p][j]
            out[o + f"{att['o']}.{p}"] = src[b + f"attn.proj.{p}"]
            out[o + f"layernorm_before.{p}"] = src[b + f"norm1.{p}"]
            out[o + f"layernorm_after.{p}"] = src[b + f"norm2.{p}"]
            out[o + f"{att['mlp1']}.{p}"] = src[b + f"mlp.fc1.{p}"]
            out[o + f"{att['mlp2']}.{p}"] = src[b + f"mlp.fc2.{p}"]
    if set(out) != names:
        raise RuntimeError(f"DINO → ViTModel key mismatch: {sorted(set(out) ^ names)[:6]}")
    model = ViTModel(config, add_pooling_layer=False)
    model.load_state_dict({k: v.contiguous() for k, v in out.items()}, strict=True)
    model.save_pretrained(folder)
    return folder


def pie_structure_cases() -> list[dict]:
    """pie_metric_cases, plus a 64 × 128 pair: Resize(224, max_size=480) makes it 224 × 448, a 28 × 56
    patch grid, where DINO interpolates its position embeddings."""
    cases = [{"source": c["source"], "edited": c["edited"]} for c in pie_metric_cases()]
    g = _gen(99, 7)
    src = (torch.rand(3, PIE_SIDE, 2 * PIE_SIDE, generator=g) * 255).round()
    edited = (src + 15.0 * torch.randn(src.shape, generator=g)).clamp(0, 255).round()
    cases.append({"source": src.to(torch.uint8).permute(1, 2, 0).numpy(),
                  "edited": edited.to(torch.uint8).permute(1, 2, 0).numpy()})
    return cases


#: The tiny CLIP both sides score with: ViT-L/14's input and text length at a small width.
CLIP_CONFIG = {"embed_dim": 32, "quick_gelu": True,
               "vision_cfg": {"image_size": 224, "layers": 2, "width": 64,
                              "head_width": 32, "patch_size": 14},
               "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}}
CLIP_NAME = "icd-golden-clip"  # the open_clip architecture name the test registers CLIP_CONFIG under


def clip_hf_state_dict() -> tuple[object, dict[str, torch.Tensor]]:
    """(transformers ``CLIPConfig``, random weights in ``CLIPModel``'s layout, seed CLIP_SEED) of CLIP_CONFIG
    — the model torchmetrics' ``CLIPScore`` loads on the reference side."""
    from transformers import CLIPConfig, CLIPModel

    v, t = CLIP_CONFIG["vision_cfg"], CLIP_CONFIG["text_cfg"]
    config = CLIPConfig(
        text_config=dict(vocab_size=t["vocab_size"], hidden_size=t["width"], intermediate_size=4 * t["width"],
                         num_hidden_layers=t["layers"], num_attention_heads=t["heads"],
                         max_position_embeddings=t["context_length"], hidden_act="quick_gelu",
                         bos_token_id=49406, eos_token_id=49407, pad_token_id=49407),
        vision_config=dict(hidden_size=v["width"], intermediate_size=4 * v["width"],
                           num_hidden_layers=v["layers"], num_attention_heads=v["width"] // v["head_width"],
                           image_size=v["image_size"], patch_size=v["patch_size"], hidden_act="quick_gelu"),
        projection_dim=CLIP_CONFIG["embed_dim"])
    with torch.device("meta"):
        shapes = {k: tuple(p.shape) for k, p in CLIPModel(config).state_dict().items()}
    weights = _fill({k: s for k, s in sorted(shapes.items()) if k != "logit_scale"}, CLIP_SEED)
    weights["logit_scale"] = torch.tensor(2.6592)
    return config, weights


def clip_open_clip_state_dict() -> dict[str, torch.Tensor]:
    """clip_hf_state_dict in open_clip's (OpenAI CLIP's) layout for CLIP_CONFIG: q/k/v stacked as
    ``in_proj``, projections transposed."""
    _, hf = clip_hf_state_dict()
    out = {"logit_scale": hf["logit_scale"],
           "token_embedding.weight": hf["text_model.embeddings.token_embedding.weight"],
           "positional_embedding": hf["text_model.embeddings.position_embedding.weight"],
           "text_projection": hf["text_projection.weight"].t(),
           "visual.class_embedding": hf["vision_model.embeddings.class_embedding"],
           "visual.conv1.weight": hf["vision_model.embeddings.patch_embedding.weight"],
           "visual.positional_embedding": hf["vision_model.embeddings.position_embedding.weight"],
           "visual.proj": hf["visual_projection.weight"].t()}
    for p in ("weight", "bias"):
        out[f"ln_final.{p}"] = hf[f"text_model.final_layer_norm.{p}"]
        out[f"visual.ln_pre.{p}"] = hf[f"vision_model.pre_layrnorm.{p}"]
        out[f"visual.ln_post.{p}"] = hf[f"vision_model.post_layernorm.{p}"]
    for tower, prefix, layers in (("text_model", "", CLIP_CONFIG["text_cfg"]["layers"]),
                                  ("vision_model", "visual.", CLIP_CONFIG["vision_cfg"]["layers"])):
        for i in range(layers):
            h, o = f"{tower}.encoder.layers.{i}.", f"{prefix}transformer.resblocks.{i}."
            for p in ("weight", "bias"):
                out[o + f"attn.in_proj_{p}"] = torch.cat([hf[h + f"self_attn.{n}_proj.{p}"] for n in "qkv"])
                out[o + f"attn.out_proj.{p}"] = hf[h + f"self_attn.out_proj.{p}"]
                out[o + f"ln_1.{p}"] = hf[h + f"layer_norm1.{p}"]
                out[o + f"ln_2.{p}"] = hf[h + f"layer_norm2.{p}"]
                out[o + f"mlp.c_fc.{p}"] = hf[h + f"mlp.fc1.{p}"]
                out[o + f"mlp.c_proj.{p}"] = hf[h + f"mlp.fc2.{p}"]
    return {k: v.contiguous() for k, v in out.items()}


# -- ReNoise's inversion loop end to end -------------------------------------------------------------------
RENOISE_LOOP_SIDE = 32  # latent side: the regularisation's 4×4 KL patches and its 32 → 16 → 8 roll pyramid
RENOISE_LOOP_PROMPT = "a cat sitting on a wooden table"
RENOISE_LOOP_SEED = 7865  # src/config.py RunConfig.seed: main.run's generator
# name → (src/config.py RunConfig fields over its released defaults, the project's --set)
RENOISE_LOOP_CASES = {
    # the official LCM scheduler has no noise correction (MyLCMScheduler lacks step_and_update_noise; True
    # raises there), and the SD pipelines' KL reference is ε at the clean latent (get_pipes' add_noise stub)
    "released": ({"perform_noise_correction": False}, ["noise_correction=false", "kl_reference=clean"]),
    "no_regularisation": ({"perform_noise_correction": False, "noise_regularization_lambda_ac": 0.0,
                           "noise_regularization_lambda_kl": 0.0},
                          ["noise_correction=false", "kl_reference=clean", "lambda_ac=0", "lambda_kl=0"]),
}
RENOISE_LOOP_RUN = dict(model_type="SD15", scheduler_type="LCM", num_inference_steps=4, num_inversion_steps=4,
                        guidance_scale=0.0, num_renoise_steps=9, seed=RENOISE_LOOP_SEED)  # the SD1.5 LCM run


def renoise_loop_components(tokenizer) -> dict:
    """The components both sides build ReNoise's pipelines from: `_sd15_layout` at RENOISE_LOOP_SIDE with 2
    heads (seeds 21, 22, 23; no guidance embedding: the official ``unet_pass`` gives ``timestep_cond=None``)
    and the LCM scheduler on SD's schedule (the official code makes its MyLCMScheduler from this config)."""
    from diffusers import LCMScheduler

    from icd_bench.backbones.loaders import SD_SCHEDULER_CONFIG

    scheduler = LCMScheduler(**{k: v for k, v in SD_SCHEDULER_CONFIG.items() if k != "clip_sample"})
    return {**_sd15_layout(RENOISE_LOOP_SIDE, 2, tokenizer, seed=21), "scheduler": scheduler}


def renoise_loop_backbone(tokenizer):
    """The project's backbone on renoise_loop_components."""
    from icd_bench.backbones.base import Backbone

    return Backbone.from_components(renoise_loop_components(tokenizer), kind="sd15",
                                    source="renoise-loop-golden")


def renoise_loop_latent() -> torch.Tensor:
    """The clean source latent (1, 4, RENOISE_LOOP_SIDE, RENOISE_LOOP_SIDE)
    (both sides skip the VAE encoder)."""
    return torch.randn(1, 4, RENOISE_LOOP_SIDE, RENOISE_LOOP_SIDE, generator=_gen(6161))


def renoise_loop_draws(steps: int = 4) -> tuple[list[torch.Tensor], torch.Tensor, torch.Generator]:
    """What the official run draws from its generator (``torch.Generator().manual_seed(RunConfig.seed)``), in
    order: the noise list (``main.create_noise_list``: one latent per inversion step), the img2img
    ``prepare_latents`` noise (discarded by SD's ``add_noise`` stub), the inversion pipeline's forward noise
    ``pipe.noise``. Returns (the noise list, the forward noise, the generator as the regularisation's random
    rolls then find it)."""
    g = torch.Generator().manual_seed(RENOISE_LOOP_SEED)
    shape = (1, 4, RENOISE_LOOP_SIDE, RENOISE_LOOP_SIDE)
    noises = [torch.randn(shape, generator=g) for _ in range(steps)]
    torch.randn(shape, generator=g)
    return noises, torch.randn(shape, generator=g), g


# -- the iCD paper's metrics (invertible-cd utils/metrics.py) ---------------------------------------------
ICD_METRICS_SEED = 31
#: Target prompts of the metric cases, of growing length: the longest passes ImageReward's 35 BERT tokens
#: and CLIP's 77 tokens, so both truncations are exercised.
ICD_METRIC_PROMPTS = (
    "a cat",
    "a photo of a red car parked in front of a small wooden house",
    "a dog sitting on the grass next to a blue ball, a tree and a bench in a sunny park, painted in the "
    "style of an old photograph with soft light",
    " ".join(["a red car and a blue house with a wooden bench on the grass under a tree in a park"] * 6),
    "an oil painting of a house",
)
#: (height, width) of each case's source and output: SD1.5's 512², a non-square odd size (load_512 squashes
#: it), SDXL's 1024², an identical pair (output = source) and a small image.
ICD_METRIC_SIZES = ((512, 512), (200, 300), (1024, 1024), (512, 512), (96, 160))
ICD_IDENTICAL = 3  # the case whose output is its source


def _scene(h: int, w: int, g: torch.Generator) -> torch.Tensor:
    """A 3×H×W image in [0, 255] with structure for a resize or JPEG to act on: gradients, a disc, noise."""
    y = torch.linspace(0, 1, h).view(h, 1)
    x = torch.linspace(0, 1, w).view(1, w)
    base = torch.stack([180 * x + 40 * y, 120 + 80 * torch.sin(6 * x + 3 * y), 200 - 150 * y + 0 * x])
    cy, cx, r = torch.rand(3, generator=g)
    disc = ((y - cy) ** 2 + (x - cx) ** 2 < (0.1 + 0.2 * r) ** 2).float()
    base = base * (1 - disc) + disc * torch.tensor([230.0, 40.0, 60.0]).view(3, 1, 1)
    return (base + 12 * torch.randn(3, h, w, generator=g)).clamp(0, 255)


def icd_metric_cases() -> list[dict]:
    """Source/output uint8 H×W×3 pairs with their target prompt: the output is the source with its colours
    shifted in a band and some noise (the identical case excepted)."""
    cases = []
    for k, ((h, w), prompt) in enumerate(zip(ICD_METRIC_SIZES, ICD_METRIC_PROMPTS, strict=True)):
        g = _gen(ICD_METRICS_SEED, k)
        src = _scene(h, w, g)
        out = src.clone()
        if k != ICD_IDENTICAL:
            band = slice(h // 4, h // 2)
            out[:, band] = (out[:, band].roll(1, dims=0)
                            + 20 * torch.randn(3, len(range(h)[band]), w, generator=g))
            out = (out + 4 * torch.randn(out.shape, generator=g)).clamp(0, 255)
        as_u8 = lambda t: t.round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()  # noqa: E731
        cases.append({"source": as_u8(src), "output": as_u8(out), "prompt": prompt})
    return cases


ICD_FID_SIZES = ((512, 512), (1024, 1024), (300, 200), (256, 256)) * 3  # 12 generated images


def icd_fid_images() -> list:
    """The generated images of the FID case (uint8 H×W×3): sizes the LANCZOS resize and crop act on."""
    return [_scene(h, w, _gen(ICD_METRICS_SEED, 100 + k)).round().to(torch.uint8).permute(1, 2, 0).numpy()
            for k, (h, w) in enumerate(ICD_FID_SIZES)]


def icd_fid_reference(dims: int = 2048) -> dict:
    """Reference statistics as in ``fid_stats_mscoco512_val.npz`` (``mu``, ``sigma``), well conditioned."""
    import numpy as np

    g = _gen(ICD_METRICS_SEED, 200)
    mu = 0.3 * torch.rand(dims, generator=g, dtype=torch.float64)
    b = torch.randn(dims, 64, generator=g, dtype=torch.float64) * 0.05
    sigma = b @ b.T + 0.01 * torch.eye(dims, dtype=torch.float64)
    return {"mu": np.asarray(mu), "sigma": np.asarray(sigma)}


ICD_FID_PROJECTION = 16  # each image's 2048 features are stored as 16 fixed random projections


def icd_fid_projection(dims: int = 2048) -> torch.Tensor:
    return torch.randn(dims, ICD_FID_PROJECTION, generator=_gen(ICD_METRICS_SEED, 300), dtype=torch.float64)


#: facebook/dinov2-base's preprocessor_config.json (BitImageProcessor: shorter side 256 bicubic, crop 224).
DINOV2_PREPROCESSOR = {
    "crop_size": {"height": 224, "width": 224}, "do_center_crop": True, "do_convert_rgb": True,
    "do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": [0.485, 0.456, 0.406],
    "image_processor_type": "BitImageProcessor", "image_std": [0.229, 0.224, 0.225], "resample": 3,
    "rescale_factor": 0.00392156862745098, "size": {"shortest_edge": 256}}
#: openai/clip-vit-large-patch14's preprocessor_config.json, tokenizer_config.json and
#: special_tokens_map.json.
CLIP_HF_PREPROCESSOR = {
    "crop_size": 224, "do_center_crop": True, "do_normalize": True, "do_resize": True,
    "feature_extractor_type": "CLIPFeatureExtractor", "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3, "size": 224}
_CLIP_SPECIAL = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
                 "unk_token": "<|endoftext|>"}
CLIP_HF_TOKENIZER_CONFIG = {"add_prefix_space": False, "do_lower_case": True, "errors": "replace",
                            "model_max_length": 77, "tokenizer_class": "CLIPTokenizer", **_CLIP_SPECIAL}


def _fill_rule(shapes: dict[str, tuple[int, ...]], seed: int, rule) -> dict[str, torch.Tensor]:
    """Random weights in a fixed key order: ``rule(key, shape, N(0, 1) draw)`` → the tensor."""
    g = _gen(seed)
    return {key: rule(key, shape, torch.randn(shape, generator=g)) for key, shape in shapes.items()}


def write_dinov2_folder(folder: Path) -> Path:
    """A tiny random ``Dinov2Model`` (patch 14 at 224 px, the processor's crop) in the layout of the hub's
    ``facebook/dinov2-base``: config.json, model.safetensors, the hub's preprocessor_config.json."""
    from transformers import Dinov2Config, Dinov2Model

    config = Dinov2Config(hidden_size=48, num_hidden_layers=2, num_attention_heads=3, mlp_ratio=4,
                          patch_size=14, image_size=224, layerscale_value=1.0)
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in Dinov2Model(config).state_dict().items()}

    def rule(key, shape, t):
        if key.endswith("lambda1") or key.endswith("lambda2") or ("norm" in key and key.endswith("weight")):
            return 1 + 0.1 * t
        return (0.5 if "embeddings" in key else 0.05) * t

    model = Dinov2Model(config)
    model.load_state_dict(_fill_rule(dict(sorted(shapes.items())), ICD_METRICS_SEED + 1, rule), strict=True)
    model.save_pretrained(folder)
    (Path(folder) / "preprocessor_config.json").write_text(json.dumps(DINOV2_PREPROCESSOR, indent=1))
    return Path(folder)


def write_clip_hf_folder(folder: Path) -> Path:
    """A tiny random ``CLIPModel`` (224 px, patch 14, 77 text positions, the full CLIP vocabulary; text
    config with the hub's legacy ``eos_token_id`` 2, so the pooled token is the largest id) in the layout
    of the hub's ``openai/clip-vit-large-patch14``: its tokenizer files (built offline from open_clip's
    vocabulary) and its processor and tokenizer configurations."""
    from transformers import CLIPConfig, CLIPModel

    from icd_bench.toy.tokenizer import build_clip_tokenizer

    config = CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=77, hidden_act="quick_gelu",
                         bos_token_id=0, eos_token_id=2, pad_token_id=1),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=224, patch_size=14, hidden_act="quick_gelu"),
        projection_dim=16)
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in CLIPModel(config).state_dict().items() if k != "logit_scale"}

    def rule(key, shape, t):
        if ("norm" in key or "layrnorm" in key) and key.endswith("weight"):
            return 1 + 0.1 * t
        return (0.5 if "embedding" in key else 0.05) * t

    weights = _fill_rule(dict(sorted(shapes.items())), ICD_METRICS_SEED + 2, rule)
    weights["logit_scale"] = torch.tensor(4.6052)
    model = CLIPModel(config)
    model.load_state_dict(weights, strict=False)
    model.save_pretrained(folder)
    tok = build_clip_tokenizer(Path(folder) / ".tokenizer")
    for name in ("vocab.json", "merges.txt"):
        (Path(tok) / name).replace(Path(folder) / name)
    (Path(folder) / "preprocessor_config.json").write_text(json.dumps(CLIP_HF_PREPROCESSOR, indent=1))
    (Path(folder) / "tokenizer_config.json").write_text(json.dumps(CLIP_HF_TOKENIZER_CONFIG, indent=1))
    (Path(folder) / "special_tokens_map.json").write_text(json.dumps(_CLIP_SPECIAL, indent=1))
    import shutil

    shutil.rmtree(Path(folder) / ".tokenizer")
    return Path(folder)


def vgg16_state_dict(classifier: bool = False) -> dict[str, torch.Tensor]:
    """A random torchvision VGG-16 (He-normal convolutions): ``features.*`` only, or with a zero
    ``classifier.*`` as torchvision's file holds it (what piq's ``vgg16(pretrained=True)`` loads)."""
    import torchvision

    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in torchvision.models.vgg16(weights=None).state_dict().items()}

    def rule(key, shape, t):
        if key.endswith("bias"):
            return 0.01 * t
        # kaiming_normal_(fan_out), torchvision's init
        return t * (2.0 / (shape[0] * shape[2] * shape[3])) ** 0.5

    out = _fill_rule({k: s for k, s in shapes.items() if k.startswith("features.")},
                     ICD_METRICS_SEED + 3, rule)
    if classifier:
        out.update({k: torch.zeros(s) for k, s in shapes.items() if k.startswith("classifier.")})
    return out


def piq_lpips_weights() -> list[torch.Tensor]:
    """Random non-negative per-channel LPIPS weights, five 1×C×1×1 tensors (piq's lpips_weights.pt)."""
    g = _gen(ICD_METRICS_SEED, 4)
    return [torch.randn(1, c, 1, 1, generator=g).abs() * 0.1 for c in (64, 128, 256, 512, 512)]


def fid_inception_state_dict() -> dict[str, torch.Tensor]:
    """Random weights of pytorch-fid's FID Inception (``fid_inception_v3``'s layout: torchvision's
    Inception-v3 with 1008 classes and the FID blocks): He-normal convolutions, BatchNorm as identity
    statistics with a small random affine part."""
    import torchvision
    from pytorch_fid import inception as pf

    with torch.device("meta"):
        net = torchvision.models.inception_v3(num_classes=1008, aux_logits=False,
                                              weights=None, init_weights=False)
        net.Mixed_5b = pf.FIDInceptionA(192, pool_features=32)
        net.Mixed_5c = pf.FIDInceptionA(256, pool_features=64)
        net.Mixed_5d = pf.FIDInceptionA(288, pool_features=64)
        net.Mixed_6b = pf.FIDInceptionC(768, channels_7x7=128)
        net.Mixed_6c = pf.FIDInceptionC(768, channels_7x7=160)
        net.Mixed_6d = pf.FIDInceptionC(768, channels_7x7=160)
        net.Mixed_6e = pf.FIDInceptionC(768, channels_7x7=192)
        net.Mixed_7b = pf.FIDInceptionE_1(1280)
        net.Mixed_7c = pf.FIDInceptionE_2(2048)
        shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}

    def rule(key, shape, t):
        if key.endswith("num_batches_tracked"):
            return torch.zeros((), dtype=torch.long)
        if key.endswith("running_mean"):
            return torch.zeros(shape)
        if key.endswith("running_var"):
            return torch.ones(shape)
        if ".bn." in key:
            return (1 + 0.1 * t) if key.endswith("weight") else 0.1 * t
        if key.startswith("fc."):
            return 0.01 * t
        return t * (2.0 / (shape[1] * shape[2] * shape[3])) ** 0.5

    return _fill_rule(shapes, ICD_METRICS_SEED + 5, rule)


def imagereward_layout(seed: int, *, v_width: int, v_depth: int, patch: int, image: int, v_mlp: int,
                       t_width: int, t_depth: int, t_inter: int, t_pos: int, t_vocab: int,
                       device: str = "cpu") -> dict[str, torch.Tensor]:
    """Random tensors under the key names and shapes of ImageReward.pt (BLIP_Pretrain + MLP, as saved:
    timm ViT names, med.py BERT names with cross-attention, the unused projections and position_ids)."""
    g = torch.Generator().manual_seed(seed) if device == "cpu" else None
    sd: dict[str, torch.Tensor] = {}

    def randn(*shape):
        return torch.randn(*shape, generator=g, device=device)

    def lin(name, out_f, in_f):
        sd[f"{name}.weight"] = randn(out_f, in_f) * in_f ** -0.5
        sd[f"{name}.bias"] = randn(out_f) * 0.1

    def ln(name, n):
        sd[f"{name}.weight"] = 1 + 0.1 * randn(n)
        sd[f"{name}.bias"] = 0.1 * randn(n)

    v = "blip.visual_encoder."
    sd[v + "cls_token"] = randn(1, 1, v_width) * 0.5
    sd[v + "pos_embed"] = randn(1, (image // patch) ** 2 + 1, v_width) * 0.5
    sd[v + "patch_embed.proj.weight"] = randn(v_width, 3, patch, patch) * (3 * patch ** 2) ** -0.5
    sd[v + "patch_embed.proj.bias"] = randn(v_width) * 0.1
    for i in range(v_depth):
        b = f"{v}blocks.{i}."
        ln(b + "norm1", v_width)
        lin(b + "attn.qkv", 3 * v_width, v_width)
        lin(b + "attn.proj", v_width, v_width)
        ln(b + "norm2", v_width)
        lin(b + "mlp.fc1", v_mlp, v_width)
        lin(b + "mlp.fc2", v_width, v_mlp)
    ln(v + "norm", v_width)
    t = "blip.text_encoder."
    sd[t + "embeddings.position_ids"] = torch.arange(t_pos, device=device).expand(1, -1).clone()
    sd[t + "embeddings.word_embeddings.weight"] = randn(t_vocab, t_width)
    sd[t + "embeddings.position_embeddings.weight"] = randn(t_pos, t_width) * 0.5
    ln(t + "embeddings.LayerNorm", t_width)
    for i in range(t_depth):
        b = f"{t}encoder.layer.{i}."
        for att, kv_width in (("attention", t_width), ("crossattention", v_width)):
            lin(f"{b}{att}.self.query", t_width, t_width)
            lin(f"{b}{att}.self.key", t_width, kv_width)
            lin(f"{b}{att}.self.value", t_width, kv_width)
            lin(f"{b}{att}.output.dense", t_width, t_width)
            ln(f"{b}{att}.output.LayerNorm", t_width)
        lin(b + "intermediate.dense", t_inter, t_width)
        lin(b + "output.dense", t_width, t_inter)
        ln(b + "output.LayerNorm", t_width)
    lin("blip.vision_proj", 256, v_width)  # in the published file, unused by ImageReward.score
    lin("blip.text_proj", 256, t_width)
    widths = (t_width, 1024, 128, 64, 16, 1)
    for idx, (i, o) in zip((0, 2, 4, 6, 7), zip(widths[:-1], widths[1:], strict=True), strict=True):
        lin(f"mlp.layers.{idx}", o, i)
    return sd


def _bert_vocab() -> list[str]:
    """A WordPiece vocabulary for ICD_METRIC_PROMPTS (BERT's special tokens first): every lower-case word
    and punctuation mark, except a few split into pieces (``sit ##ting``) or left out ([UNK])."""
    import re

    words = sorted({w for p in ICD_METRIC_PROMPTS for w in re.findall(r"\w+|[^\w\s]", p.lower())})
    pieces = {"sitting": ["sit", "##ting"], "photograph": ["photo", "##graph"], "painted": ["paint", "##ed"]}
    vocab = ["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    for w in words:
        if w == "sunny":
            continue  # an unknown word: [UNK]
        for tok in pieces.get(w, [w]):
            if tok not in vocab:
                vocab.append(tok)
    return vocab


#: ImageReward.pt in the published layout at its real vision size (the package builds BLIP's ViT-L/16 at
#: 224 px whatever the checkpoint holds) and a one-layer text encoder of BERT-base width (the package's
#: reward head is ``MLP(768)``); THUDM/ImageReward's med_config.json with those sizes.
IMAGEREWARD_SIZES = dict(v_width=1024, v_depth=24, patch=16, image=224, v_mlp=4096, t_width=768, t_depth=1,
                         t_inter=256, t_pos=40)


def imagereward_med_config() -> dict:
    return {"architectures": ["BertModel"], "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu",
            "hidden_dropout_prob": 0.1, "hidden_size": 768, "initializer_range": 0.02,
            "intermediate_size": IMAGEREWARD_SIZES["t_inter"], "layer_norm_eps": 1e-12,
            "max_position_embeddings": IMAGEREWARD_SIZES["t_pos"], "model_type": "bert",
            "num_attention_heads": 12, "num_hidden_layers": IMAGEREWARD_SIZES["t_depth"], "pad_token_id": 0,
            "type_vocab_size": 2, "vocab_size": len(_bert_vocab()) + 2, "encoder_width": 768,
            "add_cross_attention": True}


def write_imagereward(weights: Path, bert: Path) -> None:
    """``weights``/ImageReward.pt + med_config.json and ``bert``/vocab.txt
    (+ the hub's tokenizer_config.json)."""
    weights.mkdir(parents=True, exist_ok=True)
    bert.mkdir(parents=True, exist_ok=True)
    sd = imagereward_layout(ICD_METRICS_SEED + 6, t_vocab=len(_bert_vocab()) + 2, **IMAGEREWARD_SIZES)
    torch.save(sd, weights / "ImageReward.pt")
    (weights / "med_config.json").write_text(json.dumps(imagereward_med_config(), indent=1))
    (bert / "vocab.txt").write_text("\n".join(_bert_vocab()) + "\n")
    (bert / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True, "model_max_length": 512}))


def write_icd_metric_weights(root: Path, *, vgg_classifier: bool = False) -> Path:
    """Every weight of the icd flavour under ``root``, laid out as the project's weight keys
    (``ICD_BENCH_WEIGHTS=root``): dinov2-base, clip-vit-large-patch14, lpips-vgg, lpips-piq,
    fid-inception-pytorch, fid-stats-mscoco512-val, imagereward-v1, bert-base-uncased."""
    import numpy as np

    root = Path(root)
    write_dinov2_folder(root / "dinov2-base")
    write_clip_hf_folder(root / "clip-vit-large-patch14")
    for key, name, value in (("lpips-vgg", "vgg16-397923af.pth", vgg16_state_dict(classifier=vgg_classifier)),
                             ("lpips-piq", "lpips_weights.pt", piq_lpips_weights()),
                             ("fid-inception-pytorch", "pt_inception-2015-12-05-6726825d.pth",
                              fid_inception_state_dict())):
        (root / key).mkdir(parents=True, exist_ok=True)
        torch.save(value, root / key / name)
    (root / "fid-stats-mscoco512-val").mkdir(parents=True, exist_ok=True)
    np.savez(root / "fid-stats-mscoco512-val" / "fid_stats_mscoco512_val.npz", **icd_fid_reference())
    write_imagereward(root / "imagereward-v1", root / "bert-base-uncased")
    return root


# -- a run exported for PIE-Bench's own evaluate.py --------------------------------------------------------
PIE_EXPORT_SEED = 43
PIE_EXPORT_METHOD = "ddim+p2p"  # exported under a name evaluate.py knows: its "1_ddim+p2p" entry
#: (id, folder, original_prompt, editing_prompt, mask): a box edit, an edit whose mask covers the whole frame
#: (the unedited part is empty: evaluate.py writes "nan"), an edit with only the forced border as its mask,
#: a box over a run-length overrun; brackets as PIE-Bench marks its edited words.
PIE_EXPORT_CASES = (
    ("000000000000", "0_random_140", "a [cat] sitting on a wooden table",
     "a [dog] sitting on a wooden table", "box"),
    ("211000000001", "2_add_object_80", "a red car parked in front of a house",
     "a red car parked in front of a house [with a balloon]", "overrun"),
    ("611000000002", "6_change_color_40", "a [red] ball on the grass", "a [blue] ball on the grass", "all"),
    ("911000000003", "9_change_style_40", "a photo of a mountain lake",
     "[an oil painting] of a mountain lake", "none"),
)


def _pie_export_mask(kind: str) -> list[int]:
    side = 512
    if kind == "all":
        return [0, side * side]
    if kind == "none":
        return []
    if kind == "overrun":
        return [side * 300 + 100, 5000, side * side - 2000, 9000]
    return [v for r in range(180, 330) for v in (r * side + 140, 200)]  # rows 180-329, columns 140-339


def write_pie_export_data(root: Path) -> Path:
    """A PIE-Bench data folder (``mapping_file.json``, ``annotation_images/<folder>/<id>.jpg``) of
    PIE_EXPORT_CASES with 512² sources (_scene). The files hold PNG bytes under PIE-Bench's ``.jpg`` names
    (PIL reads by content), so both sides read the same pixels whatever libjpeg decodes."""
    import json

    from PIL import Image

    entries = {}
    for k, (sample_id, folder, src, tgt, kind) in enumerate(PIE_EXPORT_CASES):
        path = f"{folder}/{sample_id}.jpg"
        image = _scene(512, 512, _gen(PIE_EXPORT_SEED, k)).round().to(torch.uint8).permute(1, 2, 0).numpy()
        (root / "annotation_images" / folder).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / "annotation_images" / path, format="PNG")
        entries[sample_id] = {"image_path": path, "original_prompt": src, "editing_prompt": tgt,
                              "editing_instruction": "", "editing_type_id": sample_id[0], "blended_word": "",
                              "mask": _pie_export_mask(kind)}
    (root / "mapping_file.json").write_text(json.dumps(entries, indent=1))
    return root


def write_pie_export_edits(root: Path, data: Path) -> Path:
    """The edits, ``<id>.png`` (a folder the ``folder`` layout imports): each source with a recoloured band
    and noise."""
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    for k, (sample_id, folder, *_rest) in enumerate(PIE_EXPORT_CASES):
        with Image.open(data / "annotation_images" / folder / f"{sample_id}.jpg") as im:
            src = (torch.tensor(list(im.convert("RGB").getdata()), dtype=torch.float32)
                   .view(512, 512, 3).permute(2, 0, 1))
        g = _gen(PIE_EXPORT_SEED, 100 + k)
        out = src.clone()
        out[:, 160:340] = out[:, 160:340].roll(1, dims=0) + 25 * torch.randn(3, 180, 512, generator=g)
        out = (out + 6 * torch.randn(out.shape, generator=g)).clamp(0, 255).round().to(torch.uint8)
        Image.fromarray(out.permute(1, 2, 0).numpy()).save(root / f"{sample_id}.png")
    return root


def pie_export_tree(root: Path) -> dict[str, Path]:
    """The PIE-Bench data, a run of its edits (``icd-bench import``'s folder layout) and that run exported
    with ``icd-bench export --layout piebench --name PIE_EXPORT_METHOD`` into ``root/eval``."""
    from icd_bench.interchange import export_run, import_outputs

    data = write_pie_export_data(root / "data")
    edits = write_pie_export_edits(root / "edits", data)
    run = root / "run"
    summary = import_outputs("folder", edits, dataset="piebench", data_dir=data, out=run)
    if summary.errors:
        raise RuntimeError(f"import failed: {summary.errors}")
    export_run(run, "piebench", root / "eval", name=PIE_EXPORT_METHOD)
    return {"data": data, "run": run, "eval": root / "eval",
            "images": root / "eval" / "output" / PIE_EXPORT_METHOD / "annotation_images"}


def write_pie_weights(root: Path) -> Path:
    """A weights folder (``ICD_BENCH_WEIGHTS``) with what the ``pie`` flavour loads, on the goldens' random
    weights: ``dino-vitb8`` (dino_state_dict), the LPIPS SqueezeNet trunk (lpips_trunk) and the tiny CLIP as
    an open_clip checkpoint (``clip-icd-golden-clip-openai``, its architecture registered with open_clip)."""
    import open_clip

    from icd_bench.metrics import perceptual

    write_dino_vit(root / "dino-vitb8")
    spec = perceptual.NETS["squeeze"]
    (root / spec.key).mkdir(parents=True, exist_ok=True)
    torch.save(lpips_trunk(), root / spec.key / spec.files[0])
    config = root / f"{CLIP_NAME}.json"
    config.write_text(json.dumps(CLIP_CONFIG))
    open_clip.add_model_config(config)
    (root / f"clip-{CLIP_NAME}-openai").mkdir(exist_ok=True)
    torch.save(clip_open_clip_state_dict(), root / f"clip-{CLIP_NAME}-openai" / "open_clip_pytorch_model.bin")
    return root
