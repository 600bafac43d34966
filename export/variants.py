"""The SANA family as published: every checkpoint diffusers ships, by the settings that change
what the runtime must do (sampler, qk norm, positional embedding and its interpolation scale,
sample size, patch size, learned sigma, cross-attention heads, flow shift).

Values follow diffusers' scripts/convert_sana_to_diffusers.py (the script that wrote the
published `*_diffusers` folders): sample_size = px / 32; sincos positional embedding only at 2K
(interpolation 1.0) and 4K (2.0); qk_norm "rms_norm_across_heads" for Sana 1.5 and Sprint;
guidance embedding for Sprint (SCMScheduler, sigma_data 0.5); flow shift 6.0 at 4K, otherwise 3.0
(4.0 for the 0.6B 1024 px config, SANA_FACTS.md); patch size 1 and no learned sigma everywhere.

`full_transformer(name)` gives a variant's real width and depth (benchmarks, random weights);
`tiny_transformer(name)` keeps every non-width setting at a width that runs in milliseconds
(one 32-dim self-attention head, the published head dim, and the published cross-attention head
count at 2 dims each), so each variant exports and checks against its diffusers pipeline in CI.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import configs

QK_NORM = "rms_norm_across_heads"
SCM_SCHEDULER_CONFIG = {"_class_name": "SCMScheduler", "num_train_timesteps": 1000,
                        "prediction_type": "trigflow", "sigma_data": 0.5}


@dataclass(frozen=True)
class Variant:
    checkpoint: str  # the published diffusers folder
    size: int  # base resolution, px
    width: str  # "0.6b", "1.6b" or "4.8b": which full-size width and depth
    interpolation_scale: float | None = None
    qk_norm: str | None = None
    sprint: bool = False
    flow_shift: float = 3.0

    @property
    def pipeline(self) -> str:
        return "SanaSprintPipeline" if self.sprint else "SanaPipeline"


VARIANTS = {
    "sana-0.6b-512": Variant("Efficient-Large-Model/Sana_600M_512px_diffusers", 512, "0.6b"),
    "sana-0.6b-1024": Variant("Efficient-Large-Model/Sana_600M_1024px_diffusers", 1024, "0.6b", flow_shift=4.0),
    "sana-1.6b-512": Variant("Efficient-Large-Model/Sana_1600M_512px_diffusers", 512, "1.6b"),
    "sana-1.6b-1024": Variant("Efficient-Large-Model/Sana_1600M_1024px_diffusers", 1024, "1.6b"),
    "sana-1.6b-2k": Variant("Efficient-Large-Model/Sana_1600M_2Kpx_BF16_diffusers", 2048, "1.6b", interpolation_scale=1.0),
    "sana-1.6b-4k": Variant("Efficient-Large-Model/Sana_1600M_4Kpx_BF16_diffusers", 4096, "1.6b", interpolation_scale=2.0,
                            flow_shift=6.0),
    "sana1.5-1.6b": Variant("Efficient-Large-Model/SANA1.5_1.6B_1024px_diffusers", 1024, "1.6b", qk_norm=QK_NORM),
    "sana1.5-4.8b": Variant("Efficient-Large-Model/SANA1.5_4.8B_1024px_diffusers", 1024, "4.8b", qk_norm=QK_NORM),
    "sprint-0.6b": Variant("Efficient-Large-Model/Sana_Sprint_0.6B_1024px_diffusers", 1024, "0.6b", qk_norm=QK_NORM,
                           sprint=True),
    "sprint-1.6b": Variant("Efficient-Large-Model/Sana_Sprint_1.6B_1024px_diffusers", 1024, "1.6b", qk_norm=QK_NORM,
                           sprint=True),
}

_WIDTHS = {
    "0.6b": configs.SANA_600M_TRANSFORMER,
    "1.6b": configs.SANA_1600M_TRANSFORMER,
    "4.8b": dict(configs.SANA_1600M_TRANSFORMER, num_layers=60),
}


def _settings(variant: Variant) -> dict:
    settings = dict(sample_size=variant.size // 32, patch_size=1, out_channels=32,
                    interpolation_scale=variant.interpolation_scale, qk_norm=variant.qk_norm)
    if variant.sprint:
        settings["guidance_embeds"] = True
    return settings


def full_transformer(name: str) -> dict:
    """SanaTransformer2DModel kwargs at the published width and depth."""
    variant = VARIANTS[name]
    return dict(_WIDTHS[variant.width], **_settings(variant))


def tiny_transformer(name: str) -> dict:
    """SanaTransformer2DModel kwargs with the published non-width settings at a tiny width."""
    variant = VARIANTS[name]
    full = _WIDTHS[variant.width]
    cross_heads = full["num_cross_attention_heads"]
    return dict(configs.TINY_TRANSFORMER, num_attention_heads=1, attention_head_dim=full["attention_head_dim"],
                num_cross_attention_heads=cross_heads, cross_attention_head_dim=2,
                cross_attention_dim=full["attention_head_dim"], **_settings(variant))


def scheduler(name: str):
    """The variant's scheduler, as its published folder ships it."""
    from diffusers import DPMSolverMultistepScheduler, SCMScheduler

    variant = VARIANTS[name]
    if variant.sprint:
        return SCMScheduler.from_config(SCM_SCHEDULER_CONFIG)
    return DPMSolverMultistepScheduler.from_config({**configs.SANA_SCHEDULER_CONFIG, "flow_shift": variant.flow_shift})


def build_variant_pipeline(name: str, base, seed: int = 0):
    """A diffusers pipeline of variant `name` with random weights: the tiny transformer and the
    variant's scheduler, over `base`'s tokenizer, text encoder and VAE (a tiny SANA pipeline)."""
    import torch
    from diffusers import SanaPipeline, SanaSprintPipeline, SanaTransformer2DModel

    if name not in VARIANTS:
        from sana_edge.errors import UserError

        raise UserError(f"unknown variant '{name}'; choose one of {', '.join(VARIANTS)}")
    torch.manual_seed(seed)
    transformer = SanaTransformer2DModel(**tiny_transformer(name)).eval()
    cls = SanaSprintPipeline if VARIANTS[name].sprint else SanaPipeline
    return cls(tokenizer=base.tokenizer, text_encoder=base.text_encoder, vae=base.vae, transformer=transformer,
               scheduler=scheduler(name))


def tiny_controlnet(base_transformer, layers: int = 1, seed: int = 0):
    """A random SanaControlNetModel matching `base_transformer`'s width (the published controlnet's
    settings: same heads as its DiT, no positional embedding). diffusers zero-initialises its input
    and output projections, which would make every check pass trivially, so they are drawn too."""
    import torch
    from diffusers import SanaControlNetModel

    config = base_transformer.config
    torch.manual_seed(seed)
    controlnet = SanaControlNetModel(
        in_channels=config.in_channels, out_channels=config.out_channels,
        num_attention_heads=config.num_attention_heads, attention_head_dim=config.attention_head_dim,
        num_layers=layers, num_cross_attention_heads=config.num_cross_attention_heads,
        cross_attention_head_dim=config.cross_attention_head_dim, cross_attention_dim=config.cross_attention_dim,
        caption_channels=config.caption_channels, sample_size=config.sample_size,
        interpolation_scale=config.interpolation_scale,
    )
    with torch.no_grad():
        for module in [controlnet.input_block, *controlnet.controlnet_blocks]:
            torch.nn.init.normal_(module.weight, std=0.5)
            torch.nn.init.normal_(module.bias, std=0.1)
    return controlnet.eval()
