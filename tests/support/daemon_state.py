"""The daemon's state files read as raw bytes, not through the code that wrote them."""

from __future__ import annotations

from pathlib import Path


def files_holding(directory: Path, needle: bytes) -> dict[str, int]:
    """Every file under `directory` whose raw bytes hold `needle`, and how many times."""
    found = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file() and not path.is_socket():
            count = path.read_bytes().count(needle)
            if count:
                found[path.name] = count
    return found
