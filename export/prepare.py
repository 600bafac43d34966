"""What an export will do, checked before any model (or torch) is loaded: options, checkpoint
folder, output folder, quantization recipe and calibration prompts, TensorRT availability."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sana_edge.errors import UserError
from sana_edge.components import SINGLE_GRAPH, SPLIT_GRAPH
from sana_edge.manifest import PRECISIONS

from .checkpoint import CHECKPOINT_CALIBRATION_PROMPTS, CHECKPOINT_QUANT_DEFAULTS, resolve_checkpoint
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
    flavor = None
    if options.engines is not None:
        from sana_edge.backends.trt_flavor import import_tensorrt

        flavor = import_tensorrt()  # fail before any work when no TensorRT is installed
        options.engines.check(32)
    source = resolve_checkpoint(options.checkpoint)
    check_out_dir(Path(options.out_dir), options.force, source=source)
    job = ExportJob(options, source, flavor=flavor, components=SINGLE_GRAPH)
    if options.split_transformer:
        blocker = split_blocker(_read_json(source / "transformer" / "config.json"))
        if blocker:
            log(f"transformer exported as one graph: the caption-K/V split does not cover {blocker}")
        else:
            job.components = SPLIT_GRAPH
    if options.quant is not None and options.quant.target == "openvino":
        job.target = "openvino"  # every precision: OpenVINO IR (sana_edge.quant.openvino_export)
    if options.precision in ("int8", "int4"):
        _prepare_quantization(job, log)
    return job


def _prepare_quantization(job: ExportJob, log) -> None:
    from sana_edge.quant.calibration import read_prompts
    from sana_edge.quant.configs import Calibration, QuantSettings, build_recipe

    options, source = job.options, job.source
    settings = options.quant or QuantSettings(target="tensorrt" if job.flavor is not None else "ort")
    if job.flavor is not None and settings.target != "tensorrt":
        raise UserError("TensorRT engines need graphs quantized for TensorRT; pass --target tensorrt (or omit --target)")
    defaults_file = source / CHECKPOINT_QUANT_DEFAULTS
    if defaults_file.is_file() and settings.text_encoder_bits is None:
        asked = _read_json(defaults_file).get(options.precision, {}).get("text_encoder_bits")
        if asked:
            settings = dataclasses.replace(settings, text_encoder_bits=int(asked))
            log(f"text encoder at {asked} bits: the checkpoint asks for it ({defaults_file.name}); "
                "--text-encoder-bits overrides")
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


def split_blocker(transformer_config: dict) -> str | None:
    """None when export/split_transformer.py reproduces this transformer, else the setting that
    prevents it (read from its config.json, before any model is loaded)."""
    if transformer_config.get("guidance_embeds"):
        return "guidance_embeds"
    if transformer_config.get("cross_attention_dim", 1) is None:
        return "a transformer without cross-attention"
    return None


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path} is not valid JSON ({type(exc).__name__}); fix or remove it") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} must hold a JSON object; fix or remove it")
    return data
