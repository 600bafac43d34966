"""Full-size (random weights) export checks: minutes each, run with `make test-slow`."""

from __future__ import annotations

import pytest

from sana_edge.components import DECODER, TRANSFORMER

pytestmark = pytest.mark.slow


def _export_and_validate(spec, module, dims, tmp_path):
    from sana_edge.export.onnx_export import count_eps, export_component
    from sana_edge.export.validate import reference_outputs, validate_component
    import onnx

    references = reference_outputs(spec, module, dims)
    path = tmp_path / spec.file
    export_component(spec, module, dims, path)
    report = validate_component(spec, path, references, "fp32")
    assert all(r["finite"] and r["cosine"] >= 0.9999 for r in report)
    assert count_eps(onnx.load(str(path), load_external_data=False)) >= 1
    return path


def test_sana_600m_transformer_exports_with_external_data(tmp_path):
    import torch
    from diffusers import SanaTransformer2DModel

    from sana_edge.export import configs
    from sana_edge.export.wrappers import torch_module

    torch.manual_seed(0)
    transformer = SanaTransformer2DModel(**configs.SANA_600M_TRANSFORMER).eval()
    module = torch_module(TRANSFORMER, type("Pipe", (), {"transformer": transformer})())
    dims = {"latent_channels": 32, "out_channels": 32, "caption_channels": 2304}
    _export_and_validate(TRANSFORMER, module, dims, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["transformer.onnx", "transformer.onnx.data"]


def test_dcae_f32c32_decoder_exports(tmp_path):
    import torch
    from diffusers import AutoencoderDC

    from sana_edge.export import configs
    from sana_edge.export.wrappers import torch_module

    torch.manual_seed(0)
    vae = AutoencoderDC(**configs.DCAE_F32C32).eval()
    module = torch_module(DECODER, type("Pipe", (), {"vae": vae})())
    _export_and_validate(DECODER, module, {"latent_channels": 32}, tmp_path)
