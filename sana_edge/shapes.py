"""The shapes task: a seeded procedural dataset of captioned scenes, and a scorer for images.

A scene is one shape (optionally two) of a named colour, size and position on a background of
another colour, captioned "a small red circle at the top left on a blue background" (the
canonical grammar, `Scene.caption`). Size and position may be left out of a caption ("a green
triangle on a white background"); the renderer then picks them at random and the scorer does
not check them. Triangles always point up. Other phrasings of a scene ("a little red circle in
the upper-left corner, blue background") come from sana_edge.shape_captions, whose parser reads
them all.

The scorer (`score_image`) is classical image analysis, numpy only (like the whole runtime it
must run without torch): background = nearest palette colour to the median border pixel;
foreground = pixels nearer the shape's colour than the background's, largest connected parts;
shape colour = nearest palette colour to the median of the eroded foreground; position and size
from the part's bounding box; shape class = the best IoU against an ideal square, circle and
triangle drawn in that bounding box. A miniature GenEval: see `summarize` for the scores.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from . import shape_captions

# Far apart in RGB on purpose: the scorer classifies by nearest colour, and generated images
# drift a little from the exact values.
PALETTE = {
    "red": (215, 35, 35), "orange": (245, 140, 20), "yellow": (245, 220, 40), "green": (40, 160, 60),
    "blue": (35, 75, 215), "purple": (135, 50, 175), "white": (245, 245, 245), "black": (20, 20, 20),
}
SHAPES = ("circle", "square", "triangle")
# Extent (diameter / side / base) as a fraction of the image side.
SIZE_RANGES = {"small": (0.16, 0.22), "large": (0.32, 0.40)}
SIZE_THRESHOLD = 0.27  # between the two ranges: the scorer's small/large cut
# Position name -> (centre x, centre y) as fractions of the image side; phrase in captions.
POSITIONS = {
    "top left": (0.25, 0.25), "top": (0.5, 0.25), "top right": (0.75, 0.25),
    "left": (0.25, 0.5), "centre": (0.5, 0.5), "right": (0.75, 0.5),
    "bottom left": (0.25, 0.75), "bottom": (0.5, 0.75), "bottom right": (0.75, 0.75),
}
_PREPOSITION = {"left": "on", "right": "on", "centre": "in"}  # canonical grammar; others: "at"
POSITION_JITTER = 0.045  # +- fraction of the side: stays well inside a cell (cells are 1/4 apart)
ATTRIBUTES = ("background", "colour", "shape", "size", "position")


@dataclass(frozen=True)
class ShapeSpec:
    shape: str
    colour: str
    size: str | None = None  # None: not in the caption
    position: str | None = None

    def phrase(self) -> str:
        words = ([self.size] if self.size else []) + [self.colour, self.shape]
        words.insert(0, article(words[0]))
        if self.position:
            words.append(f"{canonical_preposition(self.position)} the {self.position}")
        return " ".join(words)


@dataclass(frozen=True)
class Scene:
    objects: tuple[ShapeSpec, ...]
    background: str

    @property
    def caption(self) -> str:
        return " and ".join(o.phrase() for o in self.objects) + f" on {article(self.background)} {self.background} background"


# -- captions ----------------------------------------------------------------------------------


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def canonical_preposition(position: str) -> str:
    return _PREPOSITION.get(position, "at")


def parse_caption(caption: str) -> Scene:
    """Caption in any phrasing sana_edge.shape_captions writes -> Scene; ValueError if it is not a
    shapes caption (no "<colour> background", an unknown word, an unknown colour or shape)."""
    background, objects = shape_captions.parse(caption, PALETTE, SHAPES)
    return Scene(tuple(ShapeSpec(*obj) for obj in objects), background)


def is_caption(text: str) -> bool:
    try:
        parse_caption(text)
    except ValueError:
        return False
    return True


def is_held_out(caption: str, every: int = 10) -> bool:
    """A fixed 1-in-`every` split of the scenes, by a stable hash of the canonical caption:
    training never draws these scenes (in any phrasing), so the benchmark measures captions the
    model has not seen."""
    return zlib.crc32(parse_caption(caption).caption.encode()) % every == 0


# -- sampling and rendering --------------------------------------------------------------------


def sample_scene(rng: np.random.Generator, two_shapes: float = 0.0, p_size: float = 0.7,
                 p_position: float = 0.9) -> Scene:
    """Draw a random scene; `two_shapes` is the probability of a second shape."""
    colours = list(PALETTE)
    background = colours[rng.integers(len(colours))]
    others = [c for c in colours if c != background]
    if rng.random() < two_shapes:
        # Opposite sides of the 3x3 grid, so the two shapes never touch.
        first = list(POSITIONS)[rng.choice([0, 1, 2, 3, 5, 6, 7, 8])]
        fx, fy = POSITIONS[first]
        second = next(n for n, (x, y) in POSITIONS.items() if (x, y) == (1 - fx, 1 - fy))
        picks = rng.choice(len(others), 2, replace=False)
        objects = tuple(
            ShapeSpec(SHAPES[rng.integers(3)], others[c], list(SIZE_RANGES)[rng.integers(2)], pos)
            for c, pos in zip(picks, (first, second))
        )
    else:
        size = list(SIZE_RANGES)[rng.integers(2)] if rng.random() < p_size else None
        position = list(POSITIONS)[rng.integers(len(POSITIONS))] if rng.random() < p_position else None
        objects = (ShapeSpec(SHAPES[rng.integers(3)], others[rng.integers(len(others))], size, position),)
    return Scene(objects, background)


def render(scene: Scene, rng: np.random.Generator, size: int = 128, supersample: int = 4):
    """Draw the scene (unspecified size/position drawn from `rng`) as an anti-aliased PIL image."""
    from PIL import Image, ImageDraw

    big = size * supersample
    image = Image.new("RGB", (big, big), PALETTE[scene.background])
    draw = ImageDraw.Draw(image)
    for obj in scene.objects:
        size_name = obj.size or list(SIZE_RANGES)[rng.integers(2)]
        position = obj.position or list(POSITIONS)[rng.integers(len(POSITIONS))]
        extent = rng.uniform(*SIZE_RANGES[size_name]) * big
        cx, cy = (np.asarray(POSITIONS[position]) + rng.uniform(-POSITION_JITTER, POSITION_JITTER, 2)) * big
        box = (cx - extent / 2, cy - extent / 2, cx + extent / 2, cy + extent / 2)
        colour = PALETTE[obj.colour]
        if obj.shape == "circle":
            draw.ellipse(box, fill=colour)
        elif obj.shape == "square":
            draw.rectangle(box, fill=colour)
        else:
            draw.polygon([((box[0] + box[2]) / 2, box[1]), (box[2], box[3]), (box[0], box[3])], fill=colour)
    return image.resize((size, size), Image.BOX)  # area average: soft edges as a decoder draws


def dataset(seed: int, count: int, size: int = 128, two_shapes: float = 0.0, split: str = "train"):
    """`count` (PIL image, caption) pairs, the same for the same arguments. split="train" skips
    held-out captions, "held_out" keeps only them, "all" keeps everything."""
    rng = np.random.default_rng(seed)
    items = []
    while len(items) < count:
        scene = sample_scene(rng, two_shapes)
        held = is_held_out(scene.caption)
        if (split == "train" and held) or (split == "held_out" and not held):
            continue
        items.append((render(scene, rng, size), scene.caption))
    return items


EVAL_KINDS = {
    "grammar": "held-out scenes in the canonical grammar",
    "template": "held-out scenes in held-out paraphrase templates",
    "pair": "held-out scenes in training templates with a held-out word pair",
}


def held_out_captions(count: int, seed: int, kind: str = "grammar") -> list[str]:
    """`count` captions of held-out scenes (never drawn in training, in any phrasing), written
    as `kind` says (see EVAL_KINDS). Deterministic for the same arguments."""
    if kind not in EVAL_KINDS:
        raise ValueError(f"unknown caption kind {kind!r}; one of {', '.join(EVAL_KINDS)}")
    rng = np.random.default_rng(seed)
    captions: list[str] = []
    while len(captions) < count:
        scene = sample_scene(rng)
        if not is_held_out(scene.caption):
            continue
        if kind == "grammar":
            captions.append(scene.caption)
        elif kind == "template":
            captions.append(shape_captions.paraphrase(scene, rng, shape_captions.HELD_OUT_TEMPLATES))
        else:
            try:
                captions.append(shape_captions.paraphrase(scene, rng, held_out_pairs=True))
            except ValueError:  # no held-out pair fits this scene (e.g. no "upper right" but top left)
                continue
    return captions


# -- scorer ------------------------------------------------------------------------------------

_PALETTE_NAMES = list(PALETTE)
_PALETTE_RGB = np.asarray([PALETTE[n] for n in _PALETTE_NAMES], np.float64)


def nearest_colour(rgb) -> str:
    return _PALETTE_NAMES[int(np.argmin(((_PALETTE_RGB - np.asarray(rgb, np.float64)) ** 2).sum(-1)))]


def _components(mask: np.ndarray) -> list[np.ndarray]:
    """4-connected parts of a boolean mask, largest first (union-find over row runs)."""
    labels = np.zeros(mask.shape, np.int32)
    parent = [0]

    def find(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for y in range(mask.shape[0]):
        row = np.flatnonzero(mask[y])
        if row.size == 0:
            continue
        starts = np.flatnonzero(np.diff(row, prepend=-2) != 1)
        for s, e in zip(starts, list(starts[1:]) + [row.size]):
            x0, x1 = row[s], row[e - 1] + 1
            parent.append(len(parent))
            label = len(parent) - 1
            labels[y, x0:x1] = label
            if y:
                for above in np.unique(labels[y - 1, x0:x1]):
                    if above:
                        parent[find(int(above))] = find(label)
    roots = np.asarray([find(i) for i in range(len(parent))])
    labels = roots[labels]
    ids, counts = np.unique(labels[labels > 0], return_counts=True)
    return [labels == i for i in ids[np.argsort(-counts)]]


def _box3(rgb: np.ndarray) -> np.ndarray:
    """3x3 mean filter (edge-padded): generated images carry pixel noise that would otherwise
    split a shape's mask or bias its colour."""
    padded = np.pad(rgb, ((1, 1), (1, 1), (0, 0)), mode="edge")
    h, w = rgb.shape[:2]
    return sum(padded[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)) / 9.0


