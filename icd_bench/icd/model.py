"""iCD's two consistency models on one UNet: a guidance-embedded base + two named LoRA adapters.

The forward model fCDm and the reverse model CDm share the (guidance-distilled) UNet and differ
only by a LoRA adapter, as in the public release. Both adapters are injected with peft into the
one UNet in memory and switched per call (`active_adapter`, a block that puts the previous adapter
back); nothing is deep-copied.

File formats are the release's (REFERENCE.md): the guidance-distilled UNet is a plain state dict
(``.pt``, read with ``weights_only=True``, or ``.safetensors``) of a `UNet2DConditionModel` with
``time_cond_proj_dim``; each adapter is a safetensors file with peft-style keys
``unet.base_model.model.<module path>.lora_A.weight`` / ``lora_B.weight``. Adapters this project
trains are saved the same way, with rank / alpha / targets in the safetensors metadata.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from pathlib import Path

import torch

from icd_bench.errors import ConfigError, first_line
from icd_bench.paths import user_path

FORWARD, REVERSE = "fcdm", "cdm"  # adapter names ("forward" would shadow nn.Module.forward in peft)
#: Key prefix of the released LoRA files (peft's PeftModel wrapping the UNet).
PEFT_PREFIX = "unet.base_model.model."
#: The modules LoRA targets when adapters are created here (LCM-LoRA's list, which the reference
#: training code inherits); imported adapters use exactly the modules their file names.
DEFAULT_LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj",
                        "ff.net.2", "conv1", "conv2", "conv_shortcut", "downsamplers.0.conv",
                        "upsamplers.0.conv", "time_emb_proj")
#: The release's LoRA scale: alpha 8 at rank 64 (the reference loader's conversion).
RELEASE_LORA_ALPHA = 8.0
#: SD1.5's guidance-embedding width in the release (``time_cond_proj_dim``).
RELEASE_GUIDANCE_DIM = 512


# -- the guidance-embedded base -------------------------------------------------------------------

def add_guidance_embedding(unet, dim: int = RELEASE_GUIDANCE_DIM, *, share_weights: bool = False):
    """A copy of ``unet`` with a ``time_cond_proj_dim = dim`` guidance input that starts as a no-op.

    The new projection (``time_embedding.cond_proj``) is zero-initialised, so the result computes
    exactly what ``unet`` did for every w: the starting point of guidance distillation. A UNet that
    already has the input is copied as it is (its own width and projection): the result is never
    ``unet`` itself, so adapters attached to it leave ``unet`` as it was. ``share_weights``: the copy
    holds ``unet``'s own tensors (no second set of weights in memory) — for callers that replace
    ``unet`` by it.
    """
    if unet.config.time_cond_proj_dim is not None:
        return _copy(unet, share_weights)
    state = _state(unet, share_weights)
    new, missing, unexpected = _with_guidance_input(unet, dim, state)
    if unexpected or set(missing) != {"time_embedding.cond_proj.weight"}:
        raise RuntimeError(f"unexpected keys adding the guidance embedding: {missing} {unexpected}")
    proj = new.time_embedding.cond_proj
    proj.weight = torch.nn.Parameter(torch.zeros(proj.weight.shape, dtype=state["conv_in.weight"].dtype))
    return _placed_like(new, unet)


def _state(unet, share_weights: bool) -> dict[str, torch.Tensor]:
    """``unet``'s tensors, detached: its own (``share_weights``) or copies."""
    return {k: v.detach() if share_weights else v.detach().clone() for k, v in unet.state_dict().items()}


def _with_guidance_input(unet, dim: int, state: dict[str, torch.Tensor]):
    """A UNet of ``unet``'s architecture with a ``time_cond_proj_dim = dim`` input holding ``state``,
    and the keys it missed / did not expect. Built on the meta device and given the tensors of
    ``state`` (no random initialisation of weights that are overwritten at once: seconds at SD sizes);
    missing parameters stay on the meta device for the caller to fill."""
    from diffusers import UNet2DConditionModel

    config = {k: v for k, v in dict(unet.config).items() if not k.startswith("_")}
    with torch.device("meta"):
        new = UNet2DConditionModel.from_config({**config,
                                                "time_cond_proj_dim": None if dim is None else int(dim)})
    missing, unexpected = new.load_state_dict(state, strict=False, assign=True)
    return new, missing, unexpected


def shared_copy(unet):
    """A second UNet module over ``unet``'s own tensors (no second set of weights): adapters attached
    to it leave ``unet`` as it was."""
    return _copy(unet, share_weights=True)


