"""The two training loops of shapes-SANA (export/train_shapes.py runs them).

1. DC-AE (32x, 32 latent channels): reconstruction loss, L1 + L2, shape pixels and shape edges
   weighted up (small shapes are ~2% of the pixels, and the edges are what makes a circle a
   circle), decoder fed slightly noisy latents so it tolerates the sampler's imperfect ones.
2. DiT (SanaTransformer2DModel) and the Gemma-2 text encoder together: flow matching on the
   DC-AE latents, SANA's convention x_t = (1 - s) x0 + s n, target velocity n - x0
   (Flow-DPM-Solver takes x0 = x_t - s v), logit-normal s shifted by the scheduler's flow_shift;
   each scene captioned afresh every step (grammar or a paraphrase), 10% caption dropout to the
   empty negative prompt's embedding (what classifier-free guidance feeds), EMA of both models.
"""

from __future__ import annotations

import copy
import math
import time

import numpy as np

from sana_edge import shapes

from .shapes_text import CaptionEncoder, training_caption


def log(message: str) -> None:
    print(f"[train-shapes {time.strftime('%H:%M:%S')}] {message}", flush=True)


def images_tensor(items):
    """(B, 3, H, W) in [-1, 1] and a (B, 1, H, W) shape-pixel mask."""
    import torch

    arrays = np.stack([np.asarray(image, np.float32) for image, _ in items])
    backgrounds = np.stack([shapes.PALETTE[shapes.parse_caption(c).background] for _, c in items])
    mask = (np.abs(arrays - backgrounds[:, None, None, :]).max(-1) > 0)[:, None]
    x = torch.from_numpy(arrays / 127.5 - 1.0).permute(0, 3, 1, 2).contiguous()
    return x, torch.from_numpy(mask.astype(np.float32))


def cosine_lr(step: int, total: int, peak: float, warmup: int = 100) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup))))


def optimizer_step(opt, loss, lr: float) -> float:
    """One AdamW step at learning rate `lr` (times each group's `lr_scale`), gradients clipped to
    norm 1 per parameter group (the text encoder's gradient norm starts ~4x the DiT's: one global
    clip would let it set the DiT's step); returns the loss as a float."""
    import torch

    opt.zero_grad(set_to_none=True)
    loss.backward()
    for group in opt.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
        torch.nn.utils.clip_grad_norm_(group["params"], 1.0)
    opt.step()
    return loss.item()


def _edges(mask):
    """Pixels within 2 px of a shape's outline."""
    import torch.nn.functional as F

    return F.max_pool2d(mask, 5, 1, 2) + F.max_pool2d(-mask, 5, 1, 2)


def reconstruction_verdicts(vae, items) -> list[dict[str, bool]]:
    """The scorer's verdict on the DC-AE's reconstruction of each rendered scene: what the decoder
    can draw at best (a blurry decoder rounds corners and the scorer reads squares and triangles
    as circles)."""
    import torch
    from PIL import Image

    with torch.no_grad():
        out = vae.decode(vae.encode(images_tensor(items)[0]).latent).sample
    pixels = ((out.permute(0, 2, 3, 1).numpy() + 1) * 127.5).clip(0, 255).astype(np.uint8)
    return [shapes.score_image(Image.fromarray(p), c) for p, (_, c) in zip(pixels, items)]


def reconstruction_score(vae, items) -> dict:
    return shapes.summarize(reconstruction_verdicts(vae, items))


def train_autoencoder(cfg, vae_config: dict, image_size: int, losses: list, recon_scores: list):
    import torch
    from diffusers import AutoencoderDC

    probe = shapes.dataset(cfg.seed + 8_191, 64, image_size, split="held_out")
    # channels_last: oneDNN's convolutions run ~15% faster on it (measured on this CPU, AVX2).
    vae = AutoencoderDC(**vae_config).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.ae_lr, weight_decay=0.0)
    vae.train()
    for step in range(cfg.ae_steps):
        x, mask = images_tensor(shapes.dataset(cfg.seed * 1_000_003 + step, cfg.ae_batch, image_size))
        x = x.contiguous(memory_format=torch.channels_last)
        z = vae.encode(x).latent
        z = z + cfg.ae_latent_noise * z.detach().std() * torch.randn_like(z)
        y = vae.decode(z).sample
        weight = 1.0 + cfg.ae_shape_weight * mask + cfg.ae_edge_weight * _edges(mask)
        error = (y - x).abs()
        loss = ((error + 4 * error**2) * weight).mean() / weight.mean()
        losses.append(optimizer_step(opt, loss, cosine_lr(step, cfg.ae_steps, cfg.ae_lr)))
        if (step + 1) % cfg.log_every == 0 or step == 0:
            log(f"autoencoder step {step + 1}/{cfg.ae_steps} loss {np.mean(losses[-cfg.log_every:]):.4f}")
        if (step + 1) % (5 * cfg.log_every) == 0 or step + 1 == cfg.ae_steps:
            score = reconstruction_score(vae.eval(), probe)
            vae.train()
            recon_scores.append({"step": step + 1, "overall": score["overall"], "shape": score["accuracy"]["shape"]})
            log(f"autoencoder step {step + 1}: reconstructions score {score['overall']:.1%}, shape {score['accuracy']['shape']:.1%}")
    return vae.to(memory_format=torch.contiguous_format).eval()  # safetensors saves contiguous tensors


