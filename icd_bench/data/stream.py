"""Image–caption pairs for training, streamed at scale: webdataset tar shards (the format LAION-style
sets ship in) or a Hugging Face ``datasets`` image–text dataset (a hub id, a local data folder, or
a folder written by ``Dataset.save_to_disk``). The readers are webdataset's and datasets'.

Order, sharding and resume are functions of (seed, process, number of processes) alone:

- **webdataset**: every epoch the shard list is permuted with (seed, epoch), the same on every
  process, and process i of n reads shards i, i + n, … of it, each from start to end — processes
  see disjoint samples; there must be at least as many shards as processes.
- **datasets**: a saved (map-style) dataset is split by index (i, i + n, …) and each epoch permuted
  with (seed, epoch); a streamed one is split with ``datasets.distributed.split_dataset_by_node``
  and each epoch read in the same order (no buffer shuffle, so that resume is exact).
- Step s of a process is its samples s·b … s·b + b − 1 of the endless (epoch after epoch) stream, so a
  run resumed at step s reads from sample s·b — no sample repeated or skipped against an
  uninterrupted run (`StreamData.batch` seeks there by reading forward when it starts mid-stream).

Images are resized (shorter side, bilinear) and centre-cropped as the official trainer's
``transforms.Resize(resolution)`` + ``transforms.CenterCrop(resolution)`` (`official_crop`).
"""

from __future__ import annotations

import io
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from icd_bench.errors import ConfigError

SOURCES = ("webdataset", "hf")


def official_crop(im: Image.Image, side: int) -> Image.Image:
    """torchvision's ``Resize(side)`` (shorter side → side, the longer truncated as torchvision does,
    bilinear, antialiased) then ``CenterCrop(side)`` (offsets rounded), on a PIL image. Written here
    because torchvision is not a training dependency."""
    im = im.convert("RGB")
    w, h = im.size
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(side * long / short)
    nw, nh = (side, new_long) if w <= h else (new_long, side)
    if (nw, nh) != (w, h):
        im = im.resize((nw, nh), Image.Resampling.BILINEAR)
    left, top = int(round((nw - side) / 2.0)), int(round((nh - side) / 2.0))
    return im.crop((left, top, left + side, top + side))


def to_tensor(images: list[Image.Image]) -> torch.Tensor:
    """PIL images (side × side) → B×3×H×W float in [0, 1]."""
    return torch.stack([torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1)
                        for im in images])


# -- webdataset -------------------------------------------------------------------------------------
def expand_shards(urls: str | list[str]) -> list[str]:
    """A brace pattern (``data/{00000..00099}.tar``), a list of them, or a folder of ``*.tar``."""
    import braceexpand

    items = [urls] if isinstance(urls, str) else list(urls)
    shards: list[str] = []
    for item in items:
        path = Path(item).expanduser()
        if path.is_dir():
            shards += sorted(str(p) for p in path.glob("*.tar"))
        else:
            shards += list(braceexpand.braceexpand(str(item)))
    return shards


def _is_remote(url: str) -> bool:
    return "://" in url or url.startswith("pipe:")


def _first_key(sample: dict, keys: str) -> Any:
    for key in keys.split(";"):
        if key in sample:
            return sample[key]
    return None


class _WebDatasetSource:
    def __init__(self, urls, image_key: str, caption_key: str):
        if not urls:
            raise ConfigError("[data] source = \"webdataset\" needs urls = \"PATH/{00000..00009}.tar\" "
                              "(a brace pattern, a list, or a folder of .tar shards)")
        self.shards = expand_shards(urls)
        missing = [s for s in self.shards if not _is_remote(s) and not Path(s).expanduser().is_file()]
        if not self.shards or missing:
            listed = ", ".join(missing[:3]) + (f" … ({len(missing)} in all)" if len(missing) > 3 else "")
            raise ConfigError(f"webdataset shards not found: {listed or urls}. Point [data] urls at the "
                              f"downloaded .tar shards (e.g. urls = \"data/laion/{{00000..00099}}.tar\")")
        self.image_key, self.caption_key = image_key, caption_key

    def epoch(self, seed: int, epoch: int, process: int,
              processes: int) -> Iterator[tuple[str, Image.Image, str]]:
        import webdataset as wds

        if len(self.shards) < processes:
            raise ConfigError(f"{len(self.shards)} webdataset shard(s) for {processes} processes: "
                              f"each process reads whole shards, "
                              f"so there must be at least as many shards as processes")
        order = list(self.shards)
        random.Random(f"{seed}:{epoch}").shuffle(order)
        mine = order[process::processes]
        # no node/worker splitting inside webdataset: the split above is the only one
        ds = wds.WebDataset(mine, shardshuffle=False, nodesplitter=lambda src: src,
                            workersplitter=lambda src: src, empty_check=False)
        for sample in ds:
            image, caption = _first_key(sample, self.image_key), _first_key(sample, self.caption_key)
            if image is None or caption is None:
                missing = ("image (" + self.image_key + ")" if image is None
                           else "caption (" + self.caption_key + ")")
                raise ConfigError(f"webdataset sample {sample.get('__key__')!r} in {sample.get('__url__')} "
                                  f"has no {missing}; "
                                  f"it has {', '.join(k for k in sample if not k.startswith('__'))}")
            key = f"{Path(str(sample.get('__url__', ''))).name}/{sample.get('__key__')}"
            yield (key, Image.open(io.BytesIO(image)),
                   caption.decode("utf-8") if isinstance(caption, bytes) else str(caption))


