"""`sana-edge serve` through the official openai client and raw HTTP, on loopback: images equal
`sana-edge run`, OpenAI error shapes and statuses, auth, the bounded queue, cancellation on
disconnect, url files without traversal, metrics."""

from __future__ import annotations

import re
import threading
import time

import pytest

pytest.importorskip("starlette", reason="the server tests need the 'serve' extra")
openai = pytest.importorskip("openai", reason="the server tests need the openai client (dev extra)")
httpx = pytest.importorskip("httpx")

from serve_support import b64_pixels, pixels, running_server, sse_events  # noqa: E402

KEY = "test-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
PROMPT = "a red fox in the snow"


@pytest.fixture(scope="module")
def server(tiny_export, tmp_path_factory):
    from sana_edge.serve.app import ServeConfig

    config = ServeConfig(models=(tiny_export,), api_key=KEY, max_queue=1, max_pixels=256 * 256, max_body_bytes=4096,
                         output_dir=tmp_path_factory.mktemp("served"))
    with running_server(config) as url:
        yield url


@pytest.fixture()
def client(server):
    return openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0, timeout=120)


def test_openai_client_image_equals_sana_edge_run(client, tiny_export, tmp_path):
    from sana_edge.cli import main

    result = client.images.generate(prompt=PROMPT, n=2, size="128x64", response_format="b64_json",
                                    extra_body={"seed": 7, "steps": 2, "guidance_scale": 4.5})
    assert len(result.data) == 2
    first = b64_pixels(result.data[0].b64_json)
    assert first.shape == (64, 128, 3)  # height 64, width 128: "WxH"
    out = tmp_path / "run.png"
    assert main(["run", PROMPT, "--model", str(tiny_export), "--seed", "7", "--steps", "2",
                 "--width", "128", "--height", "64", "-o", str(out)]) == 0
    assert (first == pixels(out.read_bytes())).all()
    # n images take consecutive seeds: the second is `run --seed 8`
    assert main(["run", PROMPT, "--model", str(tiny_export), "--seed", "8", "--steps", "2",
                 "--width", "128", "--height", "64", "-o", str(out)]) == 0
    assert (b64_pixels(result.data[1].b64_json) == pixels(out.read_bytes())).all()
    assert not (first == b64_pixels(result.data[1].b64_json)).all()


def test_url_response_serves_only_files_the_server_wrote(client, server):
    result = client.images.generate(prompt=PROMPT, size="64x64", response_format="url", extra_body={"seed": 1, "steps": 1})
    url = result.data[0].url
    assert url.startswith(f"{server}/v1/images/files/")
    png = httpx.get(url, headers=AUTH).content
    assert pixels(png).shape == (64, 64, 3)
    assert httpx.get(url).status_code == 401  # the files are behind the key too
    name = url.rsplit("/", 1)[1]
    forged = name[:-40] + "0" * 32 + ".png"  # a real token with a made-up signature
    for bad in (forged, "..%2F..%2F..%2Fetc%2Fpasswd", "%2e%2e/%2e%2e/etc/passwd", name.replace(".png", ".txt")):
        response = httpx.get(f"{server}/v1/images/files/{bad}", headers=AUTH)
        assert response.status_code == 404, bad
        assert response.json()["error"]["message"]


BAD_REQUESTS = [  # (body, status, param, code)
    ({"prompt": PROMPT, "size": "100x100"}, 400, "size", "invalid_value"),
    ({"prompt": PROMPT, "size": "big"}, 400, "size", "invalid_value"),
    ({"prompt": PROMPT, "n": 0}, 400, "n", "invalid_value"),
    ({"prompt": PROMPT, "n": "two"}, 400, "n", "invalid_type"),
    ({"prompt": PROMPT, "steps": 1.5}, 400, "steps", "invalid_type"),
    ({"prompt": PROMPT, "seed": True}, 400, "seed", "invalid_type"),
    ({"prompt": PROMPT, "colour": "red"}, 400, "colour", "unknown_parameter"),
    ({"n": 1}, 400, "prompt", "missing_required_parameter"),
    ({"prompt": PROMPT, "size": "512x512"}, 400, "size", "image_too_large"),  # over --max-pixels
    ({"prompt": PROMPT, "response_format": "jpeg"}, 400, "response_format", "invalid_value"),
    ({"prompt": PROMPT, "precision": "int4"}, 400, "precision", "invalid_value"),
    ({"prompt": PROMPT, "model": "dall-e-3"}, 404, "model", "model_not_found"),
    ({"prompt": "x" * 5000}, 413, None, "request_too_large"),  # over the body limit
]


@pytest.mark.parametrize("body, status, param, code", BAD_REQUESTS, ids=[f"{c}-{p}" for _, _, p, c in BAD_REQUESTS])
def test_bad_requests_get_the_openai_error_shape(server, body, status, param, code):
    response = httpx.post(f"{server}/v1/images/generations", json=body, headers=AUTH)
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["param"], error["code"], error["type"]) == (param, code, "invalid_request_error")
    assert error["message"]


def test_openai_client_raises_its_own_error_types(client, server):
    with pytest.raises(openai.BadRequestError) as bad:
        client.images.generate(prompt=PROMPT, size="100x100")
    assert bad.value.body["param"] == "size"
    with pytest.raises(openai.AuthenticationError) as denied:
        openai.OpenAI(base_url=f"{server}/v1", api_key="wrong", max_retries=0).images.generate(prompt=PROMPT)
    assert denied.value.body["code"] == "invalid_api_key"
    with pytest.raises(openai.NotFoundError):
        client.images.generate(prompt=PROMPT, model="dall-e-3")


