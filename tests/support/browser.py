"""Headless Chromium for the tests of the guide console and the HQ dashboard: the `driver`
fixture (one browser a test module), logging in through a page's form, waiting for the page,
reading its tables, screenshots.

Registered in tests/conftest.py; `driver` skips, naming the reason, without chromium and
chromedriver (apt-get install chromium chromium-driver).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

MISSING = "needs chromium and chromedriver (apt-get install chromium chromium-driver)"


def chromium_paths() -> tuple[str, str] | None:
    """(chromium, chromedriver) when both are installed, else None."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (chromium, driver) if chromium and driver else None


def start_chromium(profile: Path, *args: str) -> Any:
    """A headless Chromium with a fresh profile in `profile`; `args` are further command-line switches."""
    found = chromium_paths()
    if found is None:
        pytest.skip(MISSING)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", f"--user-data-dir={profile}", *args):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(found[1]), options=options)


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Headless Chromium, 1024 x 900, shared by the tests of a module."""
    d = start_chromium(tmp_path_factory.mktemp("chrome-profile"), "--window-size=1024,900")
    yield d
    d.quit()


def wait(driver: Any, condition: Callable[[Any], Any], timeout: float = 5.0, what: str = "",
         transient: bool = False) -> Any:
    """Poll `condition`; with `transient`, driver errors while a page is being replaced are retried."""
    from selenium.common.exceptions import (
        NoSuchElementException,
        StaleElementReferenceException,
        WebDriverException,
    )
    from selenium.webdriver.support.ui import WebDriverWait

    ignored = (WebDriverException,) if transient else (NoSuchElementException, StaleElementReferenceException)
    return WebDriverWait(driver, timeout, poll_frequency=0.02, ignored_exceptions=ignored).until(condition, what)


def login(driver: Any, base: str, name: str, secret: str) -> None:
    """Fill in and send the login form at `base`/login; return once its answer has loaded."""
    from selenium.webdriver.common.by import By

    driver.get(base + "/login")
    driver.find_element(By.ID, "name").send_keys(name)
    driver.find_element(By.ID, "password").send_keys(secret)
    driver.execute_script("window.beforeSubmit = true")
    driver.find_element(By.ID, "login-submit").click()

    def answered(d: Any) -> bool:
        # The page that answers the form is a new document: it has no mark, and has loaded.
        return bool(d.execute_script("return !window.beforeSubmit && document.readyState === 'complete'"))

    wait(driver, answered, what="the answer to the login form", transient=True)


def open_logged_in(driver: Any, base: str, name: str, secret: str, timeout: float = 5.0) -> None:
    """Log in at `base` with no cookie left from before; return once the page names `name` (#who)."""
    from selenium.webdriver.common.by import By

    driver.delete_all_cookies()
    login(driver, base, name, secret)
    wait(driver, lambda d: d.find_element(By.ID, "who").text == name, timeout, "the page after login")


def found(driver: Any, selector: str, timeout: float = 10.0) -> list[Any]:
    """The elements `selector` finds, once there is at least one (a view loads after the page)."""
    from selenium.webdriver.common.by import By

    return wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, selector) or None, timeout, selector)


def cells(driver: Any, selector: str) -> list[list[str]]:
    """The text of each cell of each table row `selector` finds."""
    from selenium.webdriver.common.by import By

    return [[td.text for td in row.find_elements(By.TAG_NAME, "td")]
            for row in driver.find_elements(By.CSS_SELECTOR, selector)]


def screenshot(driver: Any, tmp_path: Path, name: str) -> Path:
    """A screenshot of the page in tmp_path/<name>.png, checked to be written."""
    path = tmp_path / f"{name}.png"
    assert driver.save_screenshot(str(path))
    assert path.stat().st_size > 0
    return path
