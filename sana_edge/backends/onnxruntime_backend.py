"""ONNX Runtime backend: CUDA provider when this onnxruntime build has it, CPU otherwise."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..memory import available_ram, current_rss


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def default_providers() -> list[str]:
    preferred = ("CUDAExecutionProvider", "CPUExecutionProvider")
    available = available_providers()
    return [p for p in preferred if p in available] or available


class OrtSession:
    def __init__(self, path: Path, providers: list[str], threads: int | None = None, memory_arena: bool = True,
                 graph_sha256: str | None = None):
        """`graph_sha256` (the verified digest of `path`) lets the session come from the cache of
        optimized graphs (sana_edge.backends.ort_cache); None always optimizes from scratch."""
        import onnxruntime as ort

        self.path = Path(path)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.enable_cpu_mem_arena = self.memory_arena = memory_arena
        if threads:
            options.intra_op_num_threads = threads
        try:
            if graph_sha256 and os.environ.get("SANA_EDGE_ORT_CACHE", "1") != "0":
                from .ort_cache import create_session

                self._session = create_session(Path(path), graph_sha256, options, providers)
            else:
                self._session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own types (InvalidProtobuf, Fail, ...)
            reason = " ".join(str(exc).split())[:160]
            raise UserError(f"onnxruntime cannot load {path} ({type(exc).__name__}: {reason}); the file is damaged or "
                            "not a sana-edge graph: re-export with `sana-edge export CHECKPOINT -o DIR`") from None
        self.input_names = [i.name for i in self._session.get_inputs()]
        self.output_names = [o.name for o in self._session.get_outputs()]
        self.providers = self._session.get_providers()

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        inputs = {k: feeds[k] for k in self.input_names}
        try:
            outputs = self._session.run(self.output_names, inputs)
        except Exception as exc:  # onnxruntime's own types: a graph whose shapes disagree with the manifest
            if isinstance(exc, MemoryError) or "bad_alloc" in str(exc) or "allocat" in str(exc).lower():
                raise MemoryError(str(exc)) from None
            reason = " ".join(str(exc).split())[:200]
            raise UserError(f"onnxruntime failed running {self.path.name} ({type(exc).__name__}: {reason}); the graph "
                            "does not fit the export's manifest: re-export with `sana-edge export CHECKPOINT -o DIR`") from None
        return dict(zip(self.output_names, outputs))

    def close(self) -> None:
        self._session = None


class HostMemoryPlanning:
    """The memory planner's answers for a backend whose sessions live in this process's memory
    (ONNX Runtime CPU, OpenVINO): stage sizes from the manifest, RSS, available RAM."""

    def stage_bytes(self, manifest) -> dict:
        return {name: int(entry["bytes"]) for name, entry in manifest.components.items()}

    def memory_in_use(self) -> int:
        return current_rss()

    def memory_budget(self) -> int:
        """What this machine can give: available RAM plus what the process already holds."""
        return available_ram() + current_rss()

    def max_decoder_tile(self, manifest) -> int | None:
        return None  # any decoder input size

    def check_size(self, manifest, height: int, width: int) -> None:
        return None


class OnnxRuntimeBackend(HostMemoryPlanning):
    name = "onnxruntime"
    memory_kind = "RSS"  # what the planner and `run` report per stage

    def __init__(self, providers: list[str] | None = None, threads: int | None = None):
        self.providers = providers or default_providers()
        self.threads = threads

    def load(self, path: Path, memory_arena: bool = True, graph_sha256: str | None = None) -> OrtSession:
        return OrtSession(path, self.providers, self.threads, memory_arena, graph_sha256)

    def load_component(self, manifest, name: str, low_memory: bool = False) -> OrtSession:
        # low_memory (the planner tiles the decode: the budget binds): no CPU arena. The arena
        # grows in powers of two and keeps what it grew, which put a 4096 px decode in 1536 px
        # tiles at 15.2 GiB peak against a 12 GiB plan; without it 6.4 GiB, but a 1536 px decode
        # took 87.5 s instead of 56.5 s (benchmarks/results/memory.md), so unbound runs keep it.
        path = manifest.component_path(name)
        # Only a verified export may use cached optimized graphs: the cache is keyed by the
        # manifest's sha256, which must be the file's.
        digest = manifest.components[name]["sha256"] if getattr(manifest, "verified", False) else None
        session = self.load(path, memory_arena=not low_memory, graph_sha256=digest)
        check_graph_io(manifest, name, session, path)
        return session

    def describe(self) -> str:
        import onnxruntime as ort

        return f"onnxruntime {ort.__version__} ({', '.join(self.providers)})"


def check_graph_io(manifest, name: str, session, path) -> None:
    """The loaded graph's inputs and outputs are the declaration's, as this export's model has it
    (Sprint's guidance input, a controlnet's residuals); an export made before a contract changed
    follows its legacy declaration (still run)."""
    from ..components import declaration_for

    declaration = declaration_for(name, session.input_names).for_model(manifest.model)
    declaration.check_io_names(session.input_names, session.output_names, str(path))
