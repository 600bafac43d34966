"""Apply a quantization recipe to the fp32 graphs of an export folder, in place.

Library choices (measured, FIELD_NOTES.md): onnxruntime.quantization's static QDQ quantizer for
W8A8 (per-channel symmetric weights, MinMax-calibrated symmetric activations; 0.9994 cosine at
~0.46x fp32 latency on a mid-size DiT, where nncf.quantize reached 0.9984 at 1.5x fp32 latency
on ORT CPU), and its MatMulNBits quantizer for block-wise weight-only int4/int8. What neither does
for SANA is done here: the 1x1-conv -> MatMul rewrite (graph.py) and the exclusion defaults.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from pathlib import Path

from sana_edge.errors import UserError

from . import graph
from .calibration import FeedReader, calibration_hash, collect, read_prompts
from .recipes import TEXT_ENCODER_KEEP_FP, QuantOptions, check_target, component_method, recipe_for, record


CALIB_MAX_RESOLUTION = 512  # px: calibration cost grows with the square of the size

# The weight-only quantizer logs every skipped node at INFO; keep the export's own progress readable.
logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)


def _save(model, path: Path) -> None:
    from sana_edge.export.onnx_export import save_model

    save_model(model, path)


def w8a8_static(path: Path, options: QuantOptions, feeds: list[dict], keep_fp) -> dict:
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    model = onnx.load(str(path))
    excluded = graph.matching_nodes(model, keep_fp)
    smoothed = 0
    if options.smoothquant_alpha is not None:
        from .smoothquant import smooth

        smoothed = smooth(model, path, feeds, options.smoothquant_alpha, set(excluded))
        _save(model, path)
    from sana_edge.export.onnx_export import EXTERNAL_DATA_THRESHOLD, initializer_bytes

    large = initializer_bytes(model) > EXTERNAL_DATA_THRESHOLD
    del model
    tmp = path.with_name(path.stem + ".int8.onnx")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its "consider pre-processing" advice: measured, not needed here
    # Activations: TensorRT takes symmetric int8 only. On ORT CPU (x86) the S8S8 kernels ran the
    # mid-size DiT at 1.5x fp32 latency, U8S8 (uint8 asymmetric activations) at 0.52x with the
    # same cosine (0.99944 vs 0.99941), so the ORT target uses uint8 asymmetric activations.
    tensorrt = options.target == "tensorrt"
    try:
        quantize_static(
            str(path), str(tmp), FeedReader(feeds), quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["MatMul", "Conv"], per_channel=True,
            activation_type=QuantType.QInt8 if tensorrt else QuantType.QUInt8, weight_type=QuantType.QInt8,
            nodes_to_exclude=excluded, calibrate_method=CalibrationMethod.MinMax,
            use_external_data_format=large,
            extra_options={
                "ActivationSymmetric": tensorrt, "WeightSymmetric": True,
                # TensorRT's parser refuses int32-quantized bias; ORT fuses it either way.
                "QuantizeBias": not tensorrt,
            },
        )
    finally:
        root.setLevel(level)
    model = onnx.load(str(tmp))
    for leftover in tmp.parent.glob(tmp.name + "*"):
        leftover.unlink()
    kept_int8 = graph.store_weights_int8(model, set(excluded))
    _save(model, path)
    return {"method": "w8a8_static", "activations": "int8 symmetric" if tensorrt else "uint8 asymmetric",
            "excluded_nodes": len(excluded), "excluded_weights_stored_int8": kept_int8,
            "smoothquant_tensors": smoothed}


def weight_only(bits: int) -> Callable:
    def quantize(path: Path, options: QuantOptions, feeds, keep_fp) -> dict:
        import onnx
        from onnxruntime.quantization import QuantFormat
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        model = onnx.load(str(path))
        rewritten = graph.pointwise_convs_to_matmul(model)
        excluded = graph.matching_nodes(model, keep_fp)
        ort_target = options.target == "ort"
        # GatherBlockQuantized exists for 4 bits only; the quantizer's int4 types need opset 21.
        op_types = ("MatMul", "Gather") if ort_target and bits == 4 else ("MatMul",)
        if bits == 8 and not ort_target:
            # ORT's block quantizer writes 8-bit weights only as MatMulNBits (a contrib op TensorRT
            # refuses); per-channel int8 DequantizeLinear weights are TensorRT's weight-only form.
            every = {n.name for n in model.graph.node if n.op_type in ("MatMul", "Gemm")}
            stored = graph.store_weights_int8(model, every)
            _save(model, path)
            return {"method": "weight_only_int8", "granularity": "per output channel", "convs_as_matmul": rewritten,
                    "excluded_nodes": len(excluded), "weights_stored_int8": stored}
        if bits == 4 or not ort_target:
            graph.upgrade_to_opset_21(model)
        quantizer = MatMulNBitsQuantizer(
            model, bits=bits, block_size=options.block_size, is_symmetric=True,
            # int8 compute on the fly in ORT's kernels: mid-size DiT step 0.71x fp32 latency
            # instead of 0.94x at accuracy level 0 (float compute), cosine within 1e-4
            accuracy_level=4 if ort_target else None,
            nodes_to_exclude=excluded,
            # Gather -> GatherBlockQuantized shrinks the text encoder's embedding table; an ORT
            # contrib op, so the TensorRT target keeps it in float and uses DequantizeLinear.
            op_types_to_quantize=op_types,
            quant_format=QuantFormat.QOperator if ort_target else QuantFormat.QDQ,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # its 0/0 on all-zero blocks is masked
            quantizer.process()
        quantized = quantizer.model.model
        kept_int8 = graph.store_weights_int8(quantized, set(excluded))
        _save(quantized, path)
        return {"method": f"weight_only_int{bits}", "block_size": options.block_size,
                "convs_as_matmul": rewritten, "excluded_nodes": len(excluded),
                "excluded_weights_stored_int8": kept_int8}

    return quantize


def keep_float(path, options, feeds, keep_fp) -> dict:
    return {"method": "fp32"}


METHODS: dict[str, Callable] = {
    "w8a8_static": w8a8_static,
    "weight_only_int8": weight_only(8),
    "weight_only_int4": weight_only(4),
    "fp32": keep_float,
}


def quantize_export(stage_dir: Path, precision: str, options: QuantOptions, base_size: int,
                    log: Callable[[str], None] = print) -> dict:
    """Quantize the fp32 graphs in `stage_dir` (an export being written) according to the recipe
    for `precision`; return the recipe record for the manifest."""
    options.check()
    check_target(precision, options.target)
    recipe = recipe_for(precision)
    feeds, digest = {}, None
    if recipe.needs_calibration:
        prompts = read_prompts(options.calib_prompts)[: options.calib_size]
        # The model's own size up to 512 px (cost): calibrating a 128 px model at half size (2x2
        # latents) cost it 4.7 task-score points; at 128 px int8 matched fp32 (shapes_score).
        resolution = options.calib_resolution or max(32, min(base_size, CALIB_MAX_RESOLUTION) // 32 * 32)
        log(f"... calibrating on {len(prompts)} prompts x {options.calib_steps} steps at {resolution} px")
        feeds = collect(stage_dir, prompts, options.calib_steps, resolution, options.seed, log=log)
        digest = calibration_hash(prompts, options.calib_steps, resolution, options.seed)
    per_component = {}
    for component in ("transformer", "text_encoder", "vae_decoder"):
        method = component_method(recipe, options, component)
        keep_fp = options.keep_fp if component == "transformer" else TEXT_ENCODER_KEEP_FP
        log(f"... {component}: {method}")
        try:
            per_component[component] = METHODS[method](stage_dir / f"{component}.onnx", options, feeds.get(component), keep_fp)
        except UserError:
            raise
        except Exception as exc:
            reason = (str(exc).splitlines() or [""])[0][:200]
            raise UserError(f"quantizing {component} with {method} failed ({type(exc).__name__}: {reason}); "
                            "try --keep-fp to exclude the failing layers or another precision") from exc
    return {**record(recipe, options, digest), "components": per_component}
