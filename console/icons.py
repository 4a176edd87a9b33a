"""The console's icon (a guide, in gold on the top bar's dark) and its web app manifest.

The browser tab shows `static/icon.svg`; a phone's home screen needs PNGs, drawn here from the
same shapes (in a 64-unit square: a head, a half-ellipse of shoulders) on a full square, so that
platforms that round or cut the corners (maskable icons) keep the whole figure. Nothing is read
from disk but the SVG; nothing large ships in the package.
"""

from __future__ import annotations

import json
import struct
import zlib
from functools import lru_cache

import numpy as np

PNG_SIZES = (180, 192, 512)   # Apple's home-screen icon, and the manifest's two
BACKGROUND = (0x1F, 0x23, 0x28)
FIGURE = (0xB0, 0x8D, 0x2F)
PAGE = "#f4f3ef"
_SUPERSAMPLE = 4              # samples per pixel side: smooth edges without a drawing library

NAMES = {"zh": ("导购台", "导购台"), "en": ("Guide console", "Guides")}


def _figure(size: int) -> np.ndarray:
    """How much of each pixel the figure covers (0..1), for a size x size icon."""
    n = size * _SUPERSAMPLE
    unit = 64.0 / n
    y, x = np.mgrid[0:n, 0:n].astype(np.float32)
    x = (x + 0.5) * unit
    y = (y + 0.5) * unit
    head = (x - 32) ** 2 + (y - 22) ** 2 <= 9 ** 2
    shoulders = (((x - 32) / 16) ** 2 + ((y - 52) / 17) ** 2 <= 1) & (y <= 52)
    inside = (head | shoulders).astype(np.float32)
    return inside.reshape(size, _SUPERSAMPLE, size, _SUPERSAMPLE).mean(axis=(1, 3))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@lru_cache(maxsize=len(PNG_SIZES))
def png(size: int) -> bytes:
    """The icon as an 8-bit RGB PNG of size x size pixels (one of PNG_SIZES)."""
    if size not in PNG_SIZES:
        raise ValueError(f"icon size must be one of {PNG_SIZES}, got {size}")
    cover = _figure(size)[..., None]
    rgb = np.array(BACKGROUND, np.float32) * (1 - cover) + np.array(FIGURE, np.float32) * cover
    rows = np.round(rgb).astype(np.uint8).reshape(size, size * 3)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)   # filter type 0 on every row
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, 9)) + \
        _chunk(b"IEND", b"")


def manifest(language: str) -> bytes:
    """The web app manifest (application/manifest+json): the console on a home screen, full screen
    without the browser's bar, named in the console's language."""
    name, short = NAMES.get(language, NAMES["en"])
    color = "#" + bytes(BACKGROUND).hex()
    body = {
        "name": name, "short_name": short, "lang": "zh-CN" if language == "zh" else "en",
        "start_url": "/", "scope": "/", "display": "standalone",
        "background_color": PAGE, "theme_color": color,
        "icons": [{"src": "/icon.svg", "sizes": "any", "type": "image/svg+xml"},
                  {"src": "/icon-192.png", "sizes": "192x192", "type": "image/png"},
                  {"src": "/icon-512.png", "sizes": "512x512", "type": "image/png"},
                  {"src": "/icon-512.png", "sizes": "512x512", "type": "image/png", "purpose": "maskable"}],
    }
    return json.dumps(body, ensure_ascii=False, indent=1).encode("utf-8")
