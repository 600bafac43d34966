"""The web page of `sana-edge serve` in a real headless Chromium (Debian's chromium +
chromium-driver, driven by selenium): helpers for tests/test_serve_page.py, and a screenshot.

    python -m benchmarks.serve_page   # docs/serve-page.png: the built-in model on the page

Nothing is downloaded: the browser and its driver are the system's (/usr/bin), never a
selenium-managed copy.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# Headless, and nothing that talks to the network on its own (updates, sync, QUIC probes).
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,860")


def missing_browser() -> str | None:
    """Why the browser cannot run here, or None when it can."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not Path(path).is_file():
            return f"{path} is absent (apt-get install -y {package})"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install 'sana-edge[dev]')"
    return None


def open_browser(profile_dir: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile_dir}"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))


def _fill(driver, element_id: str, text: str) -> None:
    field = driver.find_element("id", element_id)
    field.clear()
    field.send_keys(text)


def generate_on_page(driver, prompt: str, seed: int, steps: int, size: str, timeout: float = 120.0) -> str:
    """Type the settings, click Generate, wait for the new gallery image; its base64 PNG."""
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, timeout)
    wait.until(lambda d: d.find_elements("css selector", "#model option"))  # the page has loaded the models
    before = len(driver.find_elements("css selector", "#gallery img.result"))
    _fill(driver, "prompt", prompt)
    _fill(driver, "size", size)
    _fill(driver, "steps", str(steps))
    _fill(driver, "seed", str(seed))
    driver.find_element("id", "generate").click()
    wait.until(lambda d: len(d.find_elements("css selector", "#gallery img.result")) > before)
    src = driver.find_element("css selector", "#gallery img.result").get_attribute("src")
    prefix = "data:image/png;base64,"
    assert src.startswith(prefix), src[:40]
    return src[len(prefix):]


def main() -> None:
    from sana_edge.cli import main as cli
    from sana_edge.default_model import EXAMPLE_PROMPT, default_export_dir
    from sana_edge.serve.app import ServeConfig
    from sana_edge.serve.local import running_server

    reason = missing_browser()
    if reason:
        raise SystemExit(f"error: {reason}")
    export = default_export_dir()
    if not (export / "manifest.json").is_file():
        assert cli(["export"]) == 0
    out = Path(__file__).resolve().parents[1] / "docs" / "serve-page.png"
    profile = Path(tempfile.mkdtemp(prefix="sana-edge-chromium-"))
    try:
        with running_server(ServeConfig(models=(export,))) as url:
            driver = open_browser(profile)
            try:
                driver.get(url)
                for seed, prompt in enumerate(("a small red circle on the left on a white background",
                                               "a large blue square in the center on a black background",
                                               EXAMPLE_PROMPT)):
                    generate_on_page(driver, prompt, seed, 20, "128x128")
                driver.save_screenshot(str(out))
            finally:
                driver.quit()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
