"""The model manifest: what each known model file is, and where to find it on disk."""

from __future__ import annotations

import hashlib
import os
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

PACKAGE_DIR = Path(__file__).resolve().parent
MANIFEST_PATH = PACKAGE_DIR / "manifest.toml"
ENV_MODELS_DIR = "FOOTFALL_MODELS_DIR"


class ModelError(Exception):
    """A model is unknown, missing, or not the file the manifest pins."""


@dataclass(frozen=True)
class ModelEntry:
    """One [[model]] table of the manifest."""

    file: str
    role: Literal["detector", "recognizer", "person_detector"]
    family: str
    sha256: str
    size: int
    licence: str
    commercial_use: bool
    shipped: bool
    input_size: tuple[int, int]
    url: str = ""
    archive_member: str = ""
    provenance: str = ""
    dynamic_input: bool = False
    relax_input: bool = False
    # detectors
    score_threshold: float = 0.5
    nms_threshold: float = 0.4
    # recognizers
    embedding_dim: int = 0
    layout: Literal["nchw", "nhwc"] = "nchw"
    channels: Literal["bgr", "rgb"] = "bgr"
    mean: float = 0.0
    std: float = 1.0
    template: Literal["arcface", "omz"] = "arcface"
    max_batch: int = 0
    match_threshold: float | None = None
    # visit window and galleries (docs/calibration.md)
    dedup_threshold: float | None = None
    dedup_margin: float | None = None
    member_threshold: float | None = None
    member_margin: float | None = None

    @property
    def licence_note(self) -> str:
        """The licence as an operator should read it."""
        if self.commercial_use:
            return f"{self.licence} (commercial use allowed)"
        return f"{self.licence} — NOT for commercial use"


@cache
def load_manifest(path: Path = MANIFEST_PATH) -> dict[str, ModelEntry]:
    """Read the manifest into entries keyed by file name."""
    with open(path, "rb") as fh:
        raw = tomllib.load(fh)
    entries: dict[str, ModelEntry] = {}
    for table in raw.get("model", []):
        table = dict(table)
        table["input_size"] = tuple(table["input_size"])
        entry = ModelEntry(**table)
        entries[entry.file] = entry
    return entries


def entry_for(file: str, role: str | None = None) -> ModelEntry:
    """The manifest entry of `file`, checked against the expected role."""
    entries = load_manifest()
    if file not in entries:
        known = ", ".join(sorted(e.file for e in entries.values() if role in (None, e.role)))
        raise ModelError(f"unknown model {file!r}; known {role or 'model'}s: {known}")
    entry = entries[file]
    if role is not None and entry.role != role:
        raise ModelError(f"{file!r} is a {entry.role}, not a {role}")
    return entry


def search_dirs(configured: str | os.PathLike[str] | None = None) -> list[Path]:
    """Directories searched for model files, first match wins.

    `FOOTFALL_MODELS_DIR` overrides the configured `models.dir`; the pack
    shipped inside the package is always searched last.
    """
    dirs: list[Path] = []
    chosen = os.environ.get(ENV_MODELS_DIR) or configured
    if chosen:
        dirs.append(Path(chosen).expanduser())
    dirs.append(PACKAGE_DIR)
    return dirs


def locate(file: str, configured_dir: str | os.PathLike[str] | None = None) -> Path:
    """The path of model `file`, or a ModelError saying where it was looked for."""
    for d in search_dirs(configured_dir):
        candidate = d / file
        if candidate.is_file():
            return candidate
    where = ", ".join(str(d) for d in search_dirs(configured_dir))
    raise ModelError(
        f"model file {file!r} not found (looked in: {where}); "
        f"put it in models.dir or ${ENV_MODELS_DIR}, or run `footfall models fetch`"
    )


def sha256_of(path: Path) -> str:
    """SHA-256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
