"""The page at `/` in a real headless Chromium: type a prompt, click Generate, see the live
progress, and get the very PNG the API returns for the same settings."""

from __future__ import annotations

import base64

import pytest

pytest.importorskip("starlette", reason="the page test needs the 'serve' extra")
httpx = pytest.importorskip("httpx")

from benchmarks.serve_page import generate_on_page, missing_browser, open_browser  # noqa: E402
from serve_support import running_server  # noqa: E402

REASON = missing_browser()


@pytest.mark.skipif(REASON is not None, reason=f"no headless browser: {REASON}")
def test_page_generates_the_same_png_as_the_api(tiny_export, tmp_path):
    from sana_edge.serve.app import ServeConfig

    prompt, seed, steps, size = "a red fox in the snow", 42, 3, "128x64"
    with running_server(ServeConfig(models=(tiny_export,))) as url:
        driver = open_browser(tmp_path / "profile")
        try:
            driver.get(url)
            on_page = generate_on_page(driver, prompt, seed, steps, size)
            assert driver.find_element("id", "progress").get_attribute("value") == "100"
            assert driver.find_element("id", "status").text == "done"
            card = driver.find_element("css selector", "#gallery .card").text
            assert prompt in card and "128x64" in card and str(seed) in card
            link = driver.find_element("css selector", "#gallery .card a[download]")
            assert link.get_attribute("download") == f"sana-edge-{seed}.png"
            assert link.get_attribute("href").startswith("blob:")
            driver.save_screenshot(str(tmp_path / "page.png"))
        finally:
            driver.quit()
        api = httpx.post(f"{url}/v1/images/generations", timeout=120, json={
            "prompt": prompt, "seed": seed, "steps": steps, "size": size, "negative_prompt": "",
            "guidance_scale": 4.5, "model": tiny_export.name}).json()
    assert base64.b64decode(on_page) == base64.b64decode(api["data"][0]["b64_json"])
