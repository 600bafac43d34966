"""Which TensorRT is installed: full TensorRT (`tensorrt`) or TensorRT for RTX (`tensorrt_rtx`).

Both expose the same Python API for what sana-edge uses (builder, ONNX parser, runtime,
execution context), so the engine builder and the runtime backend are written once against
`Flavor.trt`. TensorRT-RTX builds ahead of time without a GPU; full TensorRT needs one.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from ..errors import UserError

# (flavor name, importable module names in order of preference)
FLAVORS = (
    ("tensorrt", ("tensorrt",)),
    # PyPI's -libs + -bindings wheels import as tensorrt_rtx_bindings; NVIDIA's SDK wheel as tensorrt_rtx.
    ("tensorrt_rtx", ("tensorrt_rtx", "tensorrt_rtx_bindings")),
)
INSTALL_HINT = "pip install 'sana-edge[tensorrt-rtx]' (TensorRT for RTX) or a full TensorRT for your CUDA"


@dataclass(frozen=True)
class Flavor:
    name: str  # "tensorrt" or "tensorrt_rtx"
    trt: object  # the imported module
    version: str

    @property
    def is_rtx(self) -> bool:
        return self.name == "tensorrt_rtx"


def _try_import(module_names) -> object | None:
    for module_name in module_names:
        try:
            return importlib.import_module(module_name)
        except ImportError:
            continue
    return None


def installed_flavors() -> list[Flavor]:
    found = []
    for name, modules in FLAVORS:
        module = _try_import(modules)
        if module is not None:
            found.append(Flavor(name, module, str(getattr(module, "__version__", "unknown"))))
    return found


def import_tensorrt(prefer: str | None = None) -> Flavor:
    """The installed flavor (`prefer` picks one when both are present)."""
    flavors = installed_flavors()
    if prefer is not None:
        flavors = [f for f in flavors if f.name == prefer]
        if not flavors:
            raise UserError(f"{prefer} is not installed; {INSTALL_HINT}")
    if not flavors:
        raise UserError(f"no TensorRT is installed; {INSTALL_HINT}")
    return flavors[0]


def compute_capability_label(value: str | None) -> str:
    return "portable (RTX default: 8.0, 8.6, 8.9, 12.0)" if value in (None, "", "default") else f"sm_{value.replace('.', '')}"


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
            f"{rebuild} (or pass --compute-capability {device_cc})"
        )
