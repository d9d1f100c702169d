"""The toy world's oracle: read a scene's attributes back from pixels.

For a generated image (no mask known) the background is the median colour of the border, the
foreground is every pixel far from it, and the object's colour, position and shape come from the
foreground blob. For an image with known masks (an edit's source or target scene), colours are
read inside each mask and the background outside all of them. Colours are classified as the
nearest palette entry in RGB; positions as the nearest canonical centre; shapes from how much of
the blob's bounding box the blob fills (a square fills it) and from its top-to-bottom balance
(a triangle points up; a circle is symmetric); sizes from the blob's extent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from icd_bench.toy.scenes import BACKGROUNDS, OBJECT_COLORS, POSITIONS, Scene

FOREGROUND_DISTANCE = 60.0  # RGB distance from the background colour that counts as an object


def _as_array(image: Image.Image | np.ndarray) -> np.ndarray:
    arr = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image, dtype=np.float32)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an H×W×3 RGB image, got shape {arr.shape}")
    return arr


def nearest(color: np.ndarray, palette: dict[str, tuple[int, int, int]]) -> str:
    names = list(palette)
    d = [float(np.sum((color - np.asarray(palette[n], np.float32)) ** 2)) for n in names]
    return names[int(np.argmin(d))]


@dataclass
class Reading:
    background: str
    color: str | None  # None when no object is visible
    position: str | None
    shape: str | None
    foreground_fraction: float
    size: str | None = None


def read_single(image: Image.Image | np.ndarray) -> Reading:
    """Read a one-object scene from pixels alone."""
    arr = _as_array(image)
    border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
    bg_rgb = np.median(border, axis=0)
    background = nearest(bg_rgb, BACKGROUNDS)
    dist = np.sqrt(((arr - bg_rgb) ** 2).sum(-1))
    fg = dist > FOREGROUND_DISTANCE
    frac = float(fg.mean())
    if fg.sum() < 4:
        return Reading(background, None, None, None, frac, None)
    core = fg & (dist > np.percentile(dist[fg], 30))  # the blob's inside, away from blended edges
    color = nearest(np.median(arr[core if core.sum() >= 3 else fg], axis=0), OBJECT_COLORS)
    ys, xs = np.nonzero(fg)
    h, w = fg.shape
    cx, cy = xs.mean() * 32 / w, ys.mean() * 32 / h
    position = min(POSITIONS, key=lambda p: (POSITIONS[p][0] - cx) ** 2 + (POSITIONS[p][1] - cy) ** 2)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    blob = fg[y0:y1, x0:x1]
    third = max(1, blob.shape[0] // 3)
    top, bottom = blob[:third].sum(), blob[-third:].sum()
    if blob.mean() > 0.93:
        shape = "square"
    elif top < 0.6 * bottom:  # a triangle points up: narrow top, wide base
        shape = "triangle"
    else:
        shape = "circle"
    extent = max(y1 - y0, x1 - x0) * 32 / max(h, w)  # small objects span ~10 px, large ~16
    size = "large" if extent > 13 else "small"
    return Reading(background, color, position, shape, frac, size)


def score_single(image: Image.Image | np.ndarray, scene: Scene) -> dict[str, bool]:
    """Does a generated image match a one-object scene's caption? One bool per attribute."""
    if len(scene.objects) != 1:
        raise ValueError("score_single takes a one-object scene")
    r = read_single(image)
    o = scene.objects[0]
    return {"background": r.background == scene.background, "color": r.color == o.color,
            "position": r.position == o.position, "shape": r.shape == o.shape, "size": r.size == o.size}


def _erode(m: np.ndarray) -> np.ndarray:
    """Drop every pixel with a 4-neighbour outside the mask (the anti-aliased edge)."""
    inner = m.copy()
    inner[1:] &= m[:-1]
    inner[:-1] &= m[1:]
    inner[:, 1:] &= m[:, :-1]
    inner[:, :-1] &= m[:, 1:]
    return inner


def read_masked(image: Image.Image | np.ndarray, masks: np.ndarray) -> dict:
    """Colours inside each mask (eroded by the blended edge; None where the region looks like the
    background rather than an object) and the background colour outside all masks."""
    arr = _as_array(image)
    outside = ~np.any(masks, axis=0)
    background = nearest(np.median(arr[outside], axis=0), BACKGROUNDS)
    bg_rgb = np.asarray(BACKGROUNDS[background], np.float32)
    colors = []
    for m in masks:
        inner = _erode(m)
        sel = inner if inner.sum() >= 3 else m
        if not sel.any():
            colors.append(None)
            continue
        rgb = np.median(arr[sel], axis=0)
        name = nearest(rgb, OBJECT_COLORS)
        obj_rgb = np.asarray(OBJECT_COLORS[name], np.float32)
        # no object there: the region looks like the background, not like any object colour
        colors.append(None if np.sum((rgb - bg_rgb) ** 2) < np.sum((rgb - obj_rgb) ** 2) else name)
    return {"colors": colors, "background": background}


def score_scene(image: Image.Image | np.ndarray, scene: Scene) -> dict[str, bool]:
    """Does an image match a scene's caption? One-object scenes are read from pixels alone
    (`score_single`); for two objects each colour is read where the caption puts that object,
    so "color" and "position" coincide and "shape" is not judged."""
    if len(scene.objects) == 1:
        return score_single(image, scene)
    _, masks = scene.render()
    r = read_masked(image, masks)
    placed = r["colors"] == [o.color for o in scene.objects]
    return {"background": r["background"] == scene.background, "color": placed, "position": placed}


def score_edit(output: Image.Image | np.ndarray, source: Scene, target: Scene) -> dict[str, float | bool]:
    """Score an edit of ``source`` towards ``target`` from the output's pixels.

    - ``edit_success``: the output reads as the target scene (`score_scene`: every judged attribute).
    - ``background_psnr``: PSNR (dB, capped at 100) between output and source over the pixels that
      no object of either scene touches — unless the edit changes the background, where the
      preserved part is the inside of the (unchanged) objects.
    - ``kept``: the attributes the edit should not touch still read as the source's (the
      background colour, or for a background change the object colours).
    """
    from icd_bench.imaging import psnr_from_mse

    out = _as_array(output)
    src_img, src_masks = source.render()
    _, tgt_masks = target.render()
    success = all(score_scene(out.astype(np.uint8), target).values())
    if source.background != target.background:
        # edges blend with the background
        keep = _erode(np.any(src_masks, axis=0) & np.any(tgt_masks, axis=0))
        kept = read_masked(out.astype(np.uint8), src_masks)["colors"] == [o.color for o in source.objects]
    else:
        keep = source.background_mask() & target.background_mask()
        kept = (read_masked(out.astype(np.uint8), np.concatenate([src_masks, tgt_masks]))["background"]
                == source.background)
    diff = (out[keep] - np.asarray(src_img, np.float32)[keep]) / 255.0
    mse = float(np.mean(diff**2)) if diff.size else 0.0
    return {"edit_success": bool(success), "background_psnr": psnr_from_mse(mse), "kept": bool(kept)}
