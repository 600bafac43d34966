"""NNCF graphs for `benchmarks.latency`: the `ov-int8` / `ov-int4` rows (OpenVINO IR from the
recipe `sana-edge export --target openvino` applies, sana_edge.quant.nncf_openvino) and the
`nncf-int8` row (nncf.quantize on the ONNX transformer, run by ONNX Runtime; its text encoder
and decoder are the `int8` recipe's graphs, so only the DiT's quantizer differs from ort-int8).

Like bench_exports, calibration uses random transformer feeds (the scales differ from a
trajectory calibration; the quantized ops, what latency depends on, do not). A component the
recipe keeps in float is the fp32 ONNX graph itself (OpenVINO reads it unchanged).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

NNCF_KINDS = ("nncf-int8", "ov-int8", "ov-int4")
CACHE_VERSION = 1


def is_nncf_kind(precision: str) -> bool:
    return precision in NNCF_KINDS


def component_config(component: str, kind: str):
    """The nncf config of `component` for a graph kind, or None when another graph is used as is."""
    from sana_edge.quant.nncf_openvino import NncfKeepFloat, NncfQuantize, openvino_recipe

    if kind == "nncf-int8":
        return NncfQuantize() if component == "transformer" else None
    config = openvino_recipe(kind.removeprefix("ov-"))[component]
    return None if isinstance(config, NncfKeepFloat) else config


def fallback_precision(component: str, kind: str) -> str:
    """The sana-edge graph a component without an nncf config uses: the int8 recipe's for
    nncf-int8, the fp32 graph for OpenVINO."""
    return "int8" if kind == "nncf-int8" else "fp32"


def nncf_graph_file(cache: Path, model: str, component: str, kind: str) -> Path:
    from sana_edge.quant.nncf_openvino import config_record

    from .bench_models import MODELS

    config = component_config(component, kind)
    onnx_form = kind.startswith("nncf-")
    key_source = {"v": CACHE_VERSION, "component": component, "config": MODELS[model][component],
                  "nncf": config_record(config), "form": "onnx" if onnx_form else "ir"}
    key = hashlib.sha256(json.dumps(key_source, sort_keys=True, default=str).encode()).hexdigest()[:12]
    folder = cache / f"{component}-{'nncf-onnx' if onnx_form else 'ov-ir'}-{key}"
    return folder / (f"{component}.onnx" if onnx_form else f"{component}.xml")


def ensure_nncf_graph(model: str, component: str, kind: str, cache: Path, log=print) -> str:
    """The graph file of `component` for an nncf kind, quantized (and cached) on first use."""
    from .bench_exports import calibration_feeds, ensure_graphs, is_cached

    config = component_config(component, kind)
    if config is None:
        precision = fallback_precision(component, kind)
        return ensure_graphs(model, component, [precision], cache, log)[precision]
    path = nncf_graph_file(cache, model, component, kind)
    if not is_cached(path):
        fp32 = Path(ensure_graphs(model, component, ["fp32"], cache, log)["fp32"])
        build_nncf_graph(component, kind, fp32, path, calibration_feeds(model) if config.needs_calibration else None, log)
    return str(path)


def build_nncf_graph(component: str, kind: str, fp32: Path, path: Path, feeds, log=print) -> None:
    """Quantize the fp32 ONNX graph at `fp32` with nncf into `path` (IR, or ONNX for nncf-*)."""
    from sana_edge.quant.nncf_openvino import onnx_to_ir, onnx_to_onnx

    from .bench_exports import _fresh_dir, _mark_done

    config = component_config(component, kind)
    start = time.perf_counter()
    _fresh_dir(path)
    convert = onnx_to_onnx if path.suffix == ".onnx" else onnx_to_ir
    stats = convert(fp32, path, config, feeds if config.needs_calibration else None)
    _mark_done(path, time.perf_counter() - start)
    log(f"nncf {kind} {component} ({stats.get('method')}) in {time.perf_counter() - start:.0f}s -> {path}")
