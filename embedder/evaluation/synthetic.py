"""Labelled synthetic images for measuring retrieval: simple shapes of known colour and size.

Every image shows one object — a shape (circle, square, …) in a colour (red, green, …) at a
size (small or large) — at a random place on a varied background (plain, gradient, noise,
stripes or checks), with some photographic noise, blur and JPEG compression. Its caption says
what it shows, e.g. ``a small red circle``. Everything is drawn from a seed, so a seed always
gives the same images; pure PIL + numpy, about a millisecond an image.

A dataset on disk (`write_dataset`) is a folder of class folders named ``"<colour> <shape>"``
(``red circle/0001.jpg``) plus ``captions.csv`` (columns ``path,caption``; paths relative to
the CSV's folder), the two layouts the `eval` command reads.

    python -m embedder.evaluation.synthetic data/synthetic --per-class 20 --seed 1
"""

from __future__ import annotations

import argparse
import colorsys
import csv
import io
import itertools
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

log = logging.getLogger(__name__)

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross")
# Hue window (degrees, may wrap below 0), saturation and value ranges of each colour name.
COLOUR_HSV: dict[str, tuple[tuple[float, float], tuple[float, float], tuple[float, float]]] = {
    "red": ((-8.0, 6.0), (0.75, 1.0), (0.70, 0.95)),
    "orange": ((22.0, 33.0), (0.85, 1.0), (0.90, 1.0)),
    "yellow": ((50.0, 58.0), (0.80, 1.0), (0.90, 1.0)),
    "green": ((100.0, 140.0), (0.70, 1.0), (0.55, 0.85)),
    "blue": ((210.0, 235.0), (0.75, 1.0), (0.65, 0.95)),
    "purple": ((270.0, 290.0), (0.60, 0.85), (0.50, 0.80)),
}
COLOURS: tuple[str, ...] = tuple(COLOUR_HSV)
SIZES: tuple[str, ...] = ("small", "large")
# Object radius as a fraction of the image side; the gap between the two keeps sizes unambiguous.
SIZE_RADIUS: dict[str, tuple[float, float]] = {"small": (0.13, 0.19), "large": (0.30, 0.42)}
BACKGROUNDS: tuple[str, ...] = ("plain", "gradient", "noise", "stripes", "checks")
CSV_NAME = "captions.csv"
LAYOUTS = ("folders", "flat")


@dataclass(frozen=True)
class Sample:
    """One generated image and what it shows."""

    shape: str
    colour: str
    size: str
    image: Image.Image

    @property
    def label(self) -> str:
        """The class name, colour then shape: ``red circle``."""
        return class_name(self.colour, self.shape)

    @property
    def caption(self) -> str:
        """A full description: ``a small red circle``."""
        return caption(self.colour, self.shape, self.size)


def class_name(colour: str, shape: str) -> str:
    """``red circle``: the folder name and the query of a colour+shape class."""
    return f"{colour} {shape}"


def class_names() -> list[str]:
    """All colour+shape classes, colour-major: ``red circle``, ``red square``, …"""
    return [class_name(c, s) for c in COLOURS for s in SHAPES]


def caption(colour: str, shape: str, size: str | None = None) -> str:
    """``a small red circle``; without a size ``a red circle`` (``an orange circle``)."""
    words = " ".join(w for w in (size, colour, shape) if w)
    return f"{'an' if words[0] in 'aeiou' else 'a'} {words}"


def generate(n: int, seed: int, image_size: int = 224) -> Iterator[Sample]:
    """Yield `n` samples; the same seed gives the same images.

    Classes come in shuffled rounds of every (shape, colour, size), so any `n` is balanced to
    within one image per class. Sample `i` depends only on (seed, i), so a longer run starts
    with the images of a shorter one.
    """
    combos = list(itertools.product(SHAPES, COLOURS, SIZES))
    for i in range(n):
        round_, slot = divmod(i, len(combos))
        order = np.random.default_rng([seed, round_, 0]).permutation(len(combos))
        shape, colour, size = combos[order[slot]]
        rng = np.random.default_rng([seed, i, 1])
        yield Sample(shape, colour, size, render(shape, colour, size, rng, image_size))


