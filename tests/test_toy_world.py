"""The toy world: scenes, masks, the oracle, the tokenizer and the bundled demo set."""

from __future__ import annotations

import filecmp
import json
import random

import numpy as np
import pytest

from icd_bench.registry import DATASETS
from icd_bench.toy import scenes
from icd_bench.toy.demo import EDIT_KINDS, bracket_diff, build_demo
from icd_bench.toy.model import ASSETS, load_tokenizer
from icd_bench.toy.oracle import read_masked, read_single, score_scene, score_single
from icd_bench.toy.scenes import BACKGROUNDS, OBJECT_COLORS, Scene, SceneObject


def test_scenes_are_deterministic_from_a_seed():
    a = [scenes.random_scene(random.Random(7)) for _ in range(3)]
    b = [scenes.random_scene(random.Random(7)) for _ in range(3)]
    assert a == b
    ims_a = [np.asarray(s.render()[0]) for s in a]
    ims_b = [np.asarray(s.render()[0]) for s in b]
    assert all(np.array_equal(x, y) for x, y in zip(ims_a, ims_b, strict=True))


def test_captions_follow_the_attributes():
    s = Scene("white", (SceneObject("circle", "red", "large", "left"),))
    assert s.caption() == "a red circle on the left on a white background"
    pair = Scene("pink", (SceneObject("square", "orange", "small"), SceneObject("triangle", "blue")),
                 relation="above")
    assert pair.caption() == "a small orange square above a blue triangle on a pink background"
    assert Scene.from_dict(pair.to_dict()) == pair
    with pytest.raises(ValueError):
        Scene("white", (SceneObject("circle", "red"),), relation="above")


@pytest.mark.parametrize("seed", range(6))
def test_masks_match_the_drawn_pixels(seed):
    rng = random.Random(seed)
    scene = scenes.random_scene(rng, p_two=0.5 if seed % 2 else 0.0)
    image, masks = scene.render()
    arr = np.asarray(image).astype(int)
    assert masks.shape == (len(scene.objects), 32, 32) and masks.any(axis=(1, 2)).all()
    for obj, m in zip(scene.objects, masks, strict=True):
        inside = arr[m]
        # pixels more than half covered are closer to the object's colour than to the background's
        d_obj = np.abs(inside - OBJECT_COLORS[obj.color]).sum(-1)
        d_bg = np.abs(inside - BACKGROUNDS[scene.background]).sum(-1)
        assert (d_obj < d_bg).all()
    assert not np.logical_and(*masks).any() if len(masks) == 2 else True
    bg = scene.background_mask()
    assert (arr[bg] == BACKGROUNDS[scene.background]).all()  # untouched pixels are exactly background
    assert not (bg & masks.any(0)).any()


def test_held_out_combinations():
    held = scenes.held_out_eval_scenes()
    assert len({s.caption() for s in held}) == len(held) >= 128
    assert all(scenes.is_held_out(s) for s in held)
    rng = random.Random(0)
    train_captions = {scenes.training_scene(rng).caption() for _ in range(2000)}
    assert not train_captions & {s.caption() for s in held}


def test_oracle_is_exact_on_clean_renders():
    for scene in scenes.single_object_combinations():
        image, masks = scene.render()
        assert all(score_single(image, scene).values()), scene.caption()
        reading = read_masked(image, masks)
        assert reading["colors"] == [scene.objects[0].color] and reading["background"] == scene.background
    rng = random.Random(1)
    for _ in range(50):
        pair = scenes.random_scene(rng, p_two=1.0)
        image, masks = pair.render()
        assert read_masked(image, masks) == {"colors": [o.color for o in pair.objects],
                                             "background": pair.background}


def test_oracle_scores_pairs_where_the_caption_puts_them():
    pair = Scene("gray", (SceneObject("circle", "red"), SceneObject("square", "blue")), relation="left of")
    assert score_scene(pair.render()[0], pair) == {"background": True, "color": True, "position": True}
    swapped = Scene("gray", pair.objects, relation="right of")
    assert score_scene(swapped.render()[0], pair)["position"] is False


