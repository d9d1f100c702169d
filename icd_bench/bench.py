"""Timing of editing methods (``icd-bench bench``): seconds per edit, UNet evaluations, the bare-UNet
bound and each method's overhead, measured in one process so ratios compare like with like.

For each method (a preset) and batch size: one warm-up batch, then ``repeats`` timed batches of the
first demo samples (``method.run("edit", ...)``, with a device sync before the clock stops).
Seconds per edit = batch time / batch size (median and IQR over the repeats). The UNet-bound
reference counts the UNet calls of one batch by their number of rows (a guided step is one call of
2B rows, P2P's branches 2B or 4B) and times the bare UNet forward at each of those row counts: bound
= Σ calls × bare time / batch size; overhead = seconds per edit − bound (NTI's backward passes are
overhead by this definition). Peak memory: CUDA's allocator peak on a
GPU, the process's peak RSS on a CPU (process-wide, not per method).
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from pathlib import Path

import torch

from icd_bench.errors import ConfigError


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _quantiles(xs: list[float]) -> tuple[float, float]:
    if len(xs) < 2:
        return xs[0], xs[0]
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], q[2]


@torch.no_grad()
def bare_unet_seconds(backbone, rows: int, repeats: int) -> float:
    """Median seconds of one bare UNet forward on ``rows`` rows (random latents, the null prompt)."""
    x = torch.randn(backbone.latent_shape(rows), device=backbone.device, dtype=backbone.dtype)
    cond = backbone.null_embeds(rows)
    dim = getattr(backbone.unet.config, "time_cond_proj_dim", None)
    tc = torch.zeros(rows, dim, device=backbone.device, dtype=backbone.dtype) if dim else None
    t = torch.full((rows,), 500, device=backbone.device)
    backbone.unet(x, t, timestep_cond=tc, **cond.unet_kwargs())  # warm-up
    times = []
    for _ in range(repeats):
        _sync(backbone.device)
        start = time.perf_counter()
        backbone.unet(x, t, timestep_cond=tc, **cond.unet_kwargs())
        _sync(backbone.device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_method(preset: str, *, backbone: str | None, batch_sizes: list[int], repeats: int, device: str,
                 dtype: str, dataset: str = "demo", log=print) -> list[dict]:
    from icd_bench.backbones import load_backbone
    from icd_bench.config import resolve_method
    from icd_bench.registry import METHODS
    from icd_bench.runner import open_dataset, resolve_device, resolve_dtype, sample_seed

    spec = resolve_method(preset, [])
    name = backbone or spec.backbone
    dev = resolve_device(device, (0, 1))
    dt = resolve_dtype(dtype, dev)
    bb = load_backbone(name, device=dev, dtype=dt)
    method = METHODS.get(spec.method)(bb, spec.params)
    if "edit" not in method.tasks:
        raise ConfigError(f"{preset} does not edit")
    ds = open_dataset(dataset)
    ids = list(ds.ids())
    results = []
    for bs in batch_sizes:
        if bs > len(ids):
            raise ConfigError(f"batch size {bs} exceeds the {len(ids)} samples of {dataset}")
        samples = [ds.load(i) for i in ids[:bs]]

        def once(samples=samples):
            gens = [torch.Generator().manual_seed(sample_seed(0, s.id)) for s in samples]
            _sync(dev)
            start = time.perf_counter()
            _, outs = method.run("edit", samples, gens)
            _sync(dev)
            return time.perf_counter() - start, outs[0].nfe

        calls: dict[int, int] = {}

        def count(module, args, kwargs, calls=calls):
            rows = len(args[0] if args else kwargs["sample"])
            calls[rows] = calls.get(rows, 0) + 1

        hook = bb.unet.register_forward_pre_hook(count, with_kwargs=True)
        try:
            once()  # warm-up, counting the UNet calls by rows
        finally:
            hook.remove()
        timed = [once() for _ in range(repeats)]
        per_edit = [t / bs for t, _ in timed]
        nfe = timed[0][1]
        bare = {rows: bare_unet_seconds(bb, rows, repeats=max(3, repeats)) for rows in calls}
        unet = bare[bs] if bs in bare else bare_unet_seconds(bb, bs, repeats=max(3, repeats))
        med = statistics.median(per_edit)
        q1, q3 = _quantiles(per_edit)
        bound = sum(n * bare[rows] for rows, n in calls.items()) / bs
        row = {"method": preset, "backbone": name, "batch_size": bs, "seconds_per_edit": med, "iqr": [q1, q3],
               "nfe": nfe, "seconds_per_unet_eval": med / nfe if nfe else None,
               "bare_unet_seconds_per_call": unet, "unet_calls_by_rows": {str(k): v for k, v in sorted(calls.items())},
               "bare_unet_seconds_by_rows": {str(k): v for k, v in sorted(bare.items())},
               "unet_bound_seconds_per_edit": bound,
               "overhead_seconds_per_edit": med - bound, "overhead_fraction": (med - bound) / med if med else None,
               "peak_memory_mb": _peak_memory_mb(dev)}
        log(f"{preset:>16} batch {bs:>2}: {med:.3f} s/edit, {nfe} NFE, UNet bound {bound:.3f} s, "
            f"overhead {100 * row['overhead_fraction']:.0f} %")
        results.append(row)
    return results


def run_bench(presets: list[str], *, backbone: str | None, batch_sizes: list[int], repeats: int, device: str,
              dtype: str, out: Path, command: str, log=print) -> Path:
    rows = []
    for p in presets:
        rows += bench_method(p, backbone=backbone, batch_sizes=batch_sizes, repeats=repeats, device=device,
                             dtype=dtype, log=log)
    ref = {r["batch_size"]: r["seconds_per_edit"] for r in rows if r["method"].startswith("icd")}
    for r in rows:
        base = ref.get(r["batch_size"])
        r["ratio_to_icd"] = r["seconds_per_edit"] / base if base else None
    from icd_bench.runner import versions

    dev = "cuda: " + torch.cuda.get_device_name() if device.startswith("cuda") and torch.cuda.is_available() else \
        f"cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    data = {"command": command, "device": dev, "dtype": dtype, "versions": versions(), "results": rows}
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"bench-{(backbone or 'preset-backbones').replace('/', '_')}-{device.split(':')[0]}"
    stem.with_suffix(".json").write_text(json.dumps(data, indent=2) + "\n")
    lines = [f"# Editing time: {', '.join(presets)}", "", f"Device: {dev}; dtype {dtype}. Regenerate with `{command}`.",
             "Seconds per edit: median over the repeats (IQR); UNet bound = the method's UNet calls (by rows) × the "
             "bare UNet forward at those rows / batch size; overhead = the rest (NTI's backward passes included).", "",
             "| method | batch | s / edit (IQR) | NFE | s / UNet eval | UNet bound s / edit | overhead | ratio to iCD | peak memory (MB) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ratio = "—" if r["ratio_to_icd"] is None else f"{r['ratio_to_icd']:.1f}×"
        lines.append(f"| {r['method']} | {r['batch_size']} | {r['seconds_per_edit']:.3f} ({r['iqr'][0]:.3f}–"
                     f"{r['iqr'][1]:.3f}) | {r['nfe']} | {r['seconds_per_unet_eval']:.4f} | "
                     f"{r['unet_bound_seconds_per_edit']:.3f} | {100 * r['overhead_fraction']:.0f} % | {ratio} | "
                     f"{r['peak_memory_mb']:.0f} |")
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return stem.with_suffix(".md")
