"""The shapes-score report: markdown tables and the sample grid (benchmarks/shapes_score.py)."""

from __future__ import annotations

from pathlib import Path

KIND_TITLES = {"grammar": "grammar", "template": "paraphrase templates", "pair": "word pairs", "all": "all"}


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def markdown(result: dict) -> str:
    s = result["settings"]
    rows = result["precisions"]
    kinds = list(rows["fp32"]["task"])
    counts = ", ".join(f"{n} {KIND_TITLES[k]}" for k, n in s["captions"].items())
    lines = [
        "# shapes-SANA task score per export precision",
        "",
        f"Evaluation set `benchmarks/shapes_eval_set.json` ({counts} captions of held-out scenes), {s['size']} px, "
        f"{s['steps']} steps, guidance {s['guidance']}, noise seed {s['noise_seed']} + i, ONNX Runtime CPU. "
        "grammar: the canonical caption; paraphrase templates: word orders training never saw; word pairs: "
        "training templates with a word pair training never saw (\"at the centre\", \"big square\", \"little "
        "triangle\", \"upper right\"). int4: int4 transformer with the text-encoder bits the checkpoint asks for "
        "(sana_edge_quantization.json); int4-te4: `--precision int4 --text-encoder-bits 4` (int4 everywhere); ov-int8 / "
        "ov-int4: `--target openvino` (NNCF on OpenVINO IR, run by OpenVINO CPU). Score = mean of the per-attribute accuracies; all correct = images right in "
        "every stated attribute. PSNR / SSIM: against the fp32 image from the same noise (mean).",
        "",
        "| precision | " + " | ".join(KIND_TITLES[k] for k in kinds) + " | shape (all) | all correct (all) "
        "| loss vs fp32 (all, points) | graphs (MB) | PSNR (dB) | SSIM | verdicts changed |",
        "|---|" + "---|" * len(kinds) + "---|---|---|---|---|---|---|",
    ]
    fp32 = rows["fp32"]["task"]["all"]["overall"]
    for precision, row in rows.items():
        task, cmp = row["task"], row.get("vs_fp32")
        loss = "-" if precision == "fp32" else f"{100 * (fp32 - task['all']['overall']):+.1f}"
        metrics = ["-", "-"] if cmp is None else [f"{cmp['psnr_db']:.1f}", f"{cmp['ssim']:.4f}"]
        lines.append(
            f"| {precision} | " + " | ".join(f"**{_pct(task[k]['overall'])}**" for k in kinds)
            + f" | {_pct(task['all']['accuracy']['shape'])} | {_pct(task['all']['all_correct'])} | {loss} "
            + f"| {row['graph_bytes'] / 1e6:.2f} | " + " | ".join(metrics) + f" | {row.get('changed_verdicts', '-')} |"
        )
    lines += ["", "Per attribute, fp32:", "", "| captions | " + " | ".join(rows["fp32"]["task"]["all"]["accuracy"]) + " |",
              "|---|" + "---|" * len(rows["fp32"]["task"]["all"]["accuracy"])]
    for kind, summary in rows["fp32"]["task"].items():
        lines.append(f"| {KIND_TITLES[kind]} | " + " | ".join(_pct(v) for v in summary["accuracy"].values()) + " |")
    users = result.get("user_prompts") or {}
    if users:
        precisions = list(next(iter(users.values())))
        lines += ["", "## Prompts a new user might type", "",
                  f"Each prompt from {next(iter(next(iter(users.values())).values()))['count']} noise seeds "
                  f"({s['noise_seed']} + i); task score (all correct).", "",
                  "| prompt | " + " | ".join(precisions) + " |", "|---|" + "---|" * len(precisions)]
        for prompt, by_precision in users.items():
            cells = [f"{_pct(v['overall'])} ({_pct(v['all_correct'])})" for v in by_precision.values()]
            lines.append(f"| {prompt} | " + " | ".join(cells) + " |")
    lines += ["", f"![fp32 samples]({result['grid']})", "", f"Command: `{result['command']}`", ""]
    return "\n".join(lines)


def sample_grid(images: dict[str, list], captions: dict[str, list[str]], path: Path, per_kind: int = 8,
                columns: int = 4) -> None:
    """fp32 samples with their captions under them: what the score is counting."""
    from PIL import Image, ImageDraw

    tiles = [(Image.fromarray(im).resize((192, 192), Image.NEAREST), caption)
             for kind in ("grammar", "template") for im, caption in list(zip(images[kind], captions[kind]))[:per_kind]]
    rows = (len(tiles) + columns - 1) // columns
    grid = Image.new("RGB", (columns * 200, rows * 250), "white")
    draw = ImageDraw.Draw(grid)
    for i, (image, caption) in enumerate(tiles):
        x, y = (i % columns) * 200 + 4, (i // columns) * 250 + 4
        grid.paste(image, (x, y))
        lines = [""]
        for word in caption.split():  # wrap at ~32 characters
            lines[-1:] = [f"{lines[-1]} {word}".strip()] if len(lines[-1]) + len(word) < 32 else [lines[-1], word]
        draw.multiline_text((x, y + 194), "\n".join(lines), fill="black", spacing=1)
    grid.save(path)
