"""TensorRT engines from the validated ONNX graphs, with the builder API (not trtexec).

One builder for both flavors (full TensorRT and TensorRT for RTX, see
sana_edge.backends.trt_flavor). Networks are always strongly typed: the graph's own types decide
the precision (fp16 weights in the fp16 export, QDQ int8 / int4 DequantizeLinear in the
quantized ones), which is the only mode TensorRT-RTX has and the right one for QDQ graphs.

Optimization profiles come from the component declarations (sana_edge.components) and a
requested size range; an engine cache keyed by everything that changes the engine (graph,
TensorRT, precision, profile, target GPU, builder flags) lets a second export reuse engines
instead of rebuilding.

TensorRT-RTX engines are built with REQUIRE_USER_ALLOCATION: the runtime then never allocates
during a run, which CUDA stream capture requires (sana_edge.backends.trt_graphs). Full TensorRT
builds for the GPU it runs on, and the record says which one.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from sana_edge import components
from sana_edge.backends.trt_caches import engine_cache_dir
from sana_edge.backends.trt_flavor import shared_logger
from sana_edge.components import COMPONENTS, ComponentSpec
from sana_edge.errors import UserError
from sana_edge.fileio import write_bytes_atomic
from sana_edge.manifest import sha256_file

ENGINE_DIR = "engines"
CFG_BATCH = 2  # classifier-free guidance runs negative + positive in one batch


@dataclass(frozen=True)
class EngineRange:
    """Image sizes (px, both sides) an engine set must run; the decoder is built for tiles."""

    min_size: int = 512
    opt_size: int = 1024
    max_size: int = 1024
    decoder_tile: int = 1024  # largest decoder input, in px; bigger images decode in tiles
    compute_capability: str | None = None  # "8.9"; None = the flavor's default target(s)

    def check(self, factor: int) -> None:
        named = {"--min-size": self.min_size, "--opt-size": self.opt_size, "--max-size": self.max_size,
                 "--decoder-tile": self.decoder_tile}
        for flag, value in named.items():
            if value <= 0 or value % factor:
                raise UserError(f"{flag} {value} must be a positive multiple of {factor}")
        if not self.min_size <= self.opt_size <= self.max_size:
            raise UserError(
                f"engine sizes must satisfy min <= opt <= max (got {self.min_size} <= {self.opt_size} <= "
                f"{self.max_size}); fix --min-size/--opt-size/--max-size"
            )
        if self.decoder_tile < self.min_size:
            raise UserError(f"--decoder-tile {self.decoder_tile} is below --min-size {self.min_size}; raise it")
        if self.compute_capability is not None and not _valid_cc(self.compute_capability):
            raise UserError(f"--compute-capability '{self.compute_capability}' is not of the form 8.9")


def _valid_cc(value: str) -> bool:
    major, _, minor = value.partition(".")
    return major.isdigit() and minor.isdigit()


def axis_ranges(spec: ComponentSpec, rng: EngineRange, model: dict, text_length: int) -> dict[str, tuple]:
    """(min, opt, max) of every profiled dynamic axis of `spec`, from its declared range rules."""
    factor = int(model["vae_scale_factor"])
    caption = int(model["max_sequence_length"])
    instruction = max(0, text_length - caption + 2)  # the longest cached prefix (BOS included)
    rules = {
        components.CFG_BATCH: (1, CFG_BATCH, CFG_BATCH),
        # Prompts are encoded one at a time (the positive and negative lengths differ).
        components.PROMPT_BATCH: (1, 1, CFG_BATCH),
        components.SINGLE: (1, 1, 1),
        components.TEXT_TOKENS: (1, text_length, text_length),
        # The cached instruction prefix is the past of the positive prompt; the negative has none.
        components.NEW_TOKENS: (1, caption, text_length),
        components.PAST_TOKENS: (0, instruction, instruction),
        components.CONTEXT_TOKENS: (1, instruction + caption, instruction + text_length),
        components.CAPTION_TOKENS: (caption, caption, caption),
        components.LATENT_SIDE: tuple(s // factor for s in (rng.min_size, rng.opt_size, rng.max_size)),
        components.DECODER_TILE: (rng.min_size // factor, min(rng.opt_size, rng.decoder_tile) // factor,
                                  rng.decoder_tile // factor),
        # the encoder takes pixels: tiles of the decoder's range, in px
        components.ENCODER_TILE: (rng.min_size, min(rng.opt_size, rng.decoder_tile), rng.decoder_tile),
    }
    return {axis: rules[rule] for axis, rule in spec.engine_axes.items() if rule in rules}


def _model_dims(model: dict) -> dict:
    """The manifest's model values plus the named dims the declarations bind (inner_dim, ...)."""
    from sana_edge.manifest import ModelValues

    return {**model, **ModelValues.from_dict(model).dims()}


