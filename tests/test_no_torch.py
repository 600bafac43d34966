"""The runtime imports and generates with torch (and the build-side libraries) unimportable."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_generate_without_torch(tiny_export, tmp_path):
    script = textwrap.dedent(f"""
        import sys
        for blocked in ("torch", "diffusers", "transformers", "onnx", "onnxscript"):
            sys.modules[blocked] = None  # any import of them now raises ImportError
        from sana_edge import SanaEdgePipeline
        from sana_edge.cli import main
        pipe = SanaEdgePipeline.from_export({str(tiny_export)!r})
        image = pipe("a red fox", height=128, width=192, steps=2, seed=0)
        assert image.size == (192, 128), image.size
        code = main(["run", "a red fox", "-m", {str(tiny_export)!r}, "-o", {str(tmp_path / 'x.png')!r},
                     "--steps", "2", "--height", "128", "--width", "128", "--seed", "1"])
        assert code == 0, code
        loaded = [m for m in ("torch", "diffusers", "transformers") if sys.modules.get(m) is not None]
        assert not loaded, loaded
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")
    assert (tmp_path / "x.png").is_file()


def test_build_command_without_torch_names_the_extra(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None
        from sana_edge.cli import main
        sys.exit(main(["init-tiny", {str(tmp_path / 'tiny')!r}]))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "pip install 'sana-edge[export]'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "tiny").exists()


def test_serve_and_batch_without_torch(tiny_export, tmp_path):
    """The server (and the batch runner) stay on the torch-free runtime."""
    import pytest

    pytest.importorskip("starlette", reason="needs the 'serve' extra")
    pytest.importorskip("httpx")
    (tmp_path / "prompts.txt").write_text("a red fox\n")
    script = textwrap.dedent(f"""
        import sys
        for blocked in ("torch", "diffusers", "transformers", "onnx", "onnxscript"):
            sys.modules[blocked] = None
        import httpx
        from sana_edge.cli import main
        from sana_edge.serve.app import ServeConfig
        from sana_edge.serve.local import running_server
        with running_server(ServeConfig(models=({str(tiny_export)!r},))) as url:
            response = httpx.post(url + "/v1/images/generations", timeout=120,
                                  json={{"prompt": "a red fox", "size": "64x64", "steps": 1}})
            assert response.status_code == 200, response.text
        code = main(["batch", {str(tmp_path / 'prompts.txt')!r}, "-o", {str(tmp_path / 'out')!r},
                     "-m", {str(tiny_export)!r}, "--steps", "1", "--size", "64x64"])
        assert code == 0, code
        loaded = [m for m in ("torch", "diffusers", "transformers") if sys.modules.get(m) is not None]
        assert not loaded, loaded
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")
