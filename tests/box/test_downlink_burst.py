"""A burst of legitimate downlink messages through a real Mosquitto into a running Daemon.

QoS 1 messages are acknowledged only once the store handled them, and the MQTT thread stops
reading while the inbox is full, so a burst waits at the broker instead of being dropped after
its PUBACK. What the daemon had not handled when it stopped is redelivered at the next start.
The broker runs with the queue the shipped snippet (config/mosquitto-footfall.conf.example) sets.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest
from support.broker import Broker, wait_until
from support.daemon import store_config
from support.daemon_run import running

BURST = 3000
SNIPPET = Path(__file__).resolve().parents[2] / "config" / "mosquitto-footfall.conf.example"


def appointment(i: int) -> dict:
    return {"appointment_id": f"A-{i}", "member_id": f"M-{i % 97}", "channel": "web", "advisor": "",
            "scheduled_at": "2026-11-23T11:00:00+08:00"}


@pytest.fixture
def broker(tmp_path):
    queue = re.search(r"^max_queued_messages \d+$", SNIPPET.read_text(), re.MULTILINE)
    assert queue, "the shipped snippet sets max_queued_messages"
    b = Broker(tmp_path / "broker", extra_conf=queue.group(0) + "\n").start()
    yield b
    b.stop()


def stored(daemon) -> int:
    return len(daemon.store.appointments.appointments())


def test_a_burst_of_qos1_appointments_is_stored_whole(tmp_path, broker, hq, default_analyzer):
    with running(store_config(tmp_path, broker), default_analyzer) as daemon:
        peak = [0]
        done = threading.Event()

        def watch() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], daemon.inbox.qsize())
                time.sleep(0.002)

        watcher = threading.Thread(target=watch)
        watcher.start()
        started = time.monotonic()
        for i in range(BURST):  # as fast as one client publishes
            hq.send("appointments/upsert", appointment(i), wait=False)
        try:
            wait_until(lambda: stored(daemon) >= BURST, 15, f"all {BURST} appointments in the store")
        finally:
            done.set()
            watcher.join()
            print(f"\n{BURST} sent, {stored(daemon)} stored in {time.monotonic() - started:.2f} s; "
                  f"inbox peak {peak[0]}")
        assert daemon.inbox_dropped == daemon.inbox_deferred == daemon.store.rejected == 0
        assert peak[0] <= daemon.inbox_limit + 30, "the inbox stays bounded: the rest waited at the broker"


def test_what_was_not_handled_when_the_daemon_stopped_is_redelivered_at_the_next_start(
        tmp_path, broker, hq, default_analyzer):
    config = store_config(tmp_path, broker, "[downlink]\ninbox = 200\n")
    with running(config, default_analyzer) as daemon:
        for i in range(BURST):
            hq.send("appointments/upsert", appointment(i), wait=False)
        wait_until(lambda: stored(daemon) >= 300, 10, "the burst to be under way")
        first = stored(daemon)
    assert first < BURST - 500, "stopped in the middle of the burst"
    with running(config, default_analyzer) as again:  # same client id: the persistent session
        wait_until(lambda: stored(again) >= BURST, 15, "the rest redelivered by the broker")
        print(f"\n{first} stored before the stop, {stored(again)} after the restart")
