"""The store daemon run: in-process (`running`, `run_once_to_the_end`) or as its own `footfall`
process (`footfall_running`, `footfall_run_once`), and what it says on its status topic.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from footfall.config.schema import load_config
from footfall.edge.daemon import Daemon
from footfall.recognition.analyzer import FaceAnalyzer
from support.broker import Received, Subscriber, wait_until
from support.daemon import PREFIX

FOOTFALL = [sys.executable, "-m", "footfall"]


def footfall(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """A `footfall` command as an operator runs it, its output captured."""
    return subprocess.run([*FOOTFALL, *args], capture_output=True, text=True, timeout=timeout)


def said_stopped(sub: Subscriber) -> None:
    """Wait until `sub` (subscribed to the store's topics) has seen the "stopped" status."""
    sub.wait_for(lambda ms: any(m.topic == PREFIX + "status" and m.payload["state"] == "stopped" for m in ms),
                 10, "the stopped status")


def footfall_run_once(config: Path, sub: Subscriber) -> subprocess.CompletedProcess[str]:
    """`footfall run --once` as its own process; it must end normally and say "stopped" on the broker."""
    done = footfall("run", "--config", str(config), "--once", timeout=300)
    assert done.returncode == 0, done.stderr + done.stdout
    said_stopped(sub)
    return done


def run_once_to_the_end(daemon: Daemon, sub: Subscriber, timeout: float) -> None:
    """Run a `--once` daemon in a thread; it must end normally and say "stopped" on the broker."""
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(daemon.run()), daemon=True)
    thread.start()
    thread.join(timeout)
    assert result == [0], "run --once finished normally"
    said_stopped(sub)


@contextmanager
def running(config: Path, analyzer: FaceAnalyzer | None) -> Iterator[Daemon]:
    """A live daemon on its own thread, connected to its broker, until the block ends; then stopped,
    and its thread must have ended."""
    daemon = Daemon(load_config(config), analyzer=analyzer)
    thread = threading.Thread(target=daemon.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: daemon.publisher.connected, 15, "the daemon to connect")
        time.sleep(0.2)  # the SUBACK
        yield daemon
    finally:
        daemon.stop()
        thread.join(30)
    assert not thread.is_alive(), "the daemon's thread ended"


@dataclass
class Process:
    """A `footfall run` process; `output` is what it printed, once it has ended."""

    process: subprocess.Popen[str]
    output: str = ""


@contextmanager
def footfall_running(config: Path) -> Iterator[Process]:
    """`footfall run` as its own process until the block ends; then SIGTERM, as systemd stops it,
    and it must exit normally."""
    run = Process(subprocess.Popen([*FOOTFALL, "run", "--config", str(config)],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    try:
        yield run
    finally:
        run.process.send_signal(signal.SIGTERM)
        run.output = run.process.communicate(timeout=60)[0]
    assert run.process.returncode == 0, run.output


def online_status(cameras: dict[str, str] | None = None) -> Callable[[list[Received]], bool]:
    """A `wait_for` predicate: an online status (naming exactly these `cameras`, when given) has come."""
    return lambda ms: any(m.topic == PREFIX + "status" and m.payload.get("state") == "online"
                          and (cameras is None or m.payload.get("cameras") == cameras) for m in ms)
