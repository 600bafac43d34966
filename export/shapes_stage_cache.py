"""The DC-AE stage's cache: the autoencoder stage of `sana-edge train-tiny` takes most of the
training time and depends only on the seed and the autoencoder settings, so a run keeps its result
in a sibling folder (`.<name>.autoencoder-cache`) and a later run with the same settings (after a
crash, or to iterate on the DiT and text encoder) reuses it instead of retraining."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from sana_edge.fileio import write_json_atomic

AUTOENCODER_FIELDS = ("seed", "threads", "ae_steps", "ae_batch", "ae_lr", "ae_latent_noise", "ae_shape_weight",
                      "ae_edge_weight")


def cache_dir_for(out_dir: Path) -> Path:
    out_dir = Path(out_dir).resolve()
    return out_dir.with_name(f".{out_dir.name}.autoencoder-cache")


def _key(cfg, vae_config: dict) -> dict:
    # Through JSON, so tuples and lists compare equal with what was read back.
    return json.loads(json.dumps({"config": {k: getattr(cfg, k) for k in AUTOENCODER_FIELDS}, "vae": vae_config}))


def load(cache: Path, cfg, vae_config: dict):
    """(vae, record) from `cache` when it holds this seed's and settings' autoencoder, else None."""
    from diffusers import AutoencoderDC

    record_path = cache / "autoencoder.json"
    if not record_path.is_file():
        return None
    record = json.loads(record_path.read_text())
    if record.get("key") != _key(cfg, vae_config):
        return None
    return AutoencoderDC.from_pretrained(cache / "vae").eval(), record


def save(cache: Path, cfg, vae_config: dict, vae, record: dict) -> None:
    """Replace the cache with this autoencoder; the record is written last, so a half-written
    cache is never read as complete."""
    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True)
    vae.save_pretrained(cache / "vae", safe_serialization=True)
    write_json_atomic(cache / "autoencoder.json", {"key": _key(cfg, vae_config), **record}, indent=1)
