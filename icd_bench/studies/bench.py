"""Timing of editing methods (``icd-bench bench``): seconds per edit, UNet evaluations, the bare-model
bound and each method's overhead, measured in one process so ratios compare like with like.

For each method (a preset) and batch size: one warm-up batch, then ``repeats`` timed batches of the
first demo samples (``method.run("edit", ...)``, with a device sync before the clock stops).
Seconds per edit = batch time / batch size (median and IQR over the repeats). The bound counts the
model calls of the warm-up batch by their number of rows — UNet calls (a guided step is one call of
2B rows, P2P's branches 2B or 4B), VAE encoder and decoder calls — and times each bare forward at
those row counts (the fastest of several calls): bound = Σ calls × bare time / batch size;
overhead = seconds per edit − bound
(NTI's backward passes are overhead by this definition). Peak memory: CUDA's allocator peak on a
GPU, the process's peak RSS on a CPU (process-wide, not per method).

``bench --demo`` times the whole demo job instead (`bench_demo`): run + score + report of the first
64 demo samples, split into start-up, the method's own time, the harness's time around it, scoring
and the report.
"""

from __future__ import annotations

import json
import platform
import statistics
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import torch

from icd_bench.errors import ConfigError
from icd_bench.markdown import markdown_table

#: What ``--methods all`` means per backbone family: every method on the toy world; the paper's
#: Table 6 methods and the other baselines at SD1.5 size; Table 6's SDXL rows (iCD-XL, ReNoise on
#: an SDXL-size LCM) and TurboEdit at SDXL size. Presets keep their settings on the backbone given.
METHOD_SETS = {
    "toy": ["icd-toy", "ddim-toy", "ddim-p2p-toy", "npi-toy", "nti-toy", "direct-inversion-toy",
            "masactrl-toy", "pnp-toy", "pix2pix-zero-toy", "ef-ddpm-toy", "renoise-toy", "infedit-toy",
            "turboedit-toy"],
    "sd15": ["icd-sd15", "ddim-p2p-sd15", "npi-sd15", "nti-sd15", "direct-inversion-sd15", "masactrl-sd15",
             "pnp-sd15", "pix2pix-zero-sd15", "ef-ddpm-sd15", "renoise-lcm-sd15", "infedit-lcm-sd15"],
    "sdxl": ["icd-sdxl", "renoise-lcm-sd15", "turboedit-sdxl-turbo"],
}
DEMO_METHOD = "icd-toy"
DEMO_SAMPLES = 64


def default_methods(backbone: str | None) -> list[str]:
    """The presets ``--methods all`` stands for with ``--backbone`` (None: each preset's own)."""
    name = (backbone or "toy").lower()
    for family in ("sdxl", "sd15"):
        if family in name:
            return METHOD_SETS[family]
    return METHOD_SETS["toy"]


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


def _fastest_seconds(fn, repeats: int, device: torch.device) -> float:
    """The fastest of ``repeats`` timed calls after a warm-up: a bare forward's cost without the noise
    a shared machine adds (noise only ever adds time), so the bound stays a lower bound."""
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return min(times)


@torch.no_grad()
def bare_unet_seconds(backbone, rows: int, repeats: int, unet=None) -> float:
    """Seconds of one bare forward of ``unet`` (default: the backbone's current one) on ``rows`` rows
    (random latents, the null prompt), fastest of ``repeats``."""
    unet = backbone.unet if unet is None else unet
    x = torch.randn(backbone.latent_shape(rows), device=backbone.device, dtype=backbone.dtype)
    cond = backbone.null_embeds(rows)
    dim = getattr(unet.config, "time_cond_proj_dim", None)
    tc = torch.zeros(rows, dim, device=backbone.device, dtype=backbone.dtype) if dim else None
    t = torch.full((rows,), 500, device=backbone.device)
    return _fastest_seconds(lambda: unet(x, t, timestep_cond=tc, **cond.unet_kwargs()), repeats,
                            backbone.device)


@torch.no_grad()
def bare_vae_seconds(backbone, part: str, rows: int, repeats: int) -> float:
    """Seconds (fastest of ``repeats``) of the bare VAE encoder (``part="encoder"``, images → latents) or
    decoder (latents → images) on ``rows`` rows."""
    vae, dev = backbone.vae, backbone.device
    if part == "encoder":
        x = torch.rand(rows, 3, backbone.resolution, backbone.resolution, device=dev, dtype=vae.dtype)
        return _fastest_seconds(lambda: vae.encode(x), repeats, dev)
    z = torch.randn(backbone.latent_shape(rows), device=dev, dtype=vae.dtype)
    return _fastest_seconds(lambda: vae.decode(z), repeats, dev)


