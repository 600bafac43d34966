"""Which TensorRT is installed: full TensorRT (`tensorrt`) or TensorRT for RTX (`tensorrt_rtx`).

Both expose the same Python API for what sana-edge uses (builder, ONNX parser, runtime,
execution context), so the engine builder and the runtime backend are written once against
`Flavor.trt`. TensorRT-RTX builds ahead of time without a GPU; full TensorRT needs one.

TensorRT keeps the first logger a process gives it and ignores later ones (with a warning), so
the builder and every runtime share one logger and one runtime per flavor (`shared_runtime`).
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import re
from dataclasses import dataclass

from ..errors import UserError

# (flavor name, importable module names in order of preference)
FLAVORS = (
    ("tensorrt", ("tensorrt",)),
    # PyPI's -libs + -bindings wheels import as tensorrt_rtx_bindings; NVIDIA's SDK wheel as tensorrt_rtx.
    ("tensorrt_rtx", ("tensorrt_rtx", "tensorrt_rtx_bindings")),
)
INSTALL = {
    "tensorrt_rtx": "pip install 'sana-edge[tensorrt-rtx]' (CUDA 13 driver, R580+) or 'sana-edge[tensorrt-rtx-cu12]' "
                    "(older drivers)",
    "tensorrt": "install full TensorRT for your CUDA (pip install tensorrt-cu12 or tensorrt-cu13)",
}
INSTALL_HINT = f"{INSTALL['tensorrt_rtx']}, or {INSTALL['tensorrt']}"


@dataclass(frozen=True)
class Flavor:
    name: str  # "tensorrt" or "tensorrt_rtx"
    trt: object  # the imported module
    version: str
    cuda_major: int | None = None  # CUDA major version the wheels were built for (cu12 / cu13), None if unknown

    @property
    def is_rtx(self) -> bool:
        return self.name == "tensorrt_rtx"


@functools.lru_cache(maxsize=None)
def _wheel_cuda_major(module_name: str) -> int | None:
    """12 for tensorrt_rtx_cu12_bindings, 13 for tensorrt-cu13-bindings, ... (from the installed dist)."""
    for dist in importlib.metadata.packages_distributions().get(module_name.split(".")[0], []):
        match = re.search(r"cu(\d+)", dist)
        if match:
            return int(match.group(1))
    return None


def _try_import(module_names) -> tuple[object, str] | None:
    for module_name in module_names:
        try:
            return importlib.import_module(module_name), module_name
        except ImportError:
            continue
    return None


def installed_flavors() -> list[Flavor]:
    found = []
    for name, modules in FLAVORS:
        imported = _try_import(modules)
        if imported is not None:
            module, module_name = imported
            found.append(Flavor(name, module, str(getattr(module, "__version__", "unknown")),
                                _wheel_cuda_major(module_name)))
    return found


def import_tensorrt(prefer: str | None = None) -> Flavor:
    """The installed flavor; `prefer` names the one required (an export's engines were built by it)."""
    flavors = installed_flavors()
    if prefer is not None:
        flavors = [f for f in flavors if f.name == prefer]
        if not flavors:
            raise UserError(f"the engines were built with {prefer}, which is not installed; {INSTALL.get(prefer, INSTALL_HINT)}")
    if not flavors:
        raise UserError(f"no TensorRT is installed; {INSTALL_HINT}")
    return flavors[0]


_RUNTIMES: dict[str, tuple] = {}  # flavor name -> (logger, runtime), one per process


def shared_logger(flavor: Flavor):
    return shared_runtime(flavor)[0]


def shared_runtime(flavor: Flavor) -> tuple:
    """(logger, runtime) of this process for `flavor`, created on first use."""
    if flavor.name not in _RUNTIMES:
        trt = flavor.trt
        logger = trt.Logger(trt.Logger.WARNING)
        _RUNTIMES[flavor.name] = (logger, trt.Runtime(logger))
    return _RUNTIMES[flavor.name]


def supported_compute_capabilities(trt) -> list[str]:
    """What this TensorRT-RTX can target, from its ComputeCapability enum: ['7.5', '8.0', ..., '12.1']."""
    names = [n for n in dir(trt.ComputeCapability) if re.fullmatch(r"SM\d+", n)]
    return [f"{n[2:-1]}.{n[-1]}" for n in sorted(names, key=lambda n: int(n[2:]))]


def check_engine_record(record: dict, flavor_name: str, version: str, device_cc: str | None, component: str) -> None:
    """Refuse an engine built by another TensorRT or for another GPU, with the command that fixes it.

    `record` is the manifest's engine entry; `device_cc` is this GPU's compute capability
    ("8.9"), or None where it is unknown. Engines built for the portable RTX default run on any
    capability that TensorRT-RTX supports, so only an explicit target is compared.
    """
    rebuild = "rebuild with `sana-edge export CHECKPOINT -o OUT --backend tensorrt` on this machine"
    if record["flavor"] != flavor_name or record["version"] != version:
        raise UserError(
            f"{component} engine was built with {record['flavor']} {record['version']}, this machine has "
            f"{flavor_name} {version}; {rebuild}"
        )
    target = record.get("compute_capability")
    if device_cc is not None and target not in (None, "", "default") and target != device_cc:
        raise UserError(
            f"{component} engine was built for compute capability {target}, this GPU is {device_cc}; "
            f"{rebuild}" + (f" (or pass --compute-capability {device_cc})" if flavor_name == "tensorrt_rtx" else "")
        )
