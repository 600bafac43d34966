"""optimum-onnx's ORTSanaPipeline, driven by sana-edge's benchmarks and slow tests. Runs only in
the optimum-onnx venv (benchmarks.peer_envs), never in sana-edge's own environment.

    <optimum venv>/bin/python -m benchmarks.optimum_peer generate FOLDER PROMPT LATENTS.npy OUT.png [--steps N] [--guidance G]

`OptimumRunner` is the benchmark worker's runner for the `optimum-*` backends: it loads
ORTSanaPipeline from a folder holding one component (so the worker's peak RSS is that stage's)
and times the pipeline's own component objects, called as SanaPipeline calls them (torch tensors
in, torch tensors out: optimum's conversions are part of what a user pays).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def load_pipeline(folder: Path, threads: int | None = None):
    import onnxruntime as ort
    import torch
    from optimum.onnxruntime.modeling_diffusion import ORTSanaPipeline  # not re-exported by the package

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        torch.set_num_threads(threads)
    return ORTSanaPipeline.from_pretrained(str(folder), export=False, session_options=options)


def generate(folder: Path, prompt: str, latents_file: Path, out: Path, steps: int, guidance: float) -> None:
    import numpy as np
    import torch

    pipe = load_pipeline(folder)
    latents = torch.from_numpy(np.load(latents_file))
    height, width = (side * pipe.vae_scale_factor for side in latents.shape[2:])
    image = pipe(prompt, negative_prompt="", height=height, width=width, num_inference_steps=steps,
                 guidance_scale=guidance, latents=latents, use_resolution_binning=False, output_type="pil").images[0]
    image.save(out)


class OptimumRunner:
    def __init__(self, job: dict):
        import torch

        from .bench_models import stage_inputs

        self.torch = torch
        self.pipe = load_pipeline(Path(job["graph"]), job["threads"])
        feeds = {k: torch.from_numpy(v) for k, v in stage_inputs(job["model"], job["stage"], job["size"]).items()}
        pipe = self.pipe
        if job["stage"] == "text_encoder":
            self._call = lambda: pipe.text_encoder(feeds["input_ids"], attention_mask=feeds["attention_mask"])[0]
        elif job["stage"] == "step":
            self._call = lambda: pipe.transformer(
                feeds["latents"], encoder_hidden_states=feeds["encoder_hidden_states"],
                encoder_attention_mask=feeds["encoder_attention_mask"], timestep=feeds["timestep"], return_dict=False)[0]
        else:
            self._call = lambda: pipe.vae.decode(feeds["latent"], return_dict=False)[0]

    def run(self):
        with self.torch.no_grad():
            return self._call().float().numpy()

    def device_peak_mb(self):
        return None


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="run optimum-onnx's ORTSanaPipeline on a folder")
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate")
    gen.add_argument("folder", type=Path)
    gen.add_argument("prompt")
    gen.add_argument("latents", type=Path)
    gen.add_argument("out", type=Path)
    gen.add_argument("--steps", type=int, default=20)
    gen.add_argument("--guidance", type=float, default=4.5)
    args = parser.parse_args(argv)
    generate(args.folder, args.prompt, args.latents, args.out, args.steps, args.guidance)


if __name__ == "__main__":
    main()
