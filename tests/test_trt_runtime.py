"""The TensorRT backend's runtime behaviour on CPU-only CI: a fake libcuda and a fake TensorRT-RTX
(tests/fake_gpu.py) stand in for what needs a GPU; the real TensorRT-RTX bindings are used where
they work without one (the engine-validity call)."""

from __future__ import annotations

import ctypes
import sys
import threading
import time
import warnings

import numpy as np
import pytest

from fake_gpu import FakeCuda, fake_export, make_fake_trt
from sana_edge.backends import BackendFallbackWarning, cuda_driver, get_backend, tensorrt_problem, trt_flavor
from sana_edge.errors import UserError


@pytest.fixture
def gpu(monkeypatch, tmp_path):
    """A fake RTX laptop GPU with a fake TensorRT-RTX installed; engine cache under tmp_path."""
    cuda = FakeCuda()
    trt = make_fake_trt(cuda)
    monkeypatch.setattr(cuda_driver, "_lib", cuda)
    monkeypatch.setitem(sys.modules, "tensorrt_rtx", trt)
    monkeypatch.setattr(trt_flavor, "_RUNTIMES", {})
    monkeypatch.setenv("SANA_EDGE_CACHE", str(tmp_path / "cache"))
    return cuda, trt


def _backend(manifest, **options):
    from sana_edge.backends.tensorrt_backend import TensorRTBackend

    return TensorRTBackend(manifest=manifest, **options)


# -- item 1: unsupported GPU or driver: refuse with the fix, or fall back --------------------

H100 = dict(name="NVIDIA H100 80GB HBM3", cc=(9, 0))


@pytest.mark.parametrize("gpu_kind,diagnostics,expected", [
    (H100, ["UNSUPPORTED_CC"], ["NVIDIA H100 80GB HBM3, compute capability 9.0", "7.5, 8.0, 8.6, 8.9, 12.0, 12.1",
                                "install full TensorRT", "--backend onnxruntime"]),
    (dict(driver=12040), ["OLD_CUDA_DRIVER"], ["CUDA 12.4", "sana-edge[tensorrt-rtx-cu12]", "R580"]),
    ({}, ["VERSION_MISMATCH"], ["another TensorRT-RTX version than 1.7.1.116", "sana-edge export"]),
    ({}, ["MALFORMED_ENGINE"], ["not a valid engine"]),
    ({}, ["UNSUPPORTED_CC", "INSUFFICIENT_GPU_MEMORY"], ["compute capability 8.9", "too little free memory"]),
    (H100, [], ["compute capability 9.0", "install full TensorRT"]),  # no flag given: we name the GPU ourselves
    ({}, [], ["reports it invalid on NVIDIA GeForce RTX 4070 Laptop GPU without a reason"]),
])
def test_validity_diagnostics_refuse_with_the_fix_and_auto_falls_back(gpu, tmp_path, gpu_kind, diagnostics, expected):
    cuda, trt = gpu
    for key, value in gpu_kind.items():
        setattr(cuda, key, value)
    bits = sum(getattr(trt.EngineInvalidityDiagnostics, d) for d in diagnostics)
    trt.validity = ("INVALID", bits)
    manifest = fake_export(tmp_path / "export")

    problem = tensorrt_problem(manifest)
    assert problem is not None and all(text in problem for text in expected), problem
    with pytest.raises(UserError) as refused:
        _backend(manifest).load_component(manifest, "transformer")
    assert all(text in str(refused.value) for text in expected)
    assert trt.log["deserialized"] == 0  # refused from the header, before loading anything
    with pytest.warns(BackendFallbackWarning, match="running on ONNX Runtime") as caught:
        backend = get_backend("auto", manifest=manifest, graphs="manual")  # TensorRT-only option dropped
    assert backend.name == "onnxruntime" and all(text in str(caught[0].message) for text in expected)


def test_valid_and_suboptimal_engines_are_used(gpu, tmp_path):
    _cuda, trt = gpu
    manifest = fake_export(tmp_path / "export")
    for verdict in ("VALID", "SUBOPTIMAL"):
        trt.validity = (verdict, 0)
        assert tensorrt_problem(manifest) is None
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert get_backend("auto", manifest=manifest).name == "tensorrt"


