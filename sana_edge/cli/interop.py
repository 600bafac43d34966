"""Interop with optimum-onnx: `sana-edge convert` (a sana-edge export as a folder optimum's
ORTSanaPipeline loads) and `sana-edge import` (an optimum-onnx Sana export as a sana-edge export).
Both are build-side (they rewrite ONNX graphs): the `export` extra, imported in the bodies."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import UserError
from .app import app, require_export_extra, require_extra
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
    from ..manifest import load_manifest

    load_manifest(export_dir)  # a missing or damaged export is one line before torch loads
    _check_out_before_torch(out_dir, force, source=export_dir, source_name="export folder")
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
    require_extra("export", ("sana_edge.export.optimum_layout",))
    from ..export.optimum_layout import check_optimum_folder

    check_optimum_folder(optimum_dir)
    _check_out_before_torch(out_dir, force, source=optimum_dir, source_name="optimum folder")
    import sys
    import warnings

    from ..export.optimum_import import OptimumTraceWarning, import_optimum

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        import_optimum(optimum_dir, out_dir, checkpoint=checkpoint, force=force, log=make_console().print)
    for warning in caught:
        if issubclass(warning.category, OptimumTraceWarning):
            print(f"warning: {warning.message}", file=sys.stderr)


def _check_out_before_torch(out_dir: Path, force: bool, source: Path, source_name: str) -> None:
    """Checked in a blink, before torch's seconds of import: the output, and that it is not the input."""
    require_extra("export", ("sana_edge.export.staging",))
    from ..export.staging import check_out_dir

    check_out_dir(out_dir, force, source=source, source_name=source_name)
    require_export_extra()
