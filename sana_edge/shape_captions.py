"""Captions of the shapes task as people write them, and a parser that reads them back.

The canonical grammar ("a small red circle at the top left on a blue background", see
`Scene.caption` in sana_edge.shapes) is one of many phrasings. `paraphrase` writes a scene with
synonyms (large/big, small/little, centre/center/middle, top left/upper left/top-left corner),
prepositions (at/in/on the), word orders ("on a blue background, a red circle ..."), the comma
style ("a red circle, white background"), optional articles, capitalisation and trailing
punctuation. Whole templates (`HELD_OUT_TEMPLATES`) and word pairs (`HELD_OUT_PAIRS`) never occur
in training captions, so the benchmark measures phrasings the model has not seen.

`parse` reads every phrasing `paraphrase` writes (tested over all templates) and refuses text
that is not a shapes caption, so the scorer can check any of them.
"""

from __future__ import annotations

import re

import numpy as np

# Templates: {obj} = "a big red circle", {pos} = "in the top left corner", {bg} = "a blue
# background" (or "blue background" where the template needs no article). A scene without a
# position drops {pos} and the comma that goes with it.
TEMPLATES = {
    "grammar": "{obj} {pos} on {bg}",
    "on": "{obj} {pos} on {bg}",
    "of": "{obj} {pos} of {bg}",
    "against": "{obj} {pos} against {bg}",
    "comma": "{obj} {pos}, {bg_bare}",
    "list": "{obj}, {pos}, {bg_bare}",
    "bg_middle": "{obj} on {bg} {pos}",
    "bg_first": "on {bg}, {obj} {pos}",
    "bg_with": "{bg} with {obj} {pos}",
    "bg_comma_first": "{bg_bare}, {obj} {pos}",
    "pos_first": "{pos}, {obj} on {bg}",
    # Held out of training (each is a new arrangement of pieces the training templates use):
    "pos_first_list": "{pos}, {obj}, {bg_bare}",
    "against_middle": "{obj} against {bg} {pos}",
    "with_last": "{obj} {pos} with {bg}",
}
HELD_OUT_TEMPLATES = ("pos_first_list", "against_middle", "with_last")
TRAIN_TEMPLATES = tuple(t for t in TEMPLATES if t not in HELD_OUT_TEMPLATES)
# Word pairs no training caption contains (each word alone is common): "at the centre" is the
# phrasing the first shapes-SANA misread.
HELD_OUT_PAIRS = (("at", "centre"), ("at", "center"), ("at", "middle"), ("big", "square"),
                  ("little", "triangle"), ("upper", "right"))

SIZE_WORDS = {"small": ("small", "little"), "large": ("large", "big")}
CENTRE_WORDS = ("centre", "center", "middle")
_VERTICAL = {"top": ("top", "upper"), "bottom": ("bottom", "lower")}
PREPOSITIONS = ("at", "in", "on")
_PUNCTUATION = ("", "", ".", "!")

# Parser vocabulary: words that carry no attribute and may appear anywhere in a caption.
_FILLER = {"a", "an", "the", "on", "in", "at", "of", "with", "against", "corner", "side"}
_POSITION_WORDS = {w for words in _VERTICAL.values() for w in words} | {"left", "right", *CENTRE_WORDS}