def test_old_driver_is_refused_from_cuDriverGetVersion_before_any_engine(gpu, tmp_path, monkeypatch):
    cuda, trt = gpu
    cuda.driver = 12080
    monkeypatch.setattr(trt_flavor, "_wheel_cuda_major", lambda module: 13)  # the cu13 wheels
    manifest = fake_export(tmp_path / "export")
    assert cuda_driver.driver_version() == (12, 8)
    with pytest.raises(UserError, match=r"runs CUDA 12\.8, but tensorrt_rtx 1\.7\.1\.116 was built for CUDA 13.*"
                                        r"tensorrt-rtx-cu13-libs.*sana-edge\[tensorrt-rtx-cu12\]"):
        _backend(manifest)
    assert "CUDA 12.8" in tensorrt_problem(manifest) and trt.log["runtimes"] == 0


def test_real_validity_api_reports_a_malformed_engine_on_cpu():
    """The installed TensorRT-RTX reads a header without a GPU: our reading of its answer holds."""
    flavor = next((f for f in trt_flavor.installed_flavors() if f.is_rtx), None)
    if flavor is None:
        pytest.skip("TensorRT-RTX is not installed (pip install 'sana-edge[tensorrt-rtx]')")
    runtime = trt_flavor.shared_runtime(flavor)[1]
    assert runtime.engine_header_size == 64
    verdict, diagnostics = runtime.get_engine_validity(b"not an engine" * 8)
    assert verdict == flavor.trt.EngineValidity.INVALID
    assert diagnostics & int(flavor.trt.EngineInvalidityDiagnostics.MALFORMED_ENGINE)


def test_real_validity_api_through_engine_problem(tmp_path):
    from sana_edge.backends.trt_checks import engine_problem

    flavor = next((f for f in trt_flavor.installed_flavors() if f.is_rtx), None)
    if flavor is None:
        pytest.skip("TensorRT-RTX is not installed (pip install 'sana-edge[tensorrt-rtx]')")
    path = tmp_path / "garbage.engine"
    path.write_bytes(b"\x01" * 4096)
    device = type("Device", (), {"name": "test GPU", "compute_capability": "8.9"})()
    assert "not a valid engine" in engine_problem(flavor, path, device)
    assert trt_flavor.supported_compute_capabilities(flavor.trt) == ["7.5", "8.0", "8.6", "8.9", "12.0", "12.1"]


# -- item 4: flavour from the manifest; one logger and runtime per process --------------------

def test_flavour_comes_from_the_manifest_not_the_import_order(gpu, tmp_path, monkeypatch):
    cuda, rtx = gpu
    full = make_fake_trt(cuda, version="10.13.0")
    monkeypatch.setitem(sys.modules, "tensorrt", full)  # full TensorRT found first
    assert [f.name for f in trt_flavor.installed_flavors()] == ["tensorrt", "tensorrt_rtx"]
    rtx_export = fake_export(tmp_path / "rtx")
    backend = _backend(rtx_export)
    assert backend.flavor.name == "tensorrt_rtx" and backend.flavor.trt is rtx
    backend.load_component(rtx_export, "transformer").close()
    assert rtx.log["deserialized"] == 1 and full.log["deserialized"] == 0
    full_export = fake_export(tmp_path / "full", flavor="tensorrt", version="10.13.0", builder_flags=())
    assert _backend(full_export).flavor.trt is full
    monkeypatch.setitem(sys.modules, "tensorrt_rtx", None)
    monkeypatch.setitem(sys.modules, "tensorrt_rtx_bindings", None)
    with pytest.raises(UserError, match="built with tensorrt_rtx, which is not installed.*sana-edge\\[tensorrt-rtx\\]"):
        _backend(rtx_export)


def test_one_logger_and_runtime_per_process(gpu, tmp_path):
    _cuda, trt = gpu
    manifest = fake_export(tmp_path / "export")
    for _ in range(2):  # two backends (e.g. eval's A/B), three engines each, plus the validity checks
        backend = _backend(manifest)
        for name in ("text_encoder", "transformer", "vae_decoder"):
            backend.load_component(manifest, name).close()
        tensorrt_problem(manifest)
    assert trt.log["loggers"] == 1 and trt.log["runtimes"] == 1 and trt.log["deserialized"] == 6


# -- item 3: the peak-memory sampler runs on its own thread ------------------------------------

