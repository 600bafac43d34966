"""What an export will do, checked before any model (or torch) is loaded: options, checkpoint
folder, output folder, quantization recipe and calibration prompts, TensorRT availability."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sana_edge.errors import UserError
from sana_edge.components import CONTROLNET, SINGLE_GRAPH, SPLIT_GRAPH
from sana_edge.manifest import PRECISIONS

from .architecture import check_architecture
from .checkpoint import (CHECKPOINT_CALIBRATION_PROMPTS, CHECKPOINT_QUANT_DEFAULTS, check_weight_files, read_json_object,
                         resolve_checkpoint)
from .staging import check_out_dir


@dataclass(frozen=True)
class ExportOptions:
    checkpoint: str
    out_dir: Path
    precision: str = "fp32"
    force: bool = False
    quant: object = None  # sana_edge.quant.configs.QuantSettings (int8/int4); None: defaults
    calibration: object = None  # sana_edge.quant.configs.Calibration (int8); None: defaults
    engines: object = None  # sana_edge.export.engine.EngineRange: also build TensorRT engines
    controlnet: Path | None = None  # a SanaControlNetModel folder exported beside the transformer
    allow_pickle: bool = False  # load .bin/.pt weights (pickles can run code): only when the user says so
    # The transformer as caption-K/V + step graphs (the default where the architecture allows),
    # or as one graph (False).
    split_transformer: bool = True


@dataclass
class ExportJob:
    """What `prepare` resolved: the checkpoint folder, the recipe, the TensorRT flavor."""

    options: ExportOptions
    source: Path
    recipe: dict | None = None  # component -> quantization config
    calibration: object = None
    target: str = "ort"
    flavor: object = None
    components: tuple = SPLIT_GRAPH  # which declared components this export holds
    controlnet: Path | None = None  # the controlnet folder exported with it (--controlnet, or the checkpoint's)
    references: dict = field(default_factory=dict)  # component -> PyTorch reference outputs
    reports: dict = field(default_factory=dict)  # component -> validation report of its fp32 graph
    held_out: dict = field(default_factory=dict)  # calibrated component -> (feed, fp32 outputs) pairs
    eps: dict = field(default_factory=dict)  # component -> linear-attention eps constants

    @property
    def quantized(self) -> bool:
        return self.recipe is not None


def prepare(options: ExportOptions, log: Callable[[str], None]) -> ExportJob:
    """Every check that needs no model, before any work; resolves checkpoint-carried defaults."""
    if options.precision not in PRECISIONS:
        raise UserError(f"unknown precision '{options.precision}'; choose one of {', '.join(PRECISIONS)}")
    _check_decoder_quantization(options)
    flavor = None
    if options.engines is not None:
        from sana_edge.backends.trt_flavor import import_tensorrt

        flavor = import_tensorrt()  # fail before any work when no TensorRT is installed
        options.engines.check(32)
    source = resolve_checkpoint(options.checkpoint, options.allow_pickle)
    controlnet = check_architecture(source, options.controlnet)
    if controlnet is not None:
        check_weight_files(controlnet, options.allow_pickle)
    check_out_dir(Path(options.out_dir), options.force, source=source)
    job = ExportJob(options, source, flavor=flavor, components=SINGLE_GRAPH, controlnet=controlnet)
    if options.split_transformer:
        blocker = split_blocker(_read_json(source / "transformer" / "config.json"), controlnet is not None)
        if blocker:
            log(f"transformer exported as one graph: the caption-K/V split does not cover {blocker}")
        else:
            job.components = SPLIT_GRAPH
    if controlnet is not None:
        job.components += (CONTROLNET.name,)
    if options.quant is not None and options.quant.target == "openvino":
        job.target = "openvino"  # every precision: OpenVINO IR (sana_edge.quant.openvino_export)
    if options.precision in ("int8", "int4"):
        _prepare_quantization(job, log)
    return job


def _check_decoder_quantization(options: ExportOptions) -> None:
    """--quantize-decoder only means something for the ONNX Runtime / TensorRT int8 and int4
    recipes: anywhere else it would be ignored without a word."""
    if options.quant is None or not options.quant.quantize_decoder:
        return
    if options.precision not in ("int8", "int4"):
        raise UserError(f"--quantize-decoder quantizes int8/int4 exports, not {options.precision}; "
                        "add --precision int8 or drop --quantize-decoder")
    if options.quant.target == "openvino":
        raise UserError("--quantize-decoder is not supported with --target openvino (NNCF keeps the decoder float); "
                        "drop one of them")


def _checkpoint_quant_defaults(defaults_file: Path, precision: str, settings, log):
    """What a checkpoint asks for at this precision (sana_edge_quantization.json): text encoder
    bits, and transformer layers kept in float on top of the defaults ("keep_fp", regexes), e.g.
    where a small model's activations make a W8A8 layer miss validation. The user's own
    --text-encoder-bits / --keep-fp win."""
    from sana_edge.quant.configs import DEFAULT_KEEP_FP

    asked = _read_json(defaults_file).get(precision) or {}
    asked = asked if isinstance(asked, dict) else {}
    bits = asked.get("text_encoder_bits")
    if bits is not None and (isinstance(bits, bool) or bits not in (4, 8)):
        raise UserError(f"{defaults_file} asks for text_encoder_bits={bits!r}; it must be 4 or 8: fix the file "
                        "or pass --text-encoder-bits")
    if bits and settings.text_encoder_bits is None:
        settings = dataclasses.replace(settings, text_encoder_bits=int(bits))
        log(f"text encoder at {bits} bits: the checkpoint asks for it ({defaults_file.name}); "
            "--text-encoder-bits overrides")
    keep = asked.get("keep_fp", [])
    if not isinstance(keep, list) or not all(isinstance(k, str) and k for k in keep):
        raise UserError(f"{defaults_file} asks for keep_fp={keep!r}; it must be a list of node-name regexes: fix the "
                        "file or pass --keep-fp")
    if keep and settings.keep_fp == DEFAULT_KEEP_FP:
        settings = dataclasses.replace(settings, keep_fp=DEFAULT_KEEP_FP + tuple(keep))
        log(f"transformer layers kept in float: the checkpoint asks for {', '.join(keep)} ({defaults_file.name}); "
            "--keep-fp overrides")
    return settings


def _prepare_quantization(job: ExportJob, log) -> None:
    from sana_edge.quant.calibration import read_prompts
    from sana_edge.quant.configs import Calibration, QuantSettings, build_recipe

    options, source = job.options, job.source
    settings = options.quant or QuantSettings(target="tensorrt" if job.flavor is not None else "ort")
    if job.flavor is not None and settings.target != "tensorrt":
        raise UserError("TensorRT engines need graphs quantized for TensorRT; pass --target tensorrt (or omit --target)")
    defaults_file = source / CHECKPOINT_QUANT_DEFAULTS
    if defaults_file.is_file():
        settings = _checkpoint_quant_defaults(defaults_file, options.precision, settings, log)
    calibration = options.calibration or Calibration()
    own_prompts = source / CHECKPOINT_CALIBRATION_PROMPTS
    if calibration.prompts is None and own_prompts.is_file():
        # A checkpoint may carry prompts of its own domain (the shipped shapes model does): its
        # activations on those, not on generic prompts, are what the int8 scales must cover.
        calibration = dataclasses.replace(calibration, prompts=own_prompts)
        log(f"calibration prompts: {own_prompts} (shipped with the checkpoint)")
    if settings.target == "openvino":  # NNCF's configs (sana_edge.quant.nncf_openvino)
        from sana_edge.quant.nncf_openvino import openvino_recipe

        job.recipe = openvino_recipe(options.precision, settings.block_size, settings.keep_fp, settings.text_encoder_bits)
    else:
        job.recipe = build_recipe(options.precision, settings)
    job.calibration = calibration
    job.target = settings.target
    read_prompts(calibration.prompts)  # a bad prompt file fails now, not after the export


def split_blocker(transformer_config: dict, controlnet: bool = False) -> str | None:
    """None when export/split_transformer.py reproduces this transformer, else the setting that
    prevents it (read from its config.json, before any model is loaded)."""
    if transformer_config.get("guidance_embeds"):
        return "guidance_embeds"
    if controlnet:
        return "a controlnet (its residuals enter the single graph)"
    if transformer_config.get("cross_attention_dim", 1) is None:
        return "a transformer without cross-attention"
    return None


def _read_json(path: Path) -> dict:
    return read_json_object(path, "fix or remove it")
