"""The work of `sana-edge batch`: a prompts file read into items with stable keys.

PROMPTS is either text, one prompt per line (blank lines skipped), or JSONL (a `.jsonl` file, or
one whose every line is a JSON object) with per-line `prompt` and optional `negative_prompt`,
`seed`, `size` ("WxH"), `steps`, `guidance_scale`. Settings a line leaves out come from the
command line; an item's seed defaults to `--seed` + its position, so a re-run makes the same image.

An item's key is its position plus a hash of everything that shapes its image: a re-run
recognises what it already made, and an edited line gets a new key (and a new image).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import UserError

FIELDS = ("prompt", "negative_prompt", "seed", "size", "steps", "guidance_scale")
_SIZE = re.compile(r"^(\d{1,5})x(\d{1,5})$")


@dataclass(frozen=True)
class Defaults:
    negative_prompt: str = ""
    seed: int = 0
    width: int | None = None  # None: the model's own size
    height: int | None = None
    steps: int = 20
    guidance_scale: float = 4.5


@dataclass(frozen=True)
class BatchItem:
    key: str
    line: int  # 1-based line of the prompts file
    prompt: str
    negative_prompt: str
    seed: int
    width: int | None
    height: int | None
    steps: int
    guidance_scale: float

    @property
    def file(self) -> str:
        return f"{self.key}.png"

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "BatchItem":
        return cls(**json.loads(text))


def parse_size(size: str, where: str) -> tuple[int, int]:
    """'WxH' -> (width, height); the pipeline checks multiples of the model's scale factor."""
    match = _SIZE.match(size.strip()) if isinstance(size, str) else None
    if not match:
        raise UserError(f"{where}: size '{size}' must be WIDTHxHEIGHT, e.g. 512x512")
    return int(match[1]), int(match[2])


def _typed(line: dict, name: str, kind, where: str):
    value = line[name]
    if isinstance(value, bool) or not isinstance(value, kind):
        word = {int: "an integer", str: "a string"}.get(kind, "a number")
        raise UserError(f"{where}: '{name}' must be {word} (got {json.dumps(value)})")
    return value


def _item(index: int, line_no: int, settings: dict, defaults: Defaults) -> BatchItem:
    where = f"line {line_no}"
    if not isinstance(settings.get("prompt"), str):
        raise UserError(f"{where}: every JSONL line needs a \"prompt\" string")
    unknown = sorted(set(settings) - set(FIELDS))
    if unknown:
        raise UserError(f"{where}: unknown field(s) {', '.join(unknown)}; a line may have {', '.join(FIELDS)}")
    width, height = defaults.width, defaults.height
    if "size" in settings:
        width, height = parse_size(_typed(settings, "size", str, where), where)
    seed = _typed(settings, "seed", int, where) if "seed" in settings else defaults.seed + index
    steps = _typed(settings, "steps", int, where) if "steps" in settings else defaults.steps
    if steps < 1 or seed < 0:
        raise UserError(f"{where}: steps must be at least 1 and seed at least 0")
    fields = {
        "prompt": settings["prompt"],
        "negative_prompt": _typed(settings, "negative_prompt", str, where) if "negative_prompt" in settings
        else defaults.negative_prompt,
        "seed": seed, "width": width, "height": height, "steps": steps,
        "guidance_scale": float(_typed(settings, "guidance_scale", (int, float), where))
        if "guidance_scale" in settings else defaults.guidance_scale,
    }
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:10]
    return BatchItem(key=f"{index:06d}-{digest}", line=line_no, **fields)


def _is_jsonl(path: Path, lines: list[str]) -> bool:
    if path.suffix.lower() == ".jsonl":
        return True
    filled = [line for line in lines if line.strip()]
    return bool(filled) and all(line.lstrip().startswith("{") for line in filled)


def read_items(path: Path, defaults: Defaults) -> list[BatchItem]:
    if not path.is_file():
        raise UserError(f"prompts file '{path}' does not exist")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise UserError(f"prompts file '{path}' is not UTF-8 text") from None
    jsonl = _is_jsonl(path, lines)
    items = []
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if jsonl:
            try:
                settings = json.loads(line)
            except ValueError as exc:
                raise UserError(f"line {line_no} of '{path}' is not valid JSON ({exc.msg})") from None
            if not isinstance(settings, dict):
                raise UserError(f"line {line_no} of '{path}' must be a JSON object with a \"prompt\"")
        else:
            settings = {"prompt": line.strip()}
        items.append(_item(len(items), line_no, settings, defaults))
    if not items:
        raise UserError(f"prompts file '{path}' has no prompts (one per line, or JSONL with \"prompt\")")
    return items
