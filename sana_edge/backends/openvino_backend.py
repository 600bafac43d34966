"""OpenVINO backend (the `openvino` extra): runs the export's ONNX graphs, or the OpenVINO IR of
a `--target openvino` export, on a CPU, an Intel GPU or NPU, or AUTO.

Same feed-dict contract as ONNX Runtime (sana_edge.backends.base). Measured on these machines
(FIELD_NOTES.md): OpenVINO 2026.4 reads every sana-edge ONNX graph unchanged, keeps the
linear-attention eps, and matches ONNX Runtime to cosine 1.0.

- Compiled models are cached (OpenVINO's CACHE_DIR) under the sana-edge cache, one folder per
  graph sha256, so a second run skips compilation (the tiny-to-shapes graphs: 2-8 s -> 0.6-0.8 s
  here) and a re-exported graph can never meet a stale blob.
- On CPU the float parts run in fp32 (INFERENCE_PRECISION_HINT f32): a CPU with AVX-512 bf16 or
  AMX would otherwise silently run fp32 exports in bf16; int8 and int4 weights still run as such.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..components import COMPONENTS
from ..errors import UserError
from .onnxruntime_backend import HostMemoryPlanning

DEVICES = ("CPU", "GPU", "NPU", "AUTO")
EXTRA_HINT = "install it with: pip install 'sana-edge[openvino]'"


def import_openvino():
    try:
        import openvino
    except ImportError:
        raise UserError(f"the openvino backend needs the 'openvino' extra (openvino is missing); {EXTRA_HINT}") from None
    return openvino


def openvino_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("openvino") is not None


def cache_root() -> Path:
    from ..default_model import sana_edge_home

    return sana_edge_home() / "openvino-cache"


def check_device(device: str, available: list[str]) -> str:
    """`device` if this machine has it (GPU matches GPU.0, GPU.1...; AUTO needs any device)."""
    wanted = device.upper()
    family = wanted.split(".")[0]
    if family not in DEVICES:
        raise UserError(f"unknown OpenVINO device '{device}'; choose one of {', '.join(DEVICES)}")
    present = wanted == "AUTO" and bool(available) or any(d == wanted or d.split(".")[0] == wanted for d in available)
    if not present:
        raise UserError(f"OpenVINO device '{device}' is not available on this machine (it has: {', '.join(available) or 'none'}); "
                        f"pass --device {available[0] if available else 'CPU'} or --device AUTO")
    return wanted


def _reason(exc: Exception) -> str:
    """One line out of OpenVINO's multi-line error: the unsupported op when it names one."""
    lines = [line.strip(" -\t") for line in str(exc).splitlines() if line.strip()]
    named = [line for line in lines if "failed for:" in line]
    return (named or lines[-1:] or [type(exc).__name__])[0][:200]


def _port_name(port, declared: list[str]) -> str:
    """The declared tensor name among the port's names (OpenVINO keeps the ONNX names and may add
    an internal one, e.g. '/model/norm/Mul_output_0' next to 'last_hidden_state')."""
    names = port.get_names()
    for name in declared:
        if name in names:
            return name
    return sorted(names)[0]


def runtime_precisions(compiled) -> dict[str, int]:
    """Matmul-like layers of a compiled model by the precision OpenVINO executes them in, e.g.
    {"FullyConnected u8": 12, "FullyConnected f32": 4}: whether int8 graphs really run as int8."""
    counts: dict[str, int] = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        kind = info["layerType"].astype(str) if "layerType" in info else ""
        if kind in ("FullyConnected", "MatMul", "Convolution", "GroupConvolution"):
            key = f"{kind} {info['runtimePrecision'].astype(str) if 'runtimePrecision' in info else '?'}"
            counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


class OpenVINOSession:
    def __init__(self, compiled, component: str | None = None):
        spec = COMPONENTS.get(component) if component else None
        self.input_names = [_port_name(p, spec.input_names if spec else []) for p in compiled.inputs]
        self._outputs = {_port_name(p, spec.output_names if spec else []): p for p in compiled.outputs}
        self.output_names = list(self._outputs)
        self.compiled = compiled
        self._request = compiled.create_infer_request()

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = self._request.infer({n: np.ascontiguousarray(feeds[n]) for n in self.input_names}, share_inputs=True)
        # Copies: the request reuses its output buffers on the next call.
        return {name: np.array(results[port]) for name, port in self._outputs.items()}

    def close(self) -> None:
        self._request = self.compiled = None


class OpenVINOBackend(HostMemoryPlanning):
    name = "openvino"
    memory_kind = "RSS"  # CPU, and the shared memory of an integrated GPU or NPU

    def __init__(self, device: str = "CPU", threads: int | None = None, cache: bool = True):
        ov = import_openvino()
        self.core = ov.Core()
        self.device = check_device(device or "CPU", list(self.core.available_devices))
        self.threads, self.cache = threads, cache
        self.version = ov.__version__.split("-")[0]

    def compile_config(self, cache_dir: Path | None) -> dict:
        import openvino as ov

        config = {"PERFORMANCE_HINT": "LATENCY"}
        if self.device.startswith("CPU"):
            config["INFERENCE_PRECISION_HINT"] = ov.Type.f32
            if self.threads:
                config["INFERENCE_NUM_THREADS"] = int(self.threads)
        if cache_dir is not None:
            config["CACHE_DIR"] = str(cache_dir)
        return config

    def load(self, path: Path, sha256: str | None = None, component: str | None = None) -> OpenVINOSession:
        cache_dir = None
        if self.cache and sha256:
            cache_dir = cache_root() / sha256[:16]
            try:
                cache_dir.mkdir(parents=True, exist_ok=True)
            except OSError:  # read-only home: compile every time rather than fail
                cache_dir = None
        # From the path, not a read model: with a cached blob the graph is never parsed.
        try:
            compiled = self.core.compile_model(str(path), self.device, self.compile_config(cache_dir))
        except RuntimeError as exc:
            raise UserError(f"OpenVINO cannot run {Path(path).name} ({_reason(exc)}); run this export with "
                            "--backend onnxruntime, or export for OpenVINO with --target openvino") from None
        return OpenVINOSession(compiled, component)

    def load_component(self, manifest, name: str, low_memory: bool = False) -> OpenVINOSession:
        # low_memory: OpenVINO's CPU plugin has no arena switch; the tiled decode itself bounds it.
        entry = manifest.components[name]
        return self.load(manifest.component_path(name), entry.get("sha256"), name)

    def describe(self) -> str:
        try:
            full = self.core.get_property(self.device, "FULL_DEVICE_NAME")
        except Exception:  # AUTO has no single device name
            full = ", ".join(self.core.available_devices)
        return f"openvino {self.version} on {self.device} ({full})"
