"""Loading SD1.5- and SDXL-style models from a local diffusers directory or a hub id.

Each component loads with diffusers' / transformers' own ``from_pretrained``. Whatever keeps a
model from loading — not a directory, not in the local cache under ``HF_HUB_OFFLINE=1``, no such
repository, a missing or incomplete component — becomes one `BackboneNotFoundError` that names
the source, says why and says how to fix it.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from icd_bench.backbones.base import Backbone
from icd_bench.errors import BackboneNotFoundError, IcdBenchError, first_line

#: The noise schedule of SD1.5 / SDXL (and the iCD reference code's base scheduler).
SD_SCHEDULER_CONFIG = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                           beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False,
                           steps_offset=1)

_MODEL_WEIGHTS = ("*.safetensors", "*.bin", "*.safetensors.index.json", "*.bin.index.json")


def quiet_libraries() -> None:
    """No per-file progress bars or info chatter from diffusers / transformers while loading."""
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    for log in (dlog, tlog):
        log.set_verbosity_error()
        log.disable_progress_bar()


def offline() -> bool:
    """Whether the hub must not be contacted: ``HF_HUB_OFFLINE`` now, or when the hub was imported."""
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    return env or bool(getattr(constants, "HF_HUB_OFFLINE", False))


def _load_errors() -> tuple[type[BaseException], ...]:
    """What ``from_pretrained`` / ``hf_hub_download`` raise for a model that is not there.

    OSError covers EnvironmentError, most hub errors (RepositoryNotFoundError, LocalEntryNotFoundError,
    HTTP errors) and missing files; ValueError covers invalid repo ids and unreadable configs;
    EntryNotFoundError is not an OSError in every huggingface_hub release.
    """
    from huggingface_hub.errors import EntryNotFoundError

    errors: list[type[BaseException]] = [OSError, ValueError, EntryNotFoundError]
    try:  # connection failures of huggingface_hub ≥ 1.0 (httpx) are not OSErrors
        import httpx

        errors.append(httpx.HTTPError)
    except ImportError:  # pragma: no cover - older huggingface_hub uses requests (OSError)
        pass
    return tuple(errors)


# -- messages -------------------------------------------------------------------------------------
def _how_to_fix(source: str, local: bool = False) -> str:
    if local:
        return ("Re-download or re-save the whole pipeline there (`save_pretrained` of a diffusers "
                "pipeline writes every component listed in model_index.json).")
    name = source.rstrip("/").split("/")[-1] or "model"
    return (f"Download it on a machine with network access (`hf download {source} --local-dir "
            f"models/{name}`, or `huggingface-cli download ...` with older huggingface_hub), copy it "
            f"here and pass `--backbone models/{name}`"
            + ("; or unset HF_HUB_OFFLINE to let the hub be reached." if offline() else "."))


def _hub_reason(exc: BaseException) -> str:
    """Why a hub id could not be used, in words (the exception types say it best)."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    if isinstance(exc, LocalEntryNotFoundError):
        return ("it is not in the local Hugging Face cache and HF_HUB_OFFLINE is set" if offline()
                else "it is not in the local Hugging Face cache and the hub cannot be reached")
    if isinstance(exc, GatedRepoError):
        return "the repository is gated: accept its licence on the hub and log in (`hf auth login`)"
    if isinstance(exc, RepositoryNotFoundError):
        return "no such repository on the hub (or it is private: log in with `hf auth login`)"
    if isinstance(exc, EntryNotFoundError):
        return f"the repository lacks a file ({first_line(exc)})"
    if isinstance(exc, HFValidationError):
        return "it is neither a local directory nor a valid hub id (owner/name)"
    return first_line(exc)