def _declared(name: str, model: dict) -> ComponentSpec:
    """Component `name` as this model's graph has it (e.g. Sprint's guidance input)."""
    from sana_edge.manifest import ModelValues

    return COMPONENTS[name].for_model(ModelValues.from_dict(model))


def profile_shapes(spec: ComponentSpec, rng: EngineRange, model: dict, text_length: int) -> dict[str, list]:
    """{input name: [min shape, opt shape, max shape]} for the engine's optimization profile."""
    model = _model_dims(model)
    ranges = axis_ranges(spec, rng, model, text_length)
    shapes = {}
    for tensor in spec.inputs:
        per_level = []
        for level in range(3):
            dims = {**model, **{axis: r[level] for axis, r in ranges.items()}}
            per_level.append(list(spec.shape(tensor, dims)))
        shapes[tensor.name] = per_level
    return shapes


def io_bytes(spec: ComponentSpec, rng: EngineRange, model: dict, text_length: int) -> int:
    """Bytes of the engine's input and output buffers at the profile's largest shapes (the
    backend allocates them once, at those shapes)."""
    factor = int(model["vae_scale_factor"])
    model = _model_dims(model)
    dims = {**model, **{axis: r[2] for axis, r in axis_ranges(spec, rng, model, text_length).items()}}
    if "latent_height" in dims:
        dims.update(image_height=dims["latent_height"] * factor, image_width=dims["latent_width"] * factor)
    elif "image_height" in dims:  # the encoder: pixels in, latents out
        dims.update(latent_height=dims["image_height"] // factor, latent_width=dims["image_width"] // factor)
    return sum(int(np.prod(spec.shape(t, dims))) * np.dtype(t.dtype).itemsize for t in spec.inputs + spec.outputs)


def cache_dir() -> Path:
    return engine_cache_dir()


def builder_flags(flavor) -> tuple[str, ...]:
    """BuilderFlag names set on every build of this flavor (recorded, and part of the cache key)."""
    return ("REQUIRE_USER_ALLOCATION",) if flavor.is_rtx else ()


def build_target(flavor, rng: EngineRange) -> str:
    """The compute capability an engine is built for: the one asked for, TensorRT-RTX's portable
    "default", or, for full TensorRT (which builds for the GPU it runs on), that GPU's."""
    if rng.compute_capability is not None:
        return rng.compute_capability
    if flavor.is_rtx:
        return "default"
    from sana_edge.backends.cuda_driver import Device

    return Device(0).compute_capability


def cache_key(graph_sha256: str, flavor, precision: str, shapes: dict, compute_capability: str | None,
              flags: tuple[str, ...] = ()) -> str:
    identity = {"graph": graph_sha256, "flavor": flavor.name, "version": flavor.version, "precision": precision,
                "profile": shapes, "compute_capability": compute_capability or "default",
                "builder_flags": sorted(flags)}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def _parse(trt, logger, onnx_path: Path):
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    # parse_from_file resolves the .onnx.data external weights next to the graph.
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i).desc()) for i in range(parser.num_errors))
        raise UserError(f"TensorRT cannot parse {onnx_path.name}: {errors}; export with --target tensorrt")
    return builder, network, parser


def _check_profile_against_network(network, shapes: dict, component: str) -> None:
    """Catch shape mistakes before a build that may take minutes."""
    names = {network.get_input(i).name: network.get_input(i) for i in range(network.num_inputs)}
    if set(names) != set(shapes):
        raise UserError(f"{component}: engine profile names {sorted(shapes)} but the graph takes {sorted(names)}")
    for name, (low, opt, high) in shapes.items():
        graph_shape = tuple(names[name].shape)
        if not len(low) == len(opt) == len(high) == len(graph_shape):
            raise UserError(f"{component}: profile for '{name}' has rank {len(low)}, the graph input has {len(graph_shape)}")
        for axis, (graph_dim, a, b, c) in enumerate(zip(graph_shape, low, opt, high)):
            # 0 is a valid minimum (an empty past K/V cache: the negative prompt has none)
            if not 0 <= a <= b <= c or c == 0:
                raise UserError(f"{component}: profile for '{name}' axis {axis} is not 0 <= {a} <= {b} <= {c}, {c} > 0")
            if graph_dim >= 0 and not a == b == c == graph_dim:
                raise UserError(f"{component}: '{name}' axis {axis} is fixed at {graph_dim} in the graph, profile asks {a}..{c}")


