import numpy as np
import pytest
from PIL import Image

from icd_bench.data.folder import FolderDataset, sample_id_for
from icd_bench.errors import ConfigError, SampleError
from icd_bench.registry import DATASETS

from helpers import make_image, write_prompts


def test_registered():
    assert DATASETS.get("folder") is FolderDataset


def test_good_rows_load(images_dir):
    ds = FolderDataset(data_dir=images_dir)
    assert ds.ids() == [f"img{k}" for k in range(5)]
    s = ds.load("img0")
    assert s.id == "img0" and s.image.mode == "RGB" and s.image.size == (48, 48)
    assert s.source_prompt == "a circle number 0" and s.target_prompt == "a square number 0"
    assert s.blend_words == ("circle", "square")
    assert ds.describe()["size"] == 5


def test_bad_rows_are_per_sample_errors(tmp_path):
    make_image(tmp_path / "ok.png")
    (tmp_path / "garbage.png").write_bytes(b"this is not an image")
    good = tmp_path / "good.png"
    make_image(good)
    data = good.read_bytes()
    (tmp_path / "truncated.png").write_bytes(data[: len(data) // 2])
    write_prompts(tmp_path, [
        ("ok.png", "a cat", "a dog"),
        ("missing.png", "a cat", "a dog"),
        ("garbage.png", "a cat", "a dog"),
        ("truncated.png", "a cat", "a dog"),
        ("good.png", "", "a dog"),
        ("good.jpg", "a cat", "  "),
        ("ok.jpeg", "a cat", "a dog", "only-one-word"),
    ])
    ds = FolderDataset(data_dir=tmp_path)
    assert ds.ids() == ["ok", "missing", "garbage", "truncated", "good", "good-2", "ok-2"]
    assert ds.load("ok").source_prompt == "a cat"
    expected = {
        "missing": "image file not found",
        "garbage": "unreadable image",
        "truncated": "unreadable image",
        "good": "empty source_prompt (prompts.csv line 6)",
        "good-2": "empty target_prompt (prompts.csv line 7)",
        "ok-2": "blend_words must be two words",
    }
    for sid, fragment in expected.items():
        with pytest.raises(SampleError) as err:
            ds.load(sid)
        assert fragment in err.value.reason, (sid, err.value.reason)
        assert err.value.sample_id == sid


def test_unusual_image_modes_become_rgb(tmp_path):
    Image.new("L", (20, 10), 128).save(tmp_path / "gray.png")
    rgba = Image.new("RGBA", (20, 10), (255, 0, 0, 0))  # fully transparent red → white
    rgba.save(tmp_path / "rgba.png")
    arr16 = (np.arange(200, dtype=np.uint16).reshape(10, 20) * 300).astype(np.uint16)
    Image.fromarray(arr16).save(tmp_path / "deep.png")
    write_prompts(tmp_path, [(n, "a", "b") for n in ("gray.png", "rgba.png", "deep.png")])
    ds = FolderDataset(data_dir=tmp_path)
    gray, rgba_s, deep = (ds.load(i).image for i in ("gray", "rgba", "deep"))
    assert gray.mode == rgba_s.mode == deep.mode == "RGB"
    assert np.asarray(gray)[0, 0].tolist() == [128, 128, 128]
    assert np.asarray(rgba_s)[0, 0].tolist() == [255, 255, 255]
    d = np.asarray(deep)[..., 0]
    assert d.min() == 0 and d.max() == round(199 * 300 / 65535 * 255)  # 16-bit scaled, not clipped


def test_dataset_level_errors(tmp_path):
    with pytest.raises(ConfigError, match="needs --data-dir"):
        FolderDataset()
    with pytest.raises(ConfigError, match="not found"):
        FolderDataset(data_dir=tmp_path / "nope")
    with pytest.raises(ConfigError, match="prompts.csv not found"):
        FolderDataset(data_dir=tmp_path)
    (tmp_path / "prompts.csv").write_text("name,prompt\nx.png,a cat\n")
    with pytest.raises(ConfigError, match="missing column"):
        FolderDataset(data_dir=tmp_path)


def test_sample_ids_are_file_safe():
    assert sample_id_for("my photo (1).JPG") == "my_photo__1_"
    assert sample_id_for("sub/dir/x.png") == "x"
    assert sample_id_for(".hidden.png") == "hidden"
