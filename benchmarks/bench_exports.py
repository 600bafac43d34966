"""ONNX graphs for `benchmarks.latency`: exported once per (component config, precision) and cached.

    python -m benchmarks.bench_exports --model sana-0.6b --components transformer --precisions fp32,int8,int4

The orchestrator runs this in a subprocess (one per component at full size), so the export's
memory (the full Gemma-2-2B is 10.4 GB in fp32) is returned to the OS before anything is
measured. It prints a JSON map {component: {precision: graph path}}. A cache folder is named `<component>-<precision>-<key>` where key
hashes the architecture config, the precision, the opset and the quant recipe; a folder counts
only once its `done.json` exists, so an interrupted export is redone, not reused.

Graphs go through the project's own code: `export_component` (the path `sana-edge export` takes)
and the quantization methods of `sana_edge.quant.apply` with the recipe of each precision
(`quant/recipes.py`: the decoder stays fp32 for int8 and int4, so those share the fp32 graph).
Two differences from `sana-edge export`, neither of which changes the graph's structure or cost:
the W8A8 calibration uses random transformer feeds instead of sampler trajectories (the scales
differ, the ops do not), and a graph over 2 GB is traced with the torch model freed before the
trace is re-saved (`export_component` holds both copies, 2 x 10.4 GB for Gemma-2-2B).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import shutil
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from .bench_models import CAPTION_TOKENS, MODELS, batch, component_spec, is_sprint, model_config, model_dims
from .dit_step_latency import step_inputs

CACHE_VERSION = 3  # 2: the recipe key is the component config record; 3: text encoder with a past K/V cache
DEFAULT_CACHE = Path("build/bench-latency")
FP32_TRACE_LIMIT = 6 * 2**30  # fp32 weights above this are traced in fp16 (see export_fp32)


def component_config(component: str, precision: str):
    """The quantization config `sana-edge export --precision P` gives this component (the same
    recipe path: sana_edge.quant.configs.build_recipe), or None for fp32."""
    if precision == "fp32":
        return None
    from sana_edge.quant.configs import build_recipe

    config = build_recipe(precision)[component_spec(component).name]
    return config if config.changes_graph else None


def graph_precision(component: str, precision: str) -> str:
    """The precision the recipe gives this component (int8/int4 keep the decoder in fp32)."""
    return "fp32" if component_config(component, precision) is None else precision


def graph_dir(cache: Path, model: str, component: str, precision: str) -> Path:
    from sana_edge.export.onnx_export import OPSET
    from sana_edge.quant.configs import config_record

    config = component_config(component, precision)
    precision = graph_precision(component, precision)
    recipe = config_record(config) if config is not None else None
    key_source = {"v": CACHE_VERSION, "component": component, "config": model_config(model, component_spec(component).name),
                  "precision": precision, "opset": OPSET, "recipe": recipe}
    key = hashlib.sha256(json.dumps(key_source, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return cache / f"{component}-{precision}-{key}"


def graph_file(cache: Path, model: str, component: str, precision: str) -> Path:
    return graph_dir(cache, model, component, precision) / f"{component}.onnx"


def graph_bytes(path: Path) -> int:
    """A graph's files: <name>.onnx (+ .onnx.data), or OpenVINO's <name>.xml + .bin."""
    return sum(p.stat().st_size for p in path.parent.glob(path.stem + ".*"))


def is_cached(path: Path) -> bool:
    return (path.parent / "done.json").is_file()


def _mark_done(path: Path, seconds: float) -> None:
    (path.parent / "done.json").write_text(json.dumps({"bytes": graph_bytes(path), "seconds": round(seconds, 1)}) + "\n")


def _fresh_dir(path: Path) -> None:
    shutil.rmtree(path.parent, ignore_errors=True)
    path.parent.mkdir(parents=True)


def export_fp32(model: str, component: str, path: Path, log=print) -> None:
    import torch

    from sana_edge.export.onnx_export import EXTERNAL_DATA_THRESHOLD, export_component

    from .bench_models import build_torch

    declared, dims = component_spec(component, model), model_dims(model)
    start = time.perf_counter()
    _fresh_dir(path)
    with torch.no_grad():
        module = build_torch(model, component)
    weight_bytes = sum(p.numel() * p.element_size() for p in module.parameters())
    log(f"built {component} ({weight_bytes / 2**30:.1f} GiB) in {time.perf_counter() - start:.0f}s; exporting")
    if weight_bytes < EXTERNAL_DATA_THRESHOLD:
        export_component(declared, module, dims, path)
    elif weight_bytes > FP32_TRACE_LIMIT:
        # Gemma-2-2B in fp32 (10.4 GB) plus the tracer's copy of it was OOM-killed at 23 GB here:
        # trace it in fp16 (the `sana-edge export --precision fp16` path) and upcast the graph
        # tensor by tensor. Same ops; the fp16 boundary casts become fp32 no-ops ORT removes.
        from sana_edge.export.onnx_export import as_fp16

        traced = _trace_then_free(declared, as_fp16(module), dims, path.parent / ".trace")
        del module
        upcast_fp16_graph(traced, path)
        shutil.rmtree(traced.parent)
    else:
        traced = _trace_then_free(declared, module, dims, path.parent / ".trace")
        del module
        _resave(traced, path)
    _mark_done(path, time.perf_counter() - start)
    log(f"exported {component} fp32 in {time.perf_counter() - start:.0f}s -> {path}")


def _trace_then_free(spec, module, dims, scratch: Path) -> Path:
    """The TorchScript trace `export_component` does, with the module's weights released after it:
    this function holds the caller's last reference only while tracing."""
    import torch

    from sana_edge.components import sample_inputs
    from sana_edge.export.onnx_export import OPSET

    feeds = sample_inputs(spec, {**dims, **spec.validation_shapes[0]})
    args = tuple(torch.from_numpy(feeds[name]) for name in spec.input_names)
    scratch.mkdir(parents=True, exist_ok=True)
    traced = scratch / spec.file
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(traced), input_names=spec.input_names, output_names=spec.output_names,
                          dynamic_axes=spec.dynamic_axes(), opset_version=OPSET, dynamo=False)
    for parameter in module.parameters():  # the caller still references the module: free the storage now
        parameter.data = torch.empty(0)
    gc.collect()
    return traced


