"""A real browser for the dashboard's tests and its load tool: Debian's Chromium, headless, driven
by Selenium through Debian's chromedriver, with a fresh profile."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
INSTALL = "apt-get install -y chromium chromium-driver"
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # performance.memory with exact figures, and gc() to read the heap after a collection
    "--enable-precise-memory-info",
    "--js-flags=--expose-gc",
]


def missing() -> str:
    """Why no browser can be started here ("" when one can)."""
    absent = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if absent:
        return f"{' and '.join(absent)} not found: {INSTALL}"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: pip install -r requirements-dev.txt"
    return ""


def chromium(profile: Path, width: int = 1440, height: int = 960) -> Any:
    """A headless Chromium with a fresh profile in `profile` (emptied first)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    shutil.rmtree(profile, ignore_errors=True)
    profile.mkdir(parents=True)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"]:
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


def sign_in(driver: Any, base_url: str, username: str, password: str) -> None:
    """Sign in through the admin's login form and land on the dashboard."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{base_url}/dashboard/")  # sends an anonymous visitor to the login form
    WebDriverWait(driver, 30).until(ec.presence_of_element_located((By.NAME, "username")))
    driver.find_element(By.NAME, "username").send_keys(username)
    driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "[type=submit]").click()
    WebDriverWait(driver, 30).until(
        ec.text_to_be_present_in_element((By.ID, "live"), "live"),
        "the dashboard did not go live",
    )
