"""Train the shipped shapes-SANA: real diffusers/transformers classes at small sizes, on the
procedural shapes task (sana_edge.shapes), on a laptop-class CPU in well under an hour.

    sana-edge train-tiny DIR --seed 0      (or: python -m sana_edge.export.train_shapes DIR)

1. Tokenizer: Gemma special ids, BPE trained on the complex human instruction (CHI) plus captions,
   with one merged token per "<colour> background" phrase (see `phrase_merges`).
2. Text encoder: a small Gemma-2, random and frozen.
3. DC-AE (32x, 32 latent channels, small widths): reconstruction loss, shape pixels weighted up,
   decoder fed slightly noisy latents so it tolerates the sampler's imperfect ones.
4. DiT (SanaTransformer2DModel): flow matching on the DC-AE latents, SANA's convention
   x_t = (1 - s) x0 + s n, target velocity n - x0 (Flow-DPM-Solver takes x0 = x_t - s v),
   logit-normal s shifted by the scheduler's flow_shift, 10% caption dropout to the embedding of
   the empty negative prompt (what classifier-free guidance feeds at run time), EMA weights.
Writes the diffusers layout plus train_log.json (config, losses, wall times, a quick score).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from sana_edge import shapes
from sana_edge.errors import UserError

IMAGE_SIZE = 128  # px; 4x4 latents at the DC-AE's 32x
CAPTION_CHANNELS = 64


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    threads: int = 2
    ae_steps: int = 1200
    ae_batch: int = 32
    ae_lr: float = 1e-3
    ae_latent_noise: float = 0.1  # x std of the latents, added before decoding while training
    ae_shape_weight: float = 4.0  # extra loss weight on shape pixels (small shapes are ~2% of pixels)
    dit_scenes: int = 30000  # encoded once; the DiT samples batches from them
    dit_steps: int = 6000
    dit_batch: int = 128
    dit_lr: float = 1e-3
    dit_ema: float = 0.999
    caption_dropout: float = 0.1
    flow_shift: float = 3.0
    eval_captions: int = 48  # quick held-out score at the end (torch pipeline), 0 to skip
    log_every: int = 100


def vae_config() -> dict:
    from .configs import DCAE_F32C32

    channels = (8, 16, 32, 32, 64, 64)
    return dict(
        DCAE_F32C32, attention_head_dim=16,
        encoder_block_out_channels=channels, decoder_block_out_channels=channels,
        encoder_layers_per_block=(1,) * 6, decoder_layers_per_block=(1,) * 6,
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


def phrase_merges() -> tuple[tuple[str, str], ...]:
    """One token per "<colour> background". The frozen random encoder is close to a bag of
    words (its near-uniform attention averages over ~160 CHI tokens), so "red" would read the
    same as shape colour and as background colour; the merged token keeps the roles apart."""
    return tuple((f"\u2581{colour}", "\u2581background") for colour in shapes.PALETTE)


def _log(message: str) -> None:
    print(f"[train-shapes {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _images_tensor(items):
    """(B, 3, H, W) in [-1, 1] and a (B, 1, H, W) shape-pixel mask."""
    import torch

    arrays = np.stack([np.asarray(image, np.float32) for image, _ in items])
    backgrounds = np.stack([shapes.PALETTE[shapes.parse_caption(c).background] for _, c in items])
    mask = (np.abs(arrays - backgrounds[:, None, None, :]).max(-1) > 0)[:, None]
    x = torch.from_numpy(arrays / 127.5 - 1.0).permute(0, 3, 1, 2).contiguous()
    return x, torch.from_numpy(mask.astype(np.float32))


def _lr(step: int, total: int, peak: float, warmup: int = 100) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup))))


def _optimizer_step(opt, module, loss, lr: float) -> float:
    """One clipped AdamW step at learning rate `lr`; returns the loss as a float."""
    import torch

    for group in opt.param_groups:
        group["lr"] = lr
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
    opt.step()
    return loss.item()


def train_autoencoder(cfg: TrainConfig, losses: list) -> object:
    import torch
    from diffusers import AutoencoderDC

    vae = AutoencoderDC(**vae_config())
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.ae_lr, weight_decay=0.0)
    vae.train()
    for step in range(cfg.ae_steps):
        x, mask = _images_tensor(shapes.dataset(cfg.seed * 1_000_003 + step, cfg.ae_batch, IMAGE_SIZE))
        z = vae.encode(x).latent
        z = z + cfg.ae_latent_noise * z.detach().std() * torch.randn_like(z)
        y = vae.decode(z).sample
        weight = 1.0 + cfg.ae_shape_weight * mask
        loss = ((y - x) ** 2 * weight).mean() / weight.mean()
        losses.append(_optimizer_step(opt, vae, loss, _lr(step, cfg.ae_steps, cfg.ae_lr)))
        if (step + 1) % cfg.log_every == 0 or step == 0:
            _log(f"autoencoder step {step + 1}/{cfg.ae_steps} loss {np.mean(losses[-cfg.log_every:]):.4f}")
    return vae.eval()


def encode_scenes(vae, cfg: TrainConfig):
    """Latents (unscaled) and captions of `cfg.dit_scenes` training scenes."""
    import torch

    latents, captions = [], []
    chunk = 250
    with torch.no_grad():
        for start in range(0, cfg.dit_scenes, chunk):
            items = shapes.dataset(cfg.seed * 7_919 + 10_000_000 + start, min(chunk, cfg.dit_scenes - start), IMAGE_SIZE)
            latents.append(vae.encode(_images_tensor(items)[0]).latent)
            captions += [caption for _, caption in items]
    return torch.cat(latents), captions


class CaptionEmbedder:
    """Caption embeddings exactly as the runtime makes them (sana_edge.prompt on the saved
    tokenizer.json, the same Gemma-2), trimmed to the unmasked positions: masked caption tokens
    add nothing to the DiT's cross-attention, so the 300-token padding need not be computed."""

    def __init__(self, tokenizer_json: Path, text_encoder, chi: list[str]):
        from sana_edge.prompt import PromptTokenizer

        self.tokenizer = PromptTokenizer(tokenizer_json, chi, 300)
        self.text_encoder = text_encoder
        self.cache: dict[str, object] = {}
        self.null = self._encode([self.tokenizer.negative("")], select=False)[0]

    def _encode(self, tokens, select: bool = True):
        import torch

        ids = torch.from_numpy(np.concatenate([t.input_ids for t in tokens]))
        mask = np.concatenate([t.attention_mask for t in tokens])
        with torch.no_grad():
            hidden = self.text_encoder(input_ids=ids, attention_mask=torch.from_numpy(mask)).last_hidden_state.numpy()
        if select:
            hidden, mask = self.tokenizer.select(hidden, mask)
        return [torch.from_numpy(h[m.astype(bool)].copy()) for h, m in zip(hidden, mask)]

    def prepare(self, captions, batch: int = 64) -> None:
        todo = sorted(set(captions) - set(self.cache))
        for start in range(0, len(todo), batch):
            part = todo[start:start + batch]
            for caption, embedding in zip(part, self._encode([self.tokenizer.positive(c) for c in part])):
                self.cache[caption] = embedding

    def batch(self, captions, drop):
        """Padded (B, L, C) embeddings and (B, L) mask; `drop[i]` swaps in the null caption."""
        import torch

        rows = [self.null if d else self.cache[c] for c, d in zip(captions, drop)]
        length = max(r.shape[0] for r in rows)
        embeds = torch.zeros(len(rows), length, rows[0].shape[1])
        mask = torch.zeros(len(rows), length)
        for i, row in enumerate(rows):
            embeds[i, : row.shape[0]] = row
            mask[i, : row.shape[0]] = 1
        return embeds, mask


