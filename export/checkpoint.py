"""Locate, check and load a diffusers-format SANA checkpoint (local folder or hub id)."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

from sana_edge.errors import UserError

REQUIRED_SUBFOLDERS = ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")
WEIGHT_SUBFOLDERS = ("transformer", "vae", "text_encoder")
PICKLE_PATTERNS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")
# Optional, in a checkpoint folder: prompts of the model's domain, used for int8 calibration
# when --calib-prompts is not given.
CHECKPOINT_CALIBRATION_PROMPTS = "calibration_prompts.txt"
# Optional: per-precision quantization defaults the model asks for, e.g.
# {"int4": {"text_encoder_bits": 8}}; command-line options still win.
CHECKPOINT_QUANT_DEFAULTS = "sana_edge_quantization.json"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def read_json_object(path: Path, fix: str = "re-download the checkpoint") -> dict:
    """A JSON object from `path`, or a one-line UserError naming the file, the defect and `fix`."""
    if not path.is_file():
        raise UserError(f"checkpoint file '{path}' is missing; {fix}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise UserError(f"'{path}' is not UTF-8 text; {fix}") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"'{path}' is not valid JSON ({exc.msg}, line {exc.lineno}); {fix}") from None
    except OSError as exc:
        raise UserError(f"'{path}' cannot be read ({type(exc).__name__}); {fix}") from None
    if not isinstance(data, dict):
        raise UserError(f"'{path}' must hold a JSON object, not {type(data).__name__}; {fix}")
    return data


def default_complex_human_instruction(pipeline_cls) -> list[str]:
    """The CHI preamble exactly as the installed diffusers SanaPipeline defines it."""
    return list(inspect.signature(pipeline_cls.__call__).parameters["complex_human_instruction"].default)


def resolve_checkpoint(source: str | Path, allow_pickle: bool = False) -> Path:
    """Return a local folder for `source`: the shipped model for its name, a local path, or a hub
    id downloaded to the hub cache."""
    from sana_edge.default_model import is_builtin, shipped_checkpoint

    if is_builtin(source):
        source = shipped_checkpoint()
    path = Path(source).expanduser()
    if not path.exists() and _HUB_ID.match(str(source)):
        try:
            from huggingface_hub import snapshot_download

            # Pickle weights are not even downloaded unless allowed (they would be refused anyway).
            path = Path(snapshot_download(str(source), ignore_patterns=None if allow_pickle else list(PICKLE_PATTERNS)))
        except Exception as exc:  # offline, unknown repo, auth...
            raise UserError(
                f"checkpoint '{source}' is not a local folder and could not be downloaded from the hub "
                f"({type(exc).__name__}); pass the path of a diffusers-format SANA folder"
            ) from None
    check_sana_folder(path, allow_pickle)
    return path


def check_sana_folder(path: Path, allow_pickle: bool = False) -> dict:
    """Raise UserError unless `path` looks like a diffusers SANA checkpoint whose files all parse
    (no torch: this runs before the build side loads); return model_index."""
    if not path.exists():
        raise UserError(f"checkpoint folder '{path}' does not exist; pass a diffusers-format SANA folder")
    if not path.is_dir():
        raise UserError(f"checkpoint '{path}' is a file, not a folder; pass a diffusers-format SANA folder")
    index_file = path / "model_index.json"
    if not index_file.is_file():
        raise UserError(
            f"'{path}' is not a diffusers checkpoint (no model_index.json); "
            "pass a SANA folder or make one with `sana-edge init-tiny DIR`"
        )
    index = read_json_object(index_file)
    if "Sana" not in str(index.get("_class_name", "")):
        raise UserError(
            f"'{path}' holds a {index.get('_class_name')} checkpoint, not SANA; pass a SanaPipeline folder"
        )
    missing = [name for name in REQUIRED_SUBFOLDERS if not (path / name).is_dir()]
    if missing:
        raise UserError(f"SANA checkpoint '{path}' lacks the folder(s) {', '.join(missing)}; re-download it")
    for name in WEIGHT_SUBFOLDERS:
        read_json_object(path / name / "config.json")
        check_weight_files(path / name, allow_pickle)
    read_json_object(path / "scheduler" / "scheduler_config.json")
    for optional in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (path / "tokenizer" / optional).exists():
            read_json_object(path / "tokenizer" / optional)
    return index


# model_index.json pipeline class -> the sana-edge sampler that runs it.
PIPELINE_KINDS = {"SanaPipeline": "sana", "SanaSprintPipeline": "sprint", "SanaControlNetPipeline": "sana"}


def check_weight_files(folder: Path, allow_pickle: bool) -> None:
    """Weights must be safetensors (pickle files can run code when loaded) with intact headers."""
    safetensors = sorted(folder.glob("*.safetensors"))
    pickles = sorted(p for pattern in PICKLE_PATTERNS for p in folder.glob(pattern))
    if not safetensors and not pickles:
        raise UserError(f"'{folder}' holds no weights (*.safetensors); re-download the checkpoint")
    if not safetensors and not allow_pickle:
        raise UserError(
            f"'{folder}' holds pickle weights only ({pickles[0].name}), which can run code when loaded; convert them "
            "to safetensors, or pass --allow-pickle if you trust this checkpoint"
        )
    for file in safetensors:
        check_safetensors(file)


def check_safetensors(path: Path) -> None:
    """The file's header (u64 length + JSON) and that every tensor's bytes lie inside the file:
    catches truncated and corrupt files before torch is imported."""
    size = path.stat().st_size
    problem = None
    with open(path, "rb") as handle:
        head = handle.read(8)
        length = int.from_bytes(head, "little") if len(head) == 8 else -1
        if not 2 <= length <= min(size - 8, 100 << 20):
            problem = "no valid header"
        else:
            try:
                header = json.loads(handle.read(length).decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                header = None
            problem = "an unreadable header" if not isinstance(header, dict) else _tensor_problem(header, size - 8 - length)
    if problem:
        raise UserError(f"weights file '{path}' is damaged or truncated ({problem}); re-download the checkpoint")


def _tensor_problem(header: dict, data_bytes: int) -> str | None:
    end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)
                and 0 <= offsets[0] <= offsets[1]):
            return f"tensor {name!r} has no valid offsets"
        end = max(end, offsets[1])
    if end > data_bytes:
        return f"the tensors need {end} bytes, the file holds {data_bytes}"
    return None


def quiet_build_libraries() -> None:
    """No progress bars or advice from diffusers/transformers on stderr (the exporter logs its own
    steps); their warnings about the checkpoint itself still show."""
    import os

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()


def load_sana_pipeline(path: Path, allow_pickle: bool = False):
    """Load the pipeline in fp32 on CPU, with the text encoder on eager attention (soft-capping).
    Safetensors only unless `allow_pickle`; a checkpoint the libraries cannot load is one line."""


def load_sana_pipeline(path: Path, controlnet: Path | None = None, allow_pickle: bool = False):
    """Load the pipeline in fp32 on CPU, with the text encoder on eager attention (soft-capping):
    the class its model_index names (SanaPipeline or SanaSprintPipeline), and `controlnet` (a
    SanaControlNetModel folder, or the checkpoint's own controlnet/) as `pipe.controlnet`.
    Safetensors only unless `allow_pickle`; a checkpoint the libraries cannot load is one line."""
    import torch
    from transformers import AutoModel

    import diffusers

    index = read_json_object(path / "model_index.json")
    name = index.get("_class_name") if index.get("_class_name") in PIPELINE_KINDS else "SanaPipeline"
    quiet_build_libraries()
    safetensors_only = None if allow_pickle else True
    try:
        text_encoder = AutoModel.from_pretrained(
            path / "text_encoder", dtype=torch.float32, attn_implementation="eager", use_safetensors=safetensors_only
        )
        # low_cpu_mem_usage=False: what diffusers falls back to without `accelerate`, minus its warning.
        pipe = getattr(diffusers, name).from_pretrained(path, text_encoder=text_encoder, dtype=torch.float32,
                                                        use_safetensors=safetensors_only, low_cpu_mem_usage=False)
        if controlnet is not None:
            pipe.controlnet = diffusers.SanaControlNetModel.from_pretrained(
                controlnet, dtype=torch.float32, use_safetensors=safetensors_only, low_cpu_mem_usage=False)
    except Exception as exc:  # diffusers/transformers/safetensors raise many types for a bad checkpoint
        reason = " ".join(str(exc).split())[:200]
        raise UserError(f"cannot load the checkpoint '{path}' ({type(exc).__name__}: {reason}); check or "
                        "re-download it") from None
    if getattr(pipe, "controlnet", None) is not None:
        pipe.controlnet.eval()
    else:
        pipe.controlnet = None
    for module in (pipe.transformer, pipe.vae, pipe.text_encoder):
        module.eval()
    return pipe


def _call_default(pipeline_cls, name: str):
    return inspect.signature(pipeline_cls.__call__).parameters[name].default


def _transformer_value(config, name: str):
    """A transformer config value, or the constructor's default where the config predates it
    (configs saved by older diffusers have no `guidance_embeds`)."""
    from diffusers import SanaTransformer2DModel

    if hasattr(config, name):
        return getattr(config, name)
    return inspect.signature(SanaTransformer2DModel.__init__).parameters[name].default


def model_values(pipe):
    """The checkpoint config values the runtime reads (recorded in the manifest), with the
    sampler's defaults taken from the installed diffusers pipeline's own call signature."""
    from diffusers import SanaPipeline, SanaSprintPipeline

    from sana_edge.manifest import ModelValues

    transformer, vae, text = pipe.transformer.config, pipe.vae.config, pipe.text_encoder.config
    sprint = isinstance(pipe, SanaSprintPipeline)
    cls = SanaSprintPipeline if sprint else SanaPipeline
    sprint_values = {}
    if sprint:
        sprint_values = dict(
            sigma_data=float(pipe.scheduler.config.sigma_data),
            max_timesteps=float(_call_default(cls, "max_timesteps")),
            intermediate_timesteps=float(_call_default(cls, "intermediate_timesteps")),
        )
    controlnet = getattr(pipe, "controlnet", None)
    return ModelValues(
        pipeline="sprint" if sprint else "sana",
        default_steps=int(_call_default(cls, "num_inference_steps")),
        default_guidance=float(_call_default(cls, "guidance_scale")),
        guidance_embeds=bool(_transformer_value(transformer, "guidance_embeds")),
        guidance_embeds_scale=float(_transformer_value(transformer, "guidance_embeds_scale")),
        controlnet_layers=int(controlnet.config.num_layers) if controlnet is not None else 0,
        encoder_block_out_channels=tuple(int(c) for c in vae.encoder_block_out_channels),
        **sprint_values,
        latent_channels=int(transformer.in_channels),
        out_channels=int(transformer.out_channels or transformer.in_channels),
        caption_channels=int(transformer.caption_channels),
        vocab_size=int(pipe.text_encoder.config.vocab_size),
        vae_scale_factor=int(2 ** (len(vae.decoder_block_out_channels) - 1)),
        vae_scaling_factor=float(vae.scaling_factor),
        sample_size=int(transformer.sample_size),
        timestep_scale=float(getattr(transformer, "timestep_scale", 1.0)),
        flow_shift=float(getattr(pipe.scheduler.config, "flow_shift", 3.0)),  # FrozenDict or namespace (optimum import)
        max_sequence_length=300,
        complex_human_instruction=tuple(default_complex_human_instruction(cls)),
        decoder_block_out_channels=tuple(int(c) for c in vae.decoder_block_out_channels),
        transformer_inner_dim=int(transformer.num_attention_heads * transformer.attention_head_dim),
        mlp_ratio=float(transformer.mlp_ratio),
        text_layers=int(text.num_hidden_layers),
        text_kv_heads=int(text.num_key_value_heads),
        text_head_dim=int(getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads),
        transformer_layers=int(transformer.num_layers),
        cross_attention_heads=int(transformer.num_cross_attention_heads or 1),
        cross_attention_head_dim=int(transformer.cross_attention_head_dim or 1),
    )