def test_sampling_thread_makes_the_context_current(gpu, tmp_path):
    from sana_edge.memory import PeakMemory

    cuda, _trt = gpu
    backend = _backend(fake_export(tmp_path / "export"))
    # The fake driver behaves like the real one: a thread without the context current fails.
    failed = []
    probe = threading.Thread(target=lambda: failed.append(
        cuda.cuMemGetInfo_v2(ctypes.byref(ctypes.c_size_t()), ctypes.byref(ctypes.c_size_t()))))
    probe.start(), probe.join()
    assert failed == [201]

    errors = []
    threading.excepthook, previous = (lambda args: errors.append(args.exc_value)), threading.excepthook
    try:
        before = backend.memory_in_use()
        with PeakMemory(backend.memory_in_use, interval=0.002) as peak:
            spike = cuda_driver.DeviceBuffer(256 << 20)  # only the sampler can see it: freed before the end
            time.sleep(0.1)
            spike.free()
    finally:
        threading.excepthook = previous
    assert not errors, errors
    assert peak.peak >= before + (256 << 20)
    assert len(cuda.context_threads) >= 2  # the main thread and the sampler made it current


# -- item 2: CUDA graphs -----------------------------------------------------------------------

def test_graph_cache_captures_repeats_and_recaptures_when_the_signature_changes():
    from sana_edge.backends.trt_graphs import GraphCache

    events = []

    class Graph:
        def __init__(self, signature):
            self.signature = signature

        def launch(self):
            events.append(("replay", self.signature))

        def destroy(self):
            events.append(("destroy", self.signature))

    current = {}
    cache = GraphCache(lambda enqueue: Graph(current["sig"]), lambda: True)

    def run(signature):
        current["sig"] = signature
        cache.run(signature, lambda: events.append(("enqueue", signature)))

    for signature in ["prompt", "negative", "prompt", "negative"]:  # the text encoder: never captured
        run(signature)
    assert cache.captures == 0 and all(kind == "enqueue" for kind, _ in events)
    events.clear()
    for signature in ["512px"] * 3 + ["1024px"] * 3:  # denoising at one size, then another
        run(signature)
    assert events == [("enqueue", "512px"), ("enqueue", "512px"), ("replay", "512px"),
                      ("destroy", "512px"), ("enqueue", "1024px"), ("enqueue", "1024px"), ("replay", "1024px")]
    assert cache.captures == 2


def test_session_replays_only_graphs_of_its_current_shape(gpu, tmp_path):
    cuda, trt = gpu
    manifest = fake_export(tmp_path / "export")
    session = _backend(manifest, graphs="manual").load_component(manifest, "transformer")
    assert trt.log["contexts"][-1]._config.dynamic_shapes_kernel_specialization_strategy == "EAGER"
    rng = np.random.default_rng(0)
    for rows in (2, 2, 2, 2, 5, 5, 5, 2, 2):
        x = rng.standard_normal((rows, 4)).astype(np.float32)
        np.testing.assert_array_equal(session.run({"x": x})["y"], 2 * x + 1)  # replays read today's inputs
    assert session.graphs.captures == 3 and cuda.launches == 2 + 1 + 0  # 2 rows: 2 replays, 5 rows: 1, back to 2: none yet
    session.close()


def test_no_hand_capture_without_the_builder_flag_or_when_not_capturable(gpu, tmp_path):
    cuda, _trt = gpu
    for export, kwargs in (("noflag", dict(builder_flags=())), ("uncapturable", dict(capturable=False))):
        manifest = fake_export(tmp_path / export, **kwargs)
        session = _backend(manifest, graphs="manual").load_component(manifest, "transformer")
        for _ in range(3):
            session.run({"x": np.ones((2, 4), np.float32)})
        assert (session.graphs is None or session.graphs.captures == 0) and cuda.launches == 0
        session.close()


def test_rtx_uses_built_in_whole_graph_capture_by_default(gpu, tmp_path):
    _cuda, trt = gpu
    manifest = fake_export(tmp_path / "export")
    backend = _backend(manifest)
    session = backend.load_component(manifest, "transformer")
    config = trt.log["contexts"][-1]._config
    assert backend.graphs == "builtin" and session.graphs is None
    assert config.cuda_graph_strategy == "WHOLE_GRAPH_CAPTURE" and config._allocation == "USER_MANAGED"
    np.testing.assert_array_equal(session.run({"x": np.zeros((3, 4), np.float32)})["y"], np.ones((3, 4)))
    session.close()
    session = _backend(manifest, graphs="off").load_component(manifest, "transformer")
    assert trt.log["contexts"][-1]._config.cuda_graph_strategy == "DISABLED" and session.graphs is None
    session.close()


