"""The guide console's icons and web app manifest: served without a login, with the right content
types and the console's security headers; the PNGs are real images of their size; headless
Chromium reads the manifest without an error and finds the icons it names."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

import cv2
import numpy as np
import pytest
from support.console import browser, console_config

from footfall.console import icons
from footfall.console import server as con

ASSETS = {"/icon.svg": "image/svg+xml", "/icon-180.png": "image/png", "/icon-192.png": "image/png",
          "/icon-512.png": "image/png", "/manifest.webmanifest": "application/manifest+json"}


@pytest.fixture(scope="module")
def offline_console() -> Iterator[con.Console]:
    """A console whose broker never answers: the assets need neither broker nor login."""
    c = con.Console(console_config("mqtt://127.0.0.1:1"), listen="127.0.0.1:0").start()
    yield c
    c.stop()


def fetch(url: str) -> tuple[int, dict[str, str], bytes]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, dict(response.headers), response.read()


@pytest.mark.parametrize("path", sorted(ASSETS))
def test_each_icon_and_the_manifest_is_served_without_a_login_with_its_type_and_the_security_headers(
        offline_console, path):
    status, headers, body = fetch(offline_console.url + path)
    assert status == 200 and body
    assert headers["Content-Type"] == ASSETS[path]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY" and headers["Referrer-Policy"] == "no-referrer"


@pytest.mark.parametrize("size", icons.PNG_SIZES)
def test_a_png_icon_is_the_figure_in_gold_on_the_dark_square_at_its_size(offline_console, size):
    _, _, body = fetch(f"{offline_console.url}/icon-{size}.png")
    image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape == (size, size, 3)
    at = lambda x, y: tuple(int(v) for v in image[int(y * size / 64), int(x * size / 64)][::-1])  # noqa: E731  RGB
    assert at(32, 22) == icons.FIGURE          # the head
    assert at(32, 48) == icons.FIGURE          # the shoulders
    assert at(2, 2) == icons.BACKGROUND        # a corner: full bleed, for platforms that cut their own shape
    assert at(32, 60) == icons.BACKGROUND      # under the figure
    assert len(body) < 8192, "a small file"


def test_the_manifest_names_the_console_in_its_language_and_every_icon_it_lists_is_served(offline_console):
    _, _, body = fetch(offline_console.url + "/manifest.webmanifest")
    manifest = json.loads(body)
    assert (manifest["name"], manifest["start_url"], manifest["display"]) == ("Guide console", "/", "standalone")
    assert json.loads(icons.manifest("zh"))["name"] == "导购台"
    for icon in manifest["icons"]:
        status, headers, _ = fetch(offline_console.url + icon["src"])
        assert status == 200 and headers["Content-Type"] == icon["type"]
    assert {i["sizes"] for i in manifest["icons"] if i["type"] == "image/png"} == {"192x192", "512x512"}
    assert any(i.get("purpose") == "maskable" for i in manifest["icons"])


def test_an_icon_size_that_is_not_drawn_is_refused():
    with pytest.raises(ValueError, match="icon size"):
        icons.png(64)


@browser
def test_chromium_reads_the_manifest_without_error_and_loads_the_page_icon(console_page, console):
    from selenium.webdriver.common.by import By

    answer = console_page.execute_cdp_cmd("Page.getAppManifest", {})
    assert answer["url"] == console.url + "/manifest.webmanifest"
    assert answer["errors"] == [], answer["errors"]
    assert json.loads(answer["data"])["short_name"] == "Guides"
    href = console_page.find_element(By.CSS_SELECTOR, 'link[rel="icon"]').get_attribute("href")
    assert href == console.url + "/icon.svg"
    loaded = console_page.execute_async_script(
        "const done = arguments[arguments.length - 1]; const img = new Image();"
        "img.onload = () => done([img.naturalWidth, img.naturalHeight]); img.onerror = () => done(null);"
        "img.src = arguments[0];", href)
    assert loaded is not None and loaded[0] > 0, "the browser drew the SVG icon under the page's CSP"
    touch = console_page.find_element(By.CSS_SELECTOR, 'link[rel="apple-touch-icon"]').get_attribute("href")
    assert touch == console.url + "/icon-180.png"
