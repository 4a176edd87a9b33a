"""A throw-away Mosquitto on loopback, for the demo."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from footfall.tooling.processes import end_process, free_port


def mosquitto_binary() -> str | None:
    """Mosquitto on PATH, or where Debian installs it."""
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None


class LocalBroker:
    """Mosquitto listening on 127.0.0.1 only, its config and log in `workdir`; stop() ends it."""

    def __init__(self, workdir: Path, binary: str, extra_conf: str = "") -> None:
        self.port = free_port()
        conf = Path(workdir) / "mosquitto.conf"
        lines = [f"listener {self.port} 127.0.0.1", "allow_anonymous true", "persistence false"]
        if os.geteuid() == 0:
            lines.append(f"user {getpass.getuser()}")  # as root it would switch to a "mosquitto" user
        conf.write_text("\n".join(lines) + "\n" + extra_conf)
        self._log = open(Path(workdir) / "mosquitto.log", "wb")
        self._proc = subprocess.Popen([binary, "-c", str(conf)], stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 5
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    break
            except OSError:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"mosquitto did not start on port {self.port}") from None
                time.sleep(0.05)

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def stop(self) -> None:
        end_process(self._proc, 5)
        self._log.close()
