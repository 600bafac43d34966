"""Load on `sana-edge serve` over loopback, and `sana-edge batch` throughput with 1 vs 2 workers.

    python -m benchmarks.serve_load [--model DIR] [--clients 1,4,8] [--requests 24] [--seconds 60]

Serve: for each client count, a fresh server (`sana-edge serve`, --max-queue 4) and that many
client threads posting OpenAI image requests until `--requests` are answered or `--seconds`
pass (both bounds hold: nothing runs unbounded). A 429 is counted, then the client waits its
Retry-After (at most 1 s) and tries again. Reported: p50/p95 latency of the images, images/s,
429s, errors, and the server's peak RSS (sampled from /proc every 0.2 s).
Batch: the same prompts through Ray Data on a local Ray of this machine's CPUs, one actor with
all the cores against one actor per core (ORT threads = the actor's CPUs), and in-process.
Results: benchmarks/results/serve_load.{json,md}. The default model is the built-in one.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
CAPTIONS = ("a large green triangle on the right on a white background",
            "a small red circle on the left on a black background",
            "a large blue square in the center on a white background")


def rss_bytes(pid: int) -> int:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class RssSampler(threading.Thread):
    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self._done = pid, 0, threading.Event()

    def run(self):
        while not self._done.wait(0.2):
            self.peak = max(self.peak, rss_bytes(self.pid))

    def stop(self) -> int:
        self._done.set()
        self.join()
        return self.peak


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_server(model: Path, max_queue: int):
    import httpx

    port = _free_port()
    process = subprocess.Popen([str(Path(sys.executable).parent / "sana-edge"), "serve", "--model", str(model),
                                "--port", str(port), "--max-queue", str(max_queue)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return process, base
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("error: the server did not start")


def load_run(model: Path, clients: int, requests: int, seconds: float, steps: int, max_queue: int) -> dict:
    import httpx

    process, base = _start_server(model, max_queue)
    try:
        return _drive_clients(process, base, clients, requests, seconds, steps)
    finally:
        process.terminate()
        process.wait(60)


def _drive_clients(process, base: str, clients: int, requests: int, seconds: float, steps: int) -> dict:
    import httpx

    httpx.post(f"{base}/v1/images/generations", json={"prompt": CAPTIONS[0], "steps": 1}, timeout=120)  # warm
    sampler = RssSampler(process.pid)
    sampler.start()
    lock, latencies, counts = threading.Lock(), [], {"429": 0, "errors": 0, "sent": 0}
    start = time.perf_counter()
    deadline = start + seconds

    def client(index: int):
        with httpx.Client(timeout=max(seconds, 60)) as http:
            while time.perf_counter() < deadline:
                with lock:
                    if len(latencies) + counts["sent"] >= requests:
                        return
                    counts["sent"] += 1
                t0 = time.perf_counter()
                try:
                    response = http.post(f"{base}/v1/images/generations", json={
                        "prompt": CAPTIONS[index % len(CAPTIONS)], "steps": steps, "seed": index})
                    status = response.status_code
                except httpx.HTTPError:
                    status = -1
                with lock:
                    counts["sent"] -= 1
                    if status == 200:
                        latencies.append(time.perf_counter() - t0)
                    elif status == 429:
                        counts["429"] += 1
                    else:
                        counts["errors"] += 1
                if status == 429:
                    time.sleep(min(1.0, float(response.headers.get("Retry-After", 1))))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    peak = sampler.stop()
    ordered = sorted(latencies)
    return {"clients": clients, "images": len(ordered), "seconds": round(wall, 2),
            "images_per_s": round(len(ordered) / wall, 3),
            "p50_s": round(statistics.median(ordered), 3) if ordered else None,
            "p95_s": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 3) if ordered else None,
            "rate_limited_429": counts["429"], "errors": counts["errors"], "server_peak_rss_mib": round(peak / 2**20)}


def batch_run(model: Path, prompts: int, steps: int, workers: int | None, cpus: int) -> dict:
    """`sana-edge batch` on Ray (workers actors x cpus each) or in-process (workers None)."""
    from rich.console import Console

    from sana_edge.batch.items import Defaults, read_items
    from sana_edge.batch.runner import local_results, run_batch

    folder = Path(tempfile.mkdtemp(prefix="sana-edge-batch-bench-"))
    (folder / "prompts.txt").write_text("".join(f"{CAPTIONS[i % 3]}\n" for i in range(prompts)))
    items = read_items(folder / "prompts.txt", Defaults(steps=steps))
    if workers is None:
        results = local_results(model, threads=cpus, verify=True)
    else:
        from sana_edge.batch.ray_runner import ray_results

        results = ray_results(model, None, workers, cpus, True)
    start = time.perf_counter()
    summary = run_batch(items, folder / "out", results, Console(stderr=True, quiet=True))
    wall = time.perf_counter() - start
    from sana_edge.batch.index import load_index

    per_image = statistics.median(r["timings"]["total"] for r in load_index(folder / "out").values())
    pool = workers or 1
    return {"mode": "in-process" if workers is None else f"ray {workers} x {cpus} cpu",
            "images": summary.made, "failed": summary.failed, "wall_s": round(wall, 2),
            "images_per_s": round(summary.made / wall, 3), "worker_s_per_image": round(per_image, 3),
            "worker_bound_images_per_s": round(pool / per_image, 3)}


def write_results(result: dict) -> None:
    from sana_edge.fileio import write_json_atomic, write_text_atomic

    RESULTS.mkdir(exist_ok=True)
    write_json_atomic(RESULTS / "serve_load.json", result)
    m = result["machine"]
    lines = ["# Serve load and batch throughput", "",
             f"On {m['cpu']} ({m['cores']} cores, {m['isa']}); model {result['model']}, {result['size']} px, "
             f"{result['steps']} steps, server --max-queue {result['max_queue']}.", "",
             f"`{result['serve_command']}`: N client threads on loopback, each posting until the image count or the "
             "time bound is reached; a 429 waits its Retry-After (at most 1 s) and retries.", "",
             "| clients | images | images/s | p50 s | p95 s | 429s | errors | server peak RSS MiB |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in result["serve"]:
        lines.append(f"| {r['clients']} | {r['images']} | {r['images_per_s']} | {r['p50_s']} | {r['p95_s']} | "
                     f"{r['rate_limited_429']} | {r['errors']} | {r['server_peak_rss_mib']} |")
    lines += ["", f"`{result['batch_command']}`: batch of {result['batch_prompts']} prompts. Wall time includes starting Ray and loading the "
              "model in each actor; worker s/image is the median time of one image inside a worker, and "
              "worker-bound images/s = workers / that (the rate once startup is paid):", "",
              "| mode | images | wall s | images/s (wall) | worker s/image | worker-bound images/s |",
              "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in result["batch"]:
        lines.append(f"| {r['mode']} | {r['images']} | {r['wall_s']} | {r['images_per_s']} | "
                     f"{r['worker_s_per_image']} | {r['worker_bound_images_per_s']} |")
    write_text_atomic(RESULTS / "serve_load.md", "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    import os

    from benchmarks.bench_machine import cpu_isa, cpu_model
    from sana_edge.default_model import default_export_dir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--clients", default="1,4,8")
    parser.add_argument("--requests", type=int, default=24, help="images per client count (bound)")
    parser.add_argument("--seconds", type=float, default=60.0, help="time per client count (bound)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--max-queue", type=int, default=4)
    parser.add_argument("--batch-prompts", type=int, default=16)
    parser.add_argument("--parts", default="serve,batch", help="serve, batch or both (a part left out keeps "
                        "its previous results)")
    args = parser.parse_args(argv)
    model = args.model or default_export_dir()
    if not (model / "manifest.json").is_file():
        from sana_edge.cli import main as cli

        assert cli(["export"] if args.model is None else ["export", "--help"]) == 0
    cores = os.cpu_count() or 1
    parts = args.parts.split(",")
    previous = json.loads((RESULTS / "serve_load.json").read_text()) if (RESULTS / "serve_load.json").is_file() else {}
    serve = previous.get("serve", [])
    if "serve" in parts:
        serve = [load_run(model, int(c), args.requests, args.seconds, args.steps, args.max_queue)
                 for c in args.clients.split(",")]
    batch = previous.get("batch", [])
    if "batch" in parts:
        batch = [batch_run(model, args.batch_prompts, args.steps, None, cores),
                 batch_run(model, args.batch_prompts, args.steps, 1, cores),
                 batch_run(model, args.batch_prompts, args.steps, cores, 1)]
    for row in serve + batch:
        print(row, flush=True)
    from sana_edge.pipeline import SanaEdgePipeline

    size = SanaEdgePipeline.from_export(model, verify=False).default_size
    command = "python -m benchmarks.serve_load " + " ".join(argv if argv is not None else sys.argv[1:])
    write_results({"serve_command": command if "serve" in parts else previous.get("serve_command"),
                   "batch_command": command if "batch" in parts else previous.get("batch_command"),
                   "machine": {"cpu": cpu_model(), "cores": cores, "isa": cpu_isa()}, "model": model.name,
                   "size": size, "steps": args.steps, "max_queue": args.max_queue,
                   "batch_prompts": args.batch_prompts, "serve": serve, "batch": batch})
    print(f"wrote {RESULTS / 'serve_load.md'}")


if __name__ == "__main__":
    main()
