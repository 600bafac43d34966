"""PyTorch modules that expose each declared component with exactly its declared inputs and
outputs (sana_edge.components names them here by `torch_wrapper`). They are what gets traced to
ONNX and what validation runs as the reference."""

from __future__ import annotations

import importlib
import inspect

import torch


class TextEncoderWrapper(torch.nn.Module):
    """Gemma-2 over new tokens after a past K/V cache (stacked per layer on axis 0), through
    transformers' own modules and DynamicCache, which the TorchScript exporter traces with a
    dynamic past length (0 included). The masks are built here, as transformers builds them for
    eager attention (causal, padding, and the sliding window of the local layers), because its mask
    helpers would read the past length as a Python int and bake it into the graph."""

    def __init__(self, pipe):
        super().__init__()
        self.model = pipe.text_encoder  # same attribute name as before: same ONNX node names

    def forward(self, input_ids, attention_mask, past_keys, past_values):
        from transformers import DynamicCache

        config = self.model.config
        past = past_keys.shape[3]
        cache = DynamicCache([(past_keys[i], past_values[i]) for i in range(config.num_hidden_layers)])
        positions = (torch.arange(input_ids.shape[1], device=input_ids.device) + past).unsqueeze(0)
        masks = _additive_masks(positions[0], attention_mask, config.sliding_window, self.model.embed_tokens.weight.dtype)
        out = self.model(input_ids=input_ids, attention_mask=masks, position_ids=positions, cache=cache, use_cache=True)
        layers = out.cache.layers
        new_keys = torch.stack([layer.keys[:, :, past:] for layer in layers])
        new_values = torch.stack([layer.values[:, :, past:] for layer in layers])
        return out.last_hidden_state, new_keys, new_values


def _additive_masks(positions, attention_mask, sliding_window, dtype) -> dict:
    """{"full_attention", "sliding_attention"} -> (batch, 1, new, past + new) additive masks: a query
    at position p sees keys j <= p that the padding mask keeps (and, in the sliding-window layers,
    p - j < window), with the dtype's minimum elsewhere, as transformers' eager masks."""
    keys = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    causal = keys[None, :] <= positions[:, None]
    allowed = causal[None, None] & attention_mask[:, None, None, :].bool()
    windowed = allowed & (positions[:, None] - keys[None, :] < sliding_window)[None, None]

    def additive(keep):
        return torch.zeros(keep.shape, dtype=dtype, device=keep.device).masked_fill(~keep, torch.finfo(dtype).min)

    return {"full_attention": additive(allowed), "sliding_attention": additive(windowed)}


class LegacyTextEncoderWrapper(torch.nn.Module):
    """The full-sequence text encoder of exports made before the prefix cache (and the reference
    the cached path is tested against): diffusers' call, ids and padding mask in, hidden states out."""

    def __init__(self, pipe):
        super().__init__()
        self.model = pipe.text_encoder

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


class TransformerWrapper(torch.nn.Module):
    """The DiT with the inputs its declaration gives this model: `guidance` for guidance-embedding
    models (Sana-Sprint), `controlnet_block_samples` for exports with a controlnet."""

    def __init__(self, pipe, spec=None):
        super().__init__()
        self.model = pipe.transformer
        self.input_names = spec.input_names if spec is not None else ["latents", "encoder_hidden_states",
                                                                        "encoder_attention_mask", "timestep"]

    def forward(self, *args):
        feeds = dict(zip(self.input_names, args))
        samples = feeds.get("controlnet_block_samples")
        if samples is not None:  # (blocks, batch, h, w, dim) -> per block (batch, h*w, dim), as diffusers adds them
            samples = tuple(block.flatten(1, 2) for block in samples.unbind(0))
        return self.model(
            feeds["latents"], encoder_hidden_states=feeds["encoder_hidden_states"],
            encoder_attention_mask=feeds["encoder_attention_mask"], timestep=feeds["timestep"],
            guidance=feeds.get("guidance"), controlnet_block_samples=samples, return_dict=False,
        )[0]


class ControlNetWrapper(torch.nn.Module):
    """SanaControlNetModel -> its block residuals stacked as (blocks, batch, h, w, dim)."""

    def __init__(self, pipe, spec=None):
        super().__init__()
        self.model = pipe.controlnet

    def forward(self, latents, encoder_hidden_states, encoder_attention_mask, timestep, controlnet_cond,
                conditioning_scale):
        samples = self.model(
            latents, encoder_hidden_states=encoder_hidden_states, encoder_attention_mask=encoder_attention_mask,
            timestep=timestep, controlnet_cond=controlnet_cond, conditioning_scale=conditioning_scale,
            return_dict=False,
        )[0]
        batch, _, height, width = latents.shape
        return torch.stack(samples).unflatten(2, (height, width))


class DecoderWrapper(torch.nn.Module):
    def __init__(self, pipe, spec=None):
        super().__init__()
        self.vae = pipe.vae

    def forward(self, latent):
        return self.vae.decode(latent, return_dict=False)[0]


class EncoderWrapper(torch.nn.Module):
    """DC-AE encoder: pixels in [-1, 1] -> latents before the VAE scaling factor (untiled)."""

    def __init__(self, pipe, spec=None):
        super().__init__()
        self.vae = pipe.vae

    def forward(self, image):
        return self.vae.encode(image, return_dict=False)[0]


def torch_module(spec, pipe) -> torch.nn.Module:
    """The declared wrapper of `spec` (resolved for the model) around the pipeline's module, in eval mode."""
    module_name, _, class_name = spec.torch_wrapper.partition(":")
    wrapper = getattr(importlib.import_module(module_name), class_name)
    takes_spec = "spec" in inspect.signature(wrapper.__init__).parameters  # wrappers whose inputs vary by model
    return (wrapper(pipe, spec) if takes_spec else wrapper(pipe)).eval()
