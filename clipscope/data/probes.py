"""The built-in procedural probe set: rendered scenes with known attributes.

Every scene is a group of identical objects (shape, colour, size, texture, and for arrows an
orientation) placed as a row in one half of the canvas. Scene ``i`` of seed ``s`` is drawn from
``numpy.random.default_rng([s, i])``, so any item can be rendered on its own, in any order,
and the set has any size.

Three uses:
- captioned scenes (``--data probes[:N[:SEED]]``), each labelled with its colour-shape class
  for zero-shot classification (:data:`CLASSNAMES`);
- MMVP-style pair probes (:func:`pair_probes`): two scenes that differ in exactly one attribute,
  each with its own statement, grouped by pattern;
- training data for the bundled tiny CLIP (``examples/train_tiny_clip.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from clipscope.data.text_perturb import reorder_trigrams

SHAPES = ("circle", "square", "triangle", "arrow")
COLOURS = {
    "red": (214, 39, 40),
    "green": (44, 160, 44),
    "blue": (31, 89, 214),
    "yellow": (240, 200, 20),
    "purple": (148, 60, 189),
    "orange": (255, 127, 14),
}
COUNTS = ("one", "two", "three", "four")
SIZES = ("small", "large")
POSITIONS = ("left", "right", "top", "bottom")
ORIENTATIONS = ("up", "down", "left", "right")
TEXTURES = ("plain", "striped", "dotted")
PATTERNS = ("orientation", "colour", "count", "position", "size", "shape", "texture")

CLASSNAMES = tuple(f"{c} {s}" for s in SHAPES for c in COLOURS)
DEFAULT_SIZE = 128
DEFAULT_N = 512


@dataclass(frozen=True)
class Scene:
    shape: str
    colour: str
    count: int
    size: str
    position: str
    texture: str
    orientation: str = "up"  # only meaningful for arrows

    @property
    def label(self) -> int:
        return CLASSNAMES.index(f"{self.colour} {self.shape}")

    @property
    def caption(self) -> str:
        noun = self.shape + ("s" if self.count > 1 else "")
        texture = "" if self.texture == "plain" else f"{self.texture} "
        pointing = f" pointing {self.orientation}" if self.shape == "arrow" else ""
        return f"{COUNTS[self.count - 1]} {self.size} {self.colour} {texture}{noun}{pointing} on the {self.position}"


def sample_scene(rng: np.random.Generator) -> Scene:
    return Scene(
        shape=SHAPES[rng.integers(len(SHAPES))],
        colour=list(COLOURS)[rng.integers(len(COLOURS))],
        count=int(rng.integers(1, len(COUNTS) + 1)),
        size=SIZES[rng.integers(len(SIZES))],
        position=POSITIONS[rng.integers(len(POSITIONS))],
        texture=TEXTURES[rng.integers(len(TEXTURES))],
        orientation=ORIENTATIONS[rng.integers(len(ORIENTATIONS))],
    )


def scene(seed: int, index: int) -> Scene:
    return sample_scene(np.random.default_rng([seed, index]))


def _polygon(shape: str, cx: float, cy: float, r: float, orientation: str) -> list[tuple[float, float]] | None:
    if shape == "square":
        return [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    if shape == "triangle":
        return [(cx + r * math.cos(a), cy + r * math.sin(a)) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
    if shape == "arrow":
        # An arrow pointing right, rotated to its orientation: shaft plus head.
        pts = [(-r, -0.3 * r), (0.1 * r, -0.3 * r), (0.1 * r, -0.85 * r), (r, 0), (0.1 * r, 0.85 * r),
               (0.1 * r, 0.3 * r), (-r, 0.3 * r)]
        angle = {"right": 0.0, "down": math.pi / 2, "left": math.pi, "up": -math.pi / 2}[orientation]
        ca, sa = math.cos(angle), math.sin(angle)
        return [(cx + x * ca - y * sa, cy + x * sa + y * ca) for x, y in pts]
    return None


def _texture_mask(texture: str, size: int, rng: np.random.Generator) -> Image.Image | None:
    """Where the object's colour is replaced by white: stripes or dots (None for plain)."""
    if texture == "plain":
        return None
    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    period = max(4, size // 16)
    if texture == "striped":
        for x in range(-size, size, period):
            draw.polygon([(x, 0), (x + period // 2, 0), (x + period // 2 + size, size), (x + size, size)], fill=255)
    else:
        rad = max(1, period // 4)
        for y in range(period // 2, size, period):
            for x in range(period // 2, size, period):
                draw.ellipse([x - rad, y - rad, x + rad, y + rad], fill=255)
    return mask


def render(scene: Scene, *, size: int = DEFAULT_SIZE, seed: int = 0, index: int = 0) -> Image.Image:
    """Render a scene as an RGB image of ``size`` x ``size`` pixels (deterministic)."""
    rng = np.random.default_rng([seed, index, 1])
    ss = 2  # supersampling, for clean edges after downscaling
    big = size * ss
    bg = tuple(int(v) for v in rng.integers(200, 245, size=3))
    img = Image.new("RGB", (big, big), bg)
    obj_mask = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(obj_mask)
    half = big / 2
    # Region of the group: a half of the canvas; objects in a row along its long side.
    if scene.position in ("left", "right"):
        x0 = 0 if scene.position == "left" else half
        region = (x0, 0.0, x0 + half, float(big))
        vertical = True
    else:
        y0 = 0 if scene.position == "top" else half
        region = (0.0, y0, float(big), y0 + half)
        vertical = False
    cell = big / scene.count
    r = (0.17 if scene.size == "large" else 0.09) * big
    r = min(r, 0.42 * min(cell, half))
    jitter = 0.04 * big
    for k in range(scene.count):
        along = (k + 0.5) * cell
        across = half / 2
        if vertical:
            cx, cy = region[0] + across, along
        else:
            cx, cy = along, region[1] + across
        cx += float(rng.uniform(-jitter, jitter))
        cy += float(rng.uniform(-jitter, jitter))
        poly = _polygon(scene.shape, cx, cy, r, scene.orientation)
        if poly is None:
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        else:
            draw.polygon(poly, fill=255)
    colour = Image.new("RGB", (big, big), COLOURS[scene.colour])
    tex = _texture_mask(scene.texture, big, rng)
    if tex is not None:
        white = Image.new("RGB", (big, big), (255, 255, 255))
        colour = Image.composite(white, colour, tex)
    img = Image.composite(colour, img, obj_mask)
    # A thin dark outline keeps textured objects visible against the background.
    edge = obj_mask.filter(ImageFilter.FIND_EDGES)
    img = Image.composite(Image.new("RGB", (big, big), (40, 40, 40)), img, edge)
    return img.resize((size, size), Image.Resampling.LANCZOS)


_ALTERNATIVES = {
    "orientation": ("orientation", ORIENTATIONS),
    "colour": ("colour", tuple(COLOURS)),
    "count": ("count", (1, 2, 3, 4)),
    "position": ("position", POSITIONS),
    "size": ("size", SIZES),
    "shape": ("shape", ("circle", "square", "triangle")),
    "texture": ("texture", TEXTURES),
}


def pair_probe(seed: int, index: int) -> tuple[str, Scene, Scene]:
    """Pair ``index``: (pattern, scene_a, scene_b) differing in exactly one attribute."""
    rng = np.random.default_rng([seed, index, 2])
    pattern = PATTERNS[index % len(PATTERNS)]
    base = sample_scene(rng)
    if pattern == "orientation":
        base = replace(base, shape="arrow")
    elif pattern == "shape" and base.shape == "arrow":
        base = replace(base, shape="circle")
    field, values = _ALTERNATIVES[pattern]
    current = getattr(base, field)
    others = [v for v in values if v != current]
    other = others[rng.integers(len(others))]
    return pattern, base, replace(base, **{field: other})


def pair_probes(n_pairs: int = 70, seed: int = 0):
    """``n_pairs`` MMVP-style pairs cycling through :data:`PATTERNS`.

    Yields dicts with ``pattern``, ``images`` (two PIL images), ``statements`` (two captions);
    statement k describes image k.
    """
    for i in range(n_pairs):
        pattern, a, b = pair_probe(seed, i)
        yield {
            "pattern": pattern,
            "images": (render(a, seed=seed, index=2 * i + 10_000_000), render(b, seed=seed, index=2 * i + 10_000_000)),
            "statements": (a.caption, b.caption),
            "ids": (f"pair{i:04d}a", f"pair{i:04d}b"),
        }


# --------------------------------------------------------------------------- compositional probes

COMPOSE_KINDS = ("binding", "spatial", "counting", "word_order")
_NUMBER = {1: "one", 2: "two"}


def _plural(shape: str, n: int) -> str:
    return shape if n == 1 else shape + "s"


def compose_probe(seed: int, index: int) -> dict:
    """Compositional probe ``index``: a two-object scene (one group of objects in each half) and
    a [negative, positive] caption pair whose negative shares every word of the positive.

    Kinds cycle through :data:`COMPOSE_KINDS`: attribute binding (colours swapped between the
    shapes), spatial relation (left/right swapped), counting (counts swapped; the nouns agree
    in number) and word order (the positive with its trigrams shuffled).
    """
    rng = np.random.default_rng([seed, index, 3])
    kind = COMPOSE_KINDS[index % len(COMPOSE_KINDS)]
    shape_a, shape_b = (str(s) for s in rng.choice(["circle", "square", "triangle"], 2, replace=False))
    colour_a, colour_b = (str(c) for c in rng.choice(list(COLOURS), 2, replace=False))
    n_a, n_b = (1, 2) if kind == "counting" and rng.random() < 0.5 else ((2, 1) if kind == "counting" else (1, 1))
    left = Scene(shape_a, colour_a, n_a, "large", "left", "plain")
    right = Scene(shape_b, colour_b, n_b, "large", "right", "plain")
    if kind == "binding":
        pos = f"a {colour_a} {shape_a} and a {colour_b} {shape_b}"
        neg = f"a {colour_b} {shape_a} and a {colour_a} {shape_b}"
    elif kind == "spatial":
        pos, neg = f"a {shape_a} to the left of a {shape_b}", f"a {shape_b} to the left of a {shape_a}"
    elif kind == "counting":
        pos = f"{_NUMBER[n_a]} {_plural(shape_a, n_a)} and {_NUMBER[n_b]} {_plural(shape_b, n_b)}"
        neg = f"{_NUMBER[n_b]} {_plural(shape_a, n_b)} and {_NUMBER[n_a]} {_plural(shape_b, n_a)}"
    else:
        pos = f"a {colour_a} {shape_a} on the left and a {colour_b} {shape_b} on the right"
        neg = reorder_trigrams(pos, rng)
    # Both halves come from renders with the same seed and index: the same background.
    a = render(left, seed=seed, index=20_000_000 + index)
    b = render(right, seed=seed, index=20_000_000 + index)
    half = a.width // 2
    img = a.copy()
    img.paste(b.crop((half, 0, b.width, b.height)), (half, 0))
    return {"kind": kind, "image": img, "options": [neg, pos], "id": f"compose{index:04d}"}