def upcast_fp16_graph(source: Path, path: Path) -> None:
    """Write `source` (an ONNX graph with fp16 tensors, weights in external files) as an fp32
    graph at `path` with one external data file, streaming one tensor at a time (no whole copy
    of the weights in memory)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, numpy_helper

    from sana_edge.export.onnx_export import fix_negative_transpose_perms

    f16, f32 = TensorProto.FLOAT16, TensorProto.FLOAT
    model = onnx.load(str(source), load_external_data=False)
    fix_negative_transpose_perms(model)
    data_name = path.name + ".data"

    def tensor_bytes(tensor) -> bytes:
        if tensor.data_location != TensorProto.EXTERNAL:
            return numpy_helper.to_array(tensor).tobytes()
        info = {e.key: e.value for e in tensor.external_data}
        with open(source.parent / info["location"], "rb") as file:
            file.seek(int(info.get("offset", 0)))
            return file.read(int(info["length"])) if "length" in info else file.read()

    def upcast(tensor, out) -> None:
        data = tensor_bytes(tensor)
        if tensor.data_type == f16:
            data = np.frombuffer(data, np.float16).astype(np.float32).tobytes()
            tensor.data_type = f32
        dims = list(tensor.dims)
        tensor.ClearField("raw_data")
        for field in ("float_data", "int32_data", "int64_data", "double_data", "external_data"):
            tensor.ClearField(field)
        if len(data) < 1024:  # small constants stay inline
            tensor.data_location = TensorProto.DEFAULT
            tensor.raw_data = data
        else:
            offset = out.tell()
            out.write(data)
            tensor.data_location = TensorProto.EXTERNAL
            for key, value in (("location", data_name), ("offset", offset), ("length", len(data))):
                entry = tensor.external_data.add()
                entry.key, entry.value = key, str(value)
        del tensor.dims[:]
        tensor.dims.extend(dims)

    with open(path.parent / data_name, "wb") as out:
        for tensor in model.graph.initializer:
            upcast(tensor, out)
        for node in model.graph.node:
            for attribute in node.attribute:
                if attribute.type == onnx.AttributeProto.TENSOR and attribute.t.data_type == f16:
                    upcast(attribute.t, out)
                elif node.op_type == "Cast" and attribute.name == "to" and attribute.i == f16:
                    attribute.i = f32
    for value in [*model.graph.input, *model.graph.output, *model.graph.value_info]:
        if value.type.tensor_type.elem_type == f16:
            value.type.tensor_type.elem_type = f32
    onnx.save(model, str(path))


def _resave(traced: Path, path: Path) -> None:
    """Load the trace (one file per tensor) and save it as `export_component` does (one data file)."""
    import onnx

    from sana_edge.export.onnx_export import fix_negative_transpose_perms, save_model

    model = onnx.load(str(traced))
    fix_negative_transpose_perms(model)
    save_model(model, path)
    shutil.rmtree(traced.parent)


def calibration_feeds(model: str, component: str = "transformer", cache: Path | None = None) -> list[dict]:
    """Random transformer feeds at a small latent size: the scales differ from a trajectory
    calibration, the quantized graph's ops and shapes (what latency depends on) do not. The
    split step graph gets the caption K/V the fp32 caption graph makes of those feeds."""
    if component in ("caption_kv", "transformer_step"):
        return split_feeds(model, component, calibration_feeds(model), cache)
    channels = model_dims(model)["caption_channels"]
    feeds = []
    # Sana-Sprint: TrigFlow times in (0, pi/2] at batch 1 with its guidance input; Sana: CFG batch.
    times = (1.0, 0.9, 0.6, 0.3) if is_sprint(model) else (999.0, 700.0, 400.0, 100.0)
    for i, t in enumerate(times):
        feed = step_inputs(256, batch=batch(model), caption_length=CAPTION_TOKENS, caption_channels=channels)
        feed["timestep"][:] = t
        if is_sprint(model):
            feed["guidance"] = np.full(batch(model), 0.45, np.float32)
        feed["latents"] = feed["latents"] * (1 + i / 4)
        feeds.append(feed)
    return feeds


def split_feeds(model: str, component: str, feeds: list[dict], cache: Path) -> list[dict]:
    """Transformer feeds as the split graphs take them (benchmarks.bench_cached_path)."""
    if component == "caption_kv":
        return [{"encoder_hidden_states": f["encoder_hidden_states"]} for f in feeds]
    from sana_edge.backends.onnxruntime_backend import OrtSession

    caption = ensure_graphs(model, "caption_kv", ["fp32"], cache)["fp32"]
    session = OrtSession(Path(caption), ["CPUExecutionProvider"])
    split = []
    for feed in feeds:
        kv = session.run({"encoder_hidden_states": feed["encoder_hidden_states"]})
        split.append({**{k: v for k, v in feed.items() if k != "encoder_hidden_states"}, **kv})
    return split


def quantize(model: str, component: str, precision: str, source: Path, path: Path, log=print) -> None:
    """Apply the recipe's config for `component` to a copy of the fp32 graph."""
    from sana_edge.quant.apply import quantize_component

    start = time.perf_counter()
    _fresh_dir(path)
    for file in source.parent.glob(source.name + "*"):
        shutil.copy(file, path.parent / file.name)
    config = component_config(component, precision)
    feeds = None
    if config.needs_calibration:
        feeds = calibration_feeds(model, component, path.parents[1])
    quantize_component(path, config, feeds)
    _mark_done(path, time.perf_counter() - start)
    log(f"quantized {component} {precision} ({type(config).__name__}) in {time.perf_counter() - start:.0f}s -> {path}")


