"""One owner of the state: operator commands act on the running daemon at once, and a second
daemon on the same state directory refuses to start.

The daemon here is the real program (`python -m footfall run`) on a live MJPEG camera served on
loopback, publishing to a real Mosquitto; `footfall erase` and `footfall enroll` are run as an
operator would run them, while it is up.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from support.broker import Broker, Subscriber, wait_until
from support.clips import ClipCamera
from support.daemon import PREFIX, TWO_MEMBERS, camera_table, config_file, enrol
from support.daemon_run import footfall, footfall_running, online_status, running, said_stopped

from footfall.config.schema import load_config
from footfall.edge import admin
from footfall.edge.admin import send
from footfall.edge.daemon import Daemon
from footfall.storage.lock import StorageBusy, StorageLock
from footfall.tooling.scenario import Appearance, Clip, SpriteBank


def every_byte_under(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file() and not p.is_socket())


def test_a_member_erased_while_the_daemon_runs_is_not_recognised_and_leaves_no_trace(
        tmp_path, broker, default_analyzer, faces_dir):
    bank = SpriteBank(faces_dir, default_analyzer)
    clip = Clip("door-1", datetime.now(UTC), 12.0, (Appearance("deepface_p05", "1.jpg", 1.0),
                                                    Appearance("deepface_p03", "1.jpg", 6.5, lane=0.3)), fps=10)
    camera = ClipCamera(clip, bank, seed=3).start()
    config = config_file(tmp_path, broker, camera_table("door-1", camera.url))
    vectors = enrol(config, default_analyzer, faces_dir, TWO_MEMBERS)
    sub = Subscriber(broker.port, PREFIX + "#")
    try:
        with footfall_running(config) as daemon:
            sub.wait_for(online_status({"door-1": "streaming"}), 60, "the daemon online with its camera streaming")

            erased = footfall("erase", "--config", str(config), "--member-id", "deepface_p05")
            assert erased.returncode == 0, erased.stderr
            assert "running daemon" in erased.stdout
            sub.wait_for(lambda ms: any(m.topic == PREFIX + "members/deleted" for m in ms), 10, "members/deleted")

            camera.play()
            sub.wait_for(lambda ms: len([m for m in ms if m.topic == PREFIX + "visits"]) >= 2, 90,
                         "both people walking in")
    finally:
        camera.stop()
    try:
        said_stopped(sub)
        visits = [m.payload for m in sub.on(PREFIX + "visits")]
        arrivals = [m.payload for m in sub.on(PREFIX + "alerts/arrival")]
        # The other member is still recognised: the camera and the gallery work.
        assert [a["member_id"] for a in arrivals] == ["deepface_p03"]
        assert sorted((v["role"], v["member_id"] or "") for v in visits) == [
            ("member", "deepface_p03"), ("visitor", "")]
        assert all("deepface_p05" not in str(m.payload) for m in sub.messages if m.topic != PREFIX + "members/deleted")
        assert b"deepface_p05" not in daemon.output.encode() and b"Ms Five" not in daemon.output.encode()

        state = every_byte_under(tmp_path / "state")
        assert b"deepface_p05" not in state and b"Ms Five" not in state
        for vector in vectors["deepface_p05"]:
            assert vector.astype(np.float32).tobytes() not in state
        assert b"deepface_p03" in state  # the check above would see a name that is there
    finally:
        sub.close()


def test_a_second_daemon_on_the_same_state_refuses_to_start_naming_the_holder(tmp_path, broker, default_analyzer):
    config = config_file(tmp_path, broker)
    first = Daemon(load_config(config), analyzer=default_analyzer)
    try:
        with pytest.raises(StorageBusy, match=r"in use by pid \d+ \(footfall run"):
            Daemon(load_config(config), analyzer=default_analyzer)
        second = footfall("run", "--config", str(config))
        assert second.returncode == 1
        assert f"in use by pid {os.getpid()} (footfall run" in second.stderr
    finally:
        first.close()
    # Released on close: the next start takes it.
    Daemon(load_config(config), analyzer=default_analyzer).close()


def test_enrol_while_the_daemon_runs_reaches_its_gallery_at_once(tmp_path, broker, default_analyzer, faces_dir):
    config = config_file(tmp_path, broker)
    with running(config, default_analyzer) as daemon:
        done = footfall("enroll", "--config", str(config), "--member-id", "m-7", "--name", "Ms Seven",
                        "--consent", str(faces_dir / "deepface_p05" / "2.jpg"))
        assert done.returncode == 0, done.stderr
        assert "running daemon" in done.stdout
        assert daemon.store.gallery.get("m-7").name == "Ms Seven"
        refused = send(tmp_path / "state", "members/upsert", '{"member_id": "m-8"}')
        assert refused["ok"] is False and "name" in refused["reason"]


def test_an_operator_command_waits_for_no_one_while_another_holds_the_state(tmp_path):
    state = tmp_path / "state"
    with StorageLock(state, "footfall members import"):
        config = config_file(tmp_path, Broker(tmp_path / "broker"))
        done = footfall("erase", "--config", str(config), "--member-id", "m-1")
    assert done.returncode == 1
    assert "in use by pid" in done.stderr and "footfall members import" in done.stderr


def drip(path: Path, stop: threading.Event, seen: dict, every: float = 0.1) -> None:
    """A local client that sends a request one byte at a time and never finishes it; `seen` says
    when it connected, and when and how the daemon ended the connection."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(path))
    seen["connected"] = time.monotonic()
    sock.settimeout(every)
    try:
        while not stop.is_set():
            try:
                sock.send(b" ")
                answer = sock.recv(4096)
            except TimeoutError:
                continue
            except OSError as exc:
                seen["error"] = exc
                break
            seen["answer"] = json.loads(answer) if answer else None
            break
    finally:
        seen["closed"] = time.monotonic()
        sock.close()


