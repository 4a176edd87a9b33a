"""`footfall members import` and `footfall appointments import`: CRM exports, one JSON object a line.

Each line goes through the same validation as the matching downlink message; a bad line is
reported with its number and skipped, the rest imported. In a members file, `images` may also
hold photo paths relative to the file. With the daemon running, every line goes through it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from footfall.config.schema import Config
from footfall.edge import admin
from footfall.edge.store import Store
from footfall.recognition.analyzer import FaceAnalyzer
from footfall.sync import events
from footfall.sync.downlink import Outcome

COMMANDS = {events.MEMBERS_UPSERT: "footfall members import", events.APPOINTMENTS_UPSERT: "footfall appointments import"}


def inline_photo_paths(line: str, base: Path) -> bytes:
    """The line with every `images` entry that names an existing file replaced by its base64."""
    try:
        message = json.loads(line)
    except ValueError:
        return line.encode()
    images = message.get("images") if isinstance(message, dict) else None
    if isinstance(images, list):
        message["images"] = [
            base64.b64encode((base / i).read_bytes()).decode() if isinstance(i, str) and (base / i).is_file() else i
            for i in images
        ]
    return json.dumps(message).encode()


def import_file(config: Config, path: Path, topic: str, *, progress: bool = True,
                report: Callable[[str], None] = print) -> tuple[int, int]:
    """Apply every line of `path` as a `topic` message; returns (imported, rejected)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    analyzer = FaceAnalyzer.from_config(config)

    def apply_each(handle: Callable[[bytes], tuple[bool, str | None]]) -> tuple[int, int]:
        imported = rejected = 0
        for number, line in enumerate(tqdm(lines, desc=f"importing {path.name}", disable=not progress), start=1):
            if not line.strip():
                continue
            payload = inline_photo_paths(line, path.parent) if topic == events.MEMBERS_UPSERT else line.encode()
            ok, reason = handle(payload)
            if ok:
                imported += 1
            else:
                rejected += 1
                report(f"{path}:{number}: skipped: {reason}")
        return imported, rejected

    def local() -> tuple[int, int]:
        with Store(config, analyzer, command=COMMANDS[topic]) as store:
            return apply_each(lambda payload: _outcome(store.command(topic, payload)))

    def through_daemon() -> tuple[int, int]:
        def send(payload: bytes) -> tuple[bool, str | None]:
            answer = admin.send(config.storage.dir, topic, payload)
            return bool(answer.get("ok")), answer.get("reason")
        return apply_each(send)

    return admin.with_state(local=local, daemon=through_daemon)


def _outcome(outcome: Outcome) -> tuple[bool, str | None]:
    return outcome.ok, outcome.reason
