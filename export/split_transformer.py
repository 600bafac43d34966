"""The SANA transformer as two graphs: `caption_kv`, run once per generation, and
`transformer_step`, run at every denoising step.

The caption projection, its RMSNorm and every block's cross-attention K/V projections depend
only on the caption, not on the latents or the timestep, yet the single graph recomputes them at
each of the 20 steps. Here they run once; the step graph takes the stacked K/V as inputs.

Both modules reuse the diffusers model's own submodules (same weights, same math) and keep the
module paths of the single graph ("/model/transformer_blocks.N/attn2/...", "/model/time_embed/..."),
so the ONNX node names, and with them the quantization keep-float patterns, stay the same.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _mask_bias(mask: torch.Tensor, dtype) -> torch.Tensor:
    """(B, L) 1/0 mask -> (B, 1, 1, L) additive bias, as diffusers converts it (keep 0, drop -10000)."""
    return ((1 - mask.to(dtype)) * -10000.0)[:, None, None, :]


class CaptionProjection(torch.nn.Module):
    """One block's cross-attention K and V of the caption, (B, heads, L, head_dim) each."""

    def __init__(self, attn):
        super().__init__()
        self.to_k, self.to_v, self.norm_k, self.heads = attn.to_k, attn.to_v, attn.norm_k, attn.heads

    def forward(self, caption):
        key, value = self.to_k(caption), self.to_v(caption)
        if self.norm_k is not None:
            key = self.norm_k(key)
        batch = caption.shape[0]
        key = key.view(batch, -1, self.heads, key.shape[-1] // self.heads).transpose(1, 2)
        value = value.view(batch, -1, self.heads, value.shape[-1] // self.heads).transpose(1, 2)
        return key, value


class _CaptionBlock(torch.nn.Module):
    def __init__(self, block):
        super().__init__()
        self.attn2 = CaptionProjection(block.attn2)


class _CaptionModel(torch.nn.Module):
    def __init__(self, transformer):
        super().__init__()
        self.caption_projection = transformer.caption_projection
        self.caption_norm = transformer.caption_norm
        self.transformer_blocks = torch.nn.ModuleList(_CaptionBlock(b) for b in transformer.transformer_blocks)
        self.inner_dim = transformer.config.num_attention_heads * transformer.config.attention_head_dim

    def forward(self, encoder_hidden_states):
        caption = self.caption_projection(encoder_hidden_states)
        caption = self.caption_norm(caption.view(caption.shape[0], -1, self.inner_dim))
        pairs = [block.attn2(caption) for block in self.transformer_blocks]
        return torch.stack([k for k, _ in pairs]), torch.stack([v for _, v in pairs])


class CaptionKVWrapper(torch.nn.Module):
    """encoder_hidden_states -> (caption_keys, caption_values), each (layers, B, heads, L, head_dim)."""

    def __init__(self, pipe):
        super().__init__()
        self.model = _CaptionModel(pipe.transformer)

    def forward(self, encoder_hidden_states):
        return self.model(encoder_hidden_states)


class CachedCrossAttention(torch.nn.Module):
    """Cross-attention over precomputed caption K/V: diffusers' SanaAttnProcessor2_0 without
    the K/V projections."""

    def __init__(self, attn):
        super().__init__()
        self.to_q, self.norm_q, self.to_out, self.heads = attn.to_q, attn.norm_q, attn.to_out, attn.heads
        self.rescale_output_factor = attn.rescale_output_factor

    def forward(self, hidden_states, key, value, bias):
        query = self.to_q(hidden_states)
        if self.norm_q is not None:
            query = self.norm_q(query)
        batch = hidden_states.shape[0]
        query = query.view(batch, -1, self.heads, key.shape[-1]).transpose(1, 2)
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=bias, dropout_p=0.0, is_causal=False)
        out = out.transpose(1, 2).reshape(batch, -1, self.heads * key.shape[-1]).to(query.dtype)
        out = self.to_out[1](self.to_out[0](out))
        return out / self.rescale_output_factor


class _StepBlock(torch.nn.Module):
    """SanaTransformerBlock.forward with the cross-attention reading cached K/V."""

    def __init__(self, block):
        super().__init__()
        self.norm1, self.attn1, self.norm2, self.ff = block.norm1, block.attn1, block.norm2, block.ff
        self.attn2 = CachedCrossAttention(block.attn2)
        self.scale_shift_table = block.scale_shift_table

    def forward(self, hidden_states, key, value, bias, timestep, height, width):
        batch = hidden_states.shape[0]
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = (
            self.scale_shift_table[None] + timestep.reshape(batch, 6, -1)).chunk(6, dim=1)
        norm = self.norm1(hidden_states) * (1 + scale_msa) + shift_msa
        hidden_states = hidden_states + gate_msa * self.attn1(norm.to(hidden_states.dtype))
        hidden_states = self.attn2(hidden_states, key, value, bias) + hidden_states
        norm = self.norm2(hidden_states) * (1 + scale_mlp) + shift_mlp
        norm = norm.unflatten(1, (height, width)).permute(0, 3, 1, 2)
        ff = self.ff(norm).flatten(2, 3).permute(0, 2, 1)
        return hidden_states + gate_mlp * ff


class _StepModel(torch.nn.Module):
    def __init__(self, transformer):
        super().__init__()
        self.config = transformer.config
        self.patch_embed, self.time_embed = transformer.patch_embed, transformer.time_embed
        self.transformer_blocks = torch.nn.ModuleList(_StepBlock(b) for b in transformer.transformer_blocks)
        self.norm_out, self.scale_shift_table, self.proj_out = (
            transformer.norm_out, transformer.scale_shift_table, transformer.proj_out)

    def forward(self, latents, encoder_attention_mask, timestep, caption_keys, caption_values):
        batch, _, height, width = latents.shape
        p = self.config.patch_size
        hidden_states = self.patch_embed(latents)
        bias = _mask_bias(encoder_attention_mask, hidden_states.dtype)
        timestep, embedded = self.time_embed(timestep, batch_size=batch, hidden_dtype=hidden_states.dtype)
        for index, block in enumerate(self.transformer_blocks):
            hidden_states = block(hidden_states, caption_keys[index], caption_values[index], bias, timestep,
                                  height // p, width // p)
        hidden_states = self.proj_out(self.norm_out(hidden_states, embedded, self.scale_shift_table))
        # unpatchify, as SanaTransformer2DModel.forward
        hidden_states = hidden_states.reshape(batch, height // p, width // p, p, p, -1)
        hidden_states = hidden_states.permute(0, 5, 1, 3, 2, 4)
        return hidden_states.reshape(batch, -1, height, width)


class TransformerStepWrapper(torch.nn.Module):
    """(latents, encoder_attention_mask, timestep, caption_keys, caption_values) -> velocity."""

    def __init__(self, pipe):
        super().__init__()
        self.model = _StepModel(pipe.transformer)

    def forward(self, latents, encoder_attention_mask, timestep, caption_keys, caption_values):
        return self.model(latents, encoder_attention_mask, timestep, caption_keys, caption_values)
