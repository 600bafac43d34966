"""Locate, check and load a diffusers-format SANA checkpoint (local folder or hub id)."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

from sana_edge.errors import UserError

REQUIRED_SUBFOLDERS = ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")
# Optional, in a checkpoint folder: prompts of the model's domain, used for int8 calibration
# when --calib-prompts is not given.
CHECKPOINT_CALIBRATION_PROMPTS = "calibration_prompts.txt"
# Optional: per-precision quantization defaults the model asks for, e.g.
# {"int4": {"text_encoder_bits": 8}}; command-line options still win.
CHECKPOINT_QUANT_DEFAULTS = "sana_edge_quantization.json"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def default_complex_human_instruction(pipeline_cls) -> list[str]:
    """The CHI preamble exactly as the installed diffusers SanaPipeline defines it."""
    return list(inspect.signature(pipeline_cls.__call__).parameters["complex_human_instruction"].default)


def resolve_checkpoint(source: str | Path) -> Path:
    """Return a local folder for `source`: the shipped model for its name, a local path, or a hub
    id downloaded to the hub cache."""
    from sana_edge.default_model import is_builtin, shipped_checkpoint

    if is_builtin(source):
        source = shipped_checkpoint()
    path = Path(source).expanduser()
    if not path.exists() and _HUB_ID.match(str(source)):
        try:
            from huggingface_hub import snapshot_download

            path = Path(snapshot_download(str(source)))
        except Exception as exc:  # offline, unknown repo, auth...
            raise UserError(
                f"checkpoint '{source}' is not a local folder and could not be downloaded from the hub "
                f"({type(exc).__name__}); pass the path of a diffusers-format SANA folder"
            ) from None
    check_sana_folder(path)
    return path


def check_sana_folder(path: Path) -> dict:
    """Raise UserError unless `path` looks like a diffusers SANA checkpoint; return model_index."""
    if not path.is_dir():
        raise UserError(f"checkpoint folder '{path}' does not exist; pass a diffusers-format SANA folder")
    index_file = path / "model_index.json"
    if not index_file.is_file():
        raise UserError(
            f"'{path}' is not a diffusers checkpoint (no model_index.json); "
            "pass a SANA folder or make one with `sana-edge init-tiny DIR`"
        )
    index = json.loads(index_file.read_text())
    if "Sana" not in str(index.get("_class_name", "")):
        raise UserError(
            f"'{path}' holds a {index.get('_class_name')} checkpoint, not SANA; pass a SanaPipeline folder"
        )
    missing = [name for name in REQUIRED_SUBFOLDERS if not (path / name).is_dir()]
    if missing:
        raise UserError(f"SANA checkpoint '{path}' lacks the folder(s) {', '.join(missing)}; re-download it")
    return index


def load_sana_pipeline(path: Path):
    """Load the pipeline in fp32 on CPU, with the text encoder on eager attention (soft-capping)."""
    import torch
    from diffusers import SanaPipeline
    from transformers import AutoModel

    text_encoder = AutoModel.from_pretrained(
        path / "text_encoder", dtype=torch.float32, attn_implementation="eager"
    )
    pipe = SanaPipeline.from_pretrained(path, text_encoder=text_encoder, dtype=torch.float32)
    for module in (pipe.transformer, pipe.vae, pipe.text_encoder):
        module.eval()
    return pipe


def model_values(pipe):
    """The checkpoint config values the runtime reads (recorded in the manifest)."""
    from diffusers import SanaPipeline

    from sana_edge.manifest import ModelValues

    transformer, vae = pipe.transformer.config, pipe.vae.config
    return ModelValues(
        latent_channels=int(transformer.in_channels),
        out_channels=int(transformer.out_channels or transformer.in_channels),
        caption_channels=int(transformer.caption_channels),
        vocab_size=int(pipe.text_encoder.config.vocab_size),
        vae_scale_factor=int(2 ** (len(vae.decoder_block_out_channels) - 1)),
        vae_scaling_factor=float(vae.scaling_factor),
        sample_size=int(transformer.sample_size),
        timestep_scale=float(getattr(transformer, "timestep_scale", 1.0)),
        flow_shift=float(pipe.scheduler.config.flow_shift),
        max_sequence_length=300,
        complex_human_instruction=tuple(default_complex_human_instruction(SanaPipeline)),
        decoder_block_out_channels=tuple(int(c) for c in vae.decoder_block_out_channels),
        transformer_inner_dim=int(transformer.num_attention_heads * transformer.attention_head_dim),
        mlp_ratio=float(transformer.mlp_ratio),
        transformer_layers=int(transformer.num_layers),
        cross_attention_heads=int(transformer.num_cross_attention_heads or 1),
        cross_attention_head_dim=int(transformer.cross_attention_head_dim or 1),
    )