def ensure_graphs(model: str, component: str, precisions: list[str], cache: Path, log=print) -> dict[str, str]:
    from .bench_nncf_graphs import ensure_nncf_graph, is_nncf_kind

    fp32 = graph_file(cache, model, component, "fp32")
    paths = {}
    for precision in precisions:
        if is_nncf_kind(precision):
            paths[precision] = ensure_nncf_graph(model, component, precision, cache, log)
            continue
        path = graph_file(cache, model, component, precision)
        if not is_cached(path):
            if not is_cached(fp32):
                export_fp32(model, component, fp32, log)
                gc.collect()
            if path != fp32:
                quantize(model, component, precision, fp32, path, log)
                gc.collect()
        paths[precision] = str(path)
    return paths


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="export/quantize one component for benchmarks.latency")
    parser.add_argument("--model", required=True, choices=sorted(MODELS))
    parser.add_argument("--components", required=True, help="comma-separated: text_encoder, transformer, vae_decoder")
    parser.add_argument("--precisions", default="fp32")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    args = parser.parse_args(argv)
    paths = {component: ensure_graphs(args.model, component, args.precisions.split(","), args.cache,
                                      log=lambda m: print(m, file=sys.stderr, flush=True))
             for component in args.components.split(",")}
    print(json.dumps(paths))


if __name__ == "__main__":
    main()