def train_transformer(cfg: TrainConfig, x0, captions, embedder: CaptionEmbedder, losses: list):
    import copy

    import torch
    from diffusers import SanaTransformer2DModel

    dit = SanaTransformer2DModel(**transformer_config())
    ema = copy.deepcopy(dit).eval().requires_grad_(False)
    opt = torch.optim.AdamW(dit.parameters(), lr=cfg.dit_lr, weight_decay=0.0)
    rng = np.random.default_rng(cfg.seed + 17)
    dit.train()
    for step in range(cfg.dit_steps):
        index = rng.integers(len(captions), size=cfg.dit_batch)
        drop = rng.random(cfg.dit_batch) < cfg.caption_dropout
        embeds, mask = embedder.batch([captions[i] for i in index], drop)
        clean = x0[torch.from_numpy(index)]
        noise = torch.randn_like(clean)
        # Logit-normal flow time, then SANA's shift: training sees the noise levels sampling visits.
        u = torch.sigmoid(torch.randn(cfg.dit_batch))
        sigma = cfg.flow_shift * u / (1 + (cfg.flow_shift - 1) * u)
        s = sigma[:, None, None, None]
        noisy = (1 - s) * clean + s * noise
        velocity = dit(noisy, encoder_hidden_states=embeds, encoder_attention_mask=mask, timestep=sigma * 1000).sample
        loss = ((velocity - (noise - clean)) ** 2).mean()
        losses.append(_optimizer_step(opt, dit, loss, _lr(step, cfg.dit_steps, cfg.dit_lr)))
        decay = min(cfg.dit_ema, (1 + step) / (10 + step))  # short warm-up: early EMA tracks the model
        with torch.no_grad():
            for e, p in zip(ema.parameters(), dit.parameters()):
                e.lerp_(p, 1 - decay)
        if (step + 1) % cfg.log_every == 0 or step == 0:
            _log(f"transformer step {step + 1}/{cfg.dit_steps} loss {np.mean(losses[-cfg.log_every:]):.4f}")
    return ema