def position_phrases(position: str) -> tuple[str, ...]:
    """Every way `paraphrase` names a position of the 3x3 grid (without preposition)."""
    if position == "centre":
        return CENTRE_WORDS
    vertical, _, horizontal = position.partition(" ")
    if vertical in ("left", "right"):  # "left" / "right": the middle of a side
        side = vertical
        return (side, f"{side} side", *(f"{c} {side}" for c in CENTRE_WORDS))
    if not horizontal:  # "top" / "bottom": the middle of an edge
        return (vertical, *(f"{vertical} {c}" for c in CENTRE_WORDS))
    phrases = []
    for v in _VERTICAL[vertical]:
        phrases += [f"{v} {horizontal}", f"{v}-{horizontal}", f"{v} {horizontal} corner", f"{v}-{horizontal} corner"]
    return tuple(phrases)


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _choose(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _object_words(obj, rng, canonical: bool) -> str:
    words = [obj.colour, obj.shape]
    if obj.size:
        words.insert(0, obj.size if canonical else _choose(rng, SIZE_WORDS[obj.size]))
    if canonical or rng.random() < 0.8:
        words.insert(0, _article(words[0]))
    return " ".join(words)


def _position_words(obj, rng, canonical: bool) -> str:
    if obj.position is None:
        return ""
    if canonical:
        from .shapes import canonical_preposition

        return f"{canonical_preposition(obj.position)} the {obj.position}"
    place = _choose(rng, position_phrases(obj.position))
    if rng.random() < 0.15:  # "at top left"
        return f"{_choose(rng, PREPOSITIONS)} {place}"
    return f"{_choose(rng, PREPOSITIONS)} the {place}"


def render_template(template: str, scene, rng: np.random.Generator) -> str:
    """One phrasing of a single-shape `scene` in `template` (lower case, no final punctuation)."""
    canonical = template == "grammar"
    obj = scene.objects[0]
    article = canonical or rng.random() < 0.8
    bg_bare = f"{scene.background} background"
    pieces = {
        "obj": _object_words(obj, rng, canonical),
        "pos": _position_words(obj, rng, canonical),
        "bg": f"{_article(scene.background)} {bg_bare}" if article else bg_bare,
        "bg_bare": bg_bare,
    }
    text = TEMPLATES[template].format(**pieces)
    if not pieces["pos"]:  # drop the empty slot and its comma
        text = re.sub(r"^,\s*|,\s*(?=,)|\s+(?=,|$)", "", text).strip()
    return " ".join(text.split())


def has_held_out_pair(text: str) -> bool:
    words = set(_words(text))
    return any(a in words and b in words for a, b in HELD_OUT_PAIRS)


def paraphrase(scene, rng: np.random.Generator, templates=TRAIN_TEMPLATES, held_out_pairs: bool = False) -> str:
    """A random phrasing of `scene` in one of `templates`; by default avoiding HELD_OUT_PAIRS
    (held_out_pairs=True: only phrasings that contain one, for evaluation). Two-shape scenes keep
    the canonical grammar."""
    if len(scene.objects) != 1:
        return scene.caption
    for _ in range(200):
        text = render_template(_choose(rng, templates), scene, rng)
        if has_held_out_pair(text) == held_out_pairs:
            return style(text, rng)
    raise ValueError(f"no phrasing of {scene.caption!r} in {templates} with held_out_pairs={held_out_pairs}")


def style(text: str, rng: np.random.Generator) -> str:
    """Capitalisation and trailing punctuation as people type them (the runtime lower-cases)."""
    case = rng.random()
    if case < 0.3:
        text = text[0].upper() + text[1:]
    elif case < 0.35:
        text = text.title()
    return text + _choose(rng, _PUNCTUATION)


# -- parser ------------------------------------------------------------------------------------


def _words(text: str) -> list[str]:
    return re.sub(r"[-,.!?;:]", " ", text.lower()).split()


def _read_position(words: list[str]) -> str | None:
    vertical = {v for v, names in _VERTICAL.items() if set(names) & set(words)}
    horizontal = {h for h in ("left", "right") if h in words}
    if len(vertical) > 1 or len(horizontal) > 1:
        raise ValueError("two positions for one shape")
    name = " ".join([*vertical, *horizontal])
    if name:
        return name
    return "centre" if set(CENTRE_WORDS) & set(words) else None


def _read_object(words: list[str], sizes: dict, colours, shapes_) -> tuple:
    """(shape, colour, size, position) from one object's words, or ValueError."""
    rest = [w for w in words if w not in _FILLER]
    for i, word in enumerate(rest):
        if word in shapes_ and i and rest[i - 1] in colours:
            start = i - 2 if i > 1 and rest[i - 2] in sizes else i - 1
            size = sizes[rest[start]] if start == i - 2 else None
            position_words = rest[:start] + rest[i + 1:]
            if any(w not in _POSITION_WORDS for w in position_words):
                break
            return word, rest[i - 1], size, _read_position(position_words)
    raise ValueError("no '<colour> <shape>' with only size and position words around it")


def parse(caption: str, colours, shapes_):
    """Caption (any phrasing) -> (background, [(shape, colour, size, position), ...]).
    ValueError when it is not a shapes caption."""
    words = _words(caption)
    spots = [i for i in range(1, len(words)) if words[i] == "background" and words[i - 1] in colours]
    if len(spots) != 1 or words.count("background") != 1:
        raise ValueError(f"not a shapes caption: {caption!r} (needs one '<colour> background')")
    at = spots[0]
    background = words[at - 1]
    rest = words[:at - 1] + ["and"] + words[at + 1:]
    sizes = {w: size for size, names in SIZE_WORDS.items() for w in names}
    groups, current = [], []
    for word in rest:
        if word == "and":
            groups.append(current)
            current = []
        else:
            current.append(word)
    groups.append(current)
    # The background phrase splits one object's words in two ("a red circle on a blue
    # background at the top"): join pieces that name no shape to their neighbour.
    objects_words = _merge_shapeless(groups, shapes_)
    try:
        objects = [_read_object(g, sizes, colours, shapes_) for g in objects_words]
    except ValueError as exc:
        raise ValueError(f"not a shapes caption: {caption!r} ({exc})") from None
    if not objects:
        raise ValueError(f"not a shapes caption: {caption!r} (no shape)")
    return background, objects


def _merge_shapeless(groups: list[list[str]], shapes_) -> list[list[str]]:
    merged: list[list[str]] = []
    pending: list[str] = []
    for group in groups:
        if any(w in shapes_ for w in group):
            merged.append(pending + group)
            pending = []
        elif merged:
            merged[-1] += group
        else:
            pending += group
    if pending:
        if not merged:
            return []
        merged[-1] += pending
    return merged
