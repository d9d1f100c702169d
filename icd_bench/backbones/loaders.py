"""Loading SD1.5- and SDXL-style models from a local diffusers directory or a hub id.

Each component loads with diffusers' / transformers' own ``from_pretrained``. Whatever keeps a
model from loading — not a directory, not in the local cache under ``HF_HUB_OFFLINE=1``, no such
repository, a missing component — becomes one `BackboneNotFoundError` that says how to fix it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from icd_bench.backbones.base import Backbone
from icd_bench.errors import BackboneNotFoundError

#: The noise schedule of SD1.5 / SDXL (and the iCD reference code's base scheduler).
SD_SCHEDULER_CONFIG = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                           beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False,
                           steps_offset=1)


def quiet_libraries() -> None:
    """No per-file progress bars or info chatter from diffusers / transformers while loading."""
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    for log in (dlog, tlog):
        log.set_verbosity_error()
        log.disable_progress_bar()


def offline() -> bool:
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    return env or bool(getattr(constants, "HF_HUB_OFFLINE", False))


def _how_to_fix(source: str, local: bool = False) -> str:
    if local:
        return ("Re-download or re-save the whole pipeline there (`save_pretrained` of a diffusers "
                "pipeline writes every component listed in model_index.json).")
    name = source.rstrip("/").split("/")[-1] or "model"
    return (f"Download it on a machine with network access (`huggingface-cli download {source} "
            f"--local-dir models/{name}`), copy it here and pass `--backbone models/{name}`"
            + ("; or unset HF_HUB_OFFLINE to let the hub be reached." if offline() else "."))


def _model_index(source: str, local: bool) -> dict:
    """model_index.json of a directory or a hub repository (from the cache when offline)."""
    if local:
        path = Path(source) / "model_index.json"
        if not path.is_file():
            raise BackboneNotFoundError(
                f"{source} is not a diffusers model directory (no model_index.json). "
                f"Expected a pipeline layout with model_index.json, tokenizer/, text_encoder/, unet/, "
                f"vae/ and scheduler/.")
        return json.loads(path.read_text())
    from huggingface_hub import hf_hub_download

    try:
        path = hf_hub_download(source, "model_index.json", local_files_only=offline())
    except Exception as exc:  # every hub failure means the same thing to the user
        why = "it is not in the local cache and HF_HUB_OFFLINE=1" if offline() else type(exc).__name__
        raise BackboneNotFoundError(f"cannot load backbone {source!r}: {why}. {_how_to_fix(source)}") from None
    return json.loads(Path(path).read_text())


def _load(cls, source: str, subfolder: str, local: bool, **kw):
    if local and not (Path(source) / subfolder).is_dir():
        raise BackboneNotFoundError(f"{source} has no {subfolder}/ folder: the model directory is "
                                    f"incomplete. {_how_to_fix(source, local)}")
    try:
        return cls.from_pretrained(source, subfolder=subfolder, local_files_only=local or offline(), **kw)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BackboneNotFoundError(f"cannot load {subfolder} of backbone {source!r}: {first}. "
                                    f"{_how_to_fix(source, local)}") from None


def load_pretrained(source: str, *, device: torch.device | str = "cpu",
                    dtype: torch.dtype = torch.float32) -> Backbone:
    """An SD1.5- or SDXL-style Backbone from a local diffusers directory or a hub id."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    quiet_libraries()
    local = Path(source).expanduser().is_dir()
    if local:
        source = str(Path(source).expanduser())
    index = _model_index(source, local)
    is_xl = "text_encoder_2" in index or "XL" in index.get("_class_name", "")

    tokenizers = [_load(CLIPTokenizer, source, "tokenizer", local)]
    text_encoders = [_load(CLIPTextModel, source, "text_encoder", local, torch_dtype=dtype)]
    if is_xl:
        tokenizers.append(_load(CLIPTokenizer, source, "tokenizer_2", local))
        text_encoders.append(_load(CLIPTextModelWithProjection, source, "text_encoder_2", local,
                                   torch_dtype=dtype))
    unet = _load(UNet2DConditionModel, source, "unet", local, torch_dtype=dtype)
    vae = _load(AutoencoderKL, source, "vae", local) if "vae" in index else None  # pixel-space: none
    has_scheduler = (Path(source) / "scheduler").is_dir() if local else "scheduler" in index
    if has_scheduler:
        scheduler = _load(DDIMScheduler, source, "scheduler", local)
        scheduler = DDIMScheduler.from_config(scheduler.config, clip_sample=False)
    else:
        scheduler = DDIMScheduler(**SD_SCHEDULER_CONFIG)
    scale = 2 ** (len(vae.config.block_out_channels) - 1) if vae is not None else 1
    kind = index.get("_icd_bench", {}).get("kind") or ("sdxl" if is_xl else "sd15")
    return Backbone(kind=kind, source=source, tokenizers=tokenizers,
                    text_encoders=text_encoders, unet=unet, vae=vae, scheduler=scheduler,
                    resolution=int(unet.config.sample_size) * scale, device=device, dtype=dtype,
                    force_zeros_for_empty_prompt=bool(index.get("force_zeros_for_empty_prompt", is_xl)))
