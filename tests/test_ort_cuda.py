"""The ort-cuda backend on CPU-only CI: IO binding through real ORT on the CPU device (same image as
the plain backend), the copies a generation makes counted through a fake device (tests/fake_ort),
provider options, device-memory planning and `--backend auto`, with fake providers and NVML."""

from __future__ import annotations

import numpy as np
import pytest
from fake_ort import FakeOrt

from sana_edge.backends import get_backend, nvml
from sana_edge.backends import onnxruntime_backend as ort_backend
from sana_edge.backends.ort_cuda import BoundSteps, DeviceMemory, OrtCudaBackend
from sana_edge.errors import UserError
from sana_edge.manifest import load_manifest
from sana_edge.pipeline import SanaEdgePipeline

GiB = 1 << 30
CUDA = ["CUDAExecutionProvider", "CPUExecutionProvider"]


def _generate(pipe, **kwargs):
    return pipe.generate("a red circle", negative_prompt="", height=64, width=64, steps=4, seed=3, **kwargs)


@pytest.mark.parametrize("export", ["tiny_export", "tiny_single_export"])
def test_io_binding_on_the_cpu_device_draws_the_plain_image(export, request):
    """The bound path (K/V or embeddings resident, latents updated in place) is the same math."""
    root = request.getfixturevalue(export)
    plain = _generate(SanaEdgePipeline.from_export(root))
    bound = _generate(SanaEdgePipeline.from_export(root, backend="ort-cuda", device="cpu"))
    np.testing.assert_allclose(bound.latents, plain.latents, rtol=0, atol=1e-6)
    assert np.array_equal(np.asarray(bound.image), np.asarray(plain.image))


def _bound_steps(export, split: bool):
    import onnxruntime as ort

    manifest = load_manifest(export)
    fake = FakeOrt()
    real = {name: ort.InferenceSession(str(manifest.component_path(name)), providers=["CPUExecutionProvider"])
            for name in manifest.components}
    step = fake.session(real["transformer_step" if split else "transformer"])
    kv = fake.session(real["caption_kv"]) if split else None
    return fake, BoundSteps(fake, step, "cuda", 0, kv), step, kv, real, manifest.model


@pytest.mark.parametrize("split", [True, False])
def test_caption_stays_on_the_device_and_each_step_moves_only_latents(tiny_export, tiny_single_export, split):
    export = tiny_export if split else tiny_single_export
    fake, bound, step, kv, real, model = _bound_steps(export, split)
    rng = np.random.default_rng(0)
    embeds = rng.standard_normal((2, 300, model.caption_channels), dtype=np.float32)
    mask = np.ones((2, 300), np.int64)
    mask[0, 3:] = 0
    latents = rng.standard_normal((2, model.latent_channels, 2, 2), dtype=np.float32)
    bound.set_caption(embeds, mask)
    assert fake.h2d() == [mask.shape, embeds.shape], "the caption goes up once, before any step"
    first_inputs = None
    steps = 5
    for i in range(steps):
        t = np.full(2, 900.0 - 100 * i, np.float32)
        out = bound.run(latents, t)
        if split:
            kv_out = real["caption_kv"].run(None, {"encoder_hidden_states": embeds})
            feeds = {"latents": latents, "timestep": t, "encoder_attention_mask": mask,
                     "caption_keys": kv_out[0], "caption_values": kv_out[1]}
        else:
            feeds = {"latents": latents, "timestep": t, "encoder_attention_mask": mask, "encoder_hidden_states": embeds}
        np.testing.assert_allclose(out, real["transformer_step" if split else "transformer"].run(None, feeds)[0],
                                   rtol=0, atol=1e-6)
        inputs = dict(bound._inputs)
        first_inputs = first_inputs or inputs
        assert all(inputs[k] is first_inputs[k] for k in inputs), "same device buffers every step (CUDA graphs)"
    per_step = fake.h2d()[2:]
    assert per_step == [latents.shape, t.shape] * steps, "per step: latents and timestep up, nothing else"
    assert fake.d2h() == [out.shape] * steps, "per step: only the velocity comes back"
    assert step.runs == steps and (kv is None or kv.runs == 1), "caption K/V computed once per generation"


