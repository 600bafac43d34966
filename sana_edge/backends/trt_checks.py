"""Can this machine run an export's TensorRT engines? Answered before anything is loaded, so
`--backend auto` falls back to ONNX Runtime with the reason, `--backend tensorrt` refuses with
the fix, and the GPU-only tests skip with it.

TensorRT-RTX reads an engine's header (`Runtime.get_engine_validity`, 64 bytes, no GPU work)
and says why it would fail: an unsupported compute capability (Hopper, 9.0, is not among
TensorRT-RTX's targets), a driver older than the wheels' CUDA, another TensorRT-RTX version, a
malformed file. Without this check `deserialize_cuda_engine` just returns None. Full TensorRT
has no such call; its engines record the GPU they were built on, compared instead.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from . import cuda_driver
from .trt_flavor import INSTALL, Flavor, check_engine_record, import_tensorrt, shared_runtime, supported_compute_capabilities

REBUILD = "rebuild with `sana-edge export CHECKPOINT -o OUT --backend tensorrt`"


def old_driver_message(flavor: Flavor, driver: tuple[int, int] | None) -> str:
    have = f"CUDA {driver[0]}.{driver[1]}" if driver else "an unknown CUDA version"
    need = flavor.cuda_major or 13
    fix = "update the NVIDIA driver (R580 or newer runs CUDA 13)"
    if flavor.is_rtx and need >= 13:
        fix += (f", or switch to the CUDA 12 wheels: pip uninstall -y tensorrt-rtx-cu{need}-libs "
                f"tensorrt-rtx-cu{need}-bindings && pip install 'sana-edge[tensorrt-rtx-cu12]', then {REBUILD}")
    return f"the NVIDIA driver runs {have}, but {flavor.name} {flavor.version} was built for CUDA {need}; {fix}"


def driver_problem(flavor: Flavor) -> str | None:
    """A driver older than the CUDA the installed wheels were built for (cuDriverGetVersion)."""
    driver = cuda_driver.driver_version()
    if driver is None or flavor.cuda_major is None or driver[0] >= flavor.cuda_major:
        return None
    return old_driver_message(flavor, driver)


def unsupported_gpu_message(flavor: Flavor, device) -> str:
    supported = ", ".join(supported_compute_capabilities(flavor.trt))
    return (f"this GPU ({device.name}, compute capability {device.compute_capability}) is not one TensorRT-RTX runs on "
            f"(compute capability {supported}); on a datacenter GPU install full TensorRT ({INSTALL['tensorrt']}) and "
            f"{REBUILD} on that machine, or use --backend onnxruntime")


def describe_invalidity(flavor: Flavor, diagnostics: int, device) -> str:
    """The reasons TensorRT-RTX gives (EngineInvalidityDiagnostics bits), each with its fix."""
    flags = flavor.trt.EngineInvalidityDiagnostics

    def has(flag: str) -> bool:
        return bool(diagnostics & int(getattr(flags, flag)))

    reasons = []
    if has("UNSUPPORTED_CC"):
        reasons.append(unsupported_gpu_message(flavor, device))
    if has("OLD_CUDA_DRIVER") or has("OLD_CUDA_RUNTIME"):
        reasons.append(old_driver_message(flavor, cuda_driver.driver_version()))
    if has("VERSION_MISMATCH"):
        reasons.append(f"it was built by another TensorRT-RTX version than {flavor.version}; {REBUILD}")
    if has("MALFORMED_ENGINE"):
        reasons.append(f"the file is not a valid engine (truncated or corrupt); {REBUILD}")
    if has("INSUFFICIENT_GPU_MEMORY"):
        free = device.memory()[0] / 2**30
        reasons.append(f"the GPU has too little free memory ({free:.1f} GiB); close other GPU programs or export a "
                       "smaller precision")
    if has("CUDA_ERROR"):
        reasons.append("the CUDA driver or runtime is not installed correctly (check `nvidia-smi`); reinstall the driver")
    if not reasons:  # no flag set (seen when the CUDA runtime cannot start): name what we can tell ourselves
        if device.compute_capability not in supported_compute_capabilities(flavor.trt):
            reasons.append(unsupported_gpu_message(flavor, device))
        else:
            reasons.append(driver_problem(flavor) or f"TensorRT-RTX reports it invalid on {device.name} without a "
                                                     f"reason (its log above may say more); {REBUILD}")
    return "; ".join(reasons)


def engine_problem(flavor: Flavor, engine_path: Path, device) -> str | None:
    """Why this GPU cannot run the engine file (None: it can), from its header alone."""
    runtime = shared_runtime(flavor)[1]
    validity = getattr(runtime, "get_engine_validity", None)
    if validity is None:
        return None
    with open(engine_path, "rb") as handle:
        header = handle.read(int(runtime.engine_header_size))
    verdict, diagnostics = validity(header)
    if verdict != flavor.trt.EngineValidity.INVALID:
        return None  # VALID, or SUBOPTIMAL (runs, maybe slower)
    return describe_invalidity(flavor, int(diagnostics), device)


def check_engines(manifest, flavor: Flavor, device) -> None:
    """Refuse (UserError) the first engine of `manifest` this GPU cannot run, naming the fix."""
    for name, record in manifest.engines.get("components", {}).items():
        check_engine_record(record, flavor.name, flavor.version, device.compute_capability, name)
        problem = engine_problem(flavor, manifest.root / record["file"], device)
        if problem:
            raise UserError(f"the {name} engine cannot run here: {problem}")


def tensorrt_problem(manifest) -> str | None:
    """Why this machine cannot run the export's engines, or None when it can."""
    engines = manifest.engines if manifest is not None else {}
    if not engines:
        return "the export has no TensorRT engines (export with --backend tensorrt)"
    try:
        flavor = import_tensorrt(engines.get("flavor"))
    except UserError as exc:
        return str(exc)
    if not cuda_driver.gpu_available():
        return "this machine has no NVIDIA GPU and driver"
    problem = driver_problem(flavor)
    if problem:
        return problem
    try:
        check_engines(manifest, flavor, cuda_driver.Device(0))
    except UserError as exc:
        return str(exc)
    return None
