"""`sana-edge serve` as a command: graceful shutdown on SIGTERM (in-flight work finishes within
the grace, or is cancelled after it; no partial file either way), the warning for a non-loopback
bind without a key, the missing-extra message."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the server tests need the 'serve' extra")
httpx = pytest.importorskip("httpx")

from serve_support import pixels, sse_events  # noqa: E402

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(export, outdir, grace: float):
    port = _free_port()
    process = subprocess.Popen(
        [str(BIN / "sana-edge"), "serve", "--model", str(export), "--port", str(port), "--output-dir", str(outdir),
         "--shutdown-grace", str(grace)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline, "the server did not start"
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return process, base
        except httpx.HTTPError:
            time.sleep(0.2)


def _generate_through_sigterm(process, base, steps: int, size: str):
    """Start a url-format stream, SIGTERM the server at its first step; the events that came."""
    body = {"prompt": "a red fox", "size": size, "steps": steps, "seed": 1, "stream": True,
            "response_format": "url"}
    names = []
    with httpx.stream("POST", f"{base}/v1/images/generations", json=body, timeout=60) as response:
        try:
            for name, data in sse_events(response):
                names.append((name, data))
                if name == "image_generation.progress" and data["step"] == 1:
                    process.send_signal(signal.SIGTERM)
        except httpx.HTTPError:
            pass  # the server cut the stream: what matters is what it left on disk
    return names


def test_sigterm_lets_in_flight_work_finish_within_the_grace(tiny_export, tmp_path):
    outdir = tmp_path / "images"
    process, base = _start(tiny_export, outdir, grace=60)
    try:
        events = _generate_through_sigterm(process, base, steps=30, size="256x256")
        assert process.wait(30) == 128 + signal.SIGTERM  # exit status of a SIGTERM, after the shutdown
    finally:
        process.kill()
    assert events[-1][0] == "image_generation.completed"
    url = events[-1][1]["url"]
    files = list(outdir.iterdir())
    assert [f.name for f in files] == [url.rsplit("/", 1)[1]]  # the one image, whole
    assert pixels(files[0].read_bytes()).shape == (256, 256, 3)


def test_sigterm_past_the_grace_cancels_and_writes_nothing(tiny_export, tmp_path):
    outdir = tmp_path / "images"
    process, base = _start(tiny_export, outdir, grace=0)
    try:
        events = _generate_through_sigterm(process, base, steps=200, size="1024x1024")
        assert process.wait(30) == 128 + signal.SIGTERM
    finally:
        process.kill()
    names = [name for name, _ in events]
    assert "image_generation.completed" not in names
    assert 1 <= names.count("image_generation.progress") < 200  # stopped within a few of its 200 steps
    assert list(outdir.iterdir()) == []  # no image, no temp file


def test_non_loopback_bind_without_key_warns(tiny_export, monkeypatch, capsys):
    import uvicorn

    from sana_edge.cli import main

    bound = []

    def fake_run(server):  # record what would be bound; bind nothing
        bound.append(server.config.host)
        server.started = True

    monkeypatch.setattr(uvicorn.Server, "run", fake_run)
    monkeypatch.delenv("SANA_EDGE_API_KEY", raising=False)
    assert main(["serve", "--model", str(tiny_export), "--host", "0.0.0.0"]) == 0
    assert "warning: binding 0.0.0.0 without an API key" in capsys.readouterr().err
    monkeypatch.setenv("SANA_EDGE_API_KEY", "k")
    assert main(["serve", "--model", str(tiny_export), "--host", "0.0.0.0"]) == 0
    assert main(["serve", "--model", str(tiny_export)]) == 0
    assert "warning" not in capsys.readouterr().err
    assert bound == ["0.0.0.0", "0.0.0.0", "127.0.0.1"]  # loopback is the default


def test_serve_without_the_extra_names_it(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        sys.modules["starlette"] = None
        from sana_edge.cli import main
        sys.exit(main(["serve", "--model", {str(tmp_path)!r}]))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == ("error: this command needs the 'serve' extra (starlette is missing); "
                                     "install it with: pip install 'sana-edge[serve]'")


def test_serve_bad_model_folder_is_one_line(tmp_path, capsys):
    from sana_edge.cli import main

    assert main(["serve", "--model", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "not an export folder" in err and len(err.splitlines()) == 1


def test_port_in_use_is_one_line(tiny_export, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([str(BIN / "sana-edge"), "serve", "--model", str(tiny_export), "--port", str(port)],
                                capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (f"error: cannot listen on 127.0.0.1:{port} (Address already in use); "
                                     "pick another --port or --host")
