"""Headless Chromium (Debian's chromium and chromium-driver, scripts/test-deps.sh) driven by Selenium.

Shared by the browser test (tests/test_browser.py) and the benchmark's timing of the MLflow UI's
runs page (scripts/bench.py --sections scale).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

# Chromium without its background connections: this machine's network refuses them (docs/dependencies.md)
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1500,950",
]


def headless_chromium(profile_dir: Path) -> WebDriver:
    """A new headless Chromium with its own profile folder; the caller quits it."""
    options = webdriver.ChromeOptions()
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}"]:
        options.add_argument(flag)
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    return webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=options)


def wait_for_text(driver: WebDriver, *texts: str, timeout: float = 60) -> str:
    """The page's text once every one of ``texts`` is on it."""
    WebDriverWait(driver, timeout).until(
        lambda d: all(text in d.find_element(By.TAG_NAME, "body").text for text in texts)
    )
    return driver.find_element(By.TAG_NAME, "body").text