def _templates(h: int, w: int) -> dict[str, np.ndarray]:
    """Ideal filled shapes in an h x w box (pixel centres), as the renderer draws them."""
    y, x = (np.mgrid[0:h, 0:w] + 0.5) / np.asarray([h, w])[:, None, None]
    return {
        "square": np.ones((h, w), bool),
        "circle": (x - 0.5) ** 2 + (y - 0.5) ** 2 <= 0.25,
        "triangle": np.abs(x - 0.5) <= y / 2,  # apex at the top, base at the bottom
    }


def _classify_part(part: np.ndarray) -> dict:
    ys, xs = np.nonzero(part)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    crop = part[y0:y1, x0:x1]
    ious = {name: float((crop & t).sum() / (crop | t).sum()) for name, t in _templates(*crop.shape).items()}
    side = part.shape[0]
    return {
        "shape": max(ious, key=ious.get),
        "extent": max(y1 - y0, x1 - x0) / side,
        "centre": ((x0 + x1) / 2 / side, (y0 + y1) / 2 / side),
    }


def analyse(image, max_objects: int = 2) -> dict:
    """What the scorer sees in an image: background, and per shape colour/class/size/position."""
    rgb = _box3(np.asarray(image.convert("RGB") if hasattr(image, "convert") else image, np.float64)[..., :3])
    side = rgb.shape[0]
    ring = max(2, side // 32)
    border = np.concatenate([rgb[:ring].reshape(-1, 3), rgb[-ring:].reshape(-1, 3),
                             rgb[:, :ring].reshape(-1, 3), rgb[:, -ring:].reshape(-1, 3)])
    bg = np.median(border, axis=0)
    distance = np.sqrt(((rgb - bg) ** 2).sum(-1))
    # Background-like pixels are within a palette step; a shape is at least ~90 RGB units away.
    candidate = distance > 45
    objects = []
    for part in _components(candidate)[:max_objects]:
        if part.sum() < (side * 0.05) ** 2:  # specks: noise, not a shape
            break
        # The shape's own colour: the part's pixels farthest from the background (its edges
        # are blends with the background, more of them the blurrier the image).
        inside = distance[part]
        fg = np.median(rgb[part][inside >= np.percentile(inside, 60)], axis=0)
        # Half way between background and shape colour: the edge as drawn, independent of blur.
        direction = fg - bg
        t = ((rgb - bg) @ direction) / max(float(direction @ direction), 1e-9)
        refined = _components(part & (t > 0.5))
        if not refined:
            continue
        objects.append({"colour": nearest_colour(fg), **_classify_part(refined[0])})
    return {"background": nearest_colour(bg), "objects": objects}


def _position_name(centre) -> str:
    col = 0 if centre[0] < 0.375 else 2 if centre[0] > 0.625 else 1
    row = 0 if centre[1] < 0.375 else 2 if centre[1] > 0.625 else 1
    return [name for name, (x, y) in POSITIONS.items() if (round(x * 4) - 1, round(y * 4) - 1) == (col, row)][0]


def score_image(image, caption: str) -> dict[str, bool]:
    """Check an image against its caption: {attribute: correct} for every attribute the caption
    states (background, colour, shape always; size and position when given). With two shapes,
    each caption object is matched to the found shape nearest its stated position."""
    scene = parse_caption(caption)
    seen = analyse(image, max_objects=len(scene.objects))
    result = {"background": seen["background"] == scene.background}
    found = list(seen["objects"])
    checks: dict[str, list[bool]] = {}
    for obj in scene.objects:
        if found and obj.position:
            want = np.asarray(POSITIONS[obj.position])
            match = min(found, key=lambda o: float(((np.asarray(o["centre"]) - want) ** 2).sum()))
        else:
            match = found[0] if found else None
        if match is not None:
            found.remove(match)
        checks.setdefault("colour", []).append(bool(match) and match["colour"] == obj.colour)
        checks.setdefault("shape", []).append(bool(match) and match["shape"] == obj.shape)
        if obj.size:
            size = None if match is None else ("large" if match["extent"] > SIZE_THRESHOLD else "small")
            checks.setdefault("size", []).append(size == obj.size)
        if obj.position:
            checks.setdefault("position", []).append(bool(match) and _position_name(match["centre"]) == obj.position)
    result.update({key: all(values) for key, values in checks.items()})
    return result


def summarize(scores: list[dict[str, bool]]) -> dict:
    """Per-attribute accuracy over the images that state it; `overall` = mean of those
    accuracies (the headline task score); `all_correct` = share of images right in every
    attribute (GenEval's stricter per-image rule)."""
    accuracy = {}
    for attribute in ATTRIBUTES:
        values = [s[attribute] for s in scores if attribute in s]
        if values:
            accuracy[attribute] = float(np.mean(values))
    return {
        "count": len(scores),
        "accuracy": accuracy,
        "overall": float(np.mean(list(accuracy.values()))) if accuracy else 0.0,
        "all_correct": float(np.mean([all(s.values()) for s in scores])) if scores else 0.0,
    }
