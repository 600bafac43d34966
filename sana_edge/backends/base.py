"""The backend contract: a session takes a feed dict of numpy arrays named as in
sana_edge.components and returns the outputs by name. Every backend (ONNX Runtime, TensorRT)
implements this, so A/B checks between backends are one dict comparison."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Session(Protocol):
    input_names: list[str]
    output_names: list[str]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...


class Backend(Protocol):
    name: str
    memory_kind: str  # "RSS" (measured by the kernel per stage) or "GPU memory" (sampled)

    def load_component(self, manifest, name: str, low_memory: bool = False) -> Session: ...

    def describe(self) -> str: ...

    # The memory planner's questions (sana_edge.planner).
    # component -> bytes its session holds (planner estimates activations on top), or a
    # planner.StageSizes (TensorRT: whole-stage sizes fixed by the engine profile)
    def stage_bytes(self, manifest): ...

    def memory_in_use(self) -> int: ...  # RSS on CPU, used device memory on GPU

    def memory_budget(self) -> int: ...  # what the device has, the default --max-memory

    def max_decoder_tile(self, manifest) -> int | None: ...  # latent positions; None = any

    def check_size(self, manifest, height: int, width: int) -> None: ...  # UserError if unsupported
