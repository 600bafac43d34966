"""The `sana-edge` Typer app and its entry point: every failure ends in one line and an exit code.

Command modules (sana_edge.cli.*) register on `app`. They import only the runtime at module
level; build-side (sana_edge.export, sana_edge.quant), benchmark and optional-extra modules are
imported inside the command bodies, so `sana-edge --help` and every `COMMAND --help` work on a
runtime-only install (tests/test_cli_layering.py).
"""

from __future__ import annotations

import os
import signal
import sys
import warnings

import typer

from ..checks import Limit
from ..errors import UserError

app = typer.Typer(add_completion=False, no_args_is_help=False, pretty_exceptions_enable=False,
                  help="SANA text-to-image on exported graphs.", invoke_without_command=True)

EXIT_USAGE = 2
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


class Terminated(BaseException):
    """SIGTERM or SIGHUP (args[0]: the signal number), raised in the main thread so `finally`
    blocks and staging cleanup run."""


@app.callback()
def _root(ctx: typer.Context):
    if ctx.invoked_subcommand is None:  # a bare `sana-edge`: show the commands, then say why it stopped
        typer.echo(ctx.get_help())
        raise UserError("no command given; pick one of the commands above (e.g. `sana-edge run \"a red fox\"`)")


def console(stderr: bool = False):
    from rich.console import Console

    # markup off: messages carry literal brackets (pip extras like sana-edge[export], shapes)
    return Console(stderr=stderr, highlight=False, soft_wrap=True, markup=False)


def _ranged(limit: Limit):
    def check(value):
        problem = None if value is None else limit.problem(value)
        if problem:
            raise typer.BadParameter(problem)
        return value

    return check


def number_option(default, *names: str, limit: Limit, help: str):
    """A numeric option with its range (sana_edge.checks): refused while parsing, shown in --help."""
    return typer.Option(default, *names, callback=_ranged(limit), help=f"{help} ({limit})")


def require_extra(extra: str, modules: tuple[str, ...]) -> None:
    """Import `modules`, or fail with one line naming the extra that provides them."""
    import importlib

    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            interrupt = interruption(exc)
            if interrupt is not None:  # Ctrl-C while a C extension initialised: not a missing extra
                raise interrupt from None
            missing = getattr(exc, "name", None) or module
            raise UserError(f"this command needs the '{extra}' extra ({missing} is missing); "
                            f"install it with: pip install 'sana-edge[{extra}]'") from None


def require_export_extra() -> None:
    require_extra("export", ("sana_edge.export.exporter", "torch", "diffusers", "transformers", "onnx"))


def _usage_message(exc) -> str:
    message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    message = " ".join(message.split()).rstrip(".")  # click's messages may wrap: keep one line
    ctx = getattr(exc, "ctx", None)
    where = ctx.command_path if ctx is not None else "sana-edge"
    return f"error: {message}; see `{where} --help`"


def interruption(exc: BaseException) -> BaseException | None:
    """The Ctrl-C or SIGTERM behind `exc`, if any: a signal that lands while a C extension
    initialises (onnxruntime, torch) comes out as an ImportError caused by it."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, (KeyboardInterrupt, Terminated)):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _on_signal(signum, frame):
    raise Terminated(signum)


def _install_signal_handlers() -> dict:
    """SIGTERM/SIGHUP raise Terminated in the main thread, so cleanup runs as it does on Ctrl-C."""
    previous = {}
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) is signal.SIG_DFL:
            try:
                previous[signum] = signal.signal(signum, _on_signal)
            except ValueError:  # not the main thread (e.g. a test runner's worker): leave it
                pass
    return previous


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 2 bad input, 130 SIGINT, 143 SIGTERM, 129 SIGHUP).

    Set SANA_EDGE_TRACEBACK=1 to see the traceback behind an OSError or MemoryError line."""
    from typer._click import exceptions as click_exceptions  # typer vendors its own click

    warnings.formatwarning = lambda message, *args, **kwargs: f"warning: {message}\n"
    previous = _install_signal_handlers()
    try:
        result = app(args=argv, prog_name="sana-edge", standalone_mode=False)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except click_exceptions.UsageError as exc:
        print(_usage_message(exc), file=sys.stderr)
        return EXIT_USAGE
    except click_exceptions.ClickException as exc:
        print(f"error: {' '.join(exc.format_message().split())}", file=sys.stderr)
        return exc.exit_code
    except typer.Abort as exc:
        if isinstance(exc.__cause__, EOFError):  # click turns any EOFError into Abort: not an interrupt
            raise exc.__cause__ from None
        print("error: interrupted; nothing was written", file=sys.stderr)
        return EXIT_SIGINT
    except (KeyboardInterrupt, Terminated) as exc:
        return _interrupted(exc)
    except (OSError, MemoryError) as exc:  # the disk, permissions, memory: the machine, not a bug
        if os.environ.get("SANA_EDGE_TRACEBACK"):
            raise
        print(f"error: {_environment_message(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:
        interrupt = interruption(exc)
        if interrupt is None:
            raise
        return _interrupted(interrupt)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if isinstance(result, int) and result == EXIT_SIGINT:  # typer turns Ctrl-C into Exit(130)
        print("error: interrupted; nothing was written", file=sys.stderr)
    return result if isinstance(result, int) else 0


def _interrupted(exc: BaseException) -> int:
    if isinstance(exc, Terminated):
        signum = exc.args[0] if exc.args else signal.SIGTERM
        print(f"error: terminated ({signal.Signals(signum).name}); nothing was written", file=sys.stderr)
        return 128 + signum
    print("error: interrupted; nothing was written", file=sys.stderr)
    return EXIT_SIGINT


def _environment_message(exc: BaseException) -> str:
    if isinstance(exc, MemoryError):
        return "out of memory; lower --height/--width or pass a smaller --max-memory so the work is split"
    where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
    reason = exc.strerror or _one_line(exc) or type(exc).__name__
    return f"{reason}{where}; nothing was written (set SANA_EDGE_TRACEBACK=1 for details)"


def entry_point() -> None:
    sys.exit(main())
