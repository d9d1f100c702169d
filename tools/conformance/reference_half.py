"""What the reference halves (``*_reference.py``) share: their command line, reading the saved text
encoder into an older transformers release, counting UNet rows, running and timing the cases, and writing
their results.

Imported by those scripts in the references' own environments (an old diffusers / transformers, no
icd_bench), so only the standard library, torch, transformers and safetensors are used here.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path


def parse_args(description: str) -> argparse.Namespace:
    """``--repo``, ``--work``, ``--repeats``, ``--time-cases`` (→ ``args.time_cases``, a set of indices)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--repo", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--repeats", type=int, default=0, help="also time cases this often after a warm-up")
    ap.add_argument("--time-cases", default="0", help="the cases to time (with --repeats, the only ones run)")
    args = ap.parse_args()
    args.time_cases = {int(k) for k in args.time_cases.split(",")}
    return args


def load_text_encoder(directory: Path, projection: bool = False):
    """The CLIP text model (``projection``: with its projection, SDXL's second encoder) saved by the project's
    transformers, in this environment's: newer releases drop the ``text_model.`` prefix and the
    ``position_ids`` buffer, which older ones expect (the buffer keeps its initial value, ``arange``); any
    other missing or unexpected key is an error."""
    from safetensors.torch import load_file
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    model = (CLIPTextModelWithProjection if projection else CLIPTextModel)(
        CLIPTextConfig.from_pretrained(directory)).eval()
    state = load_file(directory / "model.safetensors")
    missing, unexpected = model.load_state_dict(
        {k if k.startswith(("text_model.", "text_projection.")) else f"text_model.{k}": v
         for k, v in state.items()}, strict=False)
    if unexpected or any(not k.endswith("position_ids") for k in missing):
        raise RuntimeError(f"the saved text encoder does not fit: missing {missing}, unexpected {unexpected}")
    return model


def count_rows(unet) -> list[int]:
    """A list that gets the batch size of every call of ``unet`` (wrapping its ``forward``, which some
    reference code calls directly, past module hooks)."""
    rows: list[int] = []
    forward = unet.forward

    def counted(*a, **k):
        rows.append(int((a[0] if a else k["sample"]).shape[0]))
        return forward(*a, **k)

    unet.forward = counted
    return rows


def timed(fn, repeats: int) -> float | None:
    """The median seconds of ``repeats`` calls (None for 0); the recorded call before them warmed up."""
    if repeats <= 0:
        return None
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run_cases(args: argparse.Namespace, cases, run, counters) -> list:
    """Each case's ``run(case)`` outputs with its UNet rows (the sum of the ``counters``, `count_rows` lists,
    cleared before the run) and, with ``--repeats``, the median seconds of the ``--time-cases`` (then the
    only cases run; the others give None)."""
    results = []
    for k, case in enumerate(cases):
        if args.repeats > 0 and k not in args.time_cases:
            results.append(None)
            continue
        for rows in counters:
            rows.clear()
        out = run(case)
        unet_rows = sum(map(sum, counters))
        repeats = args.repeats if k in args.time_cases else 0
        seconds = timed(lambda case=case: run(case), repeats)
        results.append({**out, "unet_rows": unet_rows, "seconds": seconds})
    return results


def save_results(work: Path, results) -> None:
    """``work/reference.pt``: a half's ``results`` with the versions of torch, diffusers and transformers
    of the environment that made them (what the goldens record as ``reference_versions``)."""
    import diffusers
    import torch
    import transformers

    torch.save({"results": results, "versions": {"torch": str(torch.__version__),
                                                 "diffusers": diffusers.__version__,
                                                 "transformers": transformers.__version__}},
               work / "reference.pt")
