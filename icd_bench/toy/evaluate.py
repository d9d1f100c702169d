"""The toy teacher's quality bar: oracle accuracy of its samples on held-out combinations, DDIM
inversion → reconstruction PSNR on the demo images, and a grid of samples a person can look at."""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch
from PIL import Image

from icd_bench.backbones.base import Backbone
from icd_bench.diffusion import ddim_invert, ddim_sample, ddim_timesteps, guided_noise
from icd_bench.gallery import image_grid
from icd_bench.imaging import psnr, tensor_to_pil
from icd_bench.toy import scenes
from icd_bench.toy.oracle import score_scene

#: Picked by ``icd-bench toy pick-guidance`` on training combinations (never the held-out set):
#: the highest mean of colour, position and background accuracy at DDIM 25 among w = 2, 3, 4, 5
#: (``reports/toy/guidance-pick.csv``).
DEFAULT_GUIDANCE = 2.0


def _grid(backbone: Backbone, steps: int) -> list[int]:
    return ddim_timesteps(backbone.scheduler, steps, None)


def _ddim_decode(backbone: Backbone, latents, prompts: list[str], steps: int, w: float):
    """DDIM decoding with constant CFG w (the ``ddim`` method's, τ = 1) → images in [0, 1]."""
    cond = backbone.encode_prompt(prompts)
    null = backbone.null_embeds(len(prompts)) if w != 1.0 else None
    x0 = ddim_sample(lambda x, t, i: guided_noise(backbone, x, t, cond, null, w), latents,
                     _grid(backbone, steps), backbone.alphas_cumprod, backbone.final_alpha_cumprod)
    return backbone.decode(x0)


def sample_accuracy(backbone: Backbone, *, steps: int = 50, guidance: float = DEFAULT_GUIDANCE,
                    total: int = 160, seed: int = 0, batch: int = 32, progress: bool = False,
                    eval_scenes: list[scenes.Scene] | None = None, seed_base: int | None = None,
                    per_scene: list[dict[str, bool]] | None = None):
    """DDIM samples of every quality-bar scene (or of ``eval_scenes``); returns (per-attribute
    accuracy, images, scenes). Sample j draws its noise from seed ``seed_base + j``
    (default ``seed_base = seed · 100003``). ``per_scene``: a list that receives each scene's
    oracle verdicts."""
    from tqdm.auto import tqdm

    if eval_scenes is None:
        eval_scenes = scenes.held_out_eval_scenes(total)
    if seed_base is None:
        seed_base = seed * 100_003
    hits: dict[str, list[bool]] = {}
    images = []
    for i in tqdm(range(0, len(eval_scenes), batch), desc="sampling", disable=not progress):
        chunk = eval_scenes[i:i + batch]
        gens = [torch.Generator().manual_seed(seed_base + i + k) for k in range(len(chunk))]
        out = _ddim_decode(backbone, backbone.initial_noise(gens), [s.caption() for s in chunk], steps,
                           guidance)
        for img, scene in zip(out, chunk, strict=True):
            pil = tensor_to_pil(img)
            images.append(pil)
            verdict = score_scene(pil, scene)
            if per_scene is not None:
                per_scene.append(verdict)
            for key, ok in verdict.items():
                hits.setdefault(key, []).append(ok)
    accuracy = {k: sum(v) / len(v) for k, v in hits.items()}
    accuracy["n"] = len(eval_scenes)
    return accuracy, images, eval_scenes


def training_eval_scenes(total: int = 128, seed: int = 1) -> list[scenes.Scene]:
    """Distinct training (not held-out) combinations, drawn as training draws them: the set on
    which the default guidance scale is chosen, so the held-out bar stays untouched."""
    rng = random.Random(seed)
    out: list[scenes.Scene] = []
    seen: set[str] = set()
    while len(out) < total:
        scene = scenes.training_scene(rng)
        if scene.caption() not in seen:
            seen.add(scene.caption())
            out.append(scene)
    return out


