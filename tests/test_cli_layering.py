"""Layering: the runtime (sana_edge/) never imports the build side or the benchmarks, and the CLI
imports and shows every command's help with all of them (and torch) unimportable."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "sana_edge"
BUILD_SIDE = ("sana_edge.export", "sana_edge.quant", "sana_edge.benchmarks")
BLOCKED = (*BUILD_SIDE, "torch", "diffusers", "transformers", "onnx", "onnxscript")


def _imports(path: Path):
    """(module imported, inside a function?) for every import statement of a runtime module."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    package = parts[:-1] if parts[-1] != "__init__" else parts[:-1]
    tree = ast.parse(path.read_text(), str(path))

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield alias.name, in_function
            elif isinstance(child, ast.ImportFrom):
                base = list(package[: len(package) - child.level + 1]) if child.level else []
                module = ".".join(base + ([child.module] if child.module else []))
                for alias in child.names:
                    yield (f"{module}.{alias.name}" if not child.module else module), in_function
            yield from visit(child, nested)

    yield from visit(tree, False)


def test_runtime_modules_never_import_the_build_side():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        in_cli = path.parent.name == "cli"
        for module, in_function in _imports(path):
            if module.startswith(BUILD_SIDE) and not (in_cli and in_function):
                offenders.append(f"{path.relative_to(PACKAGE.parent)} imports {module}")
    assert not offenders, offenders


def test_every_command_help_without_build_side_or_torch():
    script = textwrap.dedent(f"""
        import sys
        for blocked in {BLOCKED!r}:
            sys.modules[blocked] = None  # any import of them now raises ImportError
        from sana_edge.cli import app, main
        import typer.main
        names = sorted(typer.main.get_command(app).commands)
        assert len(names) >= 7, names
        for name in [None, *names]:
            code = main(["--help"] if name is None else [name, "--help"])
            assert code == 0, (name, code)
        loaded = sorted(m for m in {BLOCKED!r} if sys.modules.get(m) is not None)
        assert not loaded, loaded
        print("commands:", " ".join(names))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "commands: " in result.stdout


def test_build_command_without_the_extra_names_it(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        sys.modules["sana_edge.export"] = None
        from sana_edge.cli import main
        sys.exit(main(["export", "shapes-sana", "-o", {str(tmp_path / 'out')!r}]))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().startswith("error: ") and "pip install 'sana-edge[export]'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
