"""The `sana-edge` command line: one module per command group, all registered on one Typer app.

Only the runtime is imported here; see sana_edge.cli.app for the layering rule.
"""

# Import order is the order `sana-edge --help` lists the commands in.
from . import run, build, interop, eval, bench, serve, batch  # noqa: F401,I001  (each registers its commands on `app`)
from .app import app, console, entry_point, main, require_export_extra, require_extra

__all__ = ["app", "console", "entry_point", "main", "require_export_extra", "require_extra"]