def quick_score(pipe, count: int, seed: int) -> dict:
    """Held-out task score of the torch pipeline (20 steps, guidance 4.5): a sanity check only;
    the committed number comes from the exported runtime (benchmarks/shapes_score.py)."""
    import torch

    items = shapes.dataset(seed + 424_242, count, IMAGE_SIZE, split="held_out")
    scores = []
    for i, (_, caption) in enumerate(items):
        image = pipe(caption, height=IMAGE_SIZE, width=IMAGE_SIZE, num_inference_steps=20, guidance_scale=4.5,
                     generator=torch.Generator().manual_seed(i), use_resolution_binning=False).images[0]
        scores.append(shapes.score_image(image, caption))
    return shapes.summarize(scores)


def train(out_dir: Path, cfg: TrainConfig) -> dict:
    import torch
    from diffusers import DPMSolverMultistepScheduler, SanaPipeline
    from transformers import Gemma2Config, Gemma2Model

    from .checkpoint import default_complex_human_instruction
    from .configs import SANA_SCHEDULER_CONFIG
    from .tiny import _train_tokenizer

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    start = time.perf_counter()
    wall: dict[str, float] = {}
    chi = default_complex_human_instruction(SanaPipeline)
    corpus = ["\n".join(chi)] * 4 + [c for _, c in shapes.dataset(cfg.seed, 3000, 32, split="all")]
    tokenizer = _train_tokenizer(corpus, 1024, phrase_merges())
    gemma_config = Gemma2Config(**text_encoder_config(len(tokenizer)))
    gemma_config._attn_implementation = "eager"  # logit soft-capping needs eager attention
    text_encoder = Gemma2Model(gemma_config).eval()
    tokenizer.save_pretrained(out_dir / "tokenizer")
    embedder = CaptionEmbedder(out_dir / "tokenizer" / "tokenizer.json", text_encoder, chi)
    wall["text"] = time.perf_counter() - start

    ae_losses: list[float] = []
    vae = train_autoencoder(cfg, ae_losses)
    wall["autoencoder"] = time.perf_counter() - start - sum(wall.values())
    latents, captions = encode_scenes(vae, cfg)
    # SANA feeds the DiT latents * scaling_factor; make that unit variance, as DC-AE's 0.41407 does.
    scaling = float(1.0 / latents.std())
    vae.register_to_config(scaling_factor=scaling)
    embedder.prepare(captions)
    wall["encode"] = time.perf_counter() - start - sum(wall.values())
    _log(f"{len(captions)} scenes encoded, {len(embedder.cache)} distinct captions, latent scaling {scaling:.4f}")

    dit_losses: list[float] = []
    transformer = train_transformer(cfg, latents * scaling, captions, embedder, dit_losses)
    wall["transformer"] = time.perf_counter() - start - sum(wall.values())

    scheduler = DPMSolverMultistepScheduler.from_config({**SANA_SCHEDULER_CONFIG, "flow_shift": cfg.flow_shift})
    pipe = SanaPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer, scheduler=scheduler)
    pipe.save_pretrained(out_dir, safe_serialization=True)
    write_calibration_prompts(out_dir, cfg.seed)
    wall["total_training"] = time.perf_counter() - start
    score = quick_score(pipe, cfg.eval_captions, cfg.seed) if cfg.eval_captions else None
    log = {
        "config": asdict(cfg),
        "models": {"vae": vae_config(), "transformer": transformer_config(), "text_encoder_hidden": CAPTION_CHANNELS,
                   "params": {name: sum(p.numel() for p in m.parameters()) for name, m in
                              (("vae", vae), ("transformer", transformer), ("text_encoder", text_encoder))}},
        "latent_scaling_factor": scaling,
        "wall_seconds": {k: round(v, 1) for k, v in wall.items()},
        "losses": {"autoencoder": _thin(ae_losses, cfg.log_every), "transformer": _thin(dit_losses, cfg.log_every)},
        "quick_score_torch": score,
        "torch": torch.__version__,
    }
    (out_dir / "train_log.json").write_text(json.dumps(log, indent=1) + "\n")
    return log


