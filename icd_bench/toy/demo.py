"""The bundled demo set: toy-scene edit pairs written in the PIE-Bench layout.

Seven edit types that make sense for shapes, with PIE-Bench's type ids: 1 change object (shape),
2 add object, 3 delete object, 4 change content (size), 5 change pose (position), 6 change
colour, 8 change background. Ids are 12 digits: the type id, then 1 (synthetic image), then a
counter. Edited words are bracketed in both prompts, the mask (run-length over the 512×512 grid)
covers where the edit may act, and each entry carries its source and target scenes
(``toy_source_scene`` / ``toy_target_scene``) for the oracle.
"""

from __future__ import annotations

import difflib
import json
import random
from dataclasses import replace
from pathlib import Path

import numpy as np

from icd_bench.data.piebench import MASK_GRID, encode_mask
from icd_bench.toy import scenes
from icd_bench.toy.scenes import Scene, SceneObject

EDIT_KINDS = {  # PIE-Bench type id → (name, instruction template)
    "1": "change object",
    "2": "add object",
    "3": "delete object",
    "4": "change content",
    "5": "change pose",
    "6": "change color",
    "8": "change background",
}
PAIR_FOR_POSITION = {"left": "left of", "right": "right of", "top": "above", "bottom": "below"}


def _other(rng: random.Random, options, current):
    return rng.choice([o for o in options if o != current])


def make_edit(kind: str, rng: random.Random) -> tuple[Scene, Scene, str]:
    """A (source, target, instruction) triple of one edit type."""
    bg = rng.choice(list(scenes.BACKGROUNDS))
    pos = rng.choice(list(PAIR_FOR_POSITION)) if kind in ("2", "3") else rng.choice(list(scenes.POSITIONS))
    obj = scenes.random_object(rng, position=pos)
    src = Scene(bg, (obj,))
    if kind == "1":
        new = replace(obj, shape=_other(rng, scenes.SHAPES, obj.shape))
        return src, Scene(bg, (new,)), f"Change the {obj.shape} into a {new.shape}"
    if kind == "4":
        new = replace(obj, size=_other(rng, scenes.SIZES, obj.size))
        return src, Scene(bg, (new,)), f"Make the {obj.shape} {new.size}"
    if kind == "5":
        new = replace(obj, position=_other(rng, scenes.POSITIONS, obj.position))
        return src, Scene(bg, (new,)), f"Move the {obj.shape} to the {new.position}"
    if kind == "6":
        new = replace(obj, color=_other(rng, scenes.OBJECT_COLORS, obj.color))
        return src, Scene(bg, (new,)), f"Make the {obj.shape} {new.color}"
    if kind == "8":
        new_bg = _other(rng, scenes.BACKGROUNDS, bg)
        return src, Scene(new_bg, (obj,)), f"Make the background {new_bg}"
    second = scenes.random_object(rng)
    while (second.shape, second.color) == (obj.shape, obj.color):
        second = scenes.random_object(rng)
    pair = Scene(bg, (replace(obj, position="center"), second), relation=PAIR_FOR_POSITION[pos])
    if kind == "2":
        return src, pair, f"Add {second.phrase()}"
    if kind == "3":
        return pair, src, f"Remove the {second.color} {second.shape}"
    raise ValueError(f"unknown edit kind {kind!r}")


def bracket_diff(source: str, target: str) -> tuple[str, str, str]:
    """Bracket the words that differ; returns (source, target, blended_word)."""
    a, b = source.split(), target.split()
    out_a, out_b, blend = list(a), list(b), ""
    ops = [op for op in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes() if op[0] != "equal"]
    for tag, i1, i2, j1, j2 in reversed(ops):
        if i2 > i1:
            out_a[i1:i2] = ["[" + " ".join(a[i1:i2]) + "]"]
        if j2 > j1:
            out_b[j1:j2] = ["[" + " ".join(b[j1:j2]) + "]"]
        if tag == "replace" and i2 - i1 == 1 and j2 - j1 == 1:
            blend = f"{a[i1]} {b[j1]}"
    if len(ops) != 1:
        blend = ""
    return " ".join(out_a), " ".join(out_b), blend


def edit_region(source: Scene, target: Scene, kind: str) -> np.ndarray:
    """Where the edit may act, at 32×32: the background for a background change, else the union
    of the changed objects' masks grown by one pixel."""
    _, sm = source.render()
    _, tm = target.render()
    if kind == "8":
        return ~np.any(sm, axis=0)
    changed = np.zeros(sm.shape[1:], bool)
    src_objs = dict(zip(source.objects, sm, strict=True))
    tgt_objs = dict(zip(target.objects, tm, strict=True))
    for o, m in list(src_objs.items()) + list(tgt_objs.items()):
        same = any(_same_place(o, m, other, om) for other, om in
                   (tgt_objs.items() if o in src_objs else src_objs.items()))
        if not same:
            changed |= m
    return scenes.grow(changed)


def _same_place(a: SceneObject, am: np.ndarray, b: SceneObject, bm: np.ndarray) -> bool:
    return (a.shape, a.color, a.size) == (b.shape, b.color, b.size) and np.array_equal(am, bm)


def build_demo(out_dir: str | Path, seed: int = 0, per_type: int = 10) -> Path:
    """Write the demo set (``per_type`` edits of each of the 7 types) into ``out_dir``."""
    out = Path(out_dir)
    images = out / "annotation_images" / "toy"
    images.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    mapping = {}
    factor = MASK_GRID[0] // scenes.RESOLUTION
    for kind in EDIT_KINDS:
        for k in range(per_type):
            sid = f"{kind}1{k:010d}"
            source, target, instruction = make_edit(kind, rng)
            src_prompt, tgt_prompt, blend = bracket_diff(source.caption(), target.caption())
            image, _ = source.render()
            image.save(images / f"{sid}.png", optimize=True)
            region = edit_region(source, target, kind)
            big = np.kron(region, np.ones((factor, factor), bool))
            mapping[sid] = {
                "image_path": f"toy/{sid}.png",
                "original_prompt": src_prompt,
                "editing_prompt": tgt_prompt,
                "editing_instruction": instruction,
                "editing_type_id": kind,
                "blended_word": blend,
                "mask": encode_mask(big),
                "toy_source_scene": source.to_dict(),
                "toy_target_scene": target.to_dict(),
            }
    lines = [f"{json.dumps(k)}: {json.dumps(v)}" for k, v in mapping.items()]  # one entry a line
    (out / "mapping_file.json").write_text("{\n" + ",\n".join(lines) + "\n}\n")
    return out
