"""Quantization recipes: small dataclasses, dispatched by precision name through a registry.

A recipe says what happens to each component for one precision; `QuantOptions` carries the user's
choices (target, calibration, exclusions). Both are recorded in the manifest.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from sana_edge.errors import UserError

TARGETS = ("ort", "tensorrt", "openvino")  # openvino: NNCF on OpenVINO IR (quant/openvino_export.py)

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


@dataclass(frozen=True)
class QuantOptions:
    target: str = "ort"
    calib_prompts: Path | None = None  # None: the shipped set
    calib_size: int = 16
    calib_steps: int = 8
    calib_resolution: int | None = None  # px; None: the model's base size, at most 512
    seed: int = 0
    keep_fp: tuple[str, ...] = DEFAULT_KEEP_FP
    smoothquant_alpha: float | None = None
    block_size: int = 128
    # Weight-only bits of the text encoder, overriding the recipe's (8 for int8, 4 for int4): a
    # text encoder whose caption signal int4 destroys can stay at 8 bits in an int4 export.
    text_encoder_bits: int | None = None

    def check(self) -> None:
        if self.target not in TARGETS:
            raise UserError(f"unknown target '{self.target}'; choose one of {', '.join(TARGETS)}")
        if self.calib_size < 1:
            raise UserError(f"--calib-size must be at least 1 (got {self.calib_size})")
        if self.calib_steps < 1:
            raise UserError(f"--calib-steps must be at least 1 (got {self.calib_steps})")
        if self.smoothquant_alpha is not None and not 0.0 <= self.smoothquant_alpha <= 1.0:
            raise UserError(f"--smoothquant-alpha must be within [0, 1] (got {self.smoothquant_alpha})")
        if self.block_size not in (16, 32, 64, 128, 256):
            raise UserError(f"--block-size must be one of 16, 32, 64, 128, 256 (got {self.block_size})")
        if self.calib_resolution is not None and (self.calib_resolution < 32 or self.calib_resolution % 32):
            raise UserError(f"--calib-resolution must be a positive multiple of 32 px (got {self.calib_resolution})")
        if self.text_encoder_bits not in (None, 4, 8):
            raise UserError(f"--text-encoder-bits must be 4 or 8 (got {self.text_encoder_bits})")


@dataclass(frozen=True)
class Int8Recipe:
    """W8A8 on the transformer (static, calibrated, per-channel symmetric weights, symmetric
    activations); 8-bit weight-only on the text encoder; decoder left in fp32."""

    name: str = "int8"
    transformer: str = "w8a8_static"
    text_encoder: str = "weight_only_int8"
    vae_decoder: str = "fp32"
    needs_calibration: bool = True


@dataclass(frozen=True)
class Int4Recipe:
    """Block-wise symmetric int4 weight-only on transformer and text encoder linear layers (and
    the text encoder's embedding table); decoder left in fp32."""

    name: str = "int4"
    transformer: str = "weight_only_int4"
    text_encoder: str = "weight_only_int4"
    vae_decoder: str = "fp32"
    needs_calibration: bool = False


RECIPES = {"int8": Int8Recipe(), "int4": Int4Recipe()}

# What each target can run. TensorRT's parser refuses MatMulNBits / GatherBlockQuantized (ORT
# contrib ops), so on that target int4 is written as block-wise DequantizeLinear weights.
TARGET_PRECISIONS = {
    "ort": ("fp32", "fp16", "int8", "int4"),
    "tensorrt": ("fp32", "fp16", "int8", "int4"),
    "openvino": ("fp32", "fp16", "int8", "int4"),
}


def recipe_for(precision: str):
    try:
        return RECIPES[precision]
    except KeyError:
        raise UserError(f"'{precision}' has no quantization recipe; choose one of {', '.join(RECIPES)}") from None


def check_target(precision: str, target: str) -> None:
    if target not in TARGET_PRECISIONS:
        raise UserError(f"unknown target '{target}'; choose one of {', '.join(TARGET_PRECISIONS)}")
    if precision not in TARGET_PRECISIONS[target]:
        raise UserError(
            f"target '{target}' cannot run precision '{precision}'; it runs {', '.join(TARGET_PRECISIONS[target])}"
        )


def component_method(recipe, options: QuantOptions, component: str) -> str:
    """The quantization method `component` gets: the recipe's, or the text encoder's override."""
    if component == "text_encoder" and options.text_encoder_bits:
        return f"weight_only_int{options.text_encoder_bits}"
    return getattr(recipe, component)


def record(recipe, options: QuantOptions, calibration_hash: str | None) -> dict:
    """The recipe as written to the manifest."""
    data = {**asdict(recipe), **asdict(options), "calibration_sha256": calibration_hash}
    data["text_encoder"] = component_method(recipe, options, "text_encoder")
    data["calib_prompts"] = str(options.calib_prompts) if options.calib_prompts else "shipped"
    data["keep_fp"] = list(options.keep_fp)
    return data


__all__ = ["QuantOptions", "RECIPES", "DEFAULT_KEEP_FP", "recipe_for", "check_target", "component_method", "record"]
