"""The backend contract: a session takes a feed dict of numpy arrays named as in
sana_edge.components and returns the outputs by name. Every backend (ONNX Runtime, TensorRT)
implements this, so A/B checks between backends are one dict comparison."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np


class Session(Protocol):
    input_names: list[str]
    output_names: list[str]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...


class Backend(Protocol):
    name: str

    def load(self, path: Path) -> Session: ...

    def describe(self) -> str: ...
