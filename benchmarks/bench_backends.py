"""The backends `benchmarks.latency` measures: which runtime runs which graph, and where.

A backend is (runtime, graph, device). Runtimes: `torch` (diffusers / transformers eager, the
baseline), `ort` (sana-edge's ONNX Runtime sessions), `ov` (sana-edge's OpenVINO backend) and
`optimum` (optimum-onnx's ORTSanaPipeline, in its own venv: benchmarks.peer_envs). Graphs are
named by kind (bench_exports / bench_nncf_graphs): fp32, int8 and int4 (sana-edge's recipes),
nncf-int8 (nncf.quantize on the ONNX DiT), ov-int8 / ov-int4 (the `--target openvino` recipe);
for torch the kind is the dtype.

The optimum row runs sana-edge's fp32 graphs written in optimum's layout (`sana-edge convert`):
optimum's own export of the full-size pipeline holds the whole fp32 pipeline (14 GB) plus a
traced copy of Gemma-2-2B in memory, past this machine's 24 GB; on the tiny checkpoint its own
export runs the same images (tests/test_optimum_peer.py). What the row measures is optimum's
runtime: its session setup and its torch <-> numpy conversions around the same graphs.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

BACKENDS = {
    "torch-fp32": ("torch", "fp32", "cpu"),
    "torch-bf16": ("torch", "bf16", "cpu"),
    "optimum-fp32": ("optimum", "fp32", "cpu"),
    "ort-fp32": ("ort", "fp32", "cpu"),
    "ort-int8": ("ort", "int8", "cpu"),
    "ort-int4": ("ort", "int4", "cpu"),
    "nncf-int8": ("ort", "nncf-int8", "cpu"),
    "ov-fp32": ("ov", "fp32", "cpu"),
    "ov-qdq-int8": ("ov", "int8", "cpu"),  # OpenVINO on sana-edge's ORT int8 QDQ graphs
    "ov-int8": ("ov", "ov-int8", "cpu"),
    "ov-int4": ("ov", "ov-int4", "cpu"),
    # GPU path: written, not measured on the machine the committed results come from.
    "torch-cuda-bf16": ("torch", "bf16", "cuda"),
    "torch-cuda-fp16": ("torch", "fp16", "cuda"),
    "ort-cuda-fp32": ("ort", "fp32", "cuda"),
}
GRAPH_RUNTIMES = ("ort", "ov", "optimum")


def missing_extra(backends: list[str]) -> str | None:
    """The sana-edge extra the chosen backends need and this environment lacks, or None."""
    import importlib.util

    kinds = {BACKENDS[b][1] for b in backends}
    if kinds & {"nncf-int8", "ov-int8", "ov-int4"} and not importlib.util.find_spec("nncf"):
        return "nncf"
    if any(BACKENDS[b][0] == "ov" for b in backends) and not importlib.util.find_spec("openvino"):
        return "openvino"
    return None


def graph_kinds(backends: list[str]) -> list[str]:
    return sorted({BACKENDS[b][1] for b in backends if BACKENDS[b][0] in GRAPH_RUNTIMES})


def optimum_view(graph: Path, component: str, model: str, cache: Path) -> Path:
    """A folder ORTSanaPipeline loads holding only `component` (so the worker's peak RSS is that
    stage's): model_index.json, scheduler/ and `<component>/model.onnx` + config.json, the graph
    renamed to optimum's tensor names (sana-edge convert's code; its weights hard-linked)."""
    from sana_edge.components import COMPONENTS
    from sana_edge.export.configs import SANA_SCHEDULER_CONFIG
    from sana_edge.export.optimum_layout import DATA_FILE, MODEL_FILE, copy_renamed_graph, model_index
    from sana_edge.export.optimum_text_encoder import drop_past

    from .bench_models import MODELS

    view = cache / f"optimum-{graph.parent.name}"
    if (view / "done.json").is_file():
        return view
    shutil.rmtree(view, ignore_errors=True)
    (view / component).mkdir(parents=True)
    rewrite = drop_past if component == "text_encoder" else None  # optimum feeds whole sequences
    copy_renamed_graph(graph, view / component / MODEL_FILE, COMPONENTS[component].optimum_names(), DATA_FILE, rewrite)
    classes = {"text_encoder": ["Gemma2Model"], "transformer": "SanaTransformer2DModel", "vae_decoder": "AutoencoderDC"}
    config = dict(MODELS[model][component])
    config.update({"architectures": classes[component]} if component == "text_encoder" else {"_class_name": classes[component]})
    (view / component / "config.json").write_text(json.dumps(config, indent=2))
    (view / "scheduler").mkdir()
    (view / "scheduler" / "scheduler_config.json").write_text(json.dumps(SANA_SCHEDULER_CONFIG, indent=2))
    index = model_index({"architectures": classes["text_encoder"]}, SANA_SCHEDULER_CONFIG, "0.39.0")
    index["tokenizer"] = [None, None]  # stage timing needs no tokenizer
    (view / "model_index.json").write_text(json.dumps(index, indent=2))
    (view / "done.json").write_text("{}\n")
    return view


def job_graph(runtime: str, kind: str, component: str, graphs: dict, model: str, cache: Path) -> str | None:
    if runtime not in GRAPH_RUNTIMES:
        return None
    graph = graphs[component][kind]
    return str(optimum_view(Path(graph), component, model, cache)) if runtime == "optimum" else graph


def worker_python(runtime: str, default: str) -> str:
    """optimum's workers run in its own venv (made on first use); every other runtime here."""
    if runtime != "optimum":
        return default
    from .peer_envs import optimum_env

    return str(optimum_env())
