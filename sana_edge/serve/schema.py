"""The body of `POST /v1/images/generations`: the OpenAI Images API fields plus sana-edge's own,
checked field by field so a bad request gets a 400 naming the field (OpenAI's `param`).

OpenAI fields: prompt, n, size ("WxH" or "auto"), response_format (b64_json | url), model,
stream, output_format (png only); user, quality and style are accepted and ignored (they mean
nothing for this model). sana-edge fields: negative_prompt, steps, guidance_scale, seed,
precision (which export, when the server serves several).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from .errors import invalid

MAX_IMAGES = 10  # OpenAI's limit for n
MAX_STEPS = 200
MAX_SEED = 2**63 - 1
IGNORED_FIELDS = ("user", "quality", "style")
_SIZE = re.compile(r"^(\d{1,5})x(\d{1,5})$")


@dataclass(frozen=True)
class Limits:
    max_pixels: int  # width * height of one image
    multiple: int  # width and height are multiples of this (the autoencoder's scale factor)
    default_size: int


@dataclass(frozen=True)
class ImageRequest:
    prompt: str
    n: int = 1
    width: int = 0
    height: int = 0
    response_format: str = "b64_json"
    model: str | None = None
    stream: bool = False
    negative_prompt: str = ""
    steps: int = 20
    guidance_scale: float = 4.5
    seed: int | None = None
    precision: str | None = None

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"


_TYPES = {  # field -> (python types, the word OpenAI's messages use)
    "prompt": ((str,), "a string"), "n": ((int,), "an integer"), "size": ((str,), "a string"),
    "response_format": ((str,), "a string"), "model": ((str,), "a string"), "stream": ((bool,), "a boolean"),
    "output_format": ((str,), "a string"), "negative_prompt": ((str,), "a string"),
    "steps": ((int,), "an integer"), "guidance_scale": ((int, float), "a number"),
    "seed": ((int,), "an integer"), "precision": ((str,), "a string"),
    "user": ((str,), "a string"), "quality": ((str,), "a string"), "style": ((str,), "a string"),
}
_JSON_NAMES = {str: "a string", bool: "a boolean", int: "an integer", float: "a number",
               list: "an array", dict: "an object", type(None): "null"}


def parse_body(raw: bytes) -> dict:
    try:
        body = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError):
        raise invalid("The request body is not valid JSON; send a JSON object such as "
                      '{"prompt": "a red fox"}.', code="invalid_json") from None
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object such as {\"prompt\": \"a red fox\"}.",
                      code="invalid_json")
    return body


def check_types(body: dict) -> None:
    for name, value in body.items():
        if name not in _TYPES:
            raise invalid(f"Unrecognized request argument supplied: {name}", param=name, code="unknown_parameter")
        if value is None and name not in ("prompt",):
            continue  # OpenAI clients send null for "not given"
        types, word = _TYPES[name]
        if isinstance(value, bool) and bool not in types or not isinstance(value, types):
            got = _JSON_NAMES.get(type(value), type(value).__name__)
            raise invalid(f"Invalid type for '{name}': expected {word}, but got {got} instead.",
                          param=name, code="invalid_type")


def _parse_size(size: str | None, limits: Limits) -> tuple[int, int]:
    if size in (None, "auto"):
        return limits.default_size, limits.default_size
    match = _SIZE.match(size)
    example = f"{limits.default_size}x{limits.default_size}"
    if not match:
        raise invalid(f"Invalid value for 'size': '{size}'; give it as 'WIDTHxHEIGHT' (e.g. '{example}') or 'auto'.",
                      param="size")
    width, height = int(match[1]), int(match[2])
    m = limits.multiple
    if width <= 0 or height <= 0 or width % m or height % m:
        raise invalid(f"Invalid value for 'size': '{size}'; width and height must be positive multiples of {m} "
                      f"(e.g. '{example}').", param="size")
    if width * height > limits.max_pixels:
        raise invalid(f"Invalid value for 'size': '{size}' is {width * height} pixels, over this server's limit of "
                      f"{limits.max_pixels} (`sana-edge serve --max-pixels`); ask for a smaller size.",
                      param="size", code="image_too_large")
    return width, height


def _in_range(name: str, value, low, high) -> None:
    if not low <= value <= high:
        raise invalid(f"Invalid value for '{name}': {value}; it must be between {low} and {high}.", param=name)


def parse_request(body: dict, limits: Limits) -> ImageRequest:
    """A checked ImageRequest, or ApiError(400) naming the first bad field."""
    check_types(body)
    if body.get("prompt") is None:
        raise invalid("Missing required parameter: 'prompt'.", param="prompt", code="missing_required_parameter")
    values = {k: v for k, v in body.items() if v is not None and k not in IGNORED_FIELDS}
    if values.pop("output_format", "png") != "png":
        raise invalid("Invalid value for 'output_format': this server writes 'png' only.", param="output_format")
    width, height = _parse_size(values.pop("size", None), limits)
    request = ImageRequest(width=width, height=height, **values)
    _in_range("n", request.n, 1, MAX_IMAGES)
    _in_range("steps", request.steps, 1, MAX_STEPS)
    _in_range("guidance_scale", request.guidance_scale, 0.0, 50.0)
    if request.seed is not None:
        _in_range("seed", request.seed, 0, MAX_SEED)
    if request.response_format not in ("b64_json", "url"):
        raise invalid(f"Invalid value for 'response_format': '{request.response_format}'; "
                      "use 'b64_json' or 'url'.", param="response_format")
    return request
