"""Helpers for the server tests: decoding images, reading server-sent events."""

from __future__ import annotations

import base64
import io

import numpy as np

from sana_edge.serve.local import running_server  # noqa: F401 (re-exported for the tests)


def pixels(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def b64_pixels(data: str) -> np.ndarray:
    return pixels(base64.b64decode(data))


def sse_events(response):
    """(event, data dict) pairs from an httpx streaming response of server-sent events."""
    import json

    name, data = None, ""
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data += line[6:]
        elif not line and name:
            yield name, json.loads(data)
            name, data = None, ""