def test_oracle_sees_a_wrong_image():
    red = Scene("white", (SceneObject("circle", "red", "large", "left"),))
    blue_right = Scene("black", (SceneObject("square", "blue", "large", "right"),))
    scores = score_single(blue_right.render()[0], red)
    assert scores == {"background": False, "color": False, "position": False, "shape": False, "size": True}
    empty = np.full((32, 32, 3), 245, np.uint8)
    assert read_single(empty).color is None


def test_toy_tokenizer_is_clip_bpe_restricted_to_the_toy_words():
    tok = load_tokenizer()
    assert tok.model_max_length == 77 and len(tok) < 700
    assert tok.tokenize("a small red circle to the left of an orange triangle") == [
        "a</w>", "small</w>", "red</w>", "circle</w>", "to</w>", "the</w>", "left</w>", "of</w>",
        "an</w>", "orange</w>", "triangle</w>"]
    assert tok.tokenize("zebra") == ["z", "e", "b", "r", "a</w>"]  # unknown words still tokenize


def test_bracket_diff_marks_the_edited_words():
    src, tgt, blend = bracket_diff("a red circle on a white background",
                                   "a blue circle on a white background")
    assert (src, tgt, blend) == ("a [red] circle on a white background",
                                 "a [blue] circle on a white background", "red blue")


def test_demo_set_regenerates_exactly(tmp_path):
    out = build_demo(tmp_path / "demo")
    bundled = ASSETS.parent / "demo"
    assert (out / "mapping_file.json").read_bytes() == (bundled / "mapping_file.json").read_bytes()
    names = sorted(p.name for p in (bundled / "annotation_images" / "toy").iterdir())
    match, mismatch, errors = filecmp.cmpfiles(bundled / "annotation_images" / "toy",
                                               out / "annotation_images" / "toy", names, shallow=False)
    assert not mismatch and not errors and len(match) == 70


def test_demo_dataset_loads_in_the_piebench_layout():
    ds = DATASETS.get("demo")()
    ids = ds.ids()
    assert len(ids) == 70 and all(len(i) == 12 and i.isdigit() for i in ids)
    types = {ds.load(i).edit_type for i in ids}
    assert len(types) == len(EDIT_KINDS) == 7
    for sid in ids[::7]:
        s = ds.load(sid)
        src = Scene.from_dict(s.meta["toy_source_scene"])
        tgt = Scene.from_dict(s.meta["toy_target_scene"])
        assert s.source_prompt == src.caption() and s.target_prompt == tgt.caption()
        assert "[" not in s.source_prompt and s.edit_mask.shape == (32, 32) and s.edit_mask.any()
        assert np.array_equal(np.asarray(s.image), np.asarray(src.render()[0]))
        if s.edit_type == "change color":
            obj_mask = src.render()[1][0]
            assert s.edit_mask[obj_mask].all()  # the edited object lies inside the edit mask
    mapping = json.loads((ASSETS.parent / "demo" / "mapping_file.json").read_text())
    assert all("[" in e["original_prompt"] + e["editing_prompt"] for e in mapping.values())


def test_edit_oracle_on_ground_truth_edits():
    from icd_bench.toy.demo import make_edit
    from icd_bench.toy.oracle import score_edit

    rng = random.Random(3)
    for kind in EDIT_KINDS:
        for _ in range(5):
            source, target, _ = make_edit(kind, rng)
            perfect = score_edit(target.render()[0], source, target)
            assert perfect["edit_success"] and perfect["kept"], (kind, source.caption(), target.caption())
            assert perfect["background_psnr"] == 100.0  # the untouched part is exactly the source's
            unchanged = score_edit(source.render()[0], source, target)
            assert not unchanged["edit_success"] and unchanged["kept"], (kind, target.caption())
