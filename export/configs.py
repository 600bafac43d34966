"""Architecture configs for the SANA components, tiny (tests, demo) and full size (benchmarks).

Full-size values follow SANA_FACTS.md (Sana-0.6B / 1.6B DiT, DC-AE f32c32, Gemma-2-2B).
Tiny values keep every structural feature of the real classes (linear attention, Mix-FFN,
cross-attention, 6-stage 32x DC-AE with EfficientViT stages, Gemma-2 soft-capping) at a
size that builds and runs in well under a second on a CPU.
"""

from __future__ import annotations

# Sana's scheduler as shipped with the diffusers checkpoints: Flow-DPM-Solver.
SANA_SCHEDULER_CONFIG = {
    "_class_name": "DPMSolverMultistepScheduler",
    "algorithm_type": "dpmsolver++",
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "beta_start": 0.0001,
    "dynamic_thresholding_ratio": 0.995,
    "euler_at_final": False,
    "final_sigmas_type": "zero",
    "flow_shift": 3.0,
    "lower_order_final": True,
    "num_train_timesteps": 1000,
    "prediction_type": "flow_prediction",
    "sample_max_value": 1.0,
    "solver_order": 2,
    "solver_type": "midpoint",
    "steps_offset": 0,
    "thresholding": False,
    "timestep_spacing": "linspace",
    "use_flow_sigmas": True,
    "use_karras_sigmas": False,
    "use_lu_lambdas": False,
    "variance_type": None,
}

DCAE_STAGE_TYPES = ("ResBlock",) * 3 + ("EfficientViTBlock",) * 3

# --- full size -----------------------------------------------------------------------------

SANA_600M_TRANSFORMER = dict(
    in_channels=32, out_channels=32, num_attention_heads=36, attention_head_dim=32,
    num_layers=28, num_cross_attention_heads=16, cross_attention_head_dim=72,
    cross_attention_dim=1152, caption_channels=2304, mlp_ratio=2.5, sample_size=32,
    patch_size=1, norm_elementwise_affine=False, norm_eps=1e-6,
)

SANA_1600M_TRANSFORMER = dict(
    SANA_600M_TRANSFORMER, num_attention_heads=70, num_layers=20,
    num_cross_attention_heads=20, cross_attention_head_dim=112, cross_attention_dim=2240,
)

DCAE_F32C32 = dict(
    in_channels=3, latent_channels=32, attention_head_dim=32,
    encoder_block_types=DCAE_STAGE_TYPES, decoder_block_types=DCAE_STAGE_TYPES,
    encoder_block_out_channels=(128, 256, 512, 512, 1024, 1024),
    decoder_block_out_channels=(128, 256, 512, 512, 1024, 1024),
    encoder_layers_per_block=(2, 2, 2, 3, 3, 3), decoder_layers_per_block=(3, 3, 3, 3, 3, 3),
    encoder_qkv_multiscales=((), (), (), (5,), (5,), (5,)),
    decoder_qkv_multiscales=((), (), (), (5,), (5,), (5,)),
    upsample_block_type="interpolate", downsample_block_type="Conv",
    decoder_norm_types="rms_norm", decoder_act_fns="silu", scaling_factor=0.41407,
)

GEMMA2_2B = dict(
    vocab_size=256000, hidden_size=2304, intermediate_size=9216, num_hidden_layers=26,
    num_attention_heads=8, num_key_value_heads=4, head_dim=256, max_position_embeddings=8192,
    sliding_window=4096, final_logit_softcapping=30.0, attn_logit_softcapping=50.0,
    query_pre_attn_scalar=256, pad_token_id=0, eos_token_id=1, bos_token_id=2,
)

# --- tiny ----------------------------------------------------------------------------------

TINY_CAPTION_CHANNELS = 32

TINY_TRANSFORMER = dict(
    in_channels=32, out_channels=32, num_attention_heads=2, attention_head_dim=8,
    num_layers=2, num_cross_attention_heads=2, cross_attention_head_dim=8,
    cross_attention_dim=16, caption_channels=TINY_CAPTION_CHANNELS, mlp_ratio=2.5,
    # sample_size is the latent size at the checkpoint's base resolution (32 -> 1024 px)
    sample_size=32, patch_size=1, norm_elementwise_affine=False, norm_eps=1e-6,
)

TINY_DCAE = dict(
    DCAE_F32C32, attention_head_dim=8,
    encoder_block_out_channels=(8, 8, 16, 16, 32, 32),
    decoder_block_out_channels=(8, 8, 16, 16, 32, 32),
    encoder_layers_per_block=(1, 1, 1, 1, 1, 1), decoder_layers_per_block=(1, 1, 1, 1, 1, 1),
)

TINY_GEMMA2 = dict(
    GEMMA2_2B, vocab_size=1024, hidden_size=TINY_CAPTION_CHANNELS, intermediate_size=64,
    num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=16,
    max_position_embeddings=2048, sliding_window=2048, query_pre_attn_scalar=16,
)

# --- mid size: the full Sana-0.6B width with a few layers (quantization fidelity checks) -----

MID_TRANSFORMER = dict(SANA_600M_TRANSFORMER, num_layers=4)
MID_GEMMA2 = dict(GEMMA2_2B, vocab_size=1024, num_hidden_layers=2)

# The same for Sana-Sprint (qk norm, guidance embedding; SCMScheduler): its fidelity rows.
MID_SPRINT_TRANSFORMER = dict(MID_TRANSFORMER, qk_norm="rms_norm_across_heads", guidance_embeds=True)

PRESETS = {
    "tiny": dict(transformer=TINY_TRANSFORMER, vae=TINY_DCAE, text_encoder=TINY_GEMMA2),
    "mid": dict(transformer=MID_TRANSFORMER, vae=TINY_DCAE, text_encoder=MID_GEMMA2),
    "mid-sprint": dict(transformer=MID_SPRINT_TRANSFORMER, vae=TINY_DCAE, text_encoder=MID_GEMMA2, sprint=True),
    # Full-size architectures with random weights (benchmarks.gpu_suite builds them on the GPU machine).
    "sana-0.6b": dict(transformer=SANA_600M_TRANSFORMER, vae=DCAE_F32C32, text_encoder=GEMMA2_2B),
    "sana-1.6b": dict(transformer=SANA_1600M_TRANSFORMER, vae=DCAE_F32C32, text_encoder=GEMMA2_2B),
}
TOKENIZER_VOCAB = 1024  # the trained tokenizer's pieces; a larger embedding table just has unused rows