def test_a_client_dripping_bytes_is_cut_at_the_deadline_and_holds_no_one_else_up(
        tmp_path, broker, default_analyzer, monkeypatch):
    monkeypatch.setattr(admin, "IO_TIMEOUT_S", 2.0)
    config = config_file(tmp_path, broker)
    stop = threading.Event()
    dripped: dict = {}
    dripper = threading.Thread(target=drip, args=(tmp_path / "state" / "admin.sock", stop, dripped))
    with running(config, default_analyzer):
        try:
            wait_until((tmp_path / "state" / "admin.sock").exists, 30, "the admin socket")
            dripper.start()
            wait_until(lambda: "connected" in dripped, 5, "the dripping client")
            time.sleep(0.3)  # it has dripped a few bytes
            started = time.monotonic()
            answer = send(tmp_path / "state", "members/delete", '{"member_id": "m-1"}')
            took = time.monotonic() - started
            assert answer["ok"] is True and took < 1.0, f"answered in {took:.2f} s while another client drips"
            assert "closed" not in dripped, "the other client was still dripping"
            erased = footfall("erase", "--config", str(config), "--member-id", "m-2", timeout=60)
            assert erased.returncode == 1 and "m-2 is not known to the running daemon" in erased.stderr, erased.stderr
            dripper.join(10)
            assert not dripper.is_alive(), "the dripping client was never cut off"
            assert dripped["answer"] == {"ok": False, "reason": "the request did not arrive whole within 2 s"}
            assert 1.9 <= dripped["closed"] - dripped["connected"] < 3.0
        finally:
            stop.set()


def pending_connections(path: Path) -> int:
    """Sockets bound to `path` (the listener and every connection not yet accepted), from /proc/net/unix."""
    return sum(1 for line in Path("/proc/net/unix").read_text().splitlines() if line.endswith(str(path)))


def test_erase_says_in_one_line_that_the_daemon_gave_no_answer_when_it_dies_mid_request(tmp_path, broker):
    config = config_file(tmp_path, broker)
    sock_path = tmp_path / "state" / "admin.sock"
    daemon = subprocess.Popen([sys.executable, "-m", "footfall", "run", "--config", str(config)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    erase = None
    try:
        wait_until(sock_path.exists, 60, "the daemon's admin socket")
        listening = pending_connections(sock_path)
        daemon.send_signal(signal.SIGSTOP)  # it accepts nothing more
        erase = subprocess.Popen([sys.executable, "-m", "footfall", "erase", "--config", str(config),
                                  "--member-id", "m-1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_until(lambda: pending_connections(sock_path) > listening, 60, "erase connecting to the daemon")
        time.sleep(0.3)  # its request is written right after it connects
        daemon.kill()
        daemon.wait(10)
        out, err = erase.communicate(timeout=30)
    finally:
        for process in (daemon, erase):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(10)
    assert erase.returncode == 1
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"error: the daemon on {sock_path} gave no answer to members/delete"), err
    assert "run the command again" in err
