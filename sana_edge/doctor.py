"""`sana-edge doctor`: versions, and what this machine can run."""

from __future__ import annotations

import importlib.metadata as md
import platform


def _version(package: str) -> str:
    try:
        return md.version(package)
    except md.PackageNotFoundError:
        return "not installed"


def report() -> str:
    from . import __version__

    from .cpu import cpu_features, fastest_precision

    features = cpu_features()
    lines = [f"sana-edge {__version__} on Python {platform.python_version()} ({platform.machine()})",
             f"CPU: {features.describe()}; fastest precision here: {fastest_precision(features)} "
             f"(`sana-edge export --precision auto` picks it)", "runtime:"]
    for package in ("numpy", "onnxruntime", "onnxruntime-gpu", "tokenizers", "pillow"):
        lines.append(f"  {package:<16} {_version(package)}")
    try:
        import onnxruntime as ort

        lines.append(f"  onnxruntime providers: {', '.join(ort.get_available_providers())}")
    except ImportError:
        lines.append("  onnxruntime providers: none (install onnxruntime)")
    lines.append("TensorRT (engines: sana-edge export --backend tensorrt):")
    from .backends.cuda_driver import Device, driver_version, gpu_available
    from .backends.trt_checks import driver_problem
    from .backends.trt_flavor import installed_flavors, supported_compute_capabilities

    installed = installed_flavors()
    flavors = {f.name: f.version + (f" (CUDA {f.cuda_major} wheels)" if f.cuda_major else "") for f in installed}
    for name in ("tensorrt", "tensorrt_rtx"):
        lines.append(f"  {name:<16} {flavors.get(name, 'not available')}")
    if gpu_available():
        device = Device(0)
        free, total = device.memory()
        driver = driver_version()
        lines.append(f"  GPU              {device.name}, compute capability {device.compute_capability}, "
                     f"{total / 2**30:.1f} GiB ({free / 2**30:.1f} GiB free), driver runs CUDA "
                     f"{'%d.%d' % driver if driver else 'unknown'}")
        for flavor in installed:
            problem = driver_problem(flavor)
            if not problem and flavor.is_rtx and device.compute_capability not in supported_compute_capabilities(flavor.trt):
                problem = f"TensorRT-RTX does not run on compute capability {device.compute_capability}; use full TensorRT"
            lines.append(f"  {flavor.name + ' here':<16} {problem or 'yes'}")
        if not installed:
            lines.append("  can run engines  no (install sana-edge[tensorrt-rtx] or TensorRT)")
    else:
        lines.append("  GPU              none (engines build here with TensorRT-RTX; running them needs a GPU)")
    lines.append("OpenVINO (--backend openvino; pip install 'sana-edge[openvino]'):")
    lines += _openvino_lines()
    lines.append("build side (pip install 'sana-edge[export]'):")
    for package in ("torch", "diffusers", "transformers", "onnx"):
        lines.append(f"  {package:<16} {_version(package)}")
    lines.append(_stale_work_folders())
    return "\n".join(lines)


def _stale_work_folders() -> str:
    """Staging folders left by killed exports (SIGKILL, power loss): removed, and named here."""
    from .workdirs import remove_stale_registered

    removed = remove_stale_registered()
    if not removed:
        return "staging folders of killed runs: none"
    return f"staging folders of killed runs: removed {len(removed)}: " + ", ".join(map(str, removed))


def _openvino_lines() -> list[str]:
    try:
        import openvino as ov
    except ImportError:
        return ["  openvino         not installed"]
    core = ov.Core()
    lines = [f"  openvino         {ov.__version__.split('-')[0]}, devices: {', '.join(core.available_devices) or 'none'}"]
    if "CPU" in core.available_devices:
        capabilities = ", ".join(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
        lines.append(f"  CPU              {core.get_property('CPU', 'FULL_DEVICE_NAME')} ({capabilities})")
    return lines
