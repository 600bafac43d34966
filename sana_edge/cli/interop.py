"""Interop with optimum-onnx: `sana-edge convert` (a sana-edge export as a folder optimum's
ORTSanaPipeline loads) and `sana-edge import` (an optimum-onnx Sana export as a sana-edge export).
Both are build-side (they rewrite ONNX graphs): the `export` extra, imported in the bodies."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import UserError
from .app import app, require_export_extra
from .app import console as make_console


@app.command("convert")
def convert_command(
    export_dir: Path = typer.Argument(..., help="sana-edge export folder (ONNX graphs)."),
    out_dir: Path = typer.Option(..., "-o", "--out", help="Folder to write in the chosen layout."),
    layout: str = typer.Option("optimum", help="optimum: the folder optimum-onnx's ORTSanaPipeline loads."),
    force: bool = typer.Option(False, "--force", help="Replace a non-empty output folder."),
):
    """Write an export in another tool's folder layout (optimum-onnx's ORTSanaPipeline)."""
    if layout != "optimum":
        raise UserError(f"unknown layout '{layout}'; the one supported is optimum")
    require_export_extra()
    from ..export.optimum_layout import convert_export

    convert_export(export_dir, out_dir, force=force, log=make_console().print)


@app.command("import")
def import_command(
    optimum_dir: Path = typer.Argument(..., help="Folder written by `optimum-cli export onnx --task text-to-image`."),
    out_dir: Path = typer.Option(..., "-o", "--out", help="sana-edge export folder to create."),
    checkpoint: Optional[str] = typer.Option(
        None, help="The diffusers checkpoint it was exported from: validate every graph against PyTorch (eager attention)."),
    force: bool = typer.Option(False, "--force", help="Replace a non-empty output folder."),
):
    """Turn an optimum-onnx Sana export into a sana-edge export (manifest, names, validation)."""
    require_export_extra()
    import sys
    import warnings

    from ..export.optimum_import import OptimumTraceWarning, import_optimum

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        import_optimum(optimum_dir, out_dir, checkpoint=checkpoint, force=force, log=make_console().print)
    for warning in caught:
        if issubclass(warning.category, OptimumTraceWarning):
            print(f"warning: {warning.message}", file=sys.stderr)