def _copy(unet, share_weights: bool):
    """A second UNet module of ``unet``'s architecture (its guidance input as it is) over its tensors."""
    new, missing, unexpected = _with_guidance_input(unet, unet.config.time_cond_proj_dim,
                                                    _state(unet, share_weights))
    if missing or unexpected:
        raise RuntimeError(f"unexpected keys copying the UNet: {missing} {unexpected}")
    return _placed_like(new, unet)


def _placed_like(new, unet):
    """``new`` on ``unet``'s device and dtype, frozen, in eval mode."""
    param = next(unet.parameters())
    return new.to(device=param.device, dtype=param.dtype).eval().requires_grad_(False)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A tensor state dict from ``.safetensors`` or a ``.pt`` / ``.bin`` (``weights_only=True``);
    ``bundled:REL`` names a file shipped in the package (`icd_bench.paths.user_path`)."""
    path = user_path(path)
    if not path.is_file():
        raise ConfigError(f"checkpoint file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:  # noqa: BLE001 - a truncated or foreign file is a bad file for the user
            raise ConfigError(f"{path} is not a readable safetensors file ({first_line(e)}); "
                              "download or export it again") from None
    try:
        with warnings.catch_warnings():  # torch's own advice on unpickling is not the user's fix here
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file for the user
        raise ConfigError(f"{path} is not a tensor state dict loadable with weights_only=True "
                          f"({first_line(e)}); only plain tensor checkpoints are read, "
                          f"never pickled code") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ConfigError(f"{path} does not hold a plain state dict of tensors")
    return state


def load_guidance_distilled_unet(path: str | Path, base_unet):
    """The release's guidance-distilled UNet: ``base_unet``'s architecture + ``time_cond_proj_dim``
    (read from the checkpoint), weights from ``path``."""
    state = read_state_dict(path)
    proj = state.get("time_embedding.cond_proj.weight")
    if proj is None:
        raise ConfigError(f"{path} has no guidance embedding (time_embedding.cond_proj.weight): it is not a "
                          "guidance-distilled UNet")
    unet, missing, unexpected = _with_guidance_input(base_unet, int(proj.shape[1]), state)
    if missing or unexpected:
        raise ConfigError(f"{path} does not match the backbone's UNet: {len(missing)} missing keys "
                          f"(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})")
    return _placed_like(unet, base_unet)


# -- LoRA adapters ---------------------------------------------------------------------------------

def read_lora(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """A LoRA file → (peft state dict without prefix, info: rank, alpha or None, target modules)."""
    path = user_path(path)
    state = read_state_dict(path)
    meta: dict = {}
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    out = {}
    for key, value in state.items():
        for prefix in (PEFT_PREFIX, "base_model.model."):
            if key.startswith(prefix):
                key = key[len(prefix):]
                break
        out[key] = value
    downs = {k: v for k, v in out.items() if k.endswith(".lora_A.weight")}
    if not downs or any(not (k.endswith(".lora_A.weight") or k.endswith(".lora_B.weight")) for k in out):
        raise ConfigError(f"{path} is not a peft-style LoRA file (keys '<module>.lora_A.weight' / "
                          f"'<module>.lora_B.weight', optionally prefixed '{PEFT_PREFIX}')")
    ranks = {int(v.shape[0]) for v in downs.values()}
    if len(ranks) != 1:
        raise ConfigError(f"{path} mixes LoRA ranks {sorted(ranks)}")
    targets = sorted(k[: -len(".lora_A.weight")] for k in downs)
    alpha = float(meta["lora_alpha"]) if "lora_alpha" in meta else None
    return out, {"rank": ranks.pop(), "alpha": alpha, "targets": targets}


@contextlib.contextmanager
def active_adapter(unet, name: str):
    """Run ``unet`` with adapter ``name`` inside this block; the adapters active before come back after."""
    before = list(unet.active_adapters())
    unet.set_adapter(name)
    try:
        yield unet
    finally:
        if before != [name]:
            unet.set_adapter(before)


@contextlib.contextmanager
def adapters_off(unet):
    """Run ``unet`` without its adapters inside this block (the guidance-distilled teacher)."""
    unet.disable_adapters()
    try:
        yield unet
    finally:
        unet.enable_adapters()


def attach_adapter(unet, name: str, *, rank: int, alpha: float, targets=DEFAULT_LORA_TARGETS) -> None:
    """Inject a LoRA adapter called ``name`` (B = 0: the adapter starts as the identity)."""
    import warnings

    from peft import LoraConfig

    with warnings.catch_warnings():  # two adapters on one UNet is the point here
        warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
        unet.add_adapter(LoraConfig(r=int(rank), lora_alpha=float(alpha), target_modules=list(targets),
                                    init_lora_weights=True), adapter_name=name)


def load_adapter(unet, name: str, path: str | Path, *, alpha: float | None = None) -> dict:
    """Attach adapter ``name`` with the weights of a LoRA file (release or project format)."""
    from peft import set_peft_model_state_dict

    state, info = read_lora(path)
    info["alpha"] = float(alpha if alpha is not None else info["alpha"] or RELEASE_LORA_ALPHA)
    modules = dict(unet.named_modules())
    unknown = [t for t in info["targets"] if t not in modules]
    if unknown:
        raise ConfigError(f"{path} targets modules the UNet does not have, e.g. {unknown[:3]}: "
                          "is it an adapter for another backbone?")
    attach_adapter(unet, name, rank=info["rank"], alpha=info["alpha"], targets=info["targets"])
    try:
        result = set_peft_model_state_dict(unet, state, adapter_name=name)
    except RuntimeError as e:  # shape mismatches
        raise ConfigError(f"{path} does not fit the UNet: {str(e).splitlines()[0]}") from None
    if result.unexpected_keys:
        raise ConfigError(f"{path}: {len(result.unexpected_keys)} keys were not used, "
                          f"e.g. {result.unexpected_keys[:3]}")
    return info


def start_adapter_from(unet, name: str, path: str | Path) -> dict:
    """Give the attached adapter ``name`` the weights of a LoRA file of at most its rank so that it computes
    the file's update exactly: A's first rows are the file's, B's first columns the file's times
    (file's alpha / rank) / (adapter's alpha / rank); the other rows of A keep their initialisation and the
    other columns of B are zero (a continued training may so widen an adapter). Returns the file's info."""
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    state, info = read_lora(path)
    cfg = unet.peft_config[name]
    if info["rank"] > cfg.r:
        raise ConfigError(f"{path} has LoRA rank {info['rank']}, above the adapter's {cfg.r}")
    current = get_peft_model_state_dict(unet, adapter_name=name)
    if set(state) != set(current):
        raise ConfigError(f"{path} targets other modules than the adapter (e.g. "
                          f"{sorted(set(state) ^ set(current))[:3]}): is it an adapter for another backbone?")
    scale = (info["alpha"] or RELEASE_LORA_ALPHA) / info["rank"] / (cfg.lora_alpha / cfg.r)
    r = info["rank"]
    merged = {}
    for key, value in current.items():
        new = value.detach().clone()
        given = state[key].to(new.dtype)
        if key.endswith(".lora_A.weight"):
            new[:r] = given
        else:
            new.zero_()
            new[:, :r] = given * scale
        merged[key] = new
    set_peft_model_state_dict(unet, merged, adapter_name=name)
    return info


