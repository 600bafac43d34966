"""Quantization configs: small frozen dataclasses, one handler registered per config type.

A recipe maps each component to a config (what happens to that graph); the handler registered
for the config's type does it (sana_edge.quant.handlers). `build_recipe(precision, settings)` is
the one place a precision name becomes configs, for `sana-edge export` and the benchmarks alike.
The manifest records `config_record(config)` and `config_from_record` reads it back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

from sana_edge.errors import UserError

TARGETS = ("ort", "tensorrt", "openvino")  # openvino: NNCF on OpenVINO IR (quant/nncf_openvino.py)
QUANTIZED_PRECISIONS = ("int8", "int4")
BLOCK_SIZES = (16, 32, 64, 128, 256)

# Transformer nodes kept in floating point by default (regexes on ONNX node names). The SANA paper
# keeps normalisation, the linear-attention math and the cross-attention K/V projections in
# 16-bit; we also keep the small, sensitive embedders and the final projection. Normalisation
# layers are never MatMul/Conv, so they are not quantized to begin with.
DEFAULT_KEEP_FP = (
    r"/attn1/MatMul",             # linear attention: (v_pad @ k^T) @ q, activation x activation
    r"/attn2/MatMul",             # cross-attention scores and weighted sum (softmax SDPA)
    r"/attn2/to_[kv]/",           # cross-attention K/V projections of the caption
    r"/time_embed/",              # adaLN-single timestep embedder
    r"/caption_projection/",      # caption projection MLP
    r"/proj_out/",                # final layer
    r"/patch_embed/",             # input patch embedding (32 -> D channels)
)
# Text-encoder nodes kept in floating point (Gemma-2 attention scores are activation x activation).
TEXT_ENCODER_KEEP_FP = (r"/self_attn/MatMul",)
# DC-AE decoder nodes kept in floating point when the decoder is quantized: its linear-attention
# products (activation x activation, with the 1e-15 eps) and the first and last convolutions.
DECODER_KEEP_FP = (r"/attn/MatMul", r"/decoder/conv_in/", r"/decoder/conv_out/")


@dataclass(frozen=True)
class KeepFloat:
    """The graph stays as exported (fp32)."""

    needs_calibration: ClassVar[bool] = False
    changes_graph: ClassVar[bool] = False


@dataclass(frozen=True)
class W8A8Static:
    """int8 weights (per output channel, symmetric) and 8-bit activations with MinMax scales from
    calibration, as QDQ; kept layers compute in float with int8-stored weights."""

    keep_fp: tuple[str, ...] = DEFAULT_KEEP_FP
    smoothquant_alpha: float | None = None
    # TensorRT takes symmetric int8 activations only; ORT's x86 U8S8 kernels are the fast ones.
    symmetric_activations: bool = False
    quantize_bias: bool = True  # TensorRT's parser refuses int32-quantized bias
    # Activation ranges: exponential moving average (this constant) of each calibration batch's
    # min/max, instead of the global min/max. On the shapes model with 16 prompts x 8 steps the
    # global range scored the transformer at validation cosine 0.989 and -4.7 task points; the
    # averaged range 0.9993 and -0.0 (24 held-out captions). None: global min/max.
    range_averaging: float | None = 0.01
    needs_calibration: ClassVar[bool] = True
    changes_graph: ClassVar[bool] = True


@dataclass(frozen=True)
class WeightOnly:
    """Block-wise symmetric weight-only quantization of MatMul weights (1x1 convs rewritten as
    MatMul first); `ort_ops` writes onnxruntime's MatMulNBits / GatherBlockQuantized, otherwise
    DequantizeLinear weights (the form TensorRT parses)."""

    bits: int = 4
    block_size: int = 128
    keep_fp: tuple[str, ...] = ()
    ort_ops: bool = True
    needs_calibration: ClassVar[bool] = False
    changes_graph: ClassVar[bool] = True


CONFIG_TYPES: dict[str, type] = {t.__name__: t for t in (KeepFloat, W8A8Static, WeightOnly)}
_HANDLERS: dict[type, Callable] = {}


def register_handler(config_type: type):
    """Decorator: `handler(model: onnx.ModelProto, config, feeds) -> (ModelProto, stats dict)`."""

    def register(handler: Callable) -> Callable:
        CONFIG_TYPES.setdefault(config_type.__name__, config_type)
        _HANDLERS[config_type] = handler
        return handler

    return register


def handler_for(config) -> Callable:
    try:
        return _HANDLERS[type(config)]
    except KeyError:
        raise UserError(f"no quantization handler is registered for {type(config).__name__}") from None


def config_record(config) -> dict:
    """What the manifest records of a config: its type and every field."""
    return {"type": type(config).__name__, **{k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}}


def config_from_record(record: dict):
    """The config a manifest recorded (inverse of config_record)."""
    data = dict(record)
    kind = CONFIG_TYPES.get(data.pop("type", None))
    if kind is None:
        raise UserError(f"unknown quantization config {record.get('type')!r} in the manifest; re-export with this sana-edge")
    names = {f.name: f for f in dataclasses.fields(kind)}
    return kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class QuantSettings:
    """The user's quantization choices, checked once when made (`sana-edge export` options)."""

    target: str = "ort"
    block_size: int = 128
    keep_fp: tuple[str, ...] = DEFAULT_KEEP_FP
    smoothquant_alpha: float | None = None
    # Weight-only bits of the text encoder, overriding the recipe's (8 for int8, 4 for int4): a
    # text encoder whose caption signal int4 destroys can stay at 8 bits in an int4 export.
    text_encoder_bits: int | None = None
    # W8A8 on the DC-AE decoder too, calibrated on the latents that end sampling trajectories.
    quantize_decoder: bool = False

    def __post_init__(self):
        if self.target not in TARGETS:
            raise UserError(f"unknown target '{self.target}'; choose one of {', '.join(TARGETS)}")
        if self.block_size not in BLOCK_SIZES:
            raise UserError(f"--block-size must be one of {', '.join(map(str, BLOCK_SIZES))} (got {self.block_size})")
        if self.smoothquant_alpha is not None and not 0.0 <= self.smoothquant_alpha <= 1.0:
            raise UserError(f"--smoothquant-alpha must be within [0, 1] (got {self.smoothquant_alpha})")
        if self.text_encoder_bits not in (None, 4, 8):
            raise UserError(f"--text-encoder-bits must be 4 or 8 (got {self.text_encoder_bits})")
        import re

        for pattern in self.keep_fp:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise UserError(f"--keep-fp '{pattern}' is not a valid regular expression ({exc}); fix the pattern") from None