# -- item 6: kernels compiled just in time persist in the engine cache folder ------------------

def test_runtime_cache_is_written_and_reused(gpu, tmp_path, monkeypatch):
    from sana_edge.backends.trt_caches import runtime_cache_path

    cuda, trt = gpu
    manifest = fake_export(tmp_path / "export")
    backend = _backend(manifest)
    path = runtime_cache_path(backend.flavor, cuda.name)
    assert not path.exists()
    backend.load_component(manifest, "transformer").close()
    assert trt.log["compiled"] == 1 and path.is_file() and b"y=2x+1" in path.read_bytes()
    written = path.stat().st_mtime_ns
    backend.load_component(manifest, "transformer").close()  # nothing new: the file is not rewritten
    assert path.stat().st_mtime_ns == written

    monkeypatch.setattr(trt_flavor, "_RUNTIMES", {})  # a new process
    fresh = _backend(manifest)
    fresh.load_component(manifest, "transformer").close()
    assert fresh.runtime_cache.loaded and trt.log["compiled"] == 1  # nothing compiled again


# -- item 5: what the planner is told ---------------------------------------------------------

def test_stage_sizes_are_engine_plus_device_memory_plus_io(gpu, tmp_path, monkeypatch):
    _cuda, trt = gpu
    manifest = fake_export(tmp_path / "export", device_memory=3 << 20, min_size=512)
    sizes = _backend(manifest).stage_bytes(manifest)
    record = manifest.engines["components"]["transformer"]
    assert sizes.engines and sizes.min_tile == 512 // 32
    assert sizes.bytes["transformer"] == record["bytes"] + (3 << 20) + record["io_bytes"]
    assert trt.log["deserialized"] == 3  # learned once from the engines on this GPU model...
    monkeypatch.setattr(trt_flavor, "_RUNTIMES", {})
    assert _backend(manifest).stage_bytes(manifest) == sizes
    assert trt.log["deserialized"] == 3  # ...and remembered in the engine cache folder


def test_the_fake_uses_only_names_the_real_bindings_have(gpu, tmp_path):
    """Every public name of the fake TensorRT-RTX exists in the installed bindings, so the backend
    code these tests pass cannot call something the real library lacks."""
    flavor = next((f for f in trt_flavor.installed_flavors() if f.is_rtx and f.trt is not gpu[1]), None)
    real = flavor.trt if flavor else None
    if real is None:
        import importlib

        try:
            real = importlib.import_module("tensorrt_rtx_bindings")
        except ImportError:
            pytest.skip("TensorRT-RTX is not installed (pip install 'sana-edge[tensorrt-rtx]')")
    _cuda, fake = gpu
    manifest = fake_export(tmp_path / "export")
    _backend(manifest).load_component(manifest, "transformer").close()
    context = fake.log["contexts"][-1]
    instances = {"IExecutionContext": context, "ICudaEngine": context.engine, "IRuntimeConfig": context._config,
                 "IRuntimeCache": context._config._cache}
    public = lambda names: {n for n in names if not n.startswith("_")}  # noqa: E731
    for name in public(vars(fake)) - {"log", "validity"}:
        assert hasattr(real, name), name
        fake_value, real_value = getattr(fake, name), getattr(real, name)
        members = public(dir(fake_value)) | public(vars(instances[name]) if name in instances else ())
        if not callable(fake_value) or isinstance(fake_value, type):
            missing = {m for m in members if not hasattr(real_value, m)}
            assert not missing, (name, missing)


def test_doctor_says_whether_this_gpu_and_driver_run_engines(gpu, monkeypatch):
    from sana_edge.doctor import report

    cuda, _trt = gpu
    cuda.name, cuda.cc, cuda.driver = "NVIDIA H100 80GB HBM3", (9, 0), 12040
    text = report()
    assert "NVIDIA H100 80GB HBM3, compute capability 9.0" in text and "driver runs CUDA 12.4" in text
    assert "TensorRT-RTX does not run on compute capability 9.0; use full TensorRT" in text
    monkeypatch.setattr(trt_flavor, "_wheel_cuda_major", lambda module: 13)
    assert "sana-edge[tensorrt-rtx-cu12]" in report()
