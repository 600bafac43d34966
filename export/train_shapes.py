"""Train the shipped shapes-SANA: real diffusers/transformers classes at small sizes, on the
procedural shapes task (sana_edge.shapes, captions in many phrasings from sana_edge.shape_captions),
on a laptop-class CPU in about an hour and a half.

    sana-edge train-tiny DIR --seed 0      (or: python -m sana_edge.export.train_shapes DIR)

1. Tokenizer: Gemma special ids, BPE trained on the complex human instruction (CHI) plus training
   phrasings, one merged token per "<colour> background" (export/shapes_text.py).
2. DC-AE: reconstruction training (export/shapes_loops.py).
3. DiT and Gemma-2 text encoder trained together by flow matching, the captions fed exactly as
   the runtime feeds them (CHI prefix, lower case, BOS + last 299 positions; export/shapes_text.py).
Writes the diffusers layout plus train_log.json (config, parameter counts, losses, wall times,
caption separation, a quick torch score).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from sana_edge import shapes
from sana_edge.errors import UserError
from sana_edge.fileio import write_json_atomic, write_text_atomic

IMAGE_SIZE = 128  # px; 4x4 latents at the DC-AE's 32x
CAPTION_CHANNELS = 64


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    threads: int = 2
    ae_steps: int = 5000
    ae_batch: int = 16
    ae_lr: float = 1e-3
    ae_latent_noise: float = 0.1  # x std of the latents, added before decoding while training
    ae_shape_weight: float = 4.0  # extra loss weight on shape pixels (small shapes are ~2% of pixels)
    ae_edge_weight: float = 8.0  # extra loss weight within 2 px of a shape's outline
    new_autoencoder: bool = False  # with init_from: train a new DC-AE instead of keeping the checkpoint's
    dit_scenes: int = 20000  # encoded once; the DiT samples batches from them
    dit_steps: int = 7000
    dit_batch: int = 64
    dit_lr: float = 1e-3
    text_lr: float = 5e-4  # 0: the text encoder is kept frozen
    dit_ema: float = 0.999
    caption_dropout: float = 0.1
    p_grammar: float = 0.3  # share of training captions in the canonical grammar; the rest paraphrases
    flow_shift: float = 3.0
    eval_captions: int = 32  # quick held-out score at the end (torch pipeline, per kind), 0 to skip
    log_every: int = 100


def vae_config() -> dict:
    from .configs import DCAE_F32C32

    # The decoder draws the shapes: more width and depth at 16 and 32 px, where outlines form
    # (cheap: few pixels); the encoder only has to read scene parameters. No blocks at full
    # resolution (layers 0 at stage 0: a strided conv in, a 2x upsampling conv out), which cost
    # ~40% of a training step for 8 channels at 128x128.
    return dict(
        DCAE_F32C32, attention_head_dim=16,
        encoder_block_out_channels=(8, 16, 32, 32, 64, 64), decoder_block_out_channels=(8, 16, 32, 64, 64, 64),
        encoder_layers_per_block=(0, 1, 1, 1, 1, 1), decoder_layers_per_block=(0, 1, 2, 2, 1, 1),
    )


def transformer_config() -> dict:
    # sample_size 4: the latent side at the base 128 px, so the runtime's default size is 128.
    return dict(
        in_channels=32, out_channels=32, num_attention_heads=4, attention_head_dim=32, num_layers=6,
        num_cross_attention_heads=4, cross_attention_head_dim=32, cross_attention_dim=128,
        caption_channels=CAPTION_CHANNELS, mlp_ratio=2.5, sample_size=IMAGE_SIZE // 32, patch_size=1,
        norm_elementwise_affine=False, norm_eps=1e-6,
    )


def text_encoder_config(vocab_size: int) -> dict:
    from .configs import GEMMA2_2B

    return dict(
        GEMMA2_2B, vocab_size=vocab_size, hidden_size=CAPTION_CHANNELS, intermediate_size=128,
        num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=32,
        max_position_embeddings=1024, sliding_window=1024, query_pre_attn_scalar=32,
    )


def quick_score(pipe, count: int, seed: int) -> dict:
    """Held-out task score of the torch pipeline (20 steps, guidance 4.5) on grammar captions and
    held-out paraphrase templates: a sanity check only; the committed numbers come from the
    exported runtime (benchmarks/shapes_score.py)."""
    import torch

    result = {}
    for kind in ("grammar", "template"):
        scores = []
        for i, caption in enumerate(shapes.held_out_captions(count, seed + 424_242, kind)):
            image = pipe(caption, height=IMAGE_SIZE, width=IMAGE_SIZE, num_inference_steps=20, guidance_scale=4.5,
                         generator=torch.Generator().manual_seed(i), use_resolution_binning=False).images[0]
            scores.append(shapes.score_image(image, caption))
        result[kind] = shapes.summarize(scores)
    return result


def _new_text_encoder(vocab_size: int):
    """A fresh Gemma-2 that starts as a bag of distinct token embeddings.

    At Gemma's default init a token's own embedding (std 0.02, x sqrt(hidden)) is ~0.16 RMS while
    each attention / MLP branch adds a post-normed ~1 RMS, mostly the average over the 160 CHI
    tokens: every caption token comes out nearly the same vector (mean cosine 0.996 between
    captions), which is what made the frozen random encoder fragile. Unit-RMS embeddings and
    branches scaled to 0.1 at init (post-norm weights -0.9; Gemma's norms scale by 1 + weight)
    keep the tokens apart from the first step; training turns the context branches up."""
    import torch
    from transformers import Gemma2Config, Gemma2Model

    gemma_config = Gemma2Config(**text_encoder_config(vocab_size))
    gemma_config._attn_implementation = "eager"  # logit soft-capping needs eager attention
    model = Gemma2Model(gemma_config)
    with torch.no_grad():
        model.embed_tokens.weight.normal_(0.0, CAPTION_CHANNELS**-0.5)
        model.embed_tokens.weight[gemma_config.pad_token_id].zero_()
        for layer in model.layers:
            layer.post_attention_layernorm.weight.fill_(-0.9)
            layer.post_feedforward_layernorm.weight.fill_(-0.9)
    return model


def _autoencoder_stage(cfg: TrainConfig, cache: Path | None):
    """(vae, losses, reconstruction scores, seconds, reused): trained, or read from `cache`."""
    from . import shapes_stage_cache
    from .shapes_loops import log, train_autoencoder

    cached = shapes_stage_cache.load(cache, cfg, vae_config()) if cache else None
    if cached:
        vae, record = cached
        log(f"autoencoder reused from {cache} (same seed and settings)")
        return vae, record["losses"], record["reconstruction_score"], record["seconds"], True
    start = time.perf_counter()
    losses: list[float] = []
    scores: list[dict] = []
    vae = train_autoencoder(cfg, vae_config(), IMAGE_SIZE, losses, scores)
    seconds = time.perf_counter() - start
    thinned = _thin(losses, cfg.log_every)
    if cache:
        shapes_stage_cache.save(cache, cfg, vae_config(), vae,
                                {"losses": thinned, "reconstruction_score": scores, "seconds": seconds})
    return vae, thinned, scores, seconds, False


def _load_init(checkpoint: Path):
    """(tokenizer, text encoder, DC-AE, DiT) of a trained shapes-SANA folder, to train on from."""
    from diffusers import AutoencoderDC, SanaTransformer2DModel
    from transformers import AutoTokenizer, Gemma2Model

    for part in ("tokenizer", "text_encoder", "vae", "transformer"):
        if not (checkpoint / part).is_dir():
            raise UserError(f"--init-from {checkpoint} has no {part}/ folder: give a folder written by sana-edge train-tiny")
    text_encoder = Gemma2Model.from_pretrained(checkpoint / "text_encoder", attn_implementation="eager")
    return (AutoTokenizer.from_pretrained(checkpoint / "tokenizer"), text_encoder,
            AutoencoderDC.from_pretrained(checkpoint / "vae").eval(),
            SanaTransformer2DModel.from_pretrained(checkpoint / "transformer"))


def _model_configs(*models) -> dict:
    return {name: {k: v for k, v in m.config.to_dict().items() if not k.startswith("_")} if hasattr(m.config, "to_dict")
            else {k: v for k, v in m.config.items() if not k.startswith("_")} for name, m in models}


def train(out_dir: Path, cfg: TrainConfig, autoencoder_cache: Path | None = None, command: str | None = None,
          init_from: Path | None = None) -> dict:
    """Train into `out_dir`. `autoencoder_cache`: a folder for the DC-AE stage's result (see
    export/shapes_stage_cache.py): reused when it matches the seed and settings, else written.
    `init_from`: a trained shapes-SANA folder: its tokenizer and DC-AE are kept as they are (no
    autoencoder stage, same latent scaling) and its DiT and text encoder train on from their
    weights (fine-tuning, e.g. on new phrasings, in a fraction of a full run). With
    `cfg.new_autoencoder` a new DC-AE is trained (or read from `autoencoder_cache`) instead, and
    the DiT learns its latent space on from the checkpoint's weights."""
    import torch
    from diffusers import DPMSolverMultistepScheduler, SanaPipeline

    from .checkpoint import default_complex_human_instruction
    from .configs import SANA_SCHEDULER_CONFIG
    from .shapes_loops import caption_separation, encode_scenes, log, train_autoencoder, train_transformer
    from .shapes_text import CaptionEncoder, build_tokenizer

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    start = time.perf_counter()
    wall: dict[str, float] = {}
    chi = default_complex_human_instruction(SanaPipeline)
    initial = _load_init(Path(init_from)) if init_from else None
    tokenizer = initial[0] if initial else build_tokenizer(chi, cfg.seed)
    tokenizer.save_pretrained(out_dir / "tokenizer")
    captions = CaptionEncoder(out_dir / "tokenizer" / "tokenizer.json", chi)
    text_encoder = initial[1] if initial else _new_text_encoder(len(tokenizer))
    probe = shapes.held_out_captions(64, cfg.seed + 31, "grammar")
    separation = {"initial": caption_separation(text_encoder, captions, probe)}
    wall["text"] = time.perf_counter() - start

    keep_autoencoder = initial is not None and not cfg.new_autoencoder
    if keep_autoencoder:
        vae, ae_losses, recon_scores, wall["autoencoder"], reused = initial[2], [], [], 0.0, False
    else:
        vae, ae_losses, recon_scores, wall["autoencoder"], reused = _autoencoder_stage(cfg, autoencoder_cache)
    start -= wall["autoencoder"] if reused else 0.0  # totals count the reused stage's own training time
    latents, scenes = encode_scenes(vae, cfg, IMAGE_SIZE)
    # SANA feeds the DiT latents * scaling_factor; make that unit variance, as DC-AE's 0.41407 does
    # (a DiT trained on from a checkpoint keeps the scaling it was trained with).
    scaling = float(vae.config.scaling_factor) if keep_autoencoder else float(1.0 / latents.std())
    vae.register_to_config(scaling_factor=scaling)
    wall["encode"] = time.perf_counter() - start - sum(wall.values())
    log(f"{len(scenes)} scenes encoded, latent scaling {scaling:.4f}")

    dit_losses: list[float] = []
    transformer, text_encoder = train_transformer(cfg, transformer_config(), latents * scaling, scenes, text_encoder,
                                                  captions, dit_losses, dit=initial[3] if initial else None)
    separation["trained"] = caption_separation(text_encoder, captions, probe)
    wall["transformer_and_text_encoder"] = time.perf_counter() - start - sum(wall.values())

    scheduler = DPMSolverMultistepScheduler.from_config({**SANA_SCHEDULER_CONFIG, "flow_shift": cfg.flow_shift})
    pipe = SanaPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer, scheduler=scheduler)
    pipe.save_pretrained(out_dir, safe_serialization=True)
    write_calibration_prompts(out_dir, cfg.seed)
    wall["total_training"] = time.perf_counter() - start
    score = quick_score(pipe, cfg.eval_captions, cfg.seed) if cfg.eval_captions else None
    train_log = {
        "command": command,
        "config": asdict(cfg),
        "init_from": str(init_from) if init_from else None,
        "models": {**(_model_configs(("vae", vae), ("transformer", transformer), ("text_encoder", text_encoder)) if initial
                      else {"vae": vae_config(), "transformer": transformer_config(),
                            "text_encoder": text_encoder_config(len(tokenizer))}),
                   "params": {name: sum(p.numel() for p in m.parameters()) for name, m in
                              (("vae", vae), ("transformer", transformer), ("text_encoder", text_encoder))}},
        "latent_scaling_factor": scaling,
        "autoencoder_reconstruction_score": recon_scores,
        "caption_separation_mean_cosine": separation,
        "wall_seconds": {k: round(v, 1) for k, v in wall.items()},
        "losses": {"autoencoder": ae_losses, "transformer": _thin(dit_losses, cfg.log_every)},
        "autoencoder_reused_from_cache": reused,
        "quick_score_torch": score,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    write_json_atomic(out_dir / "train_log.json", train_log)
    return train_log


def write_calibration_prompts(out_dir: Path, seed: int, count: int = 32) -> None:
    """Training-split captions (grammar and paraphrases) shipped with the checkpoint: `sana-edge
    export --precision int8` calibrates on them (export/exporter.py) instead of on generic
    prompts the model never saw."""
    from .checkpoint import CHECKPOINT_CALIBRATION_PROMPTS
    from .shapes_text import training_caption

    rng = np.random.default_rng(seed + 99)
    scenes = [shapes.parse_caption(c) for _, c in shapes.dataset(seed + 99, count, 32, split="train")]
    captions = [training_caption(scene, rng, p_grammar=0.5) for scene in scenes]
    header = "# int8 calibration prompts for this checkpoint: shapes-task training captions\n"
    write_text_atomic(out_dir / CHECKPOINT_CALIBRATION_PROMPTS, header + "\n".join(captions) + "\n")


def _thin(values: list[float], every: int) -> list[float]:
    """Mean loss per `every` steps: the curve without thousands of numbers."""
    return [round(float(np.mean(values[i:i + every])), 5) for i in range(0, len(values), every)]


def run_training(out_dir: Path, seed: int = 0, force: bool = False, ae_steps: int | None = None,
                 dit_steps: int | None = None, threads: int = 2, eval_captions: int | None = None,
                 init_from: Path | None = None, dit_scenes: int | None = None, dit_lr: float | None = None,
                 text_lr: float | None = None, new_autoencoder: bool = False) -> dict:
    """`sana-edge train-tiny`: check the options, train into a staging folder, report."""
    from . import shapes_stage_cache
    from .staging import check_out_dir, staging_dir

    given = {"ae_steps": ae_steps, "dit_steps": dit_steps, "eval_captions": eval_captions, "dit_scenes": dit_scenes,
             "dit_lr": dit_lr, "text_lr": text_lr}
    cfg = TrainConfig(seed=seed, threads=threads, new_autoencoder=new_autoencoder,
                      **{k: v for k, v in given.items() if v is not None})
    for name, value in (("--ae-steps", cfg.ae_steps), ("--dit-steps", cfg.dit_steps), ("--threads", cfg.threads),
                        ("--dit-scenes", cfg.dit_scenes)):
        if value < 1:
            raise UserError(f"{name} must be at least 1 (got {value})")
    if not cfg.dit_lr > 0:
        raise UserError(f"--dit-lr must be above 0 (got {cfg.dit_lr})")
    if not cfg.text_lr >= 0:
        raise UserError(f"--text-lr must be 0 (a frozen text encoder) or above (got {cfg.text_lr})")
    if new_autoencoder and init_from is None:
        raise UserError("--new-autoencoder replaces the autoencoder of an --init-from checkpoint: give --init-from "
                        "(without it, train-tiny trains a new autoencoder anyway)")
    if cfg.eval_captions < 0:
        raise UserError(f"--eval-captions must be 0 or more (got {cfg.eval_captions})")
    if init_from is not None and not Path(init_from).is_dir():
        raise UserError(f"--init-from {init_from} is not a folder: give a checkpoint written by sana-edge train-tiny")
    check_out_dir(out_dir, force)
    command = (f"sana-edge train-tiny {out_dir} --seed {cfg.seed} --threads {cfg.threads} --ae-steps {cfg.ae_steps} "
               f"--dit-steps {cfg.dit_steps} --dit-scenes {cfg.dit_scenes} --dit-lr {cfg.dit_lr} --text-lr {cfg.text_lr} "
               f"--eval-captions {cfg.eval_captions}" + (f" --init-from {init_from}" if init_from else "")
               + (" --new-autoencoder" if new_autoencoder else ""))
    with staging_dir(out_dir) as stage:
        log = train(stage, cfg, autoencoder_cache=shapes_stage_cache.cache_dir_for(out_dir), command=command,
                    init_from=init_from)
    score = log["quick_score_torch"]
    summary = (f", quick held-out score {score['grammar']['overall']:.1%} (grammar) / "
               f"{score['template']['overall']:.1%} (paraphrase templates)") if score else ""
    print(f"trained shapes-SANA written to {out_dir} in {log['wall_seconds']['total_training'] / 60:.1f} min{summary}")
    return log


if __name__ == "__main__":
    import sys

    from sana_edge.cli import main as cli_main  # `python -m sana_edge.export.train_shapes DIR ...`

    raise SystemExit(cli_main(["train-tiny", *sys.argv[1:]]))
