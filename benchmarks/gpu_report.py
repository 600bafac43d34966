"""The GPU suite's report: one JSON with every record, a markdown table and a PNG, named after the
machine (`gpu-<gpu>` or `gpu-dry-run-cpu` for the CPU stand-in)."""

from __future__ import annotations

import platform
from pathlib import Path

from sana_edge.fileio import write_json_atomic, write_text_atomic
from sana_edge.metrics import json_safe

BASELINE = "torch-bf16"
GOALS = ("whole image >= 3x diffusers bf16 at 1024 px", "Sana-0.6B 1024 px peak <= 4 GB with the planner",
         "DiT step within 3x of the compute floor")


def _versions() -> dict:
    import importlib.metadata as md

    found = {}
    for name in ("onnxruntime", "onnxruntime-gpu", "torch", "diffusers", "transformers", "bitsandbytes", "sana-edge"):
        try:
            found[name] = md.version(name)
        except md.PackageNotFoundError:
            continue
    return found


def summarize(records: dict, sizes: list[int], backends: list[str]) -> dict:
    floor = (records.get("floor") or {}).get("step_floor_s") or {}
    """size -> backend -> the row the table shows (None where the case did not run)."""
    cases = {(r["case"]["backend"], r["case"]["size"]): r for r in records.values()
             if r and "case" in r and r.get("status") == "ok"}
    summary = {}
    for size in sizes:
        base = cases.get((BASELINE, size))
        rows = {}
        for backend in backends:
            record = cases.get((backend, size))
            if record is None:
                rows[backend] = None
                continue
            seconds = record["seconds"]
            rows[backend] = {**{f"{k}_s": v for k, v in seconds.items()},
                             "device_peak_mib": record.get("device_peak_mib") or record.get("peak_rss_mib"),
                             "planner_estimate_mib": record.get("planner_estimate_mib"),
                             "host_update_s": record.get("host_update_s"),
                             "speedup_total": base["seconds"]["total"] / seconds["total"] if base else None,
                             "speedup_step": base["seconds"]["step"] / seconds["step"] if base else None,
                             "step_x_floor": seconds["step"] / floor[str(size)] if floor.get(str(size)) else None}
        summary[str(size)] = rows
    return summary


def _cell(value, fmt="{:.3f}") -> str:
    return "-" if value is None else fmt.format(value)


def markdown(result: dict) -> str:
    lines = [f"# GPU suite: {result['model']} on {result['machine']}", "",
             f"`{result['command']}`, {result['settings']['steps']} steps, median of {result['settings']['repeats']}; "
             "memory = NVML used memory of the case's process minus the reading before it (RSS on the CPU stand-in).", "",
             "| size | backend | text enc. s | step s | step / floor | decode s | total s | x diffusers bf16 | peak MiB | planner est. MiB | host CFG+solver s/step |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for size, rows in result["summary"].items():
        for backend, row in rows.items():
            if row is None:
                status = result["status"].get(f"{backend}:{size}", "not run")
                lines.append(f"| {size} | {backend} | {status} | | | | | | | | |")
                continue
            lines.append(f"| {size} | {backend} | {_cell(row['text_encoder_s'])} | {_cell(row['step_s'], '{:.4f}')} | "
                         f"{_cell(row['step_x_floor'], '{:.1f}x')} | "
                         f"{_cell(row['decode_s'])} | {_cell(row['total_s'])} | {_cell(row['speedup_total'], '{:.2f}x')} | "
                         f"{_cell(row['device_peak_mib'], '{:.0f}')} | {_cell(row['planner_estimate_mib'], '{:.0f}')} | "
                         f"{_cell(row['host_update_s'], '{:.5f}')} |")
    floor = result["records"].get("floor") or {}
    if floor.get("gemm_tflops"):
        lines += ["", f"Compute floor: step FLOPs / the best GEMM rate measured here ({floor['gemm_tflops']:.2f} TFLOP/s)."]
    if "dry run" in result["machine"]:
        lines += ["", "Dry run: the tiny model on the CPU provider, torch in fp32 (this CPU has no bf16), no warm-up "
                  "(times include loading): it checks the suite's code paths, it measures nothing about a GPU."]
    lines += ["", "Goals (issue 18): " + "; ".join(GOALS) + ".", ""]
    if result.get("trt_rtx"):
        lines += ["TensorRT-RTX engine on this GPU: " + str(result["trt_rtx"].get("outcome")), ""]
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [int(s) for s in result["summary"]]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    for backend in result["backends"]:
        for ax, key in zip(axes, ("total_s", "device_peak_mib")):
            points = [(s, (result["summary"][str(s)][backend] or {}).get(key)) for s in sizes]
            points = [(s, v) for s, v in points if v]
            if points:
                ax.plot(*zip(*points), marker="o", label=backend, linestyle="--" if backend == BASELINE else "-")
    axes[0].set(title=f"total, {result['settings']['steps']} steps", xlabel="px", ylabel="seconds", yscale="log")
    axes[1].set(title="peak memory", xlabel="px", ylabel="MiB")
    for ax in axes:
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.grid(True, alpha=0.3)
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(fontsize=8)
    fig.suptitle(f"{result['model']} on {result['machine']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(args, records: dict, folder: Path) -> list[Path]:
    from .bench_machine import gpu_model

    gpu = None if args.dry_run else gpu_model()
    machine = f"{gpu or 'no GPU'} ({'CPU stand-in, dry run' if args.dry_run else 'CUDA'}, {platform.machine()})"
    tag = "gpu-dry-run-cpu" if args.dry_run else "gpu-" + "-".join((gpu or "unknown").lower().split()[:3])
    status = {f"{r['case']['backend']}:{r['case']['size']}": r["status"] + (f" ({r['error']})" if r.get("error") else "")
              for r in records.values() if r and "case" in r}
    result = {"model": args.model, "machine": machine, "command": "python -m benchmarks.gpu_suite " +
              " ".join(getattr(args, "argv", []) or []), "versions": _versions(), "backends": args.backend_list,
              "settings": {"steps": args.steps, "repeats": args.repeats, "warmup": args.warmup, "sizes": args.size_list},
              "summary": summarize(records, args.size_list, args.backend_list), "status": status,
              "trt_rtx": records.get("trt-rtx"), "records": records}
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{tag}.json", folder / f"{tag}.md", folder / f"{tag}.png"]
    write_json_atomic(paths[0], json_safe(result))
    write_text_atomic(paths[1], markdown(result))
    plot(result, paths[2])
    return paths
