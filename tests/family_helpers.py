"""Test helpers for the SANA family tests: diffusers' per-step noise fed from arrays, a numpy
session over a torch module, images as int arrays."""

from __future__ import annotations

import contextlib

import numpy as np


@contextlib.contextmanager
def fed_randn(noises, *modules):
    """Make diffusers' `randn_tensor` in `modules` return `noises` (numpy arrays) in order."""
    import torch

    queue = [torch.from_numpy(np.ascontiguousarray(n)) for n in noises]
    originals = [m.randn_tensor for m in modules]

    def fake(shape, **kwargs):
        tensor = queue.pop(0)
        assert tuple(tensor.shape) == tuple(shape), (tensor.shape, shape)
        return tensor

    for module in modules:
        module.randn_tensor = fake
    try:
        yield queue
    finally:
        for module, original in zip(modules, originals):
            module.randn_tensor = original


class TorchSession:
    """The backend session contract over a torch module taking the declared inputs by name."""

    def __init__(self, module, input_names, output_name):
        self.module, self.input_names, self.output_name = module, list(input_names), output_name

    def run(self, feeds):
        import torch

        with torch.no_grad():
            out = self.module(*(torch.from_numpy(np.asarray(feeds[n])) for n in self.input_names))
        return {self.output_name: out.numpy()}


def pixels(image) -> np.ndarray:
    return np.asarray(image).astype(np.int16)


def noise(shape, seed, count=None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    full = shape if count is None else (count, *shape)
    return rng.standard_normal(full).astype(np.float32)
