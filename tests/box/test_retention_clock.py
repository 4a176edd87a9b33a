"""Anonymous vectors leave the box on time even when no frame arrives: retention follows the wall
clock of a live daemon, at start (what closed while the box was off) and while it runs with its
camera down — never only when traffic happens to pass the door."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from support.broker import Subscriber, free_port
from support.daemon import PREFIX, camera_table, store_config
from support.daemon_run import footfall_running, online_status

from footfall.config.schema import load_config
from footfall.edge.store import open_window


def unit_vector(dim: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


def raw_state(state: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(state.glob("windows.db*")) if p.is_file())


def test_windows_close_by_the_wall_clock_with_the_camera_down_and_after_a_restart(
        tmp_path, broker, default_analyzer):
    dead_camera = f"http://127.0.0.1:{free_port()}/stream.mjpg"  # nothing listens: no frame ever arrives
    config_path = store_config(tmp_path, broker, '[dedup]\nwindow = "15s"\n', camera_table("door-1", dead_camera),
                               timezone="UTC")
    config = load_config(config_path)
    state = tmp_path / "state"
    dim = default_analyzer.embedder.dim
    status = Subscriber(broker.port, PREFIX + "status")

    def seed(vector: np.ndarray, ts: datetime) -> None:
        window = open_window(config, default_analyzer)
        window.enter_anonymous(vector, ts)
        window.close()
        assert vector.tobytes() in raw_state(state)

    def run_daemon(check) -> None:
        status.messages.clear()
        with footfall_running(config_path) as daemon:
            status.wait_for(online_status(), 60, "online")
            check(daemon.process)
            assert status.messages[-1].payload["cameras"] == {"door-1": "reconnecting"}, "no frame arrived"

    try:
        # The box was off while this window closed: it goes at start, before any frame.
        closed_while_off = unit_vector(dim, 1)
        seed(closed_while_off, datetime.now(UTC) - timedelta(minutes=1))
        run_daemon(lambda daemon: None)
        assert closed_while_off.tobytes() not in raw_state(state)

        # An open window closes on time while the camera is down.
        still_open = unit_vector(dim, 2)
        seed(still_open, datetime.now(UTC))

        def closes_by_the_clock(daemon) -> None:
            deadline = time.monotonic() + 40
            while still_open.tobytes() in raw_state(state):
                assert time.monotonic() < deadline, "the open window did not close by the clock"
                assert daemon.poll() is None, "the daemon exited"
                time.sleep(0.5)

        run_daemon(closes_by_the_clock)
    finally:
        status.close()
