"""One measured case of `benchmarks.gpu_suite`, in its own process:

    python -m benchmarks.gpu_case '<json case>'      # writes case["out"] (JSON)

A fresh process per (backend, model, size) makes its device memory that case's: NVML's used
memory sampled while it loads and runs, minus the reading taken before it touched the GPU (CUDA
context, allocator reserves and workspaces included, as `nvidia-smi` shows them). On the CPU
stand-in (`--dry-run`) the same code runs and memory is the process's peak RSS.

Backends: `torch-bf16` (diffusers SanaPipeline as users run it), `torch-nf4` (the same with
bitsandbytes nf4 on the transformer and text encoder, diffusers' PipelineQuantizationConfig),
`ort-cuda-<precision>` and `ort-cuda-<precision>-graph` (sana-edge on ONNX Runtime's CUDA
provider with IO binding; `-graph`: CUDA graphs for the step).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from sana_edge.fileio import write_json_atomic

from .bench_worker import DevicePeak, rss_mb

PROMPT = "a red fox in the snow, photograph"


def _median_stages(runs: list[dict]) -> dict:
    return {stage: statistics.median(run[stage] for run in runs) for stage in runs[0]}


class TorchCase:
    def __init__(self, case: dict):
        import torch
        from diffusers import SanaPipeline

        from sana_edge.export.checkpoint import default_complex_human_instruction

        self.torch, self.case = torch, case
        self.device = case["device"]
        # The CPU stand-in runs fp32: this CPU has no bf16 instructions (a tiny 64 px image took 42 s in bf16).
        dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        quantization = None
        if case["backend"] == "torch-nf4":
            if self.device != "cuda":
                raise RuntimeError("skipped: bitsandbytes nf4 through diffusers needs a GPU (its config refuses CPU)")
            from diffusers.quantizers import PipelineQuantizationConfig

            quantization = PipelineQuantizationConfig(
                quant_backend="bitsandbytes_4bit", components_to_quantize=["transformer", "text_encoder"],
                quant_kwargs={"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_compute_dtype": dtype})
        self.pipe = SanaPipeline.from_pretrained(case["checkpoint"], torch_dtype=dtype, quantization_config=quantization)
        self.pipe.to(self.device)
        self.pipe.set_progress_bar_config(disable=True)
        self.instruction = default_complex_human_instruction(SanaPipeline)

    def _sync(self):
        if self.device == "cuda":
            self.torch.cuda.synchronize()

    def _timed(self, work):
        self._sync()
        start = time.perf_counter()
        with self.torch.no_grad():
            result = work()
        self._sync()
        return result, time.perf_counter() - start

    def run(self) -> dict:
        pipe, size, steps = self.pipe, self.case["size"], self.case["steps"]
        embeds, t_text = self._timed(lambda: pipe.encode_prompt(
            PROMPT, True, negative_prompt="", device=self.device, complex_human_instruction=self.instruction))
        generator = self.torch.Generator(self.device).manual_seed(0)
        latents, t_denoise = self._timed(lambda: pipe(
            negative_prompt=None, prompt_embeds=embeds[0], prompt_attention_mask=embeds[1], negative_prompt_embeds=embeds[2],
            negative_prompt_attention_mask=embeds[3], height=size, width=size, num_inference_steps=steps,
            guidance_scale=4.5, output_type="latent", use_resolution_binning=False, generator=generator).images)
        image, t_decode = self._timed(lambda: pipe.vae.decode((latents / pipe.vae.config.scaling_factor).to(pipe.vae.dtype)).sample)
        self.finite = bool(self.torch.isfinite(image).all())
        return {"text_encoder": t_text, "denoise": t_denoise, "decode": t_decode}

    def extra(self) -> dict:
        if self.device != "cuda":
            return {}
        return {"torch_max_reserved_mib": self.torch.cuda.max_memory_reserved() / 2**20}


class OrtCudaCase:
    def __init__(self, case: dict):
        from sana_edge.pipeline import SanaEdgePipeline

        self.case = case
        options = {"backend": "ort-cuda", "device": case["device"], "cuda_graph": case["backend"].endswith("-graph")}
        # One pipeline as `sana-edge run` makes one image (the planner releases each stage: its
        # per-stage peaks are the memory goal's figure), one kept loaded for steady-state latency.
        budget = None
        if case.get("max_memory"):
            from sana_edge.memory import parse_bytes

            budget = parse_bytes(case["max_memory"])
        self.cold = SanaEdgePipeline.from_export(case["export"], keep_loaded=False, max_memory=budget, **options)
        self.warm = SanaEdgePipeline.from_export(case["export"], keep_loaded=True, **options)
        self.first = None

    def _generate(self, pipe):
        size = self.case["size"]
        return pipe.generate(PROMPT, height=size, width=size, steps=self.case["steps"], seed=0)

    def run(self) -> dict:
        if self.first is None:  # the cold, one-stage-at-a-time run comes first
            start = time.perf_counter()
            self.first = self._generate(self.cold)
            self.first_total = time.perf_counter() - start
            self.cold.close()
        result = self._generate(self.warm)
        self.finite = bool(np.isfinite(result.latents).all())
        return {k: result.timings[k] for k in ("text_encoder", "denoise", "decode")}

    def extra(self) -> dict:
        plan = self.first.plan
        return {"cold_total_s": self.first_total, "planner_estimate_mib": plan.peak / 2**20,
                "planner_stage_estimate_mib": {k: v / 2**20 for k, v in plan.stage_bytes.items()},
                "stage_peak_mib": {k: v / 2**20 for k, v in self.first.memory.items()},
                "memory_kind": self.cold.backend.memory_kind, "decoder_tile": plan.decoder_tile,
                "host_update_s": self._host_update_seconds()}

    def _host_update_seconds(self) -> float:
        """CFG + solver update on the host, per step, on this size's tensors (median of 20)."""
        denoiser, size = self.warm.denoiser, self.case["size"] // 32
        channels = self.warm.manifest.model.latent_channels
        rng = np.random.default_rng(0)
        latents = rng.standard_normal((1, channels, size, size), dtype=np.float32)
        output = rng.standard_normal((2, self.warm.manifest.model.out_channels, size, size), dtype=np.float32)
        from sana_edge.scheduler import FlowDPMSolver

        solver = FlowDPMSolver.from_diffusers_config(self.warm.scheduler_config)
        solver.set_timesteps(21)
        times = []
        for _ in range(20):
            start = time.perf_counter()
            latents = solver.step(denoiser.velocity(output, 4.5), latents)
            times.append(time.perf_counter() - start)
        return statistics.median(times)


