"""Grids of images with their prompts, for people to look at: teacher samples, before/after edits.

One cell is an image and a caption; each grid row is a list of cells. Small images (the toy
world's 32×32) are enlarged with nearest-neighbour so their pixels stay visible.
"""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image, ImageDraw

Cell = tuple[Image.Image, str]


def _wrap(text: str, width_chars: int, max_lines: int) -> str:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + len(word) + 1 > width_chars:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    lines.append(line)
    return "\n".join(lines[:max_lines])


def image_grid(rows: Sequence[Sequence[Cell]], *, cell: int = 128, text_lines: int = 3,
               header: Sequence[str] | None = None) -> Image.Image:
    """Cells of ``cell`` pixels with up to ``text_lines`` lines of caption under each; ``header``:
    one title per column, written above the first row."""
    line_h = 11  # PIL's default bitmap font
    text_h = text_lines * line_h + 2
    top = line_h + 4 if header else 0
    columns = max(len(r) for r in rows)
    grid = Image.new("RGB", (columns * cell, top + len(rows) * (cell + text_h)), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for c, title in enumerate(header or []):
        draw.text((c * cell + 2, 2), title, fill=(0, 0, 0))
    for r, row in enumerate(rows):
        for c, (image, caption) in enumerate(row):
            x, y = c * cell, top + r * (cell + text_h)
            resample = Image.Resampling.NEAREST if image.width < cell else Image.Resampling.LANCZOS
            grid.paste(image.convert("RGB").resize((cell, cell), resample), (x, y))
            draw.multiline_text((x + 2, y + cell + 1), _wrap(caption, cell // 6, text_lines), fill=(0, 0, 0),
                                spacing=0)
    return grid
