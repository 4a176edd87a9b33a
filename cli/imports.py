"""`footfall members import` and `footfall appointments import`: CRM exports, one JSON object a line.

Each line goes through the same validation as the matching downlink message; a bad line is
reported with its number and why, and skipped, the rest imported (the command then exits 1). In
a members file, `images` may also hold photo paths relative to the file. With the daemon
running, every line goes through it. Without it, no face model is opened unless a line brings
photos to embed: appointments import with the model files missing.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from footfall.config.schema import Config
from footfall.edge import admin
from footfall.edge.store import Store
from footfall.sync import events
from footfall.sync.downlink import Outcome

COMMANDS = {events.MEMBERS_UPSERT: "footfall members import", events.APPOINTMENTS_UPSERT: "footfall appointments import"}
NAMED = 20  # skipped lines reported one by one (number and reason); the rest are counted


@dataclass
class Imported:
    """What an import did: lines applied, lines skipped, and the first `NAMED` skipped line numbers."""

    imported: int = 0
    skipped: int = 0
    named: list[int] = field(default_factory=list)

    def summary(self, path: Path) -> str:
        """One line: how many were imported and skipped, and which lines were skipped."""
        line = f"{path}: {self.imported} imported, {self.skipped} skipped"
        if self.skipped:
            more = f" and {self.skipped - len(self.named)} more" if self.skipped > len(self.named) else ""
            line += f" (line{'s' if self.skipped > 1 else ''} {', '.join(map(str, self.named))}{more})"
        return line


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
                report: Callable[[str], None] = print) -> Imported:
    """Apply every line of `path` as a `topic` message; each skipped line (the first `NAMED`) is
    `report`ed with its number and reason."""
    lines = path.read_text(encoding="utf-8").splitlines()

    def apply_each(handle: Callable[[bytes], tuple[bool, str | None]]) -> Imported:
        done = Imported()
        for number, line in enumerate(tqdm(lines, desc=f"importing {path.name}", disable=not progress), start=1):
            if not line.strip():
                continue
            payload = inline_photo_paths(line, path.parent) if topic == events.MEMBERS_UPSERT else line.encode()
            ok, reason = handle(payload)
            if ok:
                done.imported += 1
                continue
            done.skipped += 1
            if len(done.named) < NAMED:
                done.named.append(number)
                with tqdm.external_write_mode():  # the bar is cleared, the line written, the bar drawn again
                    report(f"{path}:{number}: skipped: {reason}")
        if done.skipped > len(done.named):
            report(f"{path}: {done.skipped - len(done.named)} more line(s) skipped, not listed one by one")
        return done

    def local() -> Imported:
        # The store opens no face model; a members line with photos loads them (`Store`).
        with Store(config, command=COMMANDS[topic]) as store:
            return apply_each(lambda payload: _outcome(store.command(topic, payload, operator=True)))

    def through_daemon() -> Imported:
        def send(payload: bytes) -> tuple[bool, str | None]:
            answer = admin.send(config.storage.dir, topic, payload)
            return bool(answer.get("ok")), answer.get("reason")
        return apply_each(send)

    return admin.with_state(local=local, daemon=through_daemon)


def _outcome(outcome: Outcome) -> tuple[bool, str | None]:
    return outcome.ok, outcome.reason