def pick_guidance(backbone: Backbone, scales: list[float], *, steps: int = 25, total: int = 128,
                  progress: bool = True) -> list[dict]:
    """Oracle accuracy of samples at each CFG scale on training combinations; one row per scale
    with the mean of colour, position and background accuracy (``bar_mean``) that picks it."""
    chosen = training_eval_scenes(total)
    rows = []
    for w in scales:
        acc, _, _ = sample_accuracy(backbone, steps=steps, guidance=w, eval_scenes=chosen,
                                    seed_base=7_000_000, progress=progress)
        row = {"guidance": w, "steps": steps, **acc}
        row["bar_mean"] = sum(acc[k] for k in ("color", "position", "background")) / 3
        rows.append(row)
    return rows


def write_guidance_pick(rows: list[dict], out_file: Path):
    """`pick_guidance`'s rows as a CSV; returns them as a data frame and the chosen (best bar_mean) scale."""
    import pandas as pd

    frame = pd.DataFrame(rows)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out_file, index=False, float_format="%.4f")
    return frame, float(frame.loc[frame["bar_mean"].idxmax(), "guidance"])


def inversion_psnr(backbone: Backbone, *, steps: int = 50, limit: int | None = None) -> dict[str, float]:
    """DDIM inversion (unguided) → reconstruction (unguided) of the demo images; mean PSNR in dB."""
    from icd_bench.data.piebench import Demo

    ds = Demo()
    ids = ds.ids()[:limit] if limit else ds.ids()
    samples = [ds.load(i) for i in ids]
    values = []
    for i in range(0, len(samples), 32):
        chunk = samples[i:i + 32]
        src = backbone.preprocess([s.image for s in chunk])
        prompts = [s.source_prompt for s in chunk]
        cond = backbone.encode_prompt(prompts)
        xT = ddim_invert(lambda x, t, i, cond=cond: guided_noise(backbone, x, t, cond, None, 1.0),
                         backbone.encode_image(src), _grid(backbone, steps), backbone.alphas_cumprod,
                         backbone.final_alpha_cumprod)
        rec = _ddim_decode(backbone, xT, prompts, steps, 1.0)
        values += psnr(rec.float().cpu(), src.float().cpu()).tolist()
    return {"psnr_mean": sum(values) / len(values), "psnr_min": min(values), "n": len(values)}


def sample_grid(images: list[Image.Image], captions: list[str], columns: int = 8,
                scale: int = 4) -> Image.Image:
    """Samples enlarged ``scale``× with their prompts written under each."""
    cells = list(zip(images, captions, strict=True))
    return image_grid([cells[i:i + columns] for i in range(0, len(cells), columns)], cell=32 * scale)


def evaluate_teacher(backbone: Backbone, out_dir: Path, *, steps: int = 50,
                     guidance: float = DEFAULT_GUIDANCE, progress: bool = True,
                     name: str | None = None) -> dict:
    """Run the whole quality bar; writes ``quality.json`` and ``teacher-samples.png`` in ``out_dir``.
    ``name``: how the teacher is recorded (the ``--backbone`` given; default its source path)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    verdicts: list[dict[str, bool]] = []
    accuracy, images, eval_scenes = sample_accuracy(backbone, steps=steps, guidance=guidance,
                                                    progress=progress, per_scene=verdicts)
    by_count: dict[str, dict[str, float]] = {}
    for count in sorted({len(s.objects) for s in eval_scenes}):
        group = [v for v, s in zip(verdicts, eval_scenes, strict=True) if len(s.objects) == count]
        by_count[f"{count} object{'s' if count > 1 else ''}"] = {
            **{k: sum(v[k] for v in group) / len(group) for k in group[0]}, "n": len(group)}
    inversion = inversion_psnr(backbone, steps=steps)
    result = {"backbone": name or backbone.source, "sampler": f"DDIM {steps} steps, CFG {guidance}",
              "held_out_accuracy": accuracy, "held_out_accuracy_by_object_count": by_count,
              "demo_inversion": inversion, "bar": {"color": 0.9, "position": 0.9, "background": 0.9}}
    result["passes"] = all(accuracy[k] >= v for k, v in result["bar"].items())
    (out_dir / "quality.json").write_text(json.dumps(result, indent=2) + "\n")
    # the grid: one-object scenes first, then the two-object ones (where errors concentrate)
    shown = list(range(32)) + list(range(max(32, len(images) - 16), len(images)))
    sample_grid([images[i] for i in shown],
                [eval_scenes[i].caption() for i in shown]).save(out_dir / "teacher-samples.png")
    return result
