"""Ray on a local two-node cluster (`ray start --head`, then `ray start --address`, each with one
CPU): `sana-edge batch --ray` uses both nodes and a re-run makes nothing; `sana-edge serve --ray
--replicas 2` answers the openai client from two replicas. The cluster's processes are started
here with --block and stopped here by their process groups (never a machine-wide `ray stop`)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytest.importorskip("ray.data", reason="the Ray tests need the 'ray' extra")
pytest.importorskip("ray.serve", reason="the Ray tests need the 'ray' extra")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

from serve_support import b64_pixels, pixels  # noqa: E402

BIN = Path(sys.executable).parent
# No usage reports; on SIGTERM a node stops at once (Ray's default drains for up to 30 s); token
# auth with a token of this test run only, so ~/.ray/auth_token (shared, rewritten by any local
# ray.init) can neither break nor open the test cluster.
ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
       "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ray_node(temp_dir: str, log: Path, *args: str) -> subprocess.Popen:
    command = [str(BIN / "ray"), "start", "--block", "--num-cpus", "1", "--node-ip-address", "127.0.0.1",
               "--temp-dir", temp_dir, "--disable-usage-stats", "--dashboard-agent-listen-port", str(_free_port()),
               *args]
    return subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, env=ENV, start_new_session=True)


def _stop(process: subprocess.Popen, grace: float = 20.0) -> None:
    """SIGTERM to the node's process group (Ray drains and stops its processes), then SIGKILL."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def _wait_started(process: subprocess.Popen, log: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while "Ray runtime started" not in log.read_text():
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.5)


def _wait_for_nodes(address: str, count: int, timeout: float = 90.0) -> None:
    script = (f"import ray; ray.init(address={address!r}, logging_level='ERROR'); "
              "print(sum(1 for n in ray.nodes() if n['Alive']))")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=ENV, timeout=60)
        if result.returncode == 0 and result.stdout.strip().endswith(str(count)):
            return
        time.sleep(2)
    raise AssertionError(f"the local Ray cluster did not reach {count} nodes: {result.stderr[-2000:]}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    logs = tmp_path_factory.mktemp("ray-logs")
    temp_dir = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths must stay < 108 bytes
    port = _free_port()
    address = f"127.0.0.1:{port}"
    head = _ray_node(temp_dir, logs / "head.log", "--head", "--port", str(port), "--include-dashboard", "false",
                     "--ray-client-server-port", str(_free_port()))
    nodes = [head]
    try:
        _wait_started(head, logs / "head.log")
        nodes.append(_ray_node(temp_dir, logs / "worker.log", "--address", address))
        _wait_started(nodes[1], logs / "worker.log")
        _wait_for_nodes(address, 2)
        yield address
    finally:
        for node in reversed(nodes):  # the worker node first, then the head
            _stop(node)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _index(outdir: Path) -> list[dict]:
    return [json.loads(line) for line in (outdir / "index.jsonl").read_text().splitlines()]


def test_batch_spreads_over_both_nodes_and_resumes(cluster, tiny_export, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"prompt number {i}\n" for i in range(6)))
    out = tmp_path / "out"
    command = [str(BIN / "sana-edge"), "batch", str(prompts), "-o", str(out), "--model", str(tiny_export),
               "--steps", "2", "--size", "64x64", "--ray", cluster, "--workers", "2"]
    first = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    records = _index(out)
    assert len(records) == 6 and {r["status"] for r in records} == {"ok"}
    assert len({r["node"]["node_id"] for r in records}) == 2  # both nodes made images
    assert {r["node"]["threads"] for r in records} == {1}  # ONNX Runtime threads = the actor's CPUs
    # an image made on a Ray node is `sana-edge batch` in-process with the same seed
    local = tmp_path / "local"
    single = tmp_path / "one.txt"
    single.write_text("prompt number 3\n")
    assert subprocess.run([str(BIN / "sana-edge"), "batch", str(single), "-o", str(local), "--model", str(tiny_export),
                           "--steps", "2", "--size", "64x64", "--seed", "3"], env=ENV, timeout=300).returncode == 0
    remote = next(r for r in records if r["prompt"] == "prompt number 3")
    assert (pixels((out / remote["file"]).read_bytes()) == pixels((local / _index(local)[0]["file"]).read_bytes())).all()

    stamps = {r["file"]: (out / r["file"]).stat().st_mtime_ns for r in records}
    again = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 made, 6 already done" in again.stderr
    assert _index(out) == records
    assert {f: (out / f).stat().st_mtime_ns for f in stamps} == stamps


def test_ray_serve_two_replicas_answer_the_openai_client(cluster, tiny_export, tmp_path):
    port = _free_port()
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen([str(BIN / "sana-edge"), "serve", "--ray", cluster, "--replicas", "2", "--port", str(port),
                               "--model", str(tiny_export)], stdout=log, stderr=subprocess.STDOUT, env=ENV,
                              start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        # the command says so once every replica runs (/healthz answers as soon as the first does)
        while "sana-edge serving on Ray Serve" not in (tmp_path / "serve.log").read_text():
            assert server.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "Ray Serve did not come up"
            time.sleep(0.5)
        assert httpx.get(f"{base}/healthz", timeout=10).json()["status"] == "ok"
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0, timeout=120)
        result = client.images.generate(prompt="a red fox", size="64x64", extra_body={"seed": 4, "steps": 2})
        assert b64_pixels(result.data[0].b64_json).shape == (64, 64, 3)
        script = (f"import ray; from ray import serve; ray.init(address={cluster!r}, logging_level='ERROR'); "
                  "d = serve.status().applications['sana-edge'].deployments['sana-edge']; "
                  "print(d.status.value, d.replica_states)")
        status = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=ENV, timeout=120)
        assert status.stdout.split(None, 1) == ["HEALTHY", "{'RUNNING': 2}\n"], status.stderr[-2000:]
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the command removes its deployment on the way out
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(10)
        log.close()