def write_calibration_prompts(out_dir: Path, seed: int, count: int = 32) -> None:
    """Training-split captions shipped with the checkpoint: `sana-edge export --precision int8`
    calibrates on them (export/exporter.py) instead of on generic prompts the model never saw."""
    from .checkpoint import CHECKPOINT_CALIBRATION_PROMPTS

    captions = [c for _, c in shapes.dataset(seed + 99, count, 32, split="train")]
    header = "# int8 calibration prompts for this checkpoint: shapes-task training captions\n"
    (out_dir / CHECKPOINT_CALIBRATION_PROMPTS).write_text(header + "\n".join(captions) + "\n")


def _thin(values: list[float], every: int) -> list[float]:
    """Mean loss per `every` steps: the curve without thousands of numbers."""
    return [round(float(np.mean(values[i:i + every])), 5) for i in range(0, len(values), every)]


def run_training(out_dir: Path, seed: int = 0, force: bool = False, ae_steps: int | None = None,
                 dit_steps: int | None = None, threads: int = 2, eval_captions: int | None = None) -> dict:
    """`sana-edge train-tiny`: check the options, train into a staging folder, report."""
    from .staging import check_out_dir, staging_dir

    defaults = TrainConfig()
    cfg = TrainConfig(
        seed=seed, threads=threads,
        ae_steps=defaults.ae_steps if ae_steps is None else ae_steps,
        dit_steps=defaults.dit_steps if dit_steps is None else dit_steps,
        eval_captions=defaults.eval_captions if eval_captions is None else eval_captions,
    )
    for name, value in (("--ae-steps", cfg.ae_steps), ("--dit-steps", cfg.dit_steps), ("--threads", cfg.threads)):
        if value < 1:
            raise UserError(f"{name} must be at least 1 (got {value})")
    if cfg.eval_captions < 0:
        raise UserError(f"--eval-captions must be 0 or more (got {cfg.eval_captions})")
    check_out_dir(out_dir, force)
    with staging_dir(out_dir) as stage:
        log = train(stage, cfg)
    score = log["quick_score_torch"]
    summary = f", quick held-out score {score['overall']:.1%}" if score else ""
    print(f"trained shapes-SANA written to {out_dir} in {log['wall_seconds']['total_training'] / 60:.1f} min{summary}")
    return log


if __name__ == "__main__":
    import sys

    from sana_edge.cli import main as cli_main  # `python -m sana_edge.export.train_shapes DIR ...`

    raise SystemExit(cli_main(["train-tiny", *sys.argv[1:]]))
