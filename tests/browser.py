"""Headless Chromium for the HTML report tests (Debian packages chromium, chromium-driver).

`open_report(path)` loads a file, and returns the console messages, every network
fetch the page made (not Chromium's own chrome:// / devtools:// / data: resources), the
rendered DOM and a screenshot. Skips with a clear reason when
Chromium, chromedriver or selenium are absent.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROME_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--disable-default-apps",
    "--disable-extensions",
    "--mute-audio",
]

# What Chromium loads for itself (its new-tab page, DevTools, inline data): not a fetch the
# report made, so not counted. Everything else (http, https, ws, other file: URLs) is.
BROWSER_OWN = ("chrome:", "chrome-extension:", "chrome-untrusted:", "devtools:", "data:", "about:", "blob:")


@dataclass
class PageResult:
    console: list[dict]
    requests: list[str]
    dom: str
    screenshot: Path | None
    driver: object


def _binaries() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver") or (
        "/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None
    )
    if not chromium or not driver:
        pytest.skip(
            "headless Chromium not installed (Debian: apt-get install chromium chromium-driver; "
            "`make test` installs them as root)"
        )
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.skip("selenium not installed (pip install -e '.[test]')")
    return chromium, driver


def open_report(
    path: Path, screenshot_name: str | None = None, width: int = 1366, height: int = 900, actions=None
) -> PageResult:
    chromium, driver_path = _binaries()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="queryaudit-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},{height}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.execute_cdp_cmd("Network.enable", {})
        driver.get(path.resolve().as_uri())
        if actions:
            actions(driver)
        console = driver.get_log("browser")
        requests = []
        for entry in driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message.get("method") == "Network.requestWillBeSent":
                requests.append(message["params"]["request"]["url"])
        # The browser's own start page loads before ours: keep what our document asked for.
        own = path.resolve().as_uri()
        requests = requests[requests.index(own) :] if own in requests else requests
        requests = [u for u in requests if not u.startswith(BROWSER_OWN)]
        dom = driver.page_source
        shot = None
        if screenshot_name:
            ARTIFACTS.mkdir(exist_ok=True)
            shot = ARTIFACTS / screenshot_name
            driver.save_screenshot(str(shot))
        return PageResult(console, requests, dom, shot, driver)
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def full_page_screenshot(path: Path, name: str, width: int = 1366) -> Path:
    """The whole page as one PNG (through the DevTools protocol), for judging by eye."""

    def grab(driver):
        import base64

        metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
        height = int(metrics["cssContentSize"]["height"])
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": min(height, 16000), "deviceScaleFactor": 1, "mobile": False},
        )
        data = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / name).write_bytes(base64.b64decode(data["data"]))

    open_report(path, actions=grab)
    return ARTIFACTS / name