class CallCounter:
    """Counts calls of a backbone's UNet and VAE encoder / decoder by their number of rows."""

    def __init__(self, backbone):
        self.backbone = backbone
        self.calls: dict[str, dict[int, int]] = {"unet": {}, "encoder": {}, "decoder": {}}

    def modules(self) -> dict[str, torch.nn.Module]:
        bb = self.backbone
        self.unet = bb.unet  # the UNet counted (and timed by `bound`: the method's, also after it closes)
        parts = {"unet": bb.unet}
        if bb.vae is not None:
            parts |= {"encoder": bb.vae.encoder, "decoder": bb.vae.decoder}
        return parts

    @contextmanager
    def counting(self):
        hooks = []
        for part, module in self.modules().items():
            def count(module, args, kwargs, table=self.calls[part]):
                x = args[0] if args else next(iter(kwargs.values()))
                table[len(x)] = table.get(len(x), 0) + 1

            hooks.append(module.register_forward_pre_hook(count, with_kwargs=True))
        try:
            yield self
        finally:
            for h in hooks:
                h.remove()

    def bound(self, repeats: int) -> tuple[float, dict[str, dict[int, float]]]:
        """Σ calls × bare seconds over every part, and the bare seconds by part and rows."""
        bare: dict[str, dict[int, float]] = {}
        total = 0.0
        for part, table in self.calls.items():
            bare[part] = {}
            for rows, n in table.items():
                sec = (bare_unet_seconds(self.backbone, rows, repeats, self.unet) if part == "unet"
                       else bare_vae_seconds(self.backbone, part, rows, repeats))
                bare[part][rows] = sec
                total += n * sec
        return total, bare


def _load_method(preset: str, backbone: str | None, device: str, dtype: str, resolution: int | None,
                 compile_mode: str | None):
    from icd_bench.backbones import load_backbone
    from icd_bench.config import resolve_method
    from icd_bench.registry import METHODS
    from icd_bench.runner import resolve_device, resolve_dtype

    spec = resolve_method(preset, [])
    name = backbone or spec.backbone
    dev = resolve_device(device, (0, 1))
    bb = load_backbone(name, device=dev, dtype=resolve_dtype(dtype, dev))
    if resolution:
        bb.resolution = resolution
    method = METHODS.get(spec.method)(bb, spec.params)
    if "edit" not in method.tasks:
        raise ConfigError(f"{preset} does not edit")
    if compile_mode:
        method.backbone.compile_unet(compile_mode)
    return name, dev, method


def bench_method(preset: str, *, backbone: str | None, batch_sizes: list[int], repeats: int, device: str,
                 dtype: str, dataset: str = "demo", resolution: int | None = None,
                 compile_mode: str | None = None, log=print) -> list[dict]:
    from icd_bench.runner import open_dataset

    name, dev, method = _load_method(preset, backbone, device, dtype, resolution, compile_mode)
    ds = open_dataset(dataset)
    ids = list(ds.ids())
    results = []
    with method:  # the backbone given back as loaded afterwards
        for bs in batch_sizes:
            if bs > len(ids):
                raise ConfigError(f"batch size {bs} exceeds the {len(ids)} samples of {dataset}")
            row = _time_batch(method, [ds.load(i) for i in ids[:bs]], repeats, dev)
            row = {"method": preset, "backbone": name, **row}
            log(f"{preset:>16} batch {bs:>2}: {row['seconds_per_edit']:.3f} s/edit, {row['nfe']} NFE, bound "
                f"{row['bound_seconds_per_edit']:.3f} s, overhead {100 * row['overhead_fraction']:.0f} %")
            results.append(row)
    return results


