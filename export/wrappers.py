"""PyTorch modules that expose each declared component with exactly its declared inputs and
outputs (sana_edge.components names them here by `torch_wrapper`). They are what gets traced to
ONNX and what validation runs as the reference."""

from __future__ import annotations

import importlib
import inspect

import torch


class TextEncoderWrapper(torch.nn.Module):
    def __init__(self, pipe, spec=None):
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