def test_step_needs_a_caption_first(tiny_export):
    _, bound, *_ = _bound_steps(tiny_export, True)
    with pytest.raises(RuntimeError, match="set_caption"):
        bound.run(np.zeros((2, 32, 2, 2), np.float32), np.zeros(2, np.float32))


@pytest.fixture
def fake_gpu(monkeypatch):
    """onnxruntime-gpu's providers and a 4 GiB GPU of which 0.5 GiB is in use."""
    monkeypatch.setattr(ort_backend, "available_providers", lambda: list(CUDA))
    monkeypatch.setattr(nvml, "device_memory", lambda index=0: (GiB // 2, 4 * GiB - GiB // 2, 4 * GiB))


def test_provider_options_cuda_graph_on_the_step_only(fake_gpu):
    backend = OrtCudaBackend(cuda_graph=True)
    step = dict(backend.provider_list("transformer_step", low_memory=False)[0][1])
    assert step["enable_cuda_graph"] == "1" and step["arena_extend_strategy"] == "kNextPowerOfTwo"
    for component in ("text_encoder", "caption_kv", "vae_decoder"):
        assert "enable_cuda_graph" not in backend.provider_list(component, low_memory=False)[0][1]
    assert backend.provider_list("vae_decoder", low_memory=True)[0][1]["arena_extend_strategy"] == "kSameAsRequested"
    assert "enable_cuda_graph" not in OrtCudaBackend().provider_list("transformer_step", False)[0][1]


def test_planner_budgets_device_memory_not_host_ram(fake_gpu, tiny_export):
    backend = get_backend("ort-cuda", manifest=load_manifest(tiny_export))
    assert backend.memory_kind == "GPU memory"
    pipe = SanaEdgePipeline(load_manifest(tiny_export), backend)
    plan = pipe.plan(64, 64)
    assert plan.budget == 4 * GiB and plan.base == GiB // 2, "budget = the GPU's memory, base = what it already holds"
    tight = SanaEdgePipeline(load_manifest(tiny_export), OrtCudaBackend(memory=DeviceMemory(
        reader=lambda: (GiB // 2, 64 << 10, GiB // 2 + (64 << 10)))))
    with pytest.raises(UserError, match="max-memory"):  # host RAM is plentiful; the device is not
        tight.plan(64, 64)


def test_auto_picks_ort_cuda_with_onnxruntime_gpu_and_a_gpu(fake_gpu, tiny_export):
    manifest = load_manifest(tiny_export)
    backend = get_backend("auto", manifest=manifest)
    assert backend.name == "ort-cuda" and backend.device == "cuda"


def test_auto_stays_on_cpu_without_a_gpu_or_without_the_cuda_provider(monkeypatch, tiny_export):
    manifest = load_manifest(tiny_export)
    monkeypatch.setattr(ort_backend, "available_providers", lambda: list(CUDA))
    monkeypatch.setattr(nvml, "device_memory", lambda index=0: None)  # onnxruntime-gpu, no driver
    assert get_backend("auto", manifest=manifest).name == "onnxruntime"
    monkeypatch.setattr(ort_backend, "available_providers", lambda: ["CPUExecutionProvider"])
    monkeypatch.setattr(nvml, "device_memory", lambda index=0: (0, GiB, GiB))  # a GPU, CPU onnxruntime
    assert get_backend("auto", manifest=manifest).name == "onnxruntime"


def test_ort_cuda_without_onnxruntime_gpu_names_the_fix(monkeypatch):
    monkeypatch.setattr(ort_backend, "available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(UserError, match="pip install onnxruntime-gpu"):
        OrtCudaBackend()


def test_cuda_graph_with_another_backend_is_one_line(tiny_export):
    from typer.testing import CliRunner

    from sana_edge.cli.app import app

    result = CliRunner().invoke(app, ["run", "x", "--model", str(tiny_export), "--backend", "onnxruntime", "--cuda-graph"])
    assert result.exit_code != 0
    with pytest.raises(UserError, match="pass --backend ort-cuda"):
        get_backend("onnxruntime", manifest=load_manifest(tiny_export), cuda_graph=True)
