"""systemd's notification protocol (sd_notify): READY, WATCHDOG, STATUS, STOPPING.

A datagram to the socket named by $NOTIFY_SOCKET; a no-op when not run by systemd.
"""

from __future__ import annotations

import os
import socket


class Notifier:
    """Sends state changes to systemd when run as a Type=notify service."""

    def __init__(self, address: str | None = None) -> None:
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):  # an abstract socket
            address = "\0" + address[1:]
        self.address = address or None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str) -> bool:
        """Send `KEY=value` fields in one message; False when there is no systemd to tell."""
        if not self.address:
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            try:
                sock.sendto("\n".join(fields).encode(), self.address)
            except OSError:
                return False
        return True

    def ready(self, status: str) -> bool:
        return self.send("READY=1", f"STATUS={status}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    @staticmethod
    def watchdog_interval() -> float | None:
        """Half of the unit's WatchdogSec, in seconds, if systemd asked for pings."""
        usec = os.environ.get("WATCHDOG_USEC")
        if not usec or (os.environ.get("WATCHDOG_PID") not in (None, str(os.getpid()))):
            return None
        return int(usec) / 2_000_000
