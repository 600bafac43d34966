"""Wall time and peak RSS of `init-tiny` + `export --precision P` for two (or more) installs of
sana-edge, run interleaved so machine noise hits every side alike (issue 11: before/after a
refactor).

    python -m benchmarks.export_cost --side before=/path/to/old/.venv/bin/sana-edge \\
        --side after=.venv/bin/sana-edge [--preset mid] [--precision int8] [--repeats 2]

Each run is a fresh process under `/usr/bin/time -v` (peak RSS of the process tree's largest
process, as the kernel reports it). Writes benchmarks/results/export_cost.json and .md.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def timed(command: list[str]) -> dict:
    """Run `command` under /usr/bin/time -v; {"wall_s", "peak_rss_mib"}; raise on failure."""
    done = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr[-2000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time .*: (?:(\d+):)?(\d+):([\d.]+)", done.stderr)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    hours, minutes, seconds = (float(g) if g else 0.0 for g in wall.groups())
    return {"wall_s": round(hours * 3600 + minutes * 60 + seconds, 2), "peak_rss_mib": round(int(rss[1]) / 1024, 1)}


def one_round(binary: str, preset: str, precision: str, work: Path) -> dict:
    checkpoint, export = work / "ckpt", work / "export"
    for path in (checkpoint, export):
        shutil.rmtree(path, ignore_errors=True)
    init = timed([binary, "init-tiny", str(checkpoint), "--preset", preset])
    exported = timed([binary, "export", str(checkpoint), "-o", str(export), "--precision", precision])
    return {"init_tiny": init, "export": exported}


def summarise(runs: list[dict]) -> dict:
    return {step: {key: statistics.median(run[step][key] for run in runs) for key in ("wall_s", "peak_rss_mib")}
            for step in ("init_tiny", "export")}


def markdown(result: dict) -> str:
    sides = list(result["sides"])
    lines = [f"# init-tiny --preset {result['preset']} + export --precision {result['precision']}",
             "", f"CPU: {result['machine']['cpu']} ({result['machine']['isa']}), {result['repeats']} interleaved "
             "rounds per side, medians.", "",
             "| step | " + " | ".join(f"{s} wall (s) | {s} peak RSS (MiB)" for s in sides) + " |",
             "|---|" + "---:|" * (2 * len(sides))]
    for step in ("init_tiny", "export"):
        cells = []
        for side in sides:
            median = result["sides"][side]["median"][step]
            cells += [f"{median['wall_s']:.1f}", f"{median['peak_rss_mib']:.0f}"]
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    from benchmarks.bench_machine import cpu_isa, cpu_model, load_average, write_json_and_markdown

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", action="append", required=True, help="NAME=path to a sana-edge executable")
    parser.add_argument("--preset", default="mid")
    parser.add_argument("--precision", default="int8")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    sides = dict(side.split("=", 1) for side in args.side)
    runs: dict[str, list] = {name: [] for name in sides}
    with tempfile.TemporaryDirectory(prefix="export-cost-") as tmp:
        for repeat in range(args.repeats):
            for name, binary in sides.items():  # interleaved: before, after, before, after
                runs[name].append(one_round(binary, args.preset, args.precision, Path(tmp)))
                print(f"round {repeat + 1} {name}: {runs[name][-1]}", flush=True)
    result = {"preset": args.preset, "precision": args.precision, "repeats": args.repeats,
              "machine": {"cpu": cpu_model(), "isa": cpu_isa(), "load_average_1m": load_average()},
              "sides": {name: {"binary": sides[name], "runs": runs[name], "median": summarise(runs[name])}
                        for name in sides}}
    write_json_and_markdown(args.out, "export_cost", result, markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