def _time_batch(method, samples: list, repeats: int, dev: torch.device) -> dict:
    """One warm-up edit of ``samples`` (counting the model calls by rows), then ``repeats`` timed ones."""
    from icd_bench.runner import sample_seed

    bb, bs = method.backbone, len(samples)

    def once():
        gens = [torch.Generator().manual_seed(sample_seed(0, s.id)) for s in samples]
        _sync(dev)
        start = time.perf_counter()
        _, outs = method.run("edit", samples, gens)
        _sync(dev)
        return time.perf_counter() - start, outs[0].nfe

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    counter = CallCounter(bb)
    with counter.counting():
        once()  # warm-up, counting the model calls by rows
    timed = [once() for _ in range(repeats)]
    per_edit = [t / bs for t, _ in timed]
    nfe = timed[0][1]
    bound, bare = counter.bound(repeats=max(5, repeats))
    bound /= bs
    med = statistics.median(per_edit)
    q1, q3 = _quantiles(per_edit)
    return {"resolution": bb.resolution, "batch_size": bs, "seconds_per_edit": med, "iqr": [q1, q3],
            "nfe": nfe, "seconds_per_unet_eval": med / nfe if nfe else None,
            "unet_calls_by_rows": {str(k): v for k, v in sorted(counter.calls["unet"].items())},
            "bare_seconds_by_rows": {part: {str(k): v for k, v in sorted(t.items())}
                                     for part, t in bare.items()},
            "vae_calls_by_rows": {part: {str(k): v for k, v in sorted(counter.calls[part].items())}
                                  for part in ("encoder", "decoder")},
            "bound_seconds_per_edit": bound,
            "overhead_seconds_per_edit": med - bound,
            "overhead_fraction": (med - bound) / med if med else None,
            "peak_memory_mb": _peak_memory_mb(dev)}


def _write_report(stem: Path, data: dict, lines: list[str]) -> Path:
    """``stem.json`` (``data`` with the package versions) and ``stem.md`` (``lines``); returns the
    Markdown path."""
    from icd_bench.provenance import versions

    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps({**data, "versions": versions()}, indent=2) + "\n",
                                         encoding="utf-8")
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return stem.with_suffix(".md")


def device_label(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return "cuda: " + torch.cuda.get_device_name()
    return f"cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def run_bench(presets: list[str], *, backbone: str | None, batch_sizes: list[int], repeats: int, device: str,
              dtype: str, out: Path, command: str, resolution: int | None = None,
              compile_mode: str | None = None, log=print) -> Path:
    rows = []
    for p in presets:
        rows += bench_method(p, backbone=backbone, batch_sizes=batch_sizes, repeats=repeats, device=device,
                             dtype=dtype, resolution=resolution, compile_mode=compile_mode, log=log)
    ref = {r["batch_size"]: r["seconds_per_edit"] for r in rows if r["method"].startswith("icd")}
    for r in rows:
        base = ref.get(r["batch_size"])
        r["ratio_to_icd"] = r["seconds_per_edit"] / base if base else None
    dev = device_label(device)
    data = {"command": command, "device": dev, "dtype": dtype, "compile": compile_mode, "results": rows}
    lines = [f"# Editing time: {', '.join(presets)}", "",
             f"Device: {dev}; dtype {dtype}; torch.compile: {compile_mode or 'off'}. "
             f"Regenerate with `{command}`.",
             "Seconds per edit: median over the repeats (IQR). Bound = the method's UNet and VAE calls "
             "(by rows) × the bare forward at those rows (fastest of 5 or more) / batch size; "
             "overhead = the rest (text encoding, sampler arithmetic, attention control, NTI's backward "
             "passes). Prompt-to-Prompt's self-attention injection computes one attention map for both "
             "branches, so a P2P method can run below the bound.", ""]
    lines += markdown_table(
        ["method", "backbone", "res.", "batch", "s / edit (IQR)", "NFE", "s / UNet eval", "bound s / edit",
         "overhead", "ratio to iCD", "peak memory (MB)"],
        ([r["method"], r["backbone"], r["resolution"], r["batch_size"],
          f"{r['seconds_per_edit']:.3f} ({r['iqr'][0]:.3f}–{r['iqr'][1]:.3f})", r["nfe"],
          f"{r['seconds_per_unet_eval']:.4f}", f"{r['bound_seconds_per_edit']:.3f}",
          f"{100 * r['overhead_fraction']:.0f} %",
          "—" if r["ratio_to_icd"] is None else f"{r['ratio_to_icd']:.1f}×",
          f"{r['peak_memory_mb']:.0f}"] for r in rows), left=2)
    return _write_report(
        out / f"bench-{(backbone or 'preset-backbones').replace('/', '_')}-{device.split(':')[0]}",
        data, lines)