# -- pieces ---------------------------------------------------------------------------------------
def _model_index(source: str, local: bool) -> dict:
    """model_index.json of a directory or a hub repository (from the cache when offline)."""
    if local:
        path = Path(source) / "model_index.json"
        if not path.is_file():
            raise BackboneNotFoundError(
                f"{source} is not a diffusers model directory (no model_index.json). Pass the directory "
                f"that holds model_index.json, tokenizer/, text_encoder/, unet/, vae/ and scheduler/ "
                f"(plus tokenizer_2/ and text_encoder_2/ for SDXL), as `hf download <hub id> --local-dir "
                f"<dir>` or a pipeline's `save_pretrained` writes it; single-file checkpoints are not read.")
    else:
        from huggingface_hub import hf_hub_download

        try:
            path = Path(hf_hub_download(source, "model_index.json", local_files_only=offline()))
        except _load_errors() as exc:
            raise BackboneNotFoundError(
                f"cannot load backbone {source!r}: there is no local directory of that name, and as a "
                f"hub id {_hub_reason(exc)}. {_how_to_fix(source)}") from None
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BackboneNotFoundError(f"cannot read model_index.json of backbone {source!r}: "
                                    f"{first_line(exc)}. {_how_to_fix(source, local)}") from None
    if not isinstance(index, dict):
        raise BackboneNotFoundError(f"model_index.json of backbone {source!r} is not a JSON object. "
                                    f"{_how_to_fix(source, local)}")
    return index


def _listed(index: dict, name: str) -> bool:
    """A component model_index.json names (``[null, null]`` marks an absent optional one)."""
    entry = index.get(name)
    return isinstance(entry, list | tuple) and len(entry) == 2 and entry[1] is not None


def _check_local(source: str, subfolder: str) -> None:
    """The files ``from_pretrained`` needs, checked up front so the message names what is missing."""
    folder = Path(source) / subfolder
    if not folder.is_dir():
        missing = f"no {subfolder}/ folder"
    elif subfolder.startswith("tokenizer"):
        has = (folder / "tokenizer.json").is_file() or all(
            (folder / f).is_file() for f in ("vocab.json", "merges.txt"))
        missing = "" if has else (f"no tokenizer files in {subfolder}/ "
                                  f"(tokenizer.json, or vocab.json and merges.txt)")
    elif subfolder == "scheduler":
        missing = "" if (folder / "scheduler_config.json").is_file() else "no scheduler/scheduler_config.json"
    elif not (folder / "config.json").is_file():
        missing = f"no {subfolder}/config.json"
    elif not any(next(folder.glob(p), None) for p in _MODEL_WEIGHTS):
        missing = f"no weights in {subfolder}/ (*.safetensors or *.bin)"
    else:
        missing = ""
    if missing:
        raise BackboneNotFoundError(f"{source} has {missing}: the model directory is incomplete. "
                                    f"{_how_to_fix(source, local=True)}")


def _transformers_dtype_kw() -> str:
    """transformers ≥ 4.56 takes ``dtype=`` (and warns on ``torch_dtype=``); older ones the reverse."""
    import transformers

    major, minor = (int(p) for p in transformers.__version__.split(".")[:2])
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"


def _load(cls, source: str, subfolder: str, local: bool, **kw) -> Any:
    if local:
        _check_local(source, subfolder)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks.*")
            return cls.from_pretrained(source, subfolder=subfolder, local_files_only=local or offline(), **kw)
    except _load_errors() as exc:
        why = first_line(exc) if local else _hub_reason(exc)
        raise BackboneNotFoundError(f"cannot load the {subfolder}/ component of backbone {source!r}: "
                                    f"{why}. {_how_to_fix(source, local)}") from None


def _load_tokenizer(source: str, subfolder: str, local: bool, max_length: int):
    from transformers import CLIPTokenizer

    tok = _load(CLIPTokenizer, source, subfolder, local)
    if len(tok.get_vocab()) <= len(set(tok.all_special_tokens)):
        raise BackboneNotFoundError(f"the {subfolder}/ of backbone {source!r} has no vocabulary (its "
                                    f"tokenizer files are missing or empty). {_how_to_fix(source, local)}")
    if tok.model_max_length > 100_000:  # no model_max_length in its config: the encoder's length
        tok.model_max_length = max_length
    return tok