def generate_classes(n_per_class: int, seed: int, image_size: int = 224) -> Iterator[Sample]:
    """Yield `n_per_class` samples of each colour+shape class, sizes alternating (small first
    or large first, by the seed), class by class in `class_names()` order."""
    for k, (colour, shape) in enumerate(itertools.product(COLOURS, SHAPES)):
        first = int(np.random.default_rng([seed, k, 2]).integers(2))
        for j in range(n_per_class):
            size = SIZES[(first + j) % 2]
            rng = np.random.default_rng([seed, k, j, 3])
            yield Sample(shape, colour, size, render(shape, colour, size, rng, image_size))


def write_dataset(
    folder: Path | str, n_per_class: int, seed: int, layout: str = "folders", image_size: int = 224
) -> Path:
    """Write `n_per_class` JPEGs of every colour+shape class under `folder`, and `captions.csv`.

    ``folders``: ``<folder>/<colour> <shape>/0001.jpg``; ``flat``: ``<folder>/<colour>-<shape>-0001.jpg``.
    The CSV (``path,caption``; paths relative to `folder`) is written in both layouts.
    Returns the CSV's path.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
    if n_per_class < 1:
        raise ValueError("n_per_class must be at least 1")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    rows: list[tuple[str, str]] = []
    for sample in generate_classes(n_per_class, seed, image_size):
        counts[sample.label] = number = counts.get(sample.label, 0) + 1
        if layout == "folders":
            relative = Path(sample.label) / f"{number:04d}.jpg"
        else:
            relative = Path(f"{sample.label.replace(' ', '-')}-{number:04d}.jpg")
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        # The image is already JPEG-compressed once; save at high quality so the file is the sample.
        sample.image.save(folder / relative, format="JPEG", quality=95)
        rows.append((relative.as_posix(), sample.caption))
    csv_path = folder / CSV_NAME
    with open(csv_path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(("path", "caption"))
        writer.writerows(rows)
    log.info("wrote %d images of %d classes to %s", len(rows), len(counts), folder)
    return csv_path


def render(shape: str, colour: str, size: str, rng: np.random.Generator, image_size: int = 224) -> Image.Image:
    """Draw one `colour` `shape` of `size` on a random background; all randomness from `rng`."""
    if shape not in SHAPES or colour not in COLOUR_HSV or size not in SIZE_RADIUS:
        raise ValueError(f"unknown class {size!r} {colour!r} {shape!r}")
    side = int(image_size)
    image = _background(rng, side)
    radius = side * rng.uniform(*SIZE_RADIUS[size])
    margin = radius * 1.05
    cx, cy = rng.uniform(margin, side - margin, size=2)
    fill = _object_colour(colour, rng)
    draw = ImageDraw.Draw(image)
    if shape == "circle":
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=fill)
    else:
        draw.polygon(_polygon(shape, cx, cy, radius, rng.uniform(-0.3, 0.3)), fill=fill)
    return _photographic(image, rng)


def _polygon(shape: str, cx: float, cy: float, r: float, turn: float) -> list[tuple[float, float]]:
    """Corner points of `shape` around (cx, cy), `r` its outer radius, turned by `turn` radians."""
    if shape == "square":
        points = [(math.pi / 4 + k * math.pi / 2, r) for k in range(4)]
    elif shape == "triangle":
        points = [(-math.pi / 2 + k * 2 * math.pi / 3, r) for k in range(3)]
    elif shape == "star":
        points = [(-math.pi / 2 + k * math.pi / 5, r if k % 2 == 0 else 0.42 * r) for k in range(10)]
    else:  # cross: a plus sign with arms a third of its width
        w = r / 3
        corners = [(w, r), (w, w), (r, w), (r, -w), (w, -w), (w, -r), (-w, -r), (-w, -w), (-r, -w), (-r, w), (-w, w), (-w, r)]
        points = [(math.atan2(y, x), math.hypot(x, y)) for x, y in corners]
    return [(cx + d * math.cos(a + turn), cy + d * math.sin(a + turn)) for a, d in points]


def _object_colour(colour: str, rng: np.random.Generator) -> tuple[int, int, int]:
    (h0, h1), (s0, s1), (v0, v1) = COLOUR_HSV[colour]
    r, g, b = colorsys.hsv_to_rgb((rng.uniform(h0, h1) % 360) / 360, rng.uniform(s0, s1), rng.uniform(v0, v1))
    return round(r * 255), round(g * 255), round(b * 255)


def _dull(rng: np.random.Generator) -> np.ndarray:
    """A background colour: greyish (saturation ≤ 0.2), mostly light, sometimes dark."""
    value = rng.uniform(0.72, 1.0) if rng.random() < 0.8 else rng.uniform(0.12, 0.35)
    return np.array(colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.0, 0.2), value)) * 255


def _background(rng: np.random.Generator, side: int) -> Image.Image:
    kind = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    a, b = _dull(rng).astype(np.float32), _dull(rng).astype(np.float32)
    if kind == "plain":
        pixels = np.broadcast_to(a, (side, side, 3))
    elif kind == "gradient":
        angle = rng.uniform(0, 2 * math.pi)
        ys, xs = np.ogrid[0:side, 0:side]
        t = (xs * math.cos(angle) + ys * math.sin(angle)).astype(np.float32)
        t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
        pixels = a + (b - a) * t[..., None]
    elif kind == "noise":  # blotchy: coarse noise scaled up smoothly
        cells = int(rng.integers(3, 9))
        coarse = rng.random((cells, cells)).astype(np.float32)
        t = np.asarray(Image.fromarray(coarse, mode="F").resize((side, side), Image.Resampling.BICUBIC))
        pixels = a + (b - a) * np.clip(t, 0, 1)[..., None]
    else:  # stripes or checks, low contrast
        period = side / rng.uniform(3, 12)
        ys, xs = np.ogrid[0:side, 0:side]
        if kind == "stripes":
            angle = rng.uniform(0, math.pi)
            on = ((xs * math.cos(angle) + ys * math.sin(angle)) // period) % 2
        else:
            on = ((xs // period) + (ys // period)) % 2
        b = a + (b - a) * 0.35
        pixels = np.where(on[..., None] > 0, b, a)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="RGB")


def _photographic(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Soften, add sensor-like noise and a brightness shift, then JPEG-compress."""
    if rng.random() < 0.5:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2) * image.width / 224))
    pixels = np.asarray(image, dtype=np.float32) * np.float32(rng.uniform(0.9, 1.1))
    noise = rng.standard_normal(pixels.shape, dtype=np.float32)
    noise *= np.float32(rng.uniform(2.0, 10.0))
    pixels += noise
    image = Image.fromarray(np.clip(pixels, 0, 255, out=pixels).astype(np.uint8), mode="RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=int(rng.integers(35, 95)))
    buffer.seek(0)
    with Image.open(buffer) as jpeg:
        return jpeg.convert("RGB")


# Concepts the tiny CLIP never saw (tests/fixtures/tiny-clip knows only SHAPES): drawn the same way, in
# the same colours and sizes, each with captions that paraphrase one another. For measuring tuning.
NEW_SHAPES: dict[str, tuple[str, ...]] = {
    "heart": ("a heart", "a heart shape", "a love heart"),
    "crescent": ("a crescent", "a crescent moon", "a moon shape"),
    "ring": ("a ring", "a hollow ring", "a donut shape"),
    "arrow": ("an arrow", "an arrow shape", "a pointing arrow"),
}


def render_new(shape: str, rng: np.random.Generator, image_size: int = 224) -> Image.Image:
    """One of NEW_SHAPES in a random colour and size on a random background; all randomness from `rng`."""
    if shape not in NEW_SHAPES:
        raise ValueError(f"unknown new shape {shape!r}")
    side = int(image_size)
    image = _background(rng, side)
    size = SIZES[int(rng.integers(len(SIZES)))]
    colour = COLOURS[int(rng.integers(len(COLOURS)))]
    radius = side * rng.uniform(*SIZE_RADIUS[size])
    margin = radius * 1.05
    cx, cy = rng.uniform(margin, side - margin, size=2)
    turn = rng.uniform(-0.3, 0.3)
    mask = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(mask)
    if shape == "heart":
        t = np.linspace(0, 2 * math.pi, 64)
        x, y = 16 * np.sin(t) ** 3, 13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)
        draw.polygon(_turned(x / 17, -y / 17, cx, cy, radius, turn), fill=255)
    elif shape == "crescent":
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=255)
        dx, dy = 0.45 * radius * math.cos(turn), 0.45 * radius * math.sin(turn)
        inner = 0.85 * radius
        draw.ellipse((cx + dx - inner, cy + dy - inner, cx + dx + inner, cy + dy + inner), fill=0)
    elif shape == "ring":
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=255)
        inner = 0.55 * radius
        draw.ellipse((cx - inner, cy - inner, cx + inner, cy + inner), fill=0)
    else:  # arrow pointing right, turned
        x = np.array([-1.0, 0.15, 0.15, 1.0, 0.15, 0.15, -1.0])
        y = np.array([-0.22, -0.22, -0.6, 0.0, 0.6, 0.22, 0.22])
        draw.polygon(_turned(x, y, cx, cy, radius, turn), fill=255)
    image.paste(Image.new("RGB", (side, side), _object_colour(colour, rng)), mask=mask)
    return _photographic(image, rng)