def configure_builder(flavor, builder, shapes: dict, rng: EngineRange):
    """The builder config of one engine: its profile, target GPU and builder flags."""
    trt = flavor.trt
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    for name, (low, opt, high) in shapes.items():
        profile.set_shape(name, low, opt, high)
    config.add_optimization_profile(profile)
    if rng.compute_capability is not None:
        if not flavor.is_rtx:
            raise UserError("--compute-capability applies to TensorRT-RTX; full TensorRT builds for the GPU it runs on")
        config.num_compute_capabilities = 1
        config.set_compute_capability(_cc_enum(trt, rng.compute_capability), 0)
    for flag in builder_flags(flavor):
        config.set_flag(getattr(trt.BuilderFlag, flag))
    return config


def build_engine(flavor, onnx_path: Path, shapes: dict, rng: EngineRange, component: str, timing_cache: Path) -> bytes:
    trt = flavor.trt
    builder, network, _parser = _parse(trt, shared_logger(flavor), onnx_path)
    _check_profile_against_network(network, shapes, component)
    config = configure_builder(flavor, builder, shapes, rng)
    cache = None
    # TensorRT-RTX: timing caches are no-ops that force a GPU query (breaking CPU-only builds).
    if not flavor.is_rtx:
        cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise UserError(f"TensorRT failed to build the {component} engine (see the log above); check the size range")
    if cache is not None:
        _write_atomic(timing_cache, bytes(config.get_timing_cache().serialize()))
    return bytes(serialized)


def _cc_enum(trt, value: str):
    name = "SM" + value.replace(".", "")
    if not hasattr(trt.ComputeCapability, name):
        supported = [n[2:-1] + "." + n[-1] for n in dir(trt.ComputeCapability) if n.startswith("SM")]
        raise UserError(f"compute capability {value} is not supported by this TensorRT; choose one of {', '.join(supported)}")
    return getattr(trt.ComputeCapability, name)


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, data)


def build_engines(stage_dir: Path, manifest: dict, rng: EngineRange, flavor, text_length: int, log=print) -> dict:
    """Build (or fetch from the cache) one engine per component into stage_dir/engines.
    Returns the manifest's "engines" record."""
    model = manifest["model"]
    rng.check(int(model["vae_scale_factor"]))
    cache = cache_dir()
    timing_cache = cache / f"timing-{flavor.name}-{flavor.version}.cache"
    all_shapes = {name: profile_shapes(_declared(name, model), rng, model, text_length) for name in manifest["components"]}
    (stage_dir / ENGINE_DIR).mkdir(exist_ok=True)
    gpu_target, flags = build_target(flavor, rng), builder_flags(flavor)
    record = {"flavor": flavor.name, "version": flavor.version, "range": asdict(rng), "components": {}}
    for name, entry in manifest["components"].items():
        shapes = all_shapes[name]
        key = cache_key(entry["sha256"], flavor, manifest["precision"], shapes, gpu_target, flags)
        cached = cache / f"{key}.engine"
        start = time.perf_counter()
        hit = cached.is_file()
        if not hit:
            log(f"    building {name} engine with {flavor.name} {flavor.version}")
            _write_atomic(cached, build_engine(flavor, stage_dir / entry["file"], shapes, rng, name, timing_cache))
        target = stage_dir / ENGINE_DIR / f"{name}.engine"
        shutil.copyfile(cached, target)
        record["components"][name] = {
            "file": f"{ENGINE_DIR}/{name}.engine", "sha256": sha256_file(target), "bytes": target.stat().st_size,
            "profile": shapes, "precision": manifest["precision"], "flavor": flavor.name, "version": flavor.version,
            "compute_capability": gpu_target, "builder_flags": list(flags), "cache_key": key, "cache_hit": hit,
            "io_bytes": io_bytes(_declared(name, model), rng, model, text_length),
            "seconds": round(time.perf_counter() - start, 3),
            "timing_cache": None if flavor.is_rtx else str(timing_cache),
        }
        log(f"    {name}: {'engine cache hit' if hit else 'built'} in {time.perf_counter() - start:.1f}s")
    return record
