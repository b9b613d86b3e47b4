"""Open a page in headless Chromium (Debian's ``chromium`` and ``chromium-driver``) and report what a reader sees.

The machine has no network: Chromium runs with every background service off and a fresh
profile, and Selenium is given the driver's path (no driver download).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,1600")  # fmt: skip


@dataclass
class Rendered:
    images: list[dict]  # src (shortened), complete, naturalWidth
    console: list[dict]  # browser log entries (level, message)
    text_length: int
    title: str
    screenshot: Path
    text: str = ""  # the page's text as the reader sees it (innerText)

    @property
    def errors(self) -> list[dict]:
        return [e for e in self.console if e["level"] in ("SEVERE", "ERROR")]


def require_chromium() -> None:
    """Skip outside CI when Chromium is not installed; in CI (.ci/run installs it) fail instead."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing:
        if os.environ.get("CI"):
            pytest.fail(
                f"{missing} not installed: .ci/run installs Debian's chromium and chromium-driver"
            )
        pytest.skip(f"{missing} not installed (apt-get install chromium chromium-driver)")


def render(page: Path, screenshot: Path) -> Rendered:
    """Load ``page`` (a file) in headless Chromium; every image, the console and a full screenshot."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    require_chromium()
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
    try:
        driver.get(Path(page).resolve().as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map(i => ({src: i.src.slice(0, 40), "
            "complete: i.complete, naturalWidth: i.naturalWidth}))"
        )
        text = driver.execute_script("return document.body.innerText.trim()")
        text_length = len(text)
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1280, min(int(height), 16000))
        driver.save_screenshot(str(screenshot))
        return Rendered(
            images, driver.get_log("browser"), int(text_length), driver.title, screenshot, text
        )
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
