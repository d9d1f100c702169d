"""Streamed training data (webdataset shards, Hugging Face datasets): per-process shards that are
disjoint, exact resume at any step, the official trainer's crop, and clear errors for missing data."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from icd_bench.data.stream import StreamData, official_crop
from icd_bench.errors import ConfigError
from icd_bench.icd.train import DataConfig, ICDTrainConfig, train_icd


def _image(k: int, size=(40, 24)) -> Image.Image:
    rng = np.random.default_rng(k)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def write_shards(root, shards=4, per_shard=5):
    """shard-000{i}.tar with samples 'i-j': a jpg-less png image and its caption 'sample i-j'."""
    import webdataset as wds

    root.mkdir(parents=True, exist_ok=True)
    for i in range(shards):
        with wds.TarWriter(str(root / f"shard-{i:04d}.tar")) as sink:
            for j in range(per_shard):
                buf = io.BytesIO()
                _image(i * 100 + j).save(buf, format="PNG")
                sink.write({"__key__": f"{i}-{j}", "png": buf.getvalue(), "txt": f"sample {i}-{j}"})
    return str(root / f"shard-{{0000..{shards - 1:04d}}}.tar")


def captions(stream, steps, size):
    return [c for s in steps for c in stream.batch(s, size)[1]]


def test_official_crop_is_torchvisions_resize_and_center_crop():
    tv = pytest.importorskip("torchvision.transforms")
    for size in ((40, 24), (24, 41), (33, 33), (7, 50)):
        im = _image(1, size)
        ours = np.asarray(official_crop(im, 16), dtype=int)
        ref = np.asarray(tv.CenterCrop(16)(tv.Resize(16)(im)), dtype=int)
        assert ours.shape == ref.shape == (16, 16, 3)
        assert np.abs(ours - ref).max() <= 1  # the same resampling (PIL's bilinear, antialiased) and offsets


def test_webdataset_processes_see_disjoint_shards_and_every_sample_once_per_epoch(tmp_path):
    urls = write_shards(tmp_path / "wds")
    cfg = DataConfig(source="webdataset", urls=urls)
    seen = [captions(StreamData(cfg, 0, 16, process=p, processes=2), range(2), 5) for p in range(2)]
    assert set(seen[0]).isdisjoint(seen[1])
    assert sorted(seen[0] + seen[1]) == sorted(f"sample {i}-{j}" for i in range(4) for j in range(5))
    # each process reads whole shards
    assert len({c.split()[1].split("-")[0] for c in seen[0]}) == 2
    images, _ = StreamData(cfg, 0, 16).batch(0, 3)
    assert images.shape == (3, 3, 16, 16) and 0 <= images.min() and images.max() <= 1


def test_webdataset_resume_at_any_step_reads_what_an_uninterrupted_run_reads(tmp_path):
    cfg = DataConfig(source="webdataset", urls=write_shards(tmp_path / "wds"))
    straight = StreamData(cfg, 7, 16, process=1, processes=2)
    full = [straight.batch(s, 3) for s in range(5)]  # 15 samples: past the 10 of one epoch
    for step in (1, 3, 4):
        resumed = StreamData(cfg, 7, 16, process=1, processes=2).batch(step, 3)
        assert resumed[1] == full[step][1] and (resumed[0] == full[step][0]).all()
    # the next epoch deals the shards anew, and the two processes again split all 20 samples between them
    second = [captions(StreamData(cfg, 7, 16, process=p, processes=2), range(2, 4), 5) for p in range(2)]
    assert set(second[0]).isdisjoint(second[1]) and len(set(second[0] + second[1])) == 20


def test_missing_or_unusable_webdataset_shards_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="shards not found: .*nowhere"):
        StreamData(DataConfig(source="webdataset", urls=str(tmp_path / "nowhere/{0..3}.tar")), 0, 16)
    with pytest.raises(ConfigError, match="needs urls"):
        StreamData(DataConfig(source="webdataset"), 0, 16)
    urls = write_shards(tmp_path / "wds", shards=1)
    with pytest.raises(ConfigError, match="at least as many shards as processes"):
        StreamData(DataConfig(source="webdataset", urls=urls), 0, 16, process=0, processes=2).batch(0, 1)
    with pytest.raises(ConfigError, match="no caption.*it has png, txt"):
        StreamData(DataConfig(source="webdataset", urls=urls, caption_key="json"), 0, 16).batch(0, 1)


def _hf_rows(n=12):
    return {"image": [_image(k) for k in range(n)], "text": [f"caption {k}" for k in range(n)]}


def test_hf_saved_dataset_is_split_by_process_and_resumes(tmp_path):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict(_hf_rows()).cast_column("image", datasets.Image())
    ds.save_to_disk(str(tmp_path / "saved"))
    cfg = DataConfig(source="hf", dataset=str(tmp_path / "saved"))
    seen = [captions(StreamData(cfg, 0, 16, process=p, processes=2), range(3), 2) for p in range(2)]
    assert set(seen[0]).isdisjoint(seen[1]) and len(set(seen[0] + seen[1])) == 12
    straight = StreamData(cfg, 3, 16)
    full = [straight.batch(s, 5)[1] for s in range(4)]  # 20 of 12: into the second epoch
    assert StreamData(cfg, 3, 16).batch(3, 5)[1] == full[3]
    assert sorted(full[0] + full[1] + full[2][:2]) == sorted(f"caption {k}" for k in range(12))  # one epoch


def test_hf_streamed_data_files_and_bad_columns(tmp_path):
    datasets = pytest.importorskip("datasets")
    folder = tmp_path / "parquet"
    folder.mkdir()
    ds = datasets.Dataset.from_dict(_hf_rows(8)).cast_column("image", datasets.Image())
    ds.select(range(4)).to_parquet(str(folder / "a.parquet"))
    ds.select(range(4, 8)).to_parquet(str(folder / "b.parquet"))
    cfg = DataConfig(source="hf", dataset=str(folder))
    seen = [captions(StreamData(cfg, 0, 16, process=p, processes=2), range(2), 2) for p in range(2)]
    assert set(seen[0]).isdisjoint(seen[1]) and len(set(seen[0] + seen[1])) == 8
    assert StreamData(cfg, 0, 16, process=1, processes=2).batch(1, 2)[1] == seen[1][2:]
    with pytest.raises(ConfigError, match="no column.*caption.*set \\[data\\] image_column"):
        StreamData(DataConfig(source="hf", dataset=str(folder), caption_column="caption"), 0, 16)
    with pytest.raises(ConfigError, match="cannot open HF dataset 'someone/missing-set'"):
        StreamData(DataConfig(source="hf", dataset="someone/missing-set"), 0, 16)


def test_icd_trains_on_webdataset_shards(tmp_path):
    urls = write_shards(tmp_path / "wds", shards=2, per_shard=3)
    recipe = {"data": DataConfig(source="webdataset", urls=urls),
              "train": ICDTrainConfig(backbone="tiny-sd15", steps=2, batch_size=2, lora_rank=4,
                                      lora_alpha=4.0, threads=1, checkpoint_every=1, log_every=1)}
    paths = train_icd(recipe, tmp_path / "run", progress=False, log=lambda *a: None)
    meta = json.loads((tmp_path / "run" / "icd.json").read_text())
    assert meta["recipe"]["data"]["urls"] == urls and paths["reverse_lora"]