def save_adapter(unet, name: str, path: str | Path) -> Path:
    """Save adapter ``name`` in the release's layout (peft keys under ``unet.base_model.model.``)."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    cfg = unet.peft_config[name]
    state = get_peft_model_state_dict(unet, adapter_name=name)
    state = {PEFT_PREFIX + k: v.detach().cpu().contiguous() for k, v in state.items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"lora_rank": str(cfg.r), "lora_alpha": str(cfg.lora_alpha),
            "target_modules": json.dumps(sorted(cfg.target_modules))}
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(state, str(tmp), metadata=meta)
    tmp.replace(path)
    return path


def half_copy(src: str | Path, dst: str | Path) -> Path:
    """Copy a safetensors file with its floating tensors stored as fp16 (metadata kept): the bundled
    toy models ship this way (half the size; models load them into their own dtype)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    src, dst = user_path(src), Path(dst)
    if not src.is_file():
        raise ConfigError(f"not found: {src}")
    with safe_open(str(src), framework="pt") as f:
        meta = f.metadata() or {}
        state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
    state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    dst.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(dst), metadata=meta)
    return dst


def trained_guidance_scales(teacher: str | None, reverse_lora: str | None) -> tuple[list[float], str] | None:
    """The guidance scales a decoding adapter was trained on, and where that is written: the ``icd.json``
    beside the reverse adapter (``icd-bench train icd``'s output, the bundled toy models), else the
    guidance-distilled teacher's recipe (its safetensors metadata); None when neither says (the release)."""
    import json

    if reverse_lora:
        info = user_path(reverse_lora).parent / "icd.json"
        try:
            scales = json.loads(info.read_text())["recipe"]["train"]["guidance_scales"]
            return [float(w) for w in scales], str(info)
        except (OSError, KeyError, TypeError, ValueError):
            pass
    if teacher and str(teacher).endswith(".safetensors") and user_path(teacher).is_file():
        from safetensors import safe_open

        try:
            with safe_open(str(user_path(teacher)), "pt") as f:
                recipe = json.loads((f.metadata() or {}).get("recipe", "{}"))
            return [float(w) for w in recipe["train"]["guidance_scales"]], str(teacher)
        except (OSError, KeyError, TypeError, ValueError):
            pass
    return None
