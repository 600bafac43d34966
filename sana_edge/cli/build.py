"""Build-side commands: `export`, `init-tiny`, `train-tiny`. Their implementations live in
sana_edge.export / sana_edge.quant (the `export` extra) and are imported inside the bodies."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..default_model import BUILTIN_NAME, default_export_dir, is_builtin
from ..errors import UserError
from ..checks import ALPHA, CALIB_SIZE, CALIB_STEPS, EVAL_CAPTIONS, IMAGE_SIDE, SEED, THREADS, TRAIN_STEPS
from .app import app, number_option, require_export_extra, require_extra
from .app import console as make_console


@app.command("init-tiny")
def init_tiny(
    out_dir: Path = typer.Argument(..., help="Folder to write the tiny checkpoint to."),
    seed: int = number_option(0, "--seed", limit=SEED, help="Seed for the random weights."),
    force: bool = typer.Option(False, "--force", help="Replace a non-empty folder."),
    preset: str = typer.Option("tiny", help="tiny (tests, demo), mid (full 0.6B width, 4 layers) or mid-sprint (the same as Sana-Sprint)."),
    variant: Optional[str] = typer.Option(
        None, help="A published SANA checkpoint's settings at tiny width, e.g. sprint-0.6b, sana-1.6b-4k, sana1.5-4.8b."),
):
    """Write a tiny random-weight SANA checkpoint (diffusers layout) for tests and demos."""
    require_extra("export", ("sana_edge.export.configs",))
    from ..export.configs import PRESETS
    from ..export.variants import VARIANTS

    if preset not in PRESETS:
        raise UserError(f"unknown preset '{preset}'; choose one of {', '.join(PRESETS)}")
    if variant is not None and variant not in VARIANTS:
        raise UserError(f"unknown variant '{variant}'; choose one of {', '.join(VARIANTS)}")
    _check_out_before_torch(out_dir, force)
    from ..export.checkpoint import quiet_build_libraries
    from ..export.staging import staging_dir
    from ..export.tiny import write_tiny_checkpoint

    quiet_build_libraries()
    with staging_dir(out_dir) as stage:
        write_tiny_checkpoint(stage, seed=seed, preset=preset, variant=variant)
    make_console().print(f"tiny SANA checkpoint written to {out_dir}")


@app.command()
def export(
    checkpoint: str = typer.Argument(
        BUILTIN_NAME, help=f"diffusers-format SANA folder or hub id (default: the built-in {BUILTIN_NAME})."),
    out_dir: Optional[Path] = typer.Option(
        None, "-o", "--out", help="Export folder to create (default for the built-in model: where `run` looks)."),
    precision: str = typer.Option(
        "fp32", help="fp32, fp16, int8 (W8A8, calibrated), int4 (weight-only) or auto (the fastest on this CPU: "
                     "int8 with VNNI/AMX, else fp32)."),
    force: bool = typer.Option(False, "--force", help="Replace a non-empty output folder."),
    target: Optional[str] = typer.Option(
        None, help="Graph flavour: ort (ONNX Runtime), tensorrt (default with --backend tensorrt) or openvino "
        "(OpenVINO IR, int8/int4 by NNCF; needs sana-edge[nncf])."),
    calib_prompts: Optional[Path] = typer.Option(None, help="Calibration prompts, one per line (default: the shipped set)."),
    calib_size: int = number_option(16, "--calib-size", limit=CALIB_SIZE, help="How many calibration prompts to run."),
    calib_steps: Optional[int] = number_option(
        None, "--calib-steps", limit=CALIB_STEPS, help="Sampling steps of each calibration trajectory, all recorded "
        "(default: 8 for Sana; for Sana-Sprint one 2-step and one 4-step trajectory per prompt)."),
    calib_seed: int = number_option(0, "--calib-seed", limit=SEED, help="Seed of the calibration noise."),
    calib_resolution: Optional[int] = number_option(
        None, "--calib-resolution", limit=IMAGE_SIDE,
        help="Calibration image side in px, a multiple of 32 (default: the model's base size, at most 512)."),
    keep_fp: Optional[list[str]] = typer.Option(
        None, help="Transformer node-name regex to keep unquantized (repeatable; replaces the default list)."),
    smoothquant_alpha: Optional[float] = number_option(None, "--smoothquant-alpha", limit=ALPHA,
                                                       help="SmoothQuant migration strength (int8)."),
    block_size: int = typer.Option(128, help="int4/int8 weight-only block size: 16, 32, 64, 128 or 256."),
    text_encoder_bits: Optional[int] = typer.Option(
        None, help="Text encoder weight-only bits, 4 or 8 (default: 8 for int8, 4 for int4)."),
    quantize_decoder: bool = typer.Option(
        False, "--quantize-decoder", help="int8/int4: W8A8 on the DC-AE decoder too (calibrated on final latents; "
                                          "see README for what it costs)."),
    single_transformer: bool = typer.Option(
        False, "--single-transformer", help="The transformer as one graph (the layout optimum-onnx runs) instead "
                                            "of a caption K/V graph + a step graph (faster)."),
    backend: str = typer.Option("onnxruntime", help="onnxruntime (graphs only) or tensorrt (graphs + engines)."),
    min_size: int = number_option(512, "--min-size", limit=IMAGE_SIDE, help="TensorRT: smallest image side (px) the engines run."),
    opt_size: int = number_option(1024, "--opt-size", limit=IMAGE_SIDE, help="TensorRT: image side (px) the engines are tuned for."),
    max_size: int = number_option(1024, "--max-size", limit=IMAGE_SIDE,
                                  help="TensorRT: largest image side (px) the transformer engine runs."),
    decoder_tile: int = number_option(1024, "--decoder-tile", limit=IMAGE_SIDE,
                                      help="TensorRT: largest decoder input (px); larger images decode in tiles."),
    compute_capability: Optional[str] = typer.Option(
        None, help="TensorRT-RTX: target GPU, e.g. 8.9 (default: portable across Ampere and later RTX GPUs)."),
    controlnet: Optional[Path] = typer.Option(
        None, help="A diffusers SanaControlNetModel folder to export beside the transformer (for --control-image)."),
    allow_pickle: bool = typer.Option(
        False, "--allow-pickle", help="Load .bin/.pt (pickle) weights, which can run code: only for checkpoints you trust."),
):
    """Export text encoder, transformer, DC-AE decoder and encoder (and a controlnet) to validated ONNX graphs
    (and TensorRT engines)."""
    if out_dir is None:
        if not is_builtin(checkpoint):
            raise UserError(f"pass the export folder to create with -o DIR (e.g. -o {Path(checkpoint).name or 'sana'}-onnx)")
        out_dir = default_export_dir()
    if backend not in ("onnxruntime", "tensorrt"):
        raise UserError(f"unknown backend '{backend}'; choose onnxruntime or tensorrt")
    if precision == "auto":
        from ..cpu import cpu_features, fastest_precision

        precision = fastest_precision()
        make_console().print(f"precision auto: {precision} (CPU: {cpu_features().describe()})")
    if target == "openvino":
        if backend == "tensorrt":
            raise UserError("--target openvino writes OpenVINO IR, which TensorRT cannot build from; drop one of them")
        if precision in ("int8", "int4"):
            require_extra("nncf", ("openvino", "nncf"))
        else:
            require_extra("openvino", ("openvino",))
    # Light modules first: every option, the checkpoint and the output are checked before torch loads.
    require_extra("export", ("sana_edge.export.prepare", "sana_edge.quant.configs"))
    from ..export.prepare import ExportOptions, prepare
    from ..quant.configs import DEFAULT_KEEP_FP, Calibration, QuantSettings

    engines = None
    if backend == "tensorrt":
        from ..export.engine import EngineRange

        engines = EngineRange(min_size, opt_size, max_size, decoder_tile, compute_capability)
    quant = QuantSettings(
        target=target or ("tensorrt" if backend == "tensorrt" else "ort"), block_size=block_size,
        keep_fp=tuple(keep_fp) if keep_fp else DEFAULT_KEEP_FP, smoothquant_alpha=smoothquant_alpha,
        text_encoder_bits=text_encoder_bits, quantize_decoder=quantize_decoder,
    )
    calibration = Calibration(prompts=calib_prompts, size=calib_size, steps=calib_steps,
                              resolution=calib_resolution, seed=calib_seed)
    console = make_console()
    options = ExportOptions(checkpoint=checkpoint, out_dir=out_dir, precision=precision, force=force, quant=quant,
                            calibration=calibration, engines=engines, controlnet=controlnet, allow_pickle=allow_pickle,
                            split_transformer=not single_transformer)
    job = prepare(options, console.print)
    require_export_extra()
    from ..export.exporter import export_checkpoint

    export_checkpoint(options, log=console.print, job=job)


@app.command("train-tiny")
def train_tiny(
    out_dir: Path = typer.Argument(..., help="Folder to write the trained checkpoint to (diffusers layout)."),
    seed: int = number_option(0, "--seed", limit=SEED, help="Seed of data, initialisation and noise."),
    force: bool = typer.Option(False, "--force", help="Replace a non-empty folder."),
    ae_steps: Optional[int] = number_option(None, "--ae-steps", limit=TRAIN_STEPS,
                                            help="Autoencoder steps (default: the training config's)."),
    dit_steps: Optional[int] = number_option(None, "--dit-steps", limit=TRAIN_STEPS,
                                             help="Transformer steps (default: the training config's)."),
    threads: int = number_option(2, "--threads", limit=THREADS, help="torch CPU threads."),
    eval_captions: Optional[int] = number_option(None, "--eval-captions", limit=EVAL_CAPTIONS,
                                                 help="Held-out captions for the closing quick score (0: skip)."),
    init_from: Optional[Path] = typer.Option(
        None, help="A trained shapes-SANA folder to train on from: keeps its tokenizer and autoencoder, fine-tunes "
                   "its transformer and text encoder (no autoencoder stage)."),
    dit_scenes: Optional[int] = typer.Option(None, help="Scenes encoded for the transformer stage (default: the config's)."),
    dit_lr: Optional[float] = typer.Option(None, help="Transformer peak learning rate (default: the config's)."),
    text_lr: Optional[float] = typer.Option(
        None, help="Text encoder peak learning rate (default: the config's; 0 keeps the text encoder frozen)."),
    new_autoencoder: bool = typer.Option(
        False, "--new-autoencoder",
        help="With --init-from: train a new autoencoder (--ae-steps) instead of keeping its own; the transformer "
             "then learns the new latents on from its weights."),
):
    """Train the small shapes-SANA (the built-in default model) on CPU."""
    _check_out_before_torch(out_dir, force)
    from ..export.train_shapes import run_training

    run_training(out_dir, seed=seed, force=force, ae_steps=ae_steps, dit_steps=dit_steps, threads=threads,
                 eval_captions=eval_captions, init_from=init_from, dit_scenes=dit_scenes, dit_lr=dit_lr,
                 text_lr=text_lr, new_autoencoder=new_autoencoder)


def _check_out_before_torch(out_dir: Path, force: bool) -> None:
    """The output folder is checked in a blink; importing torch takes seconds: check first."""
    require_extra("export", ("sana_edge.export.staging",))
    from ..export.staging import check_out_dir

    check_out_dir(out_dir, force)
    require_export_extra()
