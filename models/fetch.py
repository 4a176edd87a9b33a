"""Verify model files against the manifest, and download the ones that have a URL."""

from __future__ import annotations

import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from footfall.models.manifest import ModelEntry, ModelError, load_manifest, sha256_of


@dataclass(frozen=True)
class Verdict:
    """The state of one manifest entry in one directory."""

    entry: ModelEntry
    path: Path
    state: str  # "ok" | "missing" | "size mismatch" | "hash mismatch"

    @property
    def ok(self) -> bool:
        return self.state == "ok"


def verify_file(entry: ModelEntry, path: Path) -> Verdict:
    """Check that `path` exists and is byte-for-byte the file the manifest pins."""
    if not path.is_file():
        return Verdict(entry, path, "missing")
    if entry.size and path.stat().st_size != entry.size:
        return Verdict(entry, path, "size mismatch")
    if sha256_of(path) != entry.sha256:
        return Verdict(entry, path, "hash mismatch")
    return Verdict(entry, path, "ok")


def verify_dir(directory: Path) -> list[Verdict]:
    """Verdicts for every manifest entry in `directory`."""
    return [verify_file(e, directory / e.file) for e in load_manifest().values()]


def fetch(entry: ModelEntry, directory: Path, *, timeout: float = 30.0, progress: bool = True) -> Path:
    """Download `entry` into `directory`, verify its SHA-256, and move it into place.

    Nothing is left in `directory` unless the hash matches.
    """
    if not entry.url:
        raise ModelError(
            f"{entry.file}: no download address is known; copy the file into {directory} by hand "
            f"(expected SHA-256 {entry.sha256}), then run `footfall models verify --dir {directory}`"
        )
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory, prefix=".fetch-") as tmp:
        download = Path(tmp) / "download"
        try:
            _download(entry.url, download, timeout=timeout, progress=progress, label=entry.file)
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ModelError(
                f"{entry.file}: download from {entry.url} failed ({reason}). "
                f"Manual alternative: fetch that URL on a machine with internet access"
                + (f", take {entry.archive_member} out of the zip" if entry.archive_member else "")
                + f", copy it to {directory / entry.file} and run `footfall models verify --dir {directory}`"
            ) from exc
        payload = download
        if entry.archive_member:
            payload = Path(tmp) / entry.file
            _extract_member(download, entry.archive_member, payload)
        got = sha256_of(payload)
        if got != entry.sha256:
            raise ModelError(
                f"{entry.file}: downloaded file has SHA-256 {got}, the manifest pins {entry.sha256}; "
                f"refusing to install it (source: {entry.url})"
            )
        target = directory / entry.file
        shutil.move(str(payload), target)
    return target


def _download(url: str, dest: Path, *, timeout: float, progress: bool, label: str) -> None:
    with urllib.request.urlopen(url, timeout=timeout) as response, open(dest, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=label, disable=not progress) as bar:
            for chunk in iter(lambda: response.read(1 << 16), b""):
                out.write(chunk)
                bar.update(len(chunk))


def _extract_member(archive: Path, member: str, dest: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if n == member or n.endswith("/" + member)]
            if not names:
                raise ModelError(f"{member} is not in the downloaded archive")
            with zf.open(names[0]) as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out)
    except zipfile.BadZipFile as exc:
        raise ModelError(f"the download for {member} is not a zip archive: {exc}") from exc