def encode_scenes(vae, cfg, image_size: int):
    """Latents (unscaled) and scenes of `cfg.dit_scenes` training scenes."""
    import torch

    latents, scenes = [], []
    chunk = 250
    with torch.no_grad():
        for start in range(0, cfg.dit_scenes, chunk):
            items = shapes.dataset(cfg.seed * 7_919 + 10_000_000 + start, min(chunk, cfg.dit_scenes - start), image_size)
            latents.append(vae.encode(images_tensor(items)[0]).latent)
            scenes += [shapes.parse_caption(caption) for _, caption in items]
    return torch.cat(latents), scenes


def train_transformer(cfg, transformer_config: dict, x0, scenes, text_encoder, captions: CaptionEncoder,
                      losses: list, dit=None):
    """Flow matching of a DiT (new from `transformer_config`, or `dit` to train on) and
    `text_encoder` together (the DiT alone when cfg.text_lr is 0); returns their EMA copies."""
    import torch
    from diffusers import SanaTransformer2DModel

    dit = SanaTransformer2DModel(**transformer_config) if dit is None else dit
    # text_lr 0: the text encoder stays as it is (already trained, e.g. under a new autoencoder):
    # no backward through it, which is ~3/4 of a joint step's time on CPU.
    train_text = cfg.text_lr > 0
    text_encoder.train(train_text).requires_grad_(train_text)
    ema_dit = copy.deepcopy(dit).eval().requires_grad_(False)
    ema_text = text_encoder
    groups = [{"params": list(dit.parameters())}]
    pairs = list(zip(ema_dit.parameters(), dit.parameters()))
    if train_text:
        ema_text = copy.deepcopy(text_encoder).eval().requires_grad_(False)
        groups.append({"params": list(text_encoder.parameters()), "lr_scale": cfg.text_lr / cfg.dit_lr})
        pairs += list(zip(ema_text.parameters(), text_encoder.parameters()))
    opt = torch.optim.AdamW(groups, lr=cfg.dit_lr, weight_decay=0.0)
    rng = np.random.default_rng(cfg.seed + 17)
    dit.train()
    for step in range(cfg.dit_steps):
        index = rng.integers(len(scenes), size=cfg.dit_batch)
        drop = rng.random(cfg.dit_batch) < cfg.caption_dropout
        texts = [training_caption(scenes[i], rng, cfg.p_grammar) for i in index]
        with torch.set_grad_enabled(train_text):
            embeds, mask = captions(text_encoder, texts, drop)
        clean = x0[torch.from_numpy(index)]
        noise = torch.randn_like(clean)
        # Logit-normal flow time, then SANA's shift: training sees the noise levels sampling visits.
        u = torch.sigmoid(torch.randn(cfg.dit_batch))
        sigma = cfg.flow_shift * u / (1 + (cfg.flow_shift - 1) * u)
        s = sigma[:, None, None, None]
        noisy = (1 - s) * clean + s * noise
        velocity = dit(noisy, encoder_hidden_states=embeds, encoder_attention_mask=mask, timestep=sigma * 1000).sample
        loss = ((velocity - (noise - clean)) ** 2).mean()
        losses.append(optimizer_step(opt, loss, cosine_lr(step, cfg.dit_steps, cfg.dit_lr)))
        decay = min(cfg.dit_ema, (1 + step) / (10 + step))  # short warm-up: early EMA tracks the model
        with torch.no_grad():
            for e, p in pairs:
                e.lerp_(p, 1 - decay)
        if (step + 1) % cfg.log_every == 0 or step == 0:
            log(f"transformer{' + text encoder' * train_text} step {step + 1}/{cfg.dit_steps} loss {np.mean(losses[-cfg.log_every:]):.4f}")
    return ema_dit, ema_text


def caption_separation(text_encoder, captions: CaptionEncoder, texts: list[str]) -> float:
    """Mean cosine similarity between different captions' embeddings (caption tokens mean-pooled,
    as the DiT sees them): near 1 when captions are small differences over the shared instruction,
    lower when the encoder keeps them apart."""
    import torch

    with torch.no_grad():
        embeds, mask = captions(text_encoder, texts, [False] * len(texts))
    pooled = (embeds[:, 1:] * mask[:, 1:, None]).sum(1) / mask[:, 1:].sum(1, keepdim=True)
    pooled = torch.nn.functional.normalize(pooled, dim=-1)
    similarity = pooled @ pooled.T
    n = len(texts)
    return float((similarity.sum() - similarity.diagonal().sum()) / (n * n - n))
