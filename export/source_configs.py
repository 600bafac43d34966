"""The checkpoint's own component configs, kept in every export as `configs/<folder>/config.json`
(diffusers' subfolder names). The runtime never reads them; interop does: optimum-onnx's
`ORTSanaPipeline` needs each component's config.json next to its graph, and an optimum-onnx
export carries them, from which `sana-edge import` derives the manifest's model values.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from sana_edge.errors import UserError

CONFIGS_DIR = "configs"
# Exported component -> the diffusers checkpoint subfolder whose config describes it.
SOURCE_FOLDERS = {"text_encoder": "text_encoder", "transformer": "transformer", "vae_decoder": "vae"}


def config_file(root: Path, component: str) -> Path:
    return root / CONFIGS_DIR / SOURCE_FOLDERS[component] / "config.json"


def write_source_configs(stage: Path, pipe) -> None:
    """Save the transformer, VAE and text encoder configs of a loaded pipeline into `stage`."""
    for component, folder in SOURCE_FOLDERS.items():
        module = getattr(pipe, folder)
        target = stage / CONFIGS_DIR / folder
        target.mkdir(parents=True, exist_ok=True)
        if hasattr(module, "save_config"):  # diffusers models
            module.save_config(target)
        else:  # transformers models
            module.config.to_json_file(target / "config.json")


def read_config(path: Path, fix: str) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path} is missing; {fix}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path} is not a readable JSON config ({type(exc).__name__}); {fix}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} is not a JSON object; {fix}")
    return data


def model_values_from_configs(configs: dict[str, dict], scheduler: dict):
    """The manifest's ModelValues from config dicts (component name -> config), through the same
    function the exporter applies to a loaded pipeline."""
    from .checkpoint import model_values

    def namespace(config: dict):
        return SimpleNamespace(config=SimpleNamespace(**config))

    pipe = SimpleNamespace(**{SOURCE_FOLDERS[c]: namespace(cfg) for c, cfg in configs.items()},
                           scheduler=namespace(scheduler))
    try:
        return model_values(pipe)
    except (AttributeError, TypeError, ValueError) as exc:
        raise UserError(f"the component configs lack a value sana-edge needs ({exc}); "
                        "use configs written by diffusers/transformers for a SANA checkpoint") from None