def test_key_is_required_except_for_page_and_health(server):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
        response = httpx.get(f"{server}/v1/models", headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(f"{server}/metrics").status_code == 401
    assert httpx.get(f"{server}/healthz").json()["status"] == "ok"
    page = httpx.get(f"{server}/", headers={"Origin": "http://evil.example"})
    assert page.status_code == 200 and 'id="generate"' in page.text
    assert "script-src 'sha256-" in page.headers["content-security-policy"]
    assert "access-control-allow-origin" not in page.headers  # no CORS unless --cors-origin


def test_models_route(client, tiny_export):
    models = client.models.list().data
    assert [m.id for m in models] == [tiny_export.name]
    assert models[0].model_extra["precision"] == "fp32"


def _stream(server, **fields):
    body = {"prompt": PROMPT, "size": "256x256", "steps": 200, "stream": True, **fields}
    return httpx.stream("POST", f"{server}/v1/images/generations", json=body, headers=AUTH, timeout=60)


def _metric(server, name: str) -> float:
    text = httpx.get(f"{server}/metrics", headers=AUTH).text
    match = re.search(rf"^{name} (\S+)$", text, flags=re.M)
    return float(match[1]) if match else 0.0


def _wait_idle(server, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        health = httpx.get(f"{server}/healthz").json()
        if not health["busy"] and health["queue"] == 0:
            return
        time.sleep(0.05)
    raise AssertionError("the server did not go idle: a cancelled request kept running")


def test_queue_overflow_gets_429_with_retry_after_and_server_stays_healthy(client, server):
    cancelled_before = _metric(server, "sana_edge_cancelled_total")
    with _stream(server) as running:  # runs
        events = sse_events(running)
        assert next(events)[0] == "image_generation.queued"
        assert next(events)[0] == "image_generation.progress"
        with _stream(server) as waiting:  # waits: max_queue=1
            name, data = next(sse_events(waiting))
            assert (name, data["ahead"]) == ("image_generation.queued", 1)
            overflow = httpx.post(f"{server}/v1/images/generations", json={"prompt": PROMPT}, headers=AUTH)
            assert overflow.status_code == 429
            assert int(overflow.headers["Retry-After"]) >= 1
            assert overflow.json()["error"]["code"] == "rate_limit_exceeded"
            with pytest.raises(openai.RateLimitError):
                client.images.generate(prompt=PROMPT)
    # both clients hung up mid-generation: the running one stops at its next step, the waiting one never starts
    _wait_idle(server)
    assert _metric(server, "sana_edge_cancelled_total") == cancelled_before + 2
    assert httpx.get(f"{server}/healthz").json()["status"] == "ok"
    assert client.images.generate(prompt=PROMPT, size="64x64", extra_body={"steps": 1}).data[0].b64_json


def test_disconnected_non_streaming_client_is_cancelled_before_its_next_step(server):
    import json
    import socket
    from urllib.parse import urlsplit

    cancelled_before = _metric(server, "sana_edge_cancelled_total")
    body = json.dumps({"prompt": PROMPT, "size": "256x256", "steps": 200}).encode()
    address = urlsplit(server)
    head = (f"POST /v1/images/generations HTTP/1.1\r\nHost: {address.netloc}\r\n"
            f"Authorization: {AUTH['Authorization']}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    # hang up as soon as the generation is running (not after a fixed time: a fast CPU finishes
    # 200 tiny-model steps in well under a second)
    with socket.create_connection((address.hostname, address.port)) as sock:
        sock.sendall(head + body)
        deadline = time.monotonic() + 10
        while not httpx.get(f"{server}/healthz").json()["busy"]:
            assert time.monotonic() < deadline, "the request never started"
            time.sleep(0.005)
        start = time.monotonic()
    _wait_idle(server)
    assert _metric(server, "sana_edge_cancelled_total") == cancelled_before + 1
    assert time.monotonic() - start < 10


def test_stream_reports_progress_then_the_image(server):
    with _stream(server, steps=3, size="64x64", seed=5) as response:
        events = list(sse_events(response))
    names = [name for name, _ in events]
    assert names == ["image_generation.queued"] + ["image_generation.progress"] * 3 + ["image_generation.completed"]
    assert [data["step"] for _, data in events[1:4]] == [1, 2, 3]
    completed = events[-1][1]
    assert completed["seed"] == 5 and completed["size"] == "64x64"
    assert b64_pixels(completed["b64_json"]).shape == (64, 64, 3)


def test_metrics_count_images_errors_and_stage_latency(client, server):
    images_before = _metric(server, f'sana_edge_images_total{{model="{client.models.list().data[0].id}"}}')
    client.images.generate(prompt=PROMPT, size="64x64", extra_body={"steps": 1})
    httpx.post(f"{server}/v1/images/generations", json={"prompt": PROMPT, "n": 0}, headers=AUTH)
    text = httpx.get(f"{server}/metrics", headers=AUTH).text
    model = client.models.list().data[0].id
    assert _metric(server, f'sana_edge_images_total{{model="{model}"}}') == images_before + 1
    assert 'sana_edge_errors_total{code="invalid_value",status="400"}' in text
    for stage in ("queue_wait", "text_encoder", "denoise", "decode", "png", "total"):
        assert f'sana_edge_stage_seconds_count{{stage="{stage}"}}' in text
    assert "sana_edge_queue_length 0.0" in text
