"""Which SANA architectures the runtime supports, checked from the checkpoint's config files before
any model (or torch) loads. Anything else is refused with one line naming the setting, instead of
exporting graphs that the runtime would sample wrongly."""

from __future__ import annotations

from pathlib import Path

from sana_edge.errors import UserError
from sana_edge.scheduler import FlowDPMSolverConfig
from sana_edge.scm_scheduler import SCMConfig

from .checkpoint import PIPELINE_KINDS, read_json_object

# SanaTransformer2DModel's settings in diffusers 0.42.1; a config with others comes from a model
# this runtime does not know.
TRANSFORMER_SETTINGS = {
    "in_channels", "out_channels", "num_attention_heads", "attention_head_dim", "num_layers",
    "num_cross_attention_heads", "cross_attention_head_dim", "cross_attention_dim", "caption_channels",
    "mlp_ratio", "dropout", "attention_bias", "sample_size", "patch_size", "norm_elementwise_affine", "norm_eps",
    "interpolation_scale", "guidance_embeds", "guidance_embeds_scale", "qk_norm", "timestep_scale",
}
QK_NORMS = (None, "rms_norm_across_heads")


def _config(folder: Path, what: str) -> dict:
    path = folder / "config.json" if (folder / "config.json").is_file() else folder / "scheduler_config.json"
    return read_json_object(path, f"re-download the checkpoint (its {what} config)")


def _refuse(setting: str, why: str) -> UserError:
    return UserError(f"unsupported architecture: {setting} ({why}); sana-edge cannot export this checkpoint")


def check_transformer(config: dict, latent_channels: int, sprint: bool) -> None:
    if config.get("_class_name", "SanaTransformer2DModel") != "SanaTransformer2DModel":
        raise _refuse(f"transformer class {config.get('_class_name')}", "sana-edge exports SanaTransformer2DModel")
    unknown = sorted(k for k in config if not k.startswith("_") and k not in TRANSFORMER_SETTINGS)
    if unknown:
        raise _refuse(f"transformer setting {unknown[0]}={config[unknown[0]]!r}",
                      "not a SanaTransformer2DModel setting of diffusers 0.42.1")
    if config.get("patch_size", 1) != 1:
        raise _refuse(f"transformer patch_size={config['patch_size']}", "the runtime samples 1x1 patches, as every published SANA")
    if config.get("qk_norm") not in QK_NORMS:
        raise _refuse(f"transformer qk_norm={config['qk_norm']!r}", "supported: none or 'rms_norm_across_heads'")
    if config.get("cross_attention_dim") is None:
        raise _refuse("transformer cross_attention_dim=None", "a SANA without caption cross-attention")
    in_channels = config.get("in_channels", 32)
    out_channels = config.get("out_channels") or in_channels
    if in_channels != latent_channels:
        raise _refuse(f"transformer in_channels={in_channels}", f"the VAE has {latent_channels} latent channels")
    if out_channels not in (in_channels, 2 * in_channels) or (sprint and out_channels != in_channels):
        raise _refuse(f"transformer out_channels={out_channels}",
                      "the velocity must have the latent channels (twice them with learned sigma, Sana only)")
    if sprint and not config.get("guidance_embeds", False):
        raise _refuse("a Sana-Sprint transformer with guidance_embeds=False", "SanaSprintPipeline feeds a guidance input")
    if not sprint and config.get("guidance_embeds", False):
        raise _refuse("transformer guidance_embeds=True in a SanaPipeline checkpoint",
                      "guidance-embedding transformers are Sana-Sprint models: use a SanaSprintPipeline folder")


def check_scheduler(config: dict, sprint: bool) -> None:
    name = config.get("_class_name")
    if sprint:
        if name != "SCMScheduler":
            raise _refuse(f"a Sana-Sprint checkpoint with scheduler {name} (Flow-DPM-Solver options)",
                          "Sprint samples with the SCMScheduler; use the scheduler the Sprint checkpoint ships")
        SCMConfig.from_diffusers(config)
        return
    if name != "DPMSolverMultistepScheduler":
        raise _refuse(f"scheduler {name}", "sana-edge samples Sana with Flow-DPM-Solver (DPMSolverMultistepScheduler)")
    FlowDPMSolverConfig.from_diffusers(config)


def check_controlnet(config: dict, transformer: dict, sprint: bool) -> None:
    if sprint:
        raise _refuse("a controlnet on a Sana-Sprint checkpoint", "diffusers 0.42 has no Sprint ControlNet pipeline")
    if config.get("_class_name") != "SanaControlNetModel":
        raise _refuse(f"controlnet class {config.get('_class_name')}", "--controlnet takes a SanaControlNetModel folder")
    width = lambda c: c.get("num_attention_heads", 70) * c.get("attention_head_dim", 32)  # noqa: E731
    for key, got, wanted in (("width", width(config), width(transformer)),
                             ("in_channels", config.get("in_channels", 32), transformer.get("in_channels", 32)),
                             ("caption_channels", config.get("caption_channels", 2304), transformer.get("caption_channels", 2304))):
        if got != wanted:
            raise _refuse(f"controlnet {key}={got}", f"its transformer has {wanted}")
    if transformer.get("timestep_scale", 1.0) != 1.0:
        raise _refuse(f"a controlnet with transformer timestep_scale={transformer['timestep_scale']}",
                      "SanaControlNetPipeline does not scale the timestep")


def check_architecture(source: Path, controlnet: Path | None = None) -> Path | None:
    """Refuse, before any work, a checkpoint (and controlnet) whose architecture the runtime lacks;
    returns the controlnet folder to export (`controlnet`, or a SanaControlNetPipeline's own)."""
    index = read_json_object(source / "model_index.json", "re-download the checkpoint")
    name = index.get("_class_name")
    if name not in PIPELINE_KINDS:
        raise _refuse(f"pipeline class {name}", f"supported: {', '.join(PIPELINE_KINDS)}")
    sprint = PIPELINE_KINDS[name] == "sprint"
    vae = _config(source / "vae", "VAE")
    if vae.get("_class_name", "AutoencoderDC") != "AutoencoderDC":
        raise _refuse(f"VAE class {vae.get('_class_name')}", "SANA's DC-AE is AutoencoderDC")
    transformer = _config(source / "transformer", "transformer")
    check_transformer(transformer, int(vae.get("latent_channels", 32)), sprint)
    check_scheduler(_config(source / "scheduler", "scheduler"), sprint)
    if controlnet is None and (source / "controlnet").is_dir() and "controlnet" in index:
        controlnet = source / "controlnet"
    if controlnet is not None:
        if not Path(controlnet).is_dir():
            raise UserError(f"--controlnet '{controlnet}' is not a folder; pass a diffusers SanaControlNetModel folder")
        check_controlnet(_config(Path(controlnet), "controlnet"), transformer, sprint)
    return Path(controlnet) if controlnet is not None else None