_COMPONENTS = ("text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "unet", "vae", "scheduler")


def check_pretrained(source: str) -> None:
    """What `load_pretrained` needs, checked without loading a weight: model_index.json and every
    component it lists — the files for a local directory, the configs in the hub cache otherwise
    (offline) or on the hub. Raises `BackboneNotFoundError` naming what is missing."""
    path = Path(source).expanduser()
    if path.is_file():
        raise BackboneNotFoundError(f"{source} is a file: single-file checkpoints are not read")
    local = path.is_dir()
    source = str(path) if local else source
    index = _model_index(source, local)
    listed = [c for c in _COMPONENTS if _listed(index, c)]
    if local:
        for component in listed:
            _check_local(source, component)
        return
    if not offline():
        return  # model_index.json came from the hub; the rest downloads on first use
    from huggingface_hub import try_to_load_from_cache

    name = {"scheduler": "scheduler_config.json", "tokenizer": "tokenizer_config.json",
            "tokenizer_2": "tokenizer_config.json"}
    missing = [c for c in listed
               if not isinstance(try_to_load_from_cache(source, f"{c}/{name.get(c, 'config.json')}"), str)]
    if missing:
        raise BackboneNotFoundError(f"backbone {source!r} is only partly in the hub cache (no "
                                    f"{', '.join(m + '/' for m in missing)}). {_how_to_fix(source)}")


def load_pretrained(source: str, *, device: torch.device | str = "cpu",
                    dtype: torch.dtype = torch.float32) -> Backbone:
    """An SD1.5- or SDXL-style `Backbone` from a local diffusers directory or a hub id.

    SDXL-style (two text encoders, ``text_time`` conditioning) when model_index.json lists
    ``text_encoder_2`` or names an XL pipeline. The scheduler becomes a `DDIMScheduler` with the
    model's own schedule (``clip_sample=False``), or SD's default schedule when there is none.
    Raises `BackboneNotFoundError` when the model or a component of it cannot be found.
    """
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    quiet_libraries()
    path = Path(source).expanduser()
    if path.is_file():
        raise BackboneNotFoundError(
            f"{source} is a file: single-file checkpoints are not read. Pass a directory in the diffusers "
            f"layout (model_index.json, unet/, vae/, ...), e.g. from "
            f"`hf download <hub id> --local-dir <dir>`.")
    local = path.is_dir()
    if local:
        source = str(path)
    index = _model_index(source, local)
    is_xl = _listed(index, "text_encoder_2") or "XL" in str(index.get("_class_name", ""))
    tdtype = {_transformers_dtype_kw(): dtype}

    encoder_names = ["text_encoder", "text_encoder_2"] if is_xl else ["text_encoder"]
    text_encoders = [_load(CLIPTextModelWithProjection if name.endswith("_2") else CLIPTextModel,
                           source, name, local, **tdtype) for name in encoder_names]
    tokenizers = [_load_tokenizer(source, name.replace("text_encoder", "tokenizer"), local,
                                  int(enc.config.max_position_embeddings))
                  for name, enc in zip(encoder_names, text_encoders, strict=True)]
    unet = _load(UNet2DConditionModel, source, "unet", local, torch_dtype=dtype)
    # Pixel-space models (the toy world's) have no VAE: model_index.json lists none.
    has_vae = _listed(index, "vae") or (local and (Path(source) / "vae").is_dir())
    vae = _load(AutoencoderKL, source, "vae", local) if has_vae else None
    if vae is None and int(unet.config.in_channels) != 3:
        raise BackboneNotFoundError(f"backbone {source!r} has no vae/ although its UNet works on "
                                    f"{unet.config.in_channels}-channel latents. "
                                    f"{_how_to_fix(source, local)}")

    has_scheduler = (Path(source) / "scheduler").is_dir() if local else _listed(index, "scheduler")
    if has_scheduler:
        scheduler = _load(DDIMScheduler, source, "scheduler", local, clip_sample=False)
    else:
        scheduler = DDIMScheduler(**SD_SCHEDULER_CONFIG)
    if scheduler.config.prediction_type != "epsilon":
        raise IcdBenchError(f"backbone {source!r} predicts {scheduler.config.prediction_type!r}, but "
                            f"icd-bench backbones predict the noise ('epsilon'), as SD1.5 and SDXL base do.")

    scale = 2 ** (len(vae.config.block_out_channels) - 1) if vae is not None else 1
    sample_size = unet.config.sample_size
    if isinstance(sample_size, list | tuple):
        sample_size = sample_size[0]
    kind = (index.get("_icd_bench") or {}).get("kind") or ("sdxl" if is_xl else "sd15")
    return Backbone(kind=kind, source=source, tokenizers=tokenizers, text_encoders=text_encoders,
                    unet=unet, vae=vae, scheduler=scheduler, resolution=int(sample_size) * scale,
                    device=device, dtype=dtype,
                    force_zeros_for_empty_prompt=bool(index.get("force_zeros_for_empty_prompt", is_xl)))
