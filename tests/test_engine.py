"""TensorRT engines: built ahead of time by TensorRT-RTX without a GPU (CI), cached, recorded in
the manifest; loading and running them needs a GPU and is skipped here with the reason."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sana_edge.backends.cuda_driver import gpu_available
from sana_edge.backends.trt_flavor import check_engine_record, installed_flavors
from sana_edge.errors import UserError

pytestmark = pytest.mark.skipif(not installed_flavors(), reason="no TensorRT / TensorRT-RTX installed (pip install 'sana-edge[tensorrt-rtx]')")
SMALL = dict(min_size=128, opt_size=256, max_size=512, decoder_tile=256)


@pytest.fixture(scope="module")
def engine_cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    cache = tmp_path_factory.mktemp("engine-cache")
    mp.setenv("SANA_EDGE_CACHE", str(cache))
    yield cache
    mp.undo()


def _export(checkpoint, out, precision="fp16"):
    from sana_edge.export.engine import EngineRange
    from sana_edge.export.exporter import ExportOptions, export_checkpoint
    from sana_edge.quant.configs import Calibration, QuantSettings

    return export_checkpoint(ExportOptions(str(checkpoint), out, precision=precision, quant=QuantSettings(target="tensorrt"),
                                           calibration=Calibration(size=2, steps=2), engines=EngineRange(**SMALL)),
                             log=lambda _: None)


@pytest.fixture(scope="module")
def fp16_engines(tiny_checkpoint, tmp_path_factory, engine_cache):
    return _export(tiny_checkpoint, tmp_path_factory.mktemp("trt") / "fp16")


def _engines(export_dir) -> dict:
    return json.loads((export_dir / "manifest.json").read_text())["engines"]


@pytest.mark.parametrize("precision", ["int8", "int4"])
def test_rtx_builds_engines_for_quantized_graphs(tiny_checkpoint, tmp_path, engine_cache, precision):
    record = _engines(_export(tiny_checkpoint, tmp_path / precision, precision))
    assert set(record["components"]) == {"text_encoder", "caption_kv", "transformer_step", "vae_decoder", "vae_encoder"}
    for entry in record["components"].values():
        assert entry["precision"] == precision and (tmp_path / precision / entry["file"]).stat().st_size > 0


def test_fp16_engines_are_recorded_with_profiles_from_the_declarations(fp16_engines):
    from sana_edge.manifest import load_manifest

    record = _engines(fp16_engines)
    transformer = record["components"]["transformer_step"]["profile"]
    assert transformer["latents"] == [[1, 32, 4, 4], [2, 32, 8, 8], [2, 32, 16, 16]]
    assert transformer["caption_keys"][2] == [2, 2, 2, 300, 8]  # layers, batch, heads, caption, head dim
    assert record["components"]["caption_kv"]["profile"]["encoder_hidden_states"][2] == [2, 300, 32]
    decoder = record["components"]["vae_decoder"]["profile"]["latent"]
    assert decoder[2] == [1, 32, 8, 8]  # built for the 256 px tile, not the image
    text = record["components"]["text_encoder"]["profile"]["input_ids"]
    assert text[0] == [1, 1] and text[2][1] > 300  # instruction + 300 prompt tokens
    assert record["flavor"] in ("tensorrt", "tensorrt_rtx") and record["range"]["max_size"] == 512
    manifest = load_manifest(fp16_engines)  # engine files are sha256-verified with the rest
    assert "engines/transformer_step.engine" in manifest.files()


def test_second_export_reuses_cached_engines(fp16_engines, tiny_checkpoint, tmp_path, engine_cache):
    first = _engines(fp16_engines)["components"]
    second = _engines(_export(tiny_checkpoint, tmp_path / "again"))["components"]
    for name in first:
        assert second[name]["cache_hit"] and second[name]["sha256"] == first[name]["sha256"]
    assert sum(e["seconds"] for e in second.values()) < 0.5 * sum(e["seconds"] for e in first.values())


def test_profile_errors_are_caught_before_building(tiny_checkpoint, tmp_path, engine_cache, capsys):
    from sana_edge.cli import main

    for flags, message in ((["--min-size", "1024", "--max-size", "512"], "min <= opt <= max"),
                           (["--max-size", "1000"], "multiple of 32"),
                           (["--decoder-tile", "64", "--min-size", "128", "--opt-size", "128"], "below --min-size"),
                           (["--compute-capability", "eight"], "of the form 8.9")):
        out = tmp_path / "bad"
        code = main(["export", str(tiny_checkpoint), "-o", str(out), "--backend", "tensorrt", *flags])
        err = capsys.readouterr().err
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (flags, err)
        assert not out.exists()


def test_profile_that_does_not_match_the_graph_is_refused(tiny_export):
    from sana_edge.backends.trt_flavor import import_tensorrt
    from sana_edge.export.engine import EngineRange, build_engine

    flavor = import_tensorrt()
    wrong_rank = {"latent": [[1, 32, 4], [1, 32, 8], [1, 32, 8]]}
    with pytest.raises(UserError, match="rank 3"):
        build_engine(flavor, tiny_export / "vae_decoder.onnx", wrong_rank, EngineRange(), "vae_decoder", tiny_export / "t")
    wrong_name = {"latents": [[1, 32, 4, 4]] * 3}
    with pytest.raises(UserError, match="graph takes"):
        build_engine(flavor, tiny_export / "vae_decoder.onnx", wrong_name, EngineRange(), "vae_decoder", tiny_export / "t")


def test_engines_need_tensorrt_graphs_for_quantized_precisions(tiny_checkpoint, tmp_path, capsys):
    from sana_edge.cli import main

    code = main(["export", str(tiny_checkpoint), "-o", str(tmp_path / "q"), "--backend", "tensorrt",
                 "--precision", "int8", "--target", "ort"])
    assert code == 2 and "--target tensorrt" in capsys.readouterr().err


def test_engine_from_another_tensorrt_or_gpu_is_refused():
    record = {"flavor": "tensorrt_rtx", "version": "1.7.1.116", "compute_capability": "8.9"}
    check_engine_record(record, "tensorrt_rtx", "1.7.1.116", "8.9", "transformer")
    check_engine_record(dict(record, compute_capability="default"), "tensorrt_rtx", "1.7.1.116", "12.0", "x")
    with pytest.raises(UserError, match="built with tensorrt_rtx 1.7.1.116.*rebuild"):
        check_engine_record(record, "tensorrt_rtx", "1.8.0", "8.9", "transformer")
    with pytest.raises(UserError, match="compute capability 8.9, this GPU is 8.6.*--compute-capability 8.6"):
        check_engine_record(record, "tensorrt_rtx", "1.7.1.116", "8.6", "transformer")


def test_size_outside_the_engine_range_is_refused(fp16_engines):
    from sana_edge.backends.tensorrt_backend import check_engine_size, check_profile
    from sana_edge.manifest import load_manifest

    manifest = load_manifest(fp16_engines)
    check_engine_size(manifest, 256, 512)
    with pytest.raises(UserError, match="1024x1024 px is outside the engines' range 128..512 px"):
        check_engine_size(manifest, 1024, 1024)
    profile = manifest.engines["components"]["vae_decoder"]["profile"]
    with pytest.raises(UserError, match="outside the engine profile"):
        check_profile("vae_decoder", profile, {"latent": np.zeros((1, 32, 9, 9), np.float32)})


def test_truncated_engine_file_is_refused(fp16_engines, tmp_path, capsys):
    import shutil

    from sana_edge.cli import main

    copy = tmp_path / "copy"
    shutil.copytree(fp16_engines, copy)
    engine = copy / "engines" / "transformer_step.engine"
    engine.write_bytes(engine.read_bytes()[: engine.stat().st_size // 2])
    code = main(["run", "a fox", "--model", str(copy), "-o", str(tmp_path / "x.png"), "--backend", "tensorrt"])
    err = capsys.readouterr().err
    assert code == 2 and "engines/transformer_step.engine" in err and "re-run `sana-edge export`" in err


@pytest.mark.skipif(gpu_available(), reason="checks the message on a machine without a GPU")
def test_tensorrt_backend_without_gpu_says_what_to_use(fp16_engines, tmp_path, capsys):
    from sana_edge.cli import main

    code = main(["run", "a fox", "--model", str(fp16_engines), "-o", str(tmp_path / "x.png"), "--backend", "tensorrt"])
    assert code == 2 and "use --backend onnxruntime" in capsys.readouterr().err
    # auto falls back to ONNX Runtime when the engines cannot be loaded here, and says why
    assert main(["run", "a fox", "--model", str(fp16_engines), "-o", str(tmp_path / "y.png"),
                 "--height", "256", "--width", "256", "--steps", "2", "--seed", "0"]) == 0
    assert ("warning: TensorRT engines not used, running on ONNX Runtime: this machine has no NVIDIA GPU"
            in capsys.readouterr().err)


def test_rtx_builds_require_user_allocation_and_the_flag_is_in_the_cache_key(fp16_engines, tiny_export):
    from sana_edge.backends.trt_flavor import import_tensorrt, shared_logger
    from sana_edge.export.engine import EngineRange, cache_key, configure_builder, profile_shapes
    from sana_edge.components import COMPONENTS

    flavor = import_tensorrt("tensorrt_rtx")
    builder = flavor.trt.Builder(shared_logger(flavor))
    model = json.loads((tiny_export / "manifest.json").read_text())["model"]
    shapes = profile_shapes(COMPONENTS["vae_decoder"], EngineRange(**SMALL), model, 0)
    config = configure_builder(flavor, builder, shapes, EngineRange(**SMALL))
    assert config.get_flag(flavor.trt.BuilderFlag.REQUIRE_USER_ALLOCATION)
    for entry in _engines(fp16_engines)["components"].values():
        assert entry["builder_flags"] == ["REQUIRE_USER_ALLOCATION"]
        args = ("sha", flavor, "fp16", entry["profile"], "default")
        assert cache_key(*args, ("REQUIRE_USER_ALLOCATION",)) != cache_key(*args)  # an engine built without it is not reused


def test_builds_share_the_process_logger(tiny_export):
    """TensorRT ignores a second logger with a warning: builder and runtime use one per flavour."""
    import types

    from sana_edge.backends import trt_flavor
    from sana_edge.export.engine import EngineRange, build_engine, profile_shapes
    from sana_edge.components import COMPONENTS

    real = trt_flavor.import_tensorrt("tensorrt_rtx")
    created = []

    def counting_logger(severity):
        created.append(severity)
        return real.trt.Logger(severity)

    counting_logger.WARNING = real.trt.Logger.WARNING
    proxy = types.SimpleNamespace(**{n: getattr(real.trt, n) for n in dir(real.trt) if not n.startswith("__")})
    proxy.Logger = counting_logger
    flavor = trt_flavor.Flavor("tensorrt_rtx", proxy, real.version)
    saved = dict(trt_flavor._RUNTIMES)
    trt_flavor._RUNTIMES.pop("tensorrt_rtx", None)
    try:
        model = json.loads((tiny_export / "manifest.json").read_text())["model"]
        shapes = profile_shapes(COMPONENTS["vae_decoder"], EngineRange(**SMALL), model, 0)
        for _ in range(2):
            assert build_engine(flavor, tiny_export / "vae_decoder.onnx", shapes, EngineRange(**SMALL), "vae_decoder",
                                tiny_export / "timing.cache")
        trt_flavor.shared_runtime(flavor)
        assert len(created) == 1
    finally:
        trt_flavor._RUNTIMES.clear()
        trt_flavor._RUNTIMES.update(saved)


def test_full_tensorrt_engines_record_the_gpu_they_were_built_on(monkeypatch):
    from fake_gpu import FakeCuda

    from sana_edge.backends import cuda_driver
    from sana_edge.backends.trt_flavor import Flavor
    from sana_edge.export.engine import EngineRange, build_target

    monkeypatch.setattr(cuda_driver, "_lib", FakeCuda(cc=(8, 6)))
    assert build_target(Flavor("tensorrt", None, "10.13"), EngineRange()) == "8.6"
    assert build_target(Flavor("tensorrt_rtx", None, "1.7.1.116"), EngineRange()) == "default"
    assert build_target(Flavor("tensorrt_rtx", None, "1.7.1.116"), EngineRange(compute_capability="8.9")) == "8.9"
    record = {"flavor": "tensorrt", "version": "10.13", "compute_capability": "8.6"}
    with pytest.raises(UserError, match="built for compute capability 8.6, this GPU is 8.9; rebuild") as refused:
        check_engine_record(record, "tensorrt", "10.13", "8.9", "transformer")
    assert "--compute-capability" not in str(refused.value)  # an RTX-only flag


def test_io_bytes_are_recorded_for_the_planner(fp16_engines):
    record = _engines(fp16_engines)["components"]
    # decoder at its 256 px tile: latent (1, 32, 8, 8) fp32 in, image (1, 3, 256, 256) fp32 out
    assert record["vae_decoder"]["io_bytes"] == 4 * (32 * 8 * 8 + 3 * 256 * 256)
    assert all(entry["io_bytes"] > 0 for entry in record.values())


def test_engines_match_onnxruntime_on_gpu(fp16_engines):
    from sana_edge.backends import tensorrt_problem
    from sana_edge.manifest import load_manifest
    from sana_edge.pipeline import SanaEdgePipeline

    problem = tensorrt_problem(load_manifest(fp16_engines))
    if problem is not None:  # no GPU, an unsupported compute capability, an old driver, ...
        pytest.skip(f"cannot run TensorRT engines here: {problem}")

    args = dict(height=256, width=256, steps=4, seed=0)
    trt = SanaEdgePipeline.from_export(fp16_engines, backend="tensorrt").generate("a red fox", **args)
    ort = SanaEdgePipeline.from_export(fp16_engines, backend="onnxruntime").generate("a red fox", **args)
    diff = np.abs(np.asarray(trt.image, np.int16) - np.asarray(ort.image, np.int16))
    assert diff.max() <= 8, diff.max()  # fp16 kernels on both sides, different tactics


def test_graph_mode_benchmark_says_why_it_cannot_run(fp16_engines, capsys):
    from benchmarks.trt_graph_modes import main
    from sana_edge.backends import tensorrt_problem
    from sana_edge.manifest import load_manifest

    if tensorrt_problem(load_manifest(fp16_engines)) is None:
        pytest.skip("this machine runs the engines: run the benchmark itself")
    with pytest.raises(SystemExit) as stopped:
        main([str(fp16_engines), "--repeats", "1"])
    problem = str(stopped.value)
    assert problem.startswith("error: cannot run TensorRT engines here: ")
    if not gpu_available():
        assert problem.endswith("this machine has no NVIDIA GPU and driver")