def _turned(x: np.ndarray, y: np.ndarray, cx: float, cy: float, r: float, turn: float) -> list[tuple[float, float]]:
    """Unit-sized outline points scaled by `r`, turned by `turn` radians, around (cx, cy)."""
    cos, sin = math.cos(turn), math.sin(turn)
    return [(cx + r * (a * cos - b * sin), cy + r * (a * sin + b * cos)) for a, b in zip(x, y)]


def write_new_concepts(folder: Path | str, n_per_class: int, seed: int, image_size: int = 224) -> Path:
    """`n_per_class` JPEGs of each of NEW_SHAPES under `folder/<shape>/`, and `labels.csv`
    (`path,caption,group`): every picture with all its shape's paraphrases, the shape as their group.
    Returns the CSV's path."""
    folder = Path(folder)
    rows: list[tuple[str, str, str]] = []
    for k, (shape, captions) in enumerate(NEW_SHAPES.items()):
        (folder / shape).mkdir(parents=True, exist_ok=True)
        for j in range(n_per_class):
            relative = f"{shape}/{j + 1:04d}.jpg"
            render_new(shape, np.random.default_rng([seed, k, j, 5]), image_size).save(folder / relative, quality=95)
            rows += [(relative, text, shape) for text in captions]
    csv_path = folder / "labels.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(("path", "caption", "group"))
        writer.writerows(rows)
    log.info("wrote %d pictures of %d new shapes to %s", n_per_class * len(NEW_SHAPES), len(NEW_SHAPES), folder)
    return csv_path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m embedder.evaluation.synthetic", description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--per-class", type=int, default=20, help="images of each colour+shape class")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--layout", choices=LAYOUTS, default="folders")
    parser.add_argument("--image-size", type=int, default=224)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    write_dataset(args.folder, args.per_class, args.seed, args.layout, args.image_size)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
