"""NNCF, OpenVINO's quantizer, on sana-edge's graphs: `sana-edge export --target openvino`.

Configs are small frozen dataclasses with a handler registered for each type in the registry of
sana_edge.quant.configs; a recipe maps each component to a config, as the ONNX recipes do. Measured on these machines (FIELD_NOTES.md):
- `nncf.quantize(model_type=TRANSFORMER)` with the keep-float declaration as ignored scope
  reaches sana-edge's own W8A8 accuracy (cosine 0.9999 on ONNX; without TRANSFORMER: 0.987).
- Several of nncf's ONNX weight-compression outputs are graphs ONNX Runtime refuses (1x1 Conv
  per-axis scales, INT4_ASYM zero points, AWQ / scale estimation), so for the ORT target nncf is
  a reference. On OpenVINO IR all of them run: that is where these configs are applied.
The handlers take and return an `openvino.Model` (or an `onnx.ModelProto`, for the ONNX
comparison row of the benchmark): nncf dispatches on the model type.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from sana_edge.errors import UserError

from .configs import DEFAULT_KEEP_FP, TEXT_ENCODER_KEEP_FP, config_record, handler_for, register_handler


@dataclass(frozen=True)
class NncfQuantize:
    """W8A8: nncf.quantize with the transformer model type (SmoothQuant, fast bias correction),
    8-bit activation scales from calibration; `keep_fp` nodes (regexes) stay in float."""

    keep_fp: tuple[str, ...] = DEFAULT_KEEP_FP
    needs_calibration: ClassVar[bool] = True
    changes_graph: ClassVar[bool] = True


@dataclass(frozen=True)
class NncfCompressWeights:
    """Weight-only: nncf.compress_weights in `mode` (int4_sym with `group_size`, or int8_sym /
    int8_asym per output channel); `keep_fp` nodes (regexes) stay in float."""

    mode: str = "int4_sym"
    group_size: int = 128
    keep_fp: tuple[str, ...] = ()
    needs_calibration: ClassVar[bool] = False
    changes_graph: ClassVar[bool] = True


@dataclass(frozen=True)
class NncfKeepFloat:
    """The graph converted as is (OpenVINO IR of the fp32 or fp16 ONNX graph)."""

    needs_calibration: ClassVar[bool] = False
    changes_graph: ClassVar[bool] = False


MODES = ("int4_sym", "int8_sym", "int8_asym")
OPENVINO_W8A8_KEEP_FP = (r"/ff/conv_depth/",)


def openvino_recipe(precision: str, block_size: int = 128, keep_fp: tuple[str, ...] = DEFAULT_KEEP_FP,
                    text_encoder_bits: int | None = None) -> dict:
    """component -> config for `--target openvino --precision P`. The text encoder gets 8-bit
    weights unless --text-encoder-bits 4 says otherwise (int4 erased the shapes model's caption
    signal in its random Gemma; an 8-bit text encoder costs little: README)."""
    if precision in ("fp32", "fp16"):
        return {c: NncfKeepFloat() for c in ("text_encoder", "transformer", "transformer_step", "caption_kv",
                                             "vae_decoder", "vae_encoder", "controlnet")}
    # 8-bit asymmetric per output channel: symmetric cost the shapes model 9 task-score points on 8
    # captions (88.8% vs 95.0% fp32), asymmetric none (95.0%), transformer W8A8 the same in both.
    text_encoder = (NncfCompressWeights("int4_sym", block_size, TEXT_ENCODER_KEEP_FP) if text_encoder_bits == 4
                    else NncfCompressWeights("int8_asym", -1, TEXT_ENCODER_KEEP_FP))
    # nncf.quantize also quantizes the GLUMBConv depthwise 3x3 convolution, which the ORT recipe's
    # QLinearConv path tolerates and NNCF's does not: on the shapes model trained with its text
    # encoder, the step graph's held-out validation cosine was 0.9879 (< 0.99, refused) whatever
    # the range estimator, preset, SmoothQuant or bias correction; with it float, the export passes.
    # It is <2% of the step's FLOPs. The defaults, also as extended by a checkpoint's keep_fp
    # (sana_edge_quantization.json), get it; a user's own --keep-fp list replaces the whole default.
    extends_default = keep_fp[:len(DEFAULT_KEEP_FP)] == DEFAULT_KEEP_FP
    w8a8_keep = keep_fp + OPENVINO_W8A8_KEEP_FP if extends_default else keep_fp
    transformer = NncfQuantize(w8a8_keep) if precision == "int8" else NncfCompressWeights("int4_sym", block_size, keep_fp)
    # A controlnet (--controlnet exports) is weight-only: text-to-image calibration never runs it.
    controlnet = (NncfCompressWeights("int8_asym", -1, keep_fp) if precision == "int8"
                  else NncfCompressWeights("int4_sym", block_size, keep_fp))
    # The caption graph (caption projection, cross-attention K/V) runs once per image: kept float.
    return {"text_encoder": text_encoder, "transformer": transformer, "transformer_step": transformer,
            "caption_kv": NncfKeepFloat(), "vae_decoder": NncfKeepFloat(), "vae_encoder": NncfKeepFloat(),
            "controlnet": controlnet}


def node_names(model) -> list[str]:
    """Node names as nncf sees them: OpenVINO friendly names (the ONNX node names, sometimes with
    a suffix such as '/WithoutBiases') or ONNX node names."""
    if hasattr(model, "get_ops"):
        return [op.get_friendly_name() for op in model.get_ops()]
    return [node.name for node in model.graph.node]


def ignored_scope(model, patterns: tuple[str, ...]):
    """Ignore the nodes any pattern finds anywhere in the name (re.search, as the ONNX recipes
    match them; nncf's own `patterns` anchor at the start), by exact name."""
    import nncf

    compiled = [re.compile(p) for p in patterns]
    names = [n for n in node_names(model) if any(p.search(n) for p in compiled)]
    return nncf.IgnoredScope(names=names, validate=False), len(names)


@register_handler(NncfKeepFloat)
def keep_float(model, config, feeds, backend_params=None):
    return model, {"method": "none"}


@register_handler(NncfQuantize)
def nncf_quantize(model, config: NncfQuantize, feeds, backend_params=None):
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters

    if not feeds:
        raise UserError("nncf.quantize needs calibration feeds; none were recorded")
    scope, ignored = ignored_scope(model, config.keep_fp)
    advanced = AdvancedQuantizationParameters(backend_params=backend_params) if backend_params else None
    quantized = nncf.quantize(model, nncf.Dataset(feeds), model_type=nncf.ModelType.TRANSFORMER,
                              ignored_scope=scope, subset_size=len(feeds), advanced_parameters=advanced)
    return quantized, {"method": "nncf.quantize", "model_type": "transformer", "calibration_samples": len(feeds),
                       "ignored_scope_nodes": ignored}


@register_handler(NncfCompressWeights)
def nncf_compress_weights(model, config: NncfCompressWeights, feeds, backend_params=None):
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedCompressionParameters, GroupSizeFallbackMode

    if config.mode not in MODES:
        raise UserError(f"unknown weight compression mode '{config.mode}'; choose one of {', '.join(MODES)}")
    scope, ignored = ignored_scope(model, config.keep_fp)
    mode = getattr(nncf.CompressWeightsMode, config.mode.upper())
    options, advanced = {}, {"backend_params": backend_params or {}}
    if config.mode.startswith("int4"):
        options = {"group_size": config.group_size, "ratio": 1.0}
        # A layer narrower than the group (small models) gets the largest power-of-two group that
        # divides it instead of failing the export.
        advanced.update(group_size_fallback_mode=GroupSizeFallbackMode.ADJUST, min_adjusted_group_size=16)
    options["advanced_parameters"] = AdvancedCompressionParameters(**advanced)
    compressed = nncf.compress_weights(model, mode=mode, ignored_scope=scope, **options)
    return compressed, {"method": "nncf.compress_weights", "mode": config.mode,
                        "group_size": config.group_size if config.mode.startswith("int4") else None,
                        "ignored_scope_nodes": ignored}


def apply(model, config, feeds=None, backend_params=None):
    """`config`'s registered handler on `model` (an openvino.Model or onnx.ModelProto)."""
    return handler_for(config)(model, config, feeds, backend_params)


def onnx_to_ir(onnx_path: Path, ir_path: Path, config, feeds=None) -> dict:
    """Read the ONNX graph with OpenVINO, apply `config`, save the IR (`.xml` + `.bin`, float
    weights kept as they are: save_model would otherwise compress them to fp16)."""
    import openvino as ov

    model = ov.Core().read_model(str(onnx_path))
    model, stats = apply(model, config, feeds)
    ov.save_model(model, str(ir_path), compress_to_fp16=False)
    return stats


def onnx_to_onnx(onnx_path: Path, out_path: Path, config, feeds=None) -> dict:
    """nncf on the ONNX graph itself, for ONNX Runtime (the benchmark's nncf-int8 row). Weights
    over 2 GB stay in their external data file while nncf works (its EXTERNAL_DATA_DIR)."""
    import onnx
    from nncf.onnx.quantization.backend_parameters import BackendParameters
    from onnx.external_data_helper import load_external_data_for_model, uses_external_data

    from sana_edge.export.onnx_export import save_model

    model = onnx.load(str(onnx_path), load_external_data=False)
    external = any(uses_external_data(t) for t in model.graph.initializer)
    params = {BackendParameters.EXTERNAL_DATA_DIR: str(onnx_path.parent.resolve())} if external else None
    model, stats = apply(model, config, feeds, params)
    if external:  # the weights nncf left untouched still point at the source's data file
        load_external_data_for_model(model, str(onnx_path.parent))
    save_model(model, out_path)
    return stats


__all__ = ["NncfCompressWeights", "NncfKeepFloat", "NncfQuantize", "config_record", "onnx_to_ir", "onnx_to_onnx",
           "openvino_recipe"]
