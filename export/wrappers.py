"""PyTorch modules that expose each declared component with exactly its declared inputs and
outputs (sana_edge.components names them here by `torch_wrapper`). They are what gets traced to
ONNX and what validation runs as the reference."""

from __future__ import annotations

import importlib

import torch


class TextEncoderWrapper(torch.nn.Module):
    def __init__(self, pipe):
        super().__init__()
        self.model = pipe.text_encoder

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


class TransformerWrapper(torch.nn.Module):
    def __init__(self, pipe):
        super().__init__()
        self.model = pipe.transformer

    def forward(self, latents, encoder_hidden_states, encoder_attention_mask, timestep):
        return self.model(
            latents, encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask, timestep=timestep, return_dict=False,
        )[0]


class DecoderWrapper(torch.nn.Module):
    def __init__(self, pipe):
        super().__init__()
        self.vae = pipe.vae

    def forward(self, latent):
        return self.vae.decode(latent, return_dict=False)[0]


def torch_module(spec, pipe) -> torch.nn.Module:
    """The declared wrapper of `spec` around the diffusers pipeline's module, in eval mode."""
    module_name, _, class_name = spec.torch_wrapper.partition(":")
    wrapper = getattr(importlib.import_module(module_name), class_name)
    return wrapper(pipe).eval()