@dataclass(frozen=True)
class Calibration:
    """Where the int8 scales come from: real sampler trajectories over a prompt set."""

    prompts: Path | None = None  # None: the shipped set (or the checkpoint's own, see the exporter)
    size: int = 16
    steps: int | None = None  # None: the model's trajectories (calibration.trajectory_steps)
    resolution: int | None = None  # px; None: the model's base size, at most 512
    seed: int = 0

    def __post_init__(self):
        for flag, value in (("--calib-size", self.size), ("--calib-steps", self.steps)):
            if value is not None and not 1 <= value <= 10_000:
                raise UserError(f"{flag} must be within 1..10000 (got {value})")
        if self.resolution is not None and not (32 <= self.resolution <= 4096 and self.resolution % 32 == 0):
            raise UserError(f"--calib-resolution must be a multiple of 32 px within 32..4096 (got {self.resolution})")
        if not 0 <= self.seed < 2**32:
            raise UserError(f"--calib-seed must be within 0..{2**32 - 1} (got {self.seed})")


def build_recipe(precision: str, settings: QuantSettings = QuantSettings()) -> dict:
    """component -> config for a quantized precision (int8: W8A8 DiT, 8-bit text encoder; int4:
    int4 weight-only DiT and text encoder; the DC-AE encoder, and the decoder unless --quantize-decoder, stay in
    floating point).
    A controlnet (exports made with --controlnet) is weight-only at the precision's bits: text-to-image
    calibration never runs it, so it has no activation ranges to calibrate."""
    if precision not in QUANTIZED_PRECISIONS:
        raise UserError(f"'{precision}' has no quantization recipe; choose one of {', '.join(QUANTIZED_PRECISIONS)}")
    ort = settings.target == "ort"
    weight_only = WeightOnly(block_size=settings.block_size, ort_ops=ort)
    if precision == "int8":
        transformer = W8A8Static(keep_fp=settings.keep_fp, smoothquant_alpha=settings.smoothquant_alpha,
                                 symmetric_activations=not ort, quantize_bias=ort)
        text_bits = 8
    else:
        transformer = dataclasses.replace(weight_only, bits=4, keep_fp=settings.keep_fp)
        text_bits = 4
    text_encoder = dataclasses.replace(weight_only, bits=settings.text_encoder_bits or text_bits,
                                       keep_fp=TEXT_ENCODER_KEEP_FP)
    # The split transformer: its step graph takes the transformer's config; the caption graph
    # holds only layers the transformer keeps in float (caption projection, cross-attention K/V
    # projections, as the SANA paper keeps them), computing in float with int8-stored weights.
    caption_kv = WeightOnly(bits=8, ort_ops=False)
    controlnet = dataclasses.replace(weight_only, bits=8 if precision == "int8" else 4, keep_fp=settings.keep_fp)
    decoder = KeepFloat()
    if settings.quantize_decoder:
        decoder = W8A8Static(keep_fp=DECODER_KEEP_FP, symmetric_activations=not ort, quantize_bias=ort)
    return {"transformer": transformer, "transformer_step": transformer, "caption_kv": caption_kv,
            "text_encoder": text_encoder, "vae_decoder": decoder, "vae_encoder": KeepFloat(),
            "controlnet": controlnet}


def needs_calibration(recipe: dict) -> bool:
    return any(config.needs_calibration for config in recipe.values())
