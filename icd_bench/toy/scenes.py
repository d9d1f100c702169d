"""Procedural captioned scenes with ground truth: the toy world's data.

A scene is a plain background colour and one or two objects, each with a shape, a colour, a size
and a position. Its caption is generated from the attributes, and every object's mask is known,
so an oracle can check from pixels alone whether an image matches a caption.

Chosen for this project's CPU-only machines: 32×32 RGB in pixel space (no VAE to train), a small
closed vocabulary (6 object colours, 3 shapes, 2 sizes, 5 positions, 4 relations, 4 backgrounds)
whose colours are far apart in RGB so the oracle is exact on clean renders.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

RESOLUTION = 32
SUPERSAMPLE = 4  # draw at 4× and downsample: anti-aliased edges, exact masks from the 1× grid

OBJECT_COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 210, 40),
    "purple": (150, 50, 190),
    "orange": (245, 140, 30),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (245, 245, 245),
    "black": (15, 15, 15),
    "gray": (128, 128, 128),
    "pink": (250, 190, 200),
}
SHAPES = ("circle", "square", "triangle")
SIZES: dict[str, int] = {"small": 5, "large": 8}  # half-extent in pixels at 32×32
POSITIONS: dict[str, tuple[int, int]] = {  # centre (x, y) of a single object
    "left": (9, 16),
    "right": (23, 16),
    "top": (16, 9),
    "bottom": (16, 23),
    "center": (16, 16),
}
POSITION_PHRASES = {"left": "on the left", "right": "on the right", "top": "at the top",
                    "bottom": "at the bottom", "center": "in the center"}
# two objects: (first centre, second centre) for "first RELATION second"
RELATIONS: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {
    "left of": ((9, 16), (23, 16)),
    "right of": ((23, 16), (9, 16)),
    "above": ((16, 9), (16, 23)),
    "below": ((16, 23), (16, 9)),
}
RELATION_PHRASES = {"left of": "to the left of", "right of": "to the right of", "above": "above",
                    "below": "below"}


@dataclass(frozen=True)
class SceneObject:
    shape: str
    color: str
    size: str = "large"
    position: str = "center"  # single object: a POSITIONS key; in a pair: set by the relation

    def phrase(self) -> str:
        article = "an" if self.color[0] in "aeiou" else "a"
        size = f"{self.size} " if self.size == "small" else ""
        if size:
            article = "a"
        return f"{article} {size}{self.color} {self.shape}"


@dataclass(frozen=True)
class Scene:
    background: str
    objects: tuple[SceneObject, ...]
    relation: str | None = None  # for two objects: "left of", "right of", "above", "below"

    def __post_init__(self):
        if not 1 <= len(self.objects) <= 2:
            raise ValueError("a scene has one or two objects")
        if (len(self.objects) == 2) != (self.relation is not None):
            raise ValueError("two objects need a relation, one object none")
        if self.background not in BACKGROUNDS:
            raise ValueError(f"unknown background {self.background!r}")
        for o in self.objects:
            if o.shape not in SHAPES or o.color not in OBJECT_COLORS or o.size not in SIZES:
                raise ValueError(f"unknown object attributes {o}")
            if len(self.objects) == 1 and o.position not in POSITIONS:
                raise ValueError(f"unknown position {o.position!r}")

    # -- text --------------------------------------------------------------------------------
    def caption(self) -> str:
        bg = f"on a {self.background} background"
        if len(self.objects) == 1:
            o = self.objects[0]
            return f"{o.phrase()} {POSITION_PHRASES[o.position]} {bg}"
        a, b = self.objects
        return f"{a.phrase()} {RELATION_PHRASES[self.relation]} {b.phrase()} {bg}"

    def to_dict(self) -> dict[str, Any]:
        return {"background": self.background, "relation": self.relation,
                "objects": [asdict(o) for o in self.objects]}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Scene:
        return Scene(background=d["background"], relation=d.get("relation"),
                     objects=tuple(SceneObject(**o) for o in d["objects"]))

    def combination(self) -> str:
        """A key of the attribute combination (used to hold combinations out of training)."""
        return self.caption()

    # -- pixels ------------------------------------------------------------------------------
    def centres(self) -> list[tuple[int, int]]:
        if len(self.objects) == 1:
            return [POSITIONS[self.objects[0].position]]
        return list(RELATIONS[self.relation])

    def render(self) -> tuple[Image.Image, np.ndarray]:
        """The RGB image (RESOLUTION²) and the object masks (K×H×W bool, in drawing order).

        A pixel belongs to an object's mask when more than half of it is covered by the object and
        no later object covers it (objects of a pair never overlap).
        """
        s, n = SUPERSAMPLE, RESOLUTION
        big = Image.new("RGB", (n * s, n * s), BACKGROUNDS[self.background])
        draw = ImageDraw.Draw(big)
        masks = []
        for obj, (cx, cy) in zip(self.objects, self.centres(), strict=True):
            m = Image.new("L", (n * s, n * s), 0)
            _draw_shape(ImageDraw.Draw(m), obj.shape, cx, cy, SIZES[obj.size], s, 255)
            _draw_shape(draw, obj.shape, cx, cy, SIZES[obj.size], s, OBJECT_COLORS[obj.color])
            cover = np.asarray(m, dtype=np.float32).reshape(n, s, n, s).mean(axis=(1, 3)) / 255.0
            masks.append(cover > 0.5)
        image = big.resize((n, n), Image.Resampling.BOX)
        return image, np.stack(masks)

    def background_mask(self) -> np.ndarray:
        """Pixels that no object touches at all (a 1-pixel margin around every object excluded)."""
        _, masks = self.render()
        touched = np.zeros((RESOLUTION, RESOLUTION), bool)
        for m in masks:
            touched |= grow(m)
        return ~touched


def grow(mask: np.ndarray) -> np.ndarray:
    """Dilate a bool mask by one pixel in all 8 directions."""
    grown = mask.copy()
    grown[1:] |= mask[:-1]
    grown[:-1] |= mask[1:]
    grown[:, 1:] |= grown[:, :-1].copy()
    grown[:, :-1] |= grown[:, 1:].copy()
    return grown


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: int, cy: int, r: int, s: int, fill) -> None:
    # pixel (x, y) covers [x, x+1); centre of pixel cx is at cx + 0.5
    x0, y0, x1, y1 = (cx + 0.5 - r) * s, (cy + 0.5 - r) * s, (cx + 0.5 + r) * s - 1, (cy + 0.5 + r) * s - 1
    if shape == "circle":
        draw.ellipse((x0, y0, x1, y1), fill=fill)
    elif shape == "square":
        inset = r * s * 0.12  # a square of the same area feel as the circle
        draw.rectangle((x0 + inset, y0 + inset, x1 - inset, y1 - inset), fill=fill)
    elif shape == "triangle":
        draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}")


# -- sampling ----------------------------------------------------------------------------------

def random_object(rng: random.Random, position: str = "center") -> SceneObject:
    return SceneObject(shape=rng.choice(SHAPES), color=rng.choice(list(OBJECT_COLORS)),
                       size=rng.choice(list(SIZES)), position=position)


def random_scene(rng: random.Random, p_two: float = 0.35) -> Scene:
    bg = rng.choice(list(BACKGROUNDS))
    if rng.random() < p_two:
        a = random_object(rng)
        b = random_object(rng)
        while (b.shape, b.color) == (a.shape, a.color):
            b = random_object(rng)
        return Scene(bg, (a, b), relation=rng.choice(list(RELATIONS)))
    return Scene(bg, (random_object(rng, position=rng.choice(list(POSITIONS))),))


def single_object_combinations() -> list[Scene]:
    """Every one-object scene: 4 backgrounds × 3 shapes × 6 colours × 2 sizes × 5 positions."""
    return [Scene(bg, (SceneObject(sh, c, sz, pos),))
            for bg in BACKGROUNDS for sh in SHAPES for c in OBJECT_COLORS for sz in SIZES
            for pos in POSITIONS]


def is_held_out(scene: Scene, fraction: float = 0.18) -> bool:
    """Deterministic hold-out of attribute combinations (by a hash of the caption)."""
    h = int.from_bytes(hashlib.sha256(scene.combination().encode()).digest()[:4], "little")
    return h / 2**32 < fraction


def held_out_single_scenes() -> list[Scene]:
    return [s for s in single_object_combinations() if is_held_out(s)]


def held_out_eval_scenes(total: int = 160, seed: int = 0) -> list[Scene]:
    """The quality-bar set: every held-out one-object combination, topped up to ``total`` with
    held-out two-object combinations drawn deterministically."""
    out = held_out_single_scenes()
    rng = random.Random(seed)
    seen = {s.caption() for s in out}
    while len(out) < total:
        scene = random_scene(rng, p_two=1.0)
        if is_held_out(scene) and scene.caption() not in seen:
            seen.add(scene.caption())
            out.append(scene)
    return out


def training_scene(rng: random.Random, p_two: float = 0.35) -> Scene:
    """A random scene whose combination is not held out (two objects with probability ``p_two``)."""
    while True:
        scene = random_scene(rng, p_two)
        if not is_held_out(scene):
            return scene


def with_changes(obj: SceneObject, **changes: Any) -> SceneObject:
    return replace(obj, **changes)