# -- Hugging Face datasets -----------------------------------------------------------------------------
class _HFSource:
    def __init__(self, name: str | None, split: str, image_column: str, caption_column: str):
        if not name:
            raise ConfigError("[data] source = \"hf\" needs dataset = \"<hub id or local folder>\"")
        try:
            import datasets
        except ImportError:
            raise ConfigError("[data] source = \"hf\" needs the datasets package: "
                              "pip install 'icd-bench[train]'") from None
        path = Path(name).expanduser()
        try:
            if path.is_dir() and ((path / "dataset_info.json").is_file() or (path / "state.json").is_file()
                                  or (path / "dataset_dict.json").is_file()):
                ds = datasets.load_from_disk(str(path))
                if isinstance(ds, datasets.DatasetDict):
                    if split not in ds:
                        raise ConfigError(f"{name} has splits {', '.join(ds)}, not {split!r}")
                    ds = ds[split]
            else:
                if not path.exists() and "/" not in name:
                    raise ConfigError(f"HF dataset {name!r} is neither a local folder "
                                      f"nor a hub id (owner/name)")
                ds = datasets.load_dataset(str(path) if path.exists() else name, split=split, streaming=True)
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001 - datasets raises many types for a missing dataset
            raise ConfigError(f"cannot open HF dataset {name!r} (split {split!r}): {type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''}. Download it where there is "
                              f"network (`hf download {name} --repo-type dataset --local-dir DIR`) and pass "
                              f"dataset = \"DIR\"") from None
        columns = getattr(ds, "column_names", None) or list(getattr(ds, "features", None) or {})
        if columns:
            absent = [c for c in (image_column, caption_column) if c not in columns]
            if absent:
                raise ConfigError(f"HF dataset {name!r} has no column(s) {', '.join(absent)} (it has: "
                                  f"{', '.join(columns)}); set [data] image_column / caption_column")
        self.ds, self.image_column, self.caption_column = ds, image_column, caption_column
        self.map_style = isinstance(ds, datasets.Dataset)

    def epoch(self, seed: int, epoch: int, process: int,
              processes: int) -> Iterator[tuple[str, Image.Image, str]]:
        if self.map_style:
            index = list(range(process, len(self.ds), processes))
            random.Random(f"{seed}:{epoch}").shuffle(index)
            rows = ((str(i), self.ds[i]) for i in index)
        else:
            from datasets.distributed import split_dataset_by_node

            part = split_dataset_by_node(self.ds, rank=process, world_size=processes)
            # the k-th row of this process's part
            rows = ((f"{process}:{k}", row) for k, row in enumerate(part))
        for key, row in rows:
            image = row[self.image_column]
            if isinstance(image, dict) and image.get("bytes"):
                image = Image.open(io.BytesIO(image["bytes"]))
            elif isinstance(image, str | Path):
                image = Image.open(image)
            yield key, image, str(row[self.caption_column])


# -- the stream ---------------------------------------------------------------------------------------
class StreamData:
    """Batches of (images in [0, 1], captions) for one process; ``batch(step, size)`` is a function of
    (seed, process, processes, step, size) — see the module docstring."""

    def __init__(self, cfg, seed: int, resolution: int, process: int = 0, processes: int = 1):
        if cfg.source == "webdataset":
            self.source = _WebDatasetSource(cfg.urls, cfg.image_key, cfg.caption_key)
        elif cfg.source == "hf":
            self.source = _HFSource(cfg.dataset, cfg.hf_split, cfg.image_column, cfg.caption_column)
        else:
            raise ConfigError(f"streamed data source must be one of {', '.join(SOURCES)}, got {cfg.source!r}")
        self.seed, self.resolution, self.process, self.processes = seed, resolution, process, processes
        self._epoch, self._it, self.position = 0, None, 0  # position: samples of this process read so far
        self.last_keys: list[str] = []  # the samples of the last batch (shard/key, or dataset index)

    def _restart(self) -> None:
        self._epoch, self.position = 0, 0
        self._it = self.source.epoch(self.seed, 0, self.process, self.processes)

    def _next(self) -> tuple[str, Image.Image, str]:
        for attempt in range(2):
            try:
                return next(self._it)
            except StopIteration:
                if attempt:  # a fresh epoch gave nothing
                    break
                self._epoch += 1
                self._it = self.source.epoch(self.seed, self._epoch, self.process, self.processes)
        raise ConfigError(f"the training data has no samples for process {self.process} of {self.processes}")

    def batch(self, step: int, size: int) -> tuple[torch.Tensor, list[str]]:
        start = step * size
        if self._it is None or self.position > start:
            self._restart()
        while self.position < start:  # resume mid-stream: read forward to this step's first sample
            self._next()
            self.position += 1
        images, captions, self.last_keys = [], [], []
        for _ in range(size):
            key, image, caption = self._next()
            self.position += 1
            images.append(official_crop(image, self.resolution))
            captions.append(caption)
            self.last_keys.append(f"e{self._epoch}/{key}")
        return to_tensor(images), captions