def measure(case: dict) -> dict:
    device = DevicePeak({"device": case["device"]})
    record = {"case": {k: v for k, v in case.items() if k != "out"}}
    try:
        start = time.perf_counter()
        runner = device.measure(lambda: (TorchCase if case["backend"].startswith("torch") else OrtCudaCase)(case))
        record["load_s"] = time.perf_counter() - start
        runs = [device.measure(runner.run) for _ in range(case["warmup"] + case["repeats"])][case["warmup"]:]
        stages = _median_stages(runs)
        stages["step"] = stages["denoise"] / case["steps"]
        stages["total"] = stages["text_encoder"] + stages["denoise"] + stages["decode"]
        record.update(status="ok", seconds=stages, runs=runs, output_finite=runner.finite, **runner.extra())
    except Exception as exc:  # recorded, not fatal: the suite goes on with the other cases
        message = " ".join(str(exc).split())[:400]
        record.update(status="skipped" if message.startswith("skipped:") else "failed",
                      error=message if message.startswith("skipped:") else f"{type(exc).__name__}: {message}")
    record["device_peak_mib"] = device.mb
    record["peak_rss_mib"] = rss_mb()[1]
    return record


def main() -> None:
    case = json.loads(sys.argv[1])
    write_json_atomic(Path(case["out"]), measure(case))


if __name__ == "__main__":
    main()
