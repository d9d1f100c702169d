"""PIE-Bench and COCO loaders against fixtures written in the published formats."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from icd_bench.data.coco import CocoCaptions, CocoEdit, parse_blend_words
from icd_bench.data.piebench import PieBench, decode_mask, encode_mask, in_split, strip_brackets
from icd_bench.errors import ConfigError, SampleError

from conftest import published
from helpers import make_image


def test_mask_decoding_pixel_by_pixel():
    # runs: row 1 cols 2..4 (3 px), and a run crossing rows 3→4 at the end of a 6-wide grid
    pairs = [1 * 6 + 2, 3, 3 * 6 + 4, 4]
    m = decode_mask(pairs, shape=(6, 6), border=False)
    expected = np.zeros((6, 6), bool)
    expected[1, 2:5] = True
    expected[3, 4:6] = True
    expected[4, 0:2] = True
    assert np.array_equal(m, expected)
    with_border = decode_mask(pairs, shape=(6, 6))
    frame = np.zeros((6, 6), bool)
    frame[0, :] = frame[-1, :] = frame[:, 0] = frame[:, -1] = True
    assert np.array_equal(with_border, expected | frame)
    assert decode_mask([30, 100], shape=(6, 6), border=False)[5].all()  # a run past the end is clipped
    assert encode_mask(expected) == pairs
    with pytest.raises(ValueError, match="odd"):
        decode_mask([1, 2, 3])


def test_split_rules():
    assert in_split("000000000000", "random") and not in_split("100000000000", "random")
    assert in_split("000000000001", "realistic")  # type 0
    assert in_split("121000000000", "realistic")  # natural image (second digit 2)
    assert not in_split("111000000000", "realistic")
    assert strip_brackets("a [red] car on [the] road") == ("a red car on the road", ["red", "the"])


@pytest.fixture
def pie_dir(tmp_path):
    root = tmp_path / "pie"
    (root / "annotation_images" / "0_random_140").mkdir(parents=True)
    (root / "annotation_images" / "1_change_object_80" / "1_artificial").mkdir(parents=True)
    make_image(root / "annotation_images" / "0_random_140" / "000000000000.jpg", size=512)
    make_image(root / "annotation_images" / "1_change_object_80" / "1_artificial" / "111000000000.jpg",
               size=256)
    mask = np.zeros((512, 512), bool)
    mask[100:200, 50:300] = True
    entries = {
        "000000000000": {"image_path": "0_random_140/000000000000.jpg", "original_prompt": "a [red] ball",
                         "editing_prompt": "a [blue] ball", "editing_instruction": "make it blue",
                         "editing_type_id": "0", "blended_word": "red blue", "mask": encode_mask(mask)},
        "111000000000": {"image_path": "1_change_object_80/1_artificial/111000000000.jpg",
                         "original_prompt": "a [cat]", "editing_prompt": "a [dog]", "editing_type_id": "1",
                         "blended_word": "cat dog", "mask": encode_mask(mask)},
        "121000000001": {"image_path": "missing.jpg", "original_prompt": "a", "editing_prompt": "b",
                         "editing_type_id": "1", "blended_word": "", "mask": []},
        "12100000000x": {"image_path": "x.jpg", "original_prompt": "a", "editing_prompt": "b", "mask": []},
        "121000000002": {"image_path": "0_random_140/000000000000.jpg", "original_prompt": "a",
                         "editing_prompt": "b", "blended_word": "a b", "mask": [1, 2, 3]},
        "121000000003": {"image_path": "0_random_140/000000000000.jpg", "original_prompt": "a",
                         "editing_prompt": "b", "blended_word": "one", "mask": []},
        "121000000004": {"original_prompt": "a"},
    }
    (root / "mapping_file.json").write_text(json.dumps(entries))
    return root, mask


def test_piebench_loader(pie_dir):
    root, mask = pie_dir
    ds = PieBench(data_dir=root)
    assert len(ds.ids()) == 7
    s = ds.load("000000000000")
    assert (s.source_prompt, s.target_prompt, s.blend_words) == ("a red ball", "a blue ball", ("red", "blue"))
    assert s.edit_type == "random" and s.meta["target_words"] == ["blue"]
    framed = mask.copy()
    framed[0, :] = framed[-1, :] = framed[:, 0] = framed[:, -1] = True
    assert np.array_equal(s.edit_mask, framed)  # pixel by pixel, with the border rule
    small = ds.load("111000000000")  # a 256×256 image: the mask is resized with it
    assert small.image.size == (256, 256) and small.edit_mask.shape == (256, 256)
    expected = np.asarray(Image.fromarray(framed).resize((256, 256), Image.Resampling.NEAREST))
    assert np.array_equal(small.edit_mask, expected) and small.edit_type == "change object"
    errors = {"121000000001": "image file not found", "12100000000x": "12 digits",
              "121000000002": "malformed mask", "121000000003": "blended_word", "121000000004": "lacks"}
    for sid, fragment in errors.items():
        with pytest.raises(SampleError, match=fragment):
            ds.load(sid)


def test_piebench_splits(pie_dir):
    root, _ = pie_dir
    assert PieBench(data_dir=root, split="random").ids() == ["000000000000"]
    assert "111000000000" not in PieBench(data_dir=root, split="realistic").ids()
    with pytest.raises(ConfigError, match="unknown piebench split"):
        PieBench(data_dir=root, split="natural")


@pytest.mark.parametrize("name, rule", [("editing_pie_bench_140.csv", "random"),
                                        ("editing_pie_bench_all.csv", "realistic")])
def test_piebench_runs_restricted_to_a_published_list_as_published(tmp_path, name, rule):
    """The official lists (different column orders, a leading unnamed index column) name the ids
    their split rule gives: a run restricted to the file and one with --split RULE see the same edits."""
    listed = published(name)
    ids = [name.removesuffix(".jpg") for name in pd.read_csv(listed, dtype=str)["file_name"]]
    root = tmp_path / "pie"
    (root / "annotation_images").mkdir(parents=True)
    make_image(root / "annotation_images" / "x.jpg", size=64)
    entry = {"image_path": "x.jpg", "original_prompt": "a [red] ball", "editing_prompt": "a [blue] ball",
             "blended_word": "red blue", "mask": [0, 10]}
    extra = ["111000000000", "313000000001"]  # neither random nor realistic
    (root / "mapping_file.json").write_text(json.dumps({i: entry for i in extra + sorted(ids)}))
    ds = PieBench(data_dir=root, split=str(listed))
    assert ds.ids() == ids and len(ids) == {"random": 140, "realistic": 420}[rule]
    assert set(PieBench(data_dir=root, split=rule).ids()) == set(ids)
    assert ds.load(ids[-1]).target_prompt == "a blue ball" and ds.describe()["size"] == len(ids)
    (tmp_path / "ids.txt").write_text(f"# two ids\n{ids[1]}\n{ids[0]}\n")
    assert PieBench(data_dir=root, split=str(tmp_path / "ids.txt")).ids() == [ids[1], ids[0]]
    (tmp_path / "ids.txt").write_text("999999999999\n")
    with pytest.raises(ConfigError, match="1 id.* not in .*mapping_file.json: 999999999999"):
        PieBench(data_dir=root, split=str(tmp_path / "ids.txt"))
    (tmp_path / "bad.csv").write_text("image,caption\nx.jpg,a\n")
    with pytest.raises(ConfigError, match="file_name or id column; found image, caption"):
        PieBench(data_dir=root, split=str(tmp_path / "bad.csv"))


def test_piebench_missing_data_says_what_to_download(tmp_path):
    with pytest.raises(ConfigError) as err:
        PieBench(data_dir=tmp_path / "nowhere")
    assert "mapping_file.json" in str(err.value) and "PnPInversion" in str(err.value)
    (tmp_path / "mapping_file.json").write_text("{}")
    with pytest.raises(ConfigError, match="annotation_images"):
        PieBench(data_dir=tmp_path)


def test_blend_words_written_as_tuples():
    assert parse_blend_words("('cat', 'dog')") == ("cat", "dog")
    assert parse_blend_words('["cat", "dog"]') == ("cat", "dog")
    assert parse_blend_words("") is None
    for bad in ("('cat', 'dog'", "('cat',)", "cat dog", "(1, 2)"):
        with pytest.raises(ValueError):
            parse_blend_words(bad)


def test_coco_edit(tmp_path):
    (tmp_path / "val2014").mkdir()
    make_image(tmp_path / "val2014" / "COCO_val2014_000000000042.jpg")
    (tmp_path / "editing_coco.csv").write_text(
        "file_name,old_caption,edited_caption,blended_words\n"
        "COCO_val2014_000000000042.jpg,a cat on a mat,a dog on a mat,\"('cat', 'dog')\"\n"
        "COCO_val2014_000000000042.jpg,a cat,a dog,\"('cat', 'dog'\"\n"
        "COCO_val2014_000000000043.jpg,a cat,a dog,\"('cat', 'dog')\"\n")
    ds = CocoEdit(data_dir=tmp_path)
    assert ds.ids() == ["COCO_val2014_000000000042", "COCO_val2014_000000000042-2",
                        "COCO_val2014_000000000043"]
    s = ds.load("COCO_val2014_000000000042")
    assert (s.source_prompt, s.target_prompt, s.blend_words) == ("a cat on a mat", "a dog on a mat",
                                                                 ("cat", "dog"))
    with pytest.raises(SampleError, match="not a tuple of two words"):
        ds.load("COCO_val2014_000000000042-2")
    with pytest.raises(SampleError, match="image file not found"):
        ds.load("COCO_val2014_000000000043")
    with pytest.raises(ConfigError, match="editing_coco.csv"):
        CocoEdit(data_dir=tmp_path / "nothing")


@pytest.mark.parametrize("folder", ["train2014", "val2014", "."])
def test_coco_edit_finds_an_image_in_the_split_its_name_names_or_says_which_to_unpack(tmp_path, folder):
    """The published editing_coco.csv names COCO_train2014_* files: with a train2014/ folder, a
    val2014/ folder beside it, or the images in the data directory itself, each is found."""
    (tmp_path / "val2014").mkdir()
    (tmp_path / folder).mkdir(exist_ok=True)
    make_image(tmp_path / folder / "COCO_train2014_000000000007.jpg")
    make_image(tmp_path / "val2014" / "COCO_val2014_000000000008.jpg")
    (tmp_path / "editing_coco.csv").write_text(
        "file_name,old_caption,edited_caption,blended_words\n"
        "COCO_train2014_000000000007.jpg,a cat,a dog,\"('cat', 'dog')\"\n"
        "COCO_val2014_000000000008.jpg,a cat,a dog,\"('cat', 'dog')\"\n"
        "COCO_train2014_000000000009.jpg,a cat,a dog,\"('cat', 'dog')\"\n")
    ds = CocoEdit(data_dir=tmp_path)
    assert (ds.load("COCO_train2014_000000000007").image.size
            == ds.load("COCO_val2014_000000000008").image.size)
    with pytest.raises(SampleError, match="looked in .*train2014.*val2014.*unpack train2014.zip"):
        ds.load("COCO_train2014_000000000009")


def test_coco_captions_from_the_official_annotations(tmp_path):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "val2014").mkdir()
    for i in (5, 3):
        make_image(tmp_path / "val2014" / f"COCO_val2014_{i:012d}.jpg")
    ann = {"images": [{"id": 5, "file_name": "COCO_val2014_000000000005.jpg"},
                      {"id": 3, "file_name": "COCO_val2014_000000000003.jpg"}],
           "annotations": [{"id": 9, "image_id": 5, "caption": "second caption of 5"},
                           {"id": 1, "image_id": 5, "caption": "A bus. "},
                           {"id": 2, "image_id": 3, "caption": "A tree."}]}
    (tmp_path / "annotations" / "captions_val2014.json").write_text(json.dumps(ann))
    ds = CocoCaptions(data_dir=tmp_path)
    assert ds.ids() == ["COCO_val2014_000000000003", "COCO_val2014_000000000005"]
    s = ds.load("COCO_val2014_000000000005")
    assert s.source_prompt == s.target_prompt == "A bus."
    assert CocoCaptions(data_dir=tmp_path, limit=1).ids() == ["COCO_val2014_000000000003"]
    with pytest.raises(ConfigError, match="captions_val2014.json"):
        CocoCaptions(data_dir=tmp_path / "none")


def test_the_published_coco_editing_list_loads_as_published(tmp_path):
    """editing_coco.csv as the official code publishes it (a leading unnamed index column, an
    'Unnamed: 0' column, COCO_train2014_* names, tuple-as-text blend words) over placeholder images
    in train2014/: every row is a sample with its captions and blend words."""
    listed = published("editing_coco.csv")
    table = pd.read_csv(listed, index_col=0)
    (tmp_path / "train2014").mkdir()
    for name in set(table["file_name"]):
        make_image(tmp_path / "train2014" / name, size=16)
    (tmp_path / "editing_coco.csv").write_bytes(listed.read_bytes())
    ds = CocoEdit(data_dir=tmp_path)
    assert len(ds.ids()) == len(table) == 142
    samples = [ds.load(i) for i in ds.ids()]
    assert [s.source_prompt for s in samples] == list(table["old_caption"].str.strip())
    assert [s.target_prompt for s in samples] == list(table["edited_caption"].str.strip())
    blends = [s.blend_words for s in samples]
    assert blends[0] == ("child", "lion") and sum(b is not None for b in blends) >= 0.9 * len(blends)
