"""The handler of each quantization config type: onnx.ModelProto in, ModelProto out, in memory.

Library choices (measured, FIELD_NOTES.md): onnxruntime.quantization's static QDQ quantizer for
W8A8 (per-channel symmetric weights, MinMax-calibrated activations; 0.9994 cosine at ~0.46x
fp32 latency on a mid-size DiT, where nncf.quantize reached 0.9984 at 1.5x fp32 latency on ORT
CPU), and its MatMulNBits quantizer for block-wise weight-only int4/int8. What neither does for
SANA is done here: the 1x1-conv -> MatMul rewrite (graph.py) and the exclusion defaults.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from pathlib import Path

from . import graph
from .configs import KeepFloat, W8A8Static, WeightOnly, register_handler

# The weight-only quantizer logs every skipped node at INFO; keep the export's own progress readable.
logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)


class FeedReader:
    """onnxruntime.quantization CalibrationDataReader over recorded feeds."""

    def __init__(self, feeds: list[dict]):
        self._feeds = feeds
        self._position = 0

    def get_next(self):
        if self._position >= len(self._feeds):
            return None
        self._position += 1
        return self._feeds[self._position - 1]

    def rewind(self):
        self._position = 0


@register_handler(KeepFloat)
def keep_float(model, config: KeepFloat, feeds) -> tuple:
    return model, {}


@register_handler(W8A8Static)
def w8a8_static(model, config: W8A8Static, feeds: list[dict]) -> tuple:
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from sana_edge.export.onnx_export import EXTERNAL_DATA_THRESHOLD, initializer_bytes

    excluded = graph.matching_nodes(model, config.keep_fp)
    smoothed = 0
    if config.smoothquant_alpha is not None:
        from .smoothquant import smooth

        smoothed = smooth(model, feeds, config.smoothquant_alpha, set(excluded))
    large = initializer_bytes(model) > EXTERNAL_DATA_THRESHOLD
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its "consider pre-processing" advice: measured, not needed here
    # Activations: on ORT CPU (x86) the S8S8 kernels ran the mid-size DiT at 1.5x fp32 latency,
    # U8S8 (uint8 asymmetric activations) at 0.52x with the same cosine (0.99944 vs 0.99941).
    activation_type = QuantType.QInt8 if config.symmetric_activations else QuantType.QUInt8
    try:
        with tempfile.TemporaryDirectory(prefix="sana-edge-w8a8-") as scratch:
            output = Path(scratch) / "quantized.onnx"  # quantize_static only writes to a path
            quantize_static(
                model, str(output), FeedReader(feeds), quant_format=QuantFormat.QDQ,
                op_types_to_quantize=["MatMul", "Conv"], per_channel=True,
                activation_type=activation_type, weight_type=QuantType.QInt8,
                nodes_to_exclude=excluded, calibrate_method=CalibrationMethod.MinMax,
                use_external_data_format=large,
                extra_options={"ActivationSymmetric": config.symmetric_activations, "WeightSymmetric": True,
                               "QuantizeBias": config.quantize_bias, **_range_options(config)},
            )
            quantized = onnx.load(str(output))
    finally:
        root.setLevel(level)
    kept_int8 = graph.store_weights_int8(quantized, set(excluded))
    return quantized, {"excluded_nodes": len(excluded), "excluded_weights_stored_int8": kept_int8,
                       "smoothquant_tensors": smoothed}


def _range_options(config: W8A8Static) -> dict:
    if config.range_averaging is None:
        return {}
    return {"CalibMovingAverage": True, "CalibMovingAverageConstant": config.range_averaging}


@register_handler(WeightOnly)
def weight_only(model, config: WeightOnly, feeds) -> tuple:
    from onnxruntime.quantization import QuantFormat
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    rewritten = graph.pointwise_convs_to_matmul(model)
    excluded = graph.matching_nodes(model, config.keep_fp)
    if config.bits == 8 and not config.ort_ops:
        # ORT's block quantizer writes 8-bit weights only as MatMulNBits (a contrib op TensorRT
        # refuses); per-channel int8 DequantizeLinear weights are TensorRT's weight-only form.
        every = {n.name for n in model.graph.node if n.op_type in ("MatMul", "Gemm")}
        stored = graph.store_weights_int8(model, every)
        return model, {"granularity": "per output channel", "convs_as_matmul": rewritten,
                       "excluded_nodes": len(excluded), "weights_stored_int8": stored}
    if config.bits == 4 or not config.ort_ops:
        graph.upgrade_to_opset_21(model)  # int4 types and blocked DequantizeLinear
    # Gather -> GatherBlockQuantized shrinks the text encoder's embedding table; it exists for 4
    # bits only and is an ORT contrib op, so the TensorRT form keeps the table in float.
    op_types = ("MatMul", "Gather") if config.ort_ops and config.bits == 4 else ("MatMul",)
    quantizer = MatMulNBitsQuantizer(
        model, bits=config.bits, block_size=config.block_size, is_symmetric=True,
        # int8 compute on the fly in ORT's kernels: mid-size DiT step 0.71x fp32 latency
        # instead of 0.94x at accuracy level 0 (float compute), cosine within 1e-4
        accuracy_level=4 if config.ort_ops else None,
        nodes_to_exclude=excluded, op_types_to_quantize=op_types,
        quant_format=QuantFormat.QOperator if config.ort_ops else QuantFormat.QDQ,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # its 0/0 on all-zero blocks is masked
        quantizer.process()
    quantized = quantizer.model.model
    kept_int8 = graph.store_weights_int8(quantized, set(excluded))
    return quantized, {"convs_as_matmul": rewritten, "excluded_nodes": len(excluded),
                       "excluded_weights_stored_int8": kept_int8}