def bench_demo(preset: str = DEMO_METHOD, *, samples: int = DEMO_SAMPLES, batch_size: int = 16,
               device: str = "cpu", work: Path | None = None, log=print) -> dict:
    """Time the demo job — ``icd-bench run --method PRESET --dataset demo --limit N --score --report``
    — phase by phase, in this process. Start-up = resolving and loading until the method is built;
    method = the seconds inside ``method.run`` (the runner's per-sample timing); harness = the rest of
    the run (loading samples, writing images and records); the UNet + VAE bound of the method's calls as in
    `bench_method`."""
    from icd_bench.metrics.score import score_run
    from icd_bench.reports.html_gallery import write_gallery
    from icd_bench.runner import RunConfig, Runner

    with tempfile.TemporaryDirectory(prefix="icd-bench-demo-") as tmp, ExitStack() as hooks:
        out = Path(work or tmp) / "run"
        seen: dict = {}

        def on_method(method):
            seen["ready"] = time.perf_counter()
            seen["counter"] = hooks.enter_context(CallCounter(method.backbone).counting())

        t0 = time.perf_counter()
        runner = Runner(RunConfig(method=preset, dataset="demo", task="edit", out=out, limit=samples,
                                  batch_size=batch_size, device=device), on_method=on_method)
        summary = runner.run()
        t_run = time.perf_counter()
        hooks.close()  # stop counting before scoring and the bare-forward timings
        score_run(out, device=device)
        t_score = time.perf_counter()
        write_gallery([out], out / "gallery.html")
        t_report = time.perf_counter()
        bound, _ = seen["counter"].bound(repeats=3)
    n = summary.ok + summary.failed
    method_s = sum(summary.seconds)
    startup = seen["ready"] - t0
    harness = (t_run - seen["ready"]) - method_s
    result = {"method": preset, "samples": n, "ok": summary.ok, "batch_size": batch_size,
              "total_seconds": t_report - t0, "startup_seconds": startup, "method_seconds": method_s,
              "harness_seconds": harness, "score_seconds": t_score - t_run,
              "report_seconds": t_report - t_score, "model_bound_seconds": bound,
              "harness_fraction_of_bound": harness / bound if bound else None}
    log(f"demo ({preset}, {n} samples, batch {batch_size}): {result['total_seconds']:.1f} s in all — "
        f"start-up {startup:.1f} s, method {method_s:.1f} s (model bound {bound:.1f} s), "
        f"harness {harness:.2f} s, "
        f"score {result['score_seconds']:.1f} s, report {result['report_seconds']:.2f} s")
    return result


def run_demo_bench(presets: list[str] | None, *, device: str, out: Path, command: str, log=print) -> Path:
    """`bench_demo` for each preset (default: `DEMO_METHOD`); JSON + Markdown in ``out``."""
    results = [bench_demo(p, device=device, log=log) for p in presets or [DEMO_METHOD]]
    dev = device_label(device)
    lines = [f"# The demo job, timed: {', '.join(r['method'] for r in results)}", "",
             f"Device: {dev}. Regenerate with `{command}`. The job: "
             f"`icd-bench run --method METHOD --dataset demo --task edit --limit {DEMO_SAMPLES} "
             f"--batch-size 16`, then `icd-bench score` (default metrics) and the gallery page, in one "
             "process. Start-up = resolving the run and loading the models; method = time inside the "
             "method (its UNet / VAE bound beside it); harness = the rest of the run (loading samples, "
             "writing images and records).", ""]
    lines += markdown_table(
        ["method", "samples", "total s", "start-up s", "method s", "model bound s", "harness s",
         "harness / bound", "score s", "report s"],
        ([r["method"], r["samples"], f"{r['total_seconds']:.1f}", f"{r['startup_seconds']:.1f}",
          f"{r['method_seconds']:.1f}", f"{r['model_bound_seconds']:.1f}", f"{r['harness_seconds']:.2f}",
          "—" if r["harness_fraction_of_bound"] is None
          else f"{100 * r['harness_fraction_of_bound']:.1f} %",
          f"{r['score_seconds']:.1f}", f"{r['report_seconds']:.2f}"] for r in results))
    return _write_report(out / f"demo-{device.split(':')[0]}",
                         {"command": command, "device": dev, "results": results}, lines)
