"""Procedural, seeded scenes for training and evaluating the default model.

Every scene is a cluttered background (gradient, low-frequency texture, noise,
random strokes) with several objects of four classes that differ in shape and
texture: a shaded ``disc``, a striped ``square``, a checkered ``triangle`` and a
dotted ``star``. Objects get random scale, rotation, colour and occlude each
other. Splits:

* ``train`` / ``val`` / ``test``: in distribution, disjoint seeds.
* ``shifted``: the same classes under noise, blur, contrast and colour change.
* ``ood``: scenes that also hold object kinds never seen in training (a ring,
  a zig-zag bar and a cross); their pixels carry :data:`IGNORE_INDEX`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from app.defaults import IGNORE_INDEX

CLASS_NAMES: tuple[str, ...] = ("background", "disc", "square", "triangle", "star")
CLASS_COLOURS: tuple[str, ...] = ("#1f1f1f", "#e6194b", "#3cb44b", "#4363d8", "#f58231")
SPLITS: tuple[str, ...] = ("train", "val", "test", "shifted", "ood")
_SPLIT_OFFSET = {"train": 0, "val": 10_000_000, "test": 20_000_000, "shifted": 30_000_000, "ood": 40_000_000}
_OOD_KINDS = ("ring", "zigzag", "cross")


@dataclass(frozen=True)
class Scene:
    """One generated scene.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB.
        mask: ``(H, W)`` uint8 class indices; :data:`IGNORE_INDEX` marks OOD objects.
    """

    image: np.ndarray
    mask: np.ndarray


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    grid = rng.random((cells, cells)).astype(np.float32)
    img = Image.fromarray((grid * 255).astype(np.uint8)).resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(img, dtype=np.float32) / 255.0


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    angle = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    t = np.clip(0.5 + (xx - 0.5) * math.cos(angle) + (yy - 0.5) * math.sin(angle), 0, 1)
    img = c0[None, None] * (1 - t[..., None]) + c1[None, None] * t[..., None]
    blotches = _smooth_noise(rng, size, int(rng.integers(3, 9)))
    img += (blotches[..., None] - 0.5) * rng.uniform(20, 90) * rng.uniform(0.5, 1.0, 3)
    img += rng.normal(0, rng.uniform(2, 12), img.shape)
    canvas = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(2, 9))):
        pts = [tuple(rng.uniform(-0.1, 1.1, 2) * size) for _ in range(int(rng.integers(2, 5)))]
        colour = tuple(int(v) for v in rng.uniform(0, 255, 3))
        draw.line(pts, fill=colour, width=int(rng.integers(1, max(2, size // 40))))
    return np.asarray(canvas, dtype=np.float32)


def _texture(kind: str, rng: np.random.Generator, size: int, scale: float) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    theta = rng.uniform(0, math.pi)
    period = max(4.0, scale * rng.uniform(0.3, 0.45))
    u = xx * math.cos(theta) + yy * math.sin(theta)
    v = -xx * math.sin(theta) + yy * math.cos(theta)
    pattern: np.ndarray
    if kind == "square":
        pattern = np.sin(2 * math.pi * u / period) > 0
    elif kind == "triangle":
        pattern = (np.floor(u / period) + np.floor(v / period)) % 2
    elif kind == "star":
        du, dv = (u % period) - period / 2, (v % period) - period / 2
        pattern = du**2 + dv**2 < (period * 0.3) ** 2
    elif kind == "zigzag":
        pattern = (u / period + 0.5 * np.abs((v / period) % 2 - 1)) % 1 > 0.5
    else:
        return _smooth_noise(rng, size, 6)
    return pattern.astype(np.float32)


def _polygon(kind: str, cx: float, cy: float, r: float, rot: float, rng: np.random.Generator) -> list[tuple[float, float]]:
    if kind == "square":
        aspect = rng.uniform(0.7, 1.0)
        corners: list[tuple[float, float]] = [(-1, -aspect), (1, -aspect), (1, aspect), (-1, aspect)]
    elif kind == "triangle":
        corners = [(math.cos(a), math.sin(a)) for a in (math.pi / 2 + k * 2 * math.pi / 3 for k in range(3))]
    elif kind == "star":
        corners = [((1.0 if k % 2 == 0 else 0.4) * math.cos(k * math.pi / 5), (1.0 if k % 2 == 0 else 0.4) * math.sin(k * math.pi / 5)) for k in range(10)]
    elif kind == "zigzag":
        corners = [(-1, -0.25), (-0.5, -0.45), (0, -0.25), (0.5, -0.45), (1, -0.25), (1, 0.25), (0.5, 0.05), (0, 0.25), (-0.5, 0.05), (-1, 0.25)]
    elif kind == "cross":
        w = 0.3
        corners = [(-w, -1), (w, -1), (w, -w), (1, -w), (1, w), (w, w), (w, 1), (-w, 1), (-w, w), (-1, w), (-1, -w), (-w, -w)]
    else:
        raise ValueError(f"unknown polygon kind {kind!r}")
    c, s = math.cos(rot), math.sin(rot)
    return [(cx + r * (x * c - y * s), cy + r * (x * s + y * c)) for x, y in corners]


def _shape_mask(kind: str, size: int, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    r = size * rng.uniform(0.08, 0.24)
    cx, cy = rng.uniform(0.05, 0.95, 2) * size
    rot = rng.uniform(0, 2 * math.pi)
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    if kind == "disc":
        ry = r * rng.uniform(0.75, 1.0)
        draw.ellipse([cx - r, cy - ry, cx + r, cy + ry], fill=255)
        canvas = canvas.rotate(math.degrees(rot), center=(cx, cy))
    elif kind == "ring":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        draw.ellipse([cx - r * 0.55, cy - r * 0.55, cx + r * 0.55, cy + r * 0.55], fill=0)
    else:
        draw.polygon(_polygon(kind, cx, cy, r, rot, rng), fill=255)
    return np.asarray(canvas) > 127, r


def _paint(img: np.ndarray, kind: str, region: np.ndarray, r: float, rng: np.random.Generator) -> None:
    size = img.shape[0]
    base = rng.uniform(0, 255, 3)
    other = np.clip(base + rng.choice([-1, 1], 3) * rng.uniform(70, 150, 3), 0, 255)
    if kind == "disc":
        yy, xx = np.nonzero(region)
        cy, cx = yy.mean(), xx.mean()
        gy, gx = np.mgrid[0:size, 0:size]
        t = np.clip(np.hypot(gy - cy + r * 0.3, gx - cx + r * 0.3) / (1.5 * r), 0, 1)
    else:
        t = _texture(kind, rng, size, r)
    layer = base[None, None] * (1 - t[..., None]) + other[None, None] * t[..., None]
    img[region] = layer[region]


def _scene_rng(split: str, index: int, seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, _SPLIT_OFFSET[split] + index])


def make_scene(split: str, index: int, size: int = 128, seed: int = 0) -> Scene:
    """Generate one scene deterministically from ``(split, index, seed)``.

    Args:
        split: One of :data:`SPLITS`.
        index: Scene number within the split.
        size: Side length in pixels.
        seed: Data set seed.

    Returns:
        The scene's image and mask.
    """
    if split not in _SPLIT_OFFSET:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    rng = _scene_rng(split, index, seed)
    img = _background(rng, size)
    mask = np.zeros((size, size), dtype=np.uint8)
    kinds = [CLASS_NAMES[int(k)] for k in rng.integers(1, len(CLASS_NAMES), int(rng.integers(2, 6)))]
    if split == "ood":
        kinds += list(rng.choice(_OOD_KINDS, int(rng.integers(1, 3))))
        rng.shuffle(kinds)
    for kind in kinds:
        region, r = _shape_mask(kind, size, rng)
        if region.sum() < 4:
            continue
        _paint(img, kind, region, r, rng)
        mask[region] = CLASS_NAMES.index(kind) if kind in CLASS_NAMES else IGNORE_INDEX
    out = np.clip(img, 0, 255).astype(np.uint8)
    if split == "shifted":
        out = _shift(out, rng)
    return Scene(out, mask)


def _shift(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    pil = Image.fromarray(img).filter(ImageFilter.GaussianBlur(rng.uniform(0.8, 1.8)))
    arr = np.asarray(pil, dtype=np.float32)
    mean = arr.mean()
    arr = (arr - mean) * rng.uniform(0.35, 0.6) + mean
    arr = arr * rng.uniform(0.6, 1.3, 3)[None, None] + rng.uniform(-40, 40, 3)[None, None]
    arr += rng.normal(0, rng.uniform(12, 25), arr.shape)
    shifted: np.ndarray = np.clip(arr, 0, 255).astype(np.uint8)
    return shifted


def iter_split(split: str, count: int, size: int = 128, seed: int = 0) -> Iterator[Scene]:
    """Yield ``count`` scenes of ``split``."""
    for index in range(count):
        yield make_scene(split, index, size=size, seed=seed)


def write_split(split: str, count: int, out_dir: Path, size: int = 128, seed: int = 0) -> tuple[Path, Path]:
    """Write a split as ``images/NNNNN.png`` and ``masks/NNNNN.png`` under ``out_dir``.

    Returns:
        The image and mask folders.
    """
    images, masks = out_dir / "images", out_dir / "masks"
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    for index, scene in enumerate(iter_split(split, count, size=size, seed=seed)):
        Image.fromarray(scene.image).save(images / f"{index:05d}.png")
        Image.fromarray(scene.mask).save(masks / f"{index:05d}.png")
    return images, masks
