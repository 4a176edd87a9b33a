"""`footfall doctor`: one line per check, non-zero exit if any fails."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from footfall.config.schema import Config
from footfall.models.fetch import verify_file
from footfall.models.manifest import ModelError, entry_for, locate

MIN_FREE_BYTES = 512 * 1024 * 1024


def _models(config: Config) -> str:
    lines = []
    for name, role in ((config.models.detector, "detector"), (config.models.recognizer, "recognizer")):
        entry = entry_for(name, role)
        verdict = verify_file(entry, locate(name, config.models.dir))
        if not verdict.ok:
            raise ModelError(f"{verdict.path}: {verdict.state}")
        lines.append(f"{name} ({entry.licence_note})")
    return "; ".join(lines)


def _load(config: Config) -> str:
    from footfall.recognition.analyzer import FaceAnalyzer

    analyzer = FaceAnalyzer.from_config(config)
    return f"sessions open, match threshold {analyzer.pack.match_threshold:g}"


def _storage(config: Config) -> str:
    d = Path(config.storage.dir)
    probe = d if d.exists() else next((p for p in d.parents if p.exists()), Path("/"))
    if not os.access(probe, os.W_OK):
        raise PermissionError(f"{d} is not writable by this user")
    free = shutil.disk_usage(probe).free
    if free < MIN_FREE_BYTES:
        raise OSError(f"only {free // 2**20} MiB free under {probe}")
    return f"{d} writable, {free // 2**30} GiB free"


CHECKS: list[tuple[str, Callable[[Config], str]]] = [
    ("models present and verified", _models),
    ("models load", _load),
    ("storage", _storage),
]


def run_checks(config: Config) -> int:
    """Run every check, print one line each, return 0 only if all pass."""
    print(f"ok    config valid (store {config.store_id}, {len(config.cameras)} camera(s))")
    failed = 0
    for name, check in CHECKS:
        try:
            print(f"ok    {name}: {check(config)}")
        except Exception as exc:  # a failing check is reported, never fatal to the others
            failed += 1
            print(f"FAIL  {name}: {exc}")
    return 1 if failed else 0
