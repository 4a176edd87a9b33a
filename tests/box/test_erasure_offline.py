"""`footfall erase` that always completes: on a stopped box, for an id the box does not hold, and
with the model files missing. Real `footfall` processes, a real Mosquitto, the raw bytes of the
state files.

A stopped box queues the `members/deleted` notice in its outbox (the id alone, the one place the
id stays), the next `footfall run` publishes it, and then no file under storage.dir holds the id.
An id the box holds nowhere is an error (exit 1): most likely a typo. Its tombstone is recorded
all the same, but nothing is published, since head office erases an id across the chain.
"""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from support.broker import Broker, Subscriber, wait_until
from support.daemon import PREFIX, NoBroker, config_file, store_config
from support.daemon_run import footfall, footfall_running
from support.daemon_state import files_holding

from footfall.config.schema import load_config
from footfall.dedup.gallery import Person
from footfall.edge.store import open_gallery
from footfall.models.manifest import entry_for
from footfall.sync.appointments import Appointment, AppointmentStore

MEMBER = "m-4711"


def unit(seed: int, dim: int = 512) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


def enrol(config: Path, member_id: str, seed: int) -> None:
    """A member in the gallery, as an enrolment leaves them (no model needed to write the file)."""
    gallery = open_gallery(load_config(config))
    try:
        gallery.enroll(Person(member_id, "Ms Example", "member", tier="gold", consent=True,
                              consent_at=datetime.now(UTC), profile={"last_purchase": "watch"}), unit(seed)[None])
    finally:
        gallery.close()


def book(config: Path, member_id: str) -> None:
    store = AppointmentStore(Path(load_config(config).storage.dir) / "appointments.db", "Asia/Shanghai")
    try:
        store.upsert(Appointment("A-1", member_id, datetime.now(UTC) + timedelta(hours=2), "wechat", "Li"))
    finally:
        store.close()


def outbox_rows(state: Path) -> list[tuple[str, dict]]:
    with sqlite3.connect(f"file:{state / 'outbox.db'}?mode=ro", uri=True) as conn:
        rows = [(t.removeprefix(PREFIX), json.loads(p)) for t, p in
                conn.execute("SELECT topic, payload FROM outbox WHERE sent_at IS NULL ORDER BY seq")]
    conn.close()
    return rows


def test_an_erasure_on_a_stopped_box_reaches_head_office_at_the_next_start_then_leaves_no_trace(tmp_path, broker):
    config = config_file(tmp_path, broker)
    state, needle = tmp_path / "state", MEMBER.encode()
    enrol(config, MEMBER, 7)
    book(config, MEMBER)
    assert {"gallery.db", "appointments.db"} <= set(files_holding(state, needle))

    erased = footfall("erase", "--config", str(config), "--member-id", MEMBER)
    assert erased.returncode == 0, erased.stderr
    assert erased.stdout.startswith(f"erased {MEMBER}: removed from gallery, appointments; head office is told "
                                    f"at the daemon's next start"), erased.stdout
    # What is held until then: one outbox row, the notice, naming the id and nothing else of the member.
    assert files_holding(state, needle) == {"outbox.db": 1}
    ((topic, notice),) = outbox_rows(state)
    assert topic == "members/deleted" and set(notice) == {"event_id", "store_id", "ts", "member_id", "removed"}
    assert b"Ms Example" not in b"".join(p.read_bytes() for p in state.iterdir() if p.is_file())

    hq = Subscriber(broker.port, PREFIX + "members/deleted")
    try:
        with footfall_running(config) as daemon:
            (received,) = hq.wait_for(lambda ms: ms, 60, "the queued members/deleted")
            reached = time.monotonic()
            assert received.payload == notice, "the notice as queued, sent once"
            wait_until(lambda: not files_holding(state, needle), 5, "no file under storage.dir holding the id")
            print(f"\nno file holds the id {time.monotonic() - reached:.2f} s after the notice reached the broker")
    finally:
        hq.close()
    assert needle not in daemon.output.encode()
    assert not files_holding(state, needle)


def test_an_id_the_stopped_box_does_not_hold_is_an_error_and_its_erasure_is_recorded_but_not_announced(tmp_path):
    config = config_file(tmp_path, Broker(tmp_path / "broker"))  # never started: nothing may be sent
    enrol(config, MEMBER, 7)

    typo = footfall("erase", "--config", str(config), "--member-id", "m-47111")
    assert typo.returncode == 1, typo.stdout
    assert typo.stderr.startswith("error: m-47111 is not known on this box: not in the gallery, an open visit "
                                  "window, the appointments or the outbox; check the id."), typo.stderr
    assert "head office is not told" in typo.stderr and "Traceback" not in typo.stderr
    assert [t for t, _ in outbox_rows(tmp_path / "state")] == [], "no notice queued"
    # The real member is untouched, and the erasure is recorded: an upsert sent before now cannot enrol the id.
    gallery = open_gallery(load_config(config))
    try:
        assert gallery.get(MEMBER) is not None
    finally:
        gallery.close()
    stale = tmp_path / "members.jsonl"
    stale.write_text(json.dumps({"member_id": "m-47111", "name": "Typo", "role": "member", "consent": True,
                                 "embeddings": [unit(8).tolist()],
                                 "embedding_model": entry_for("edgeface_xs.onnx").sha256}) + "\n")
    refused = footfall("members", "import", "--config", str(config), str(stale))
    assert refused.returncode == 1 and "m-47111 was erased at" in refused.stderr, refused.stderr


def test_an_id_the_running_daemon_does_not_hold_is_an_error_and_nothing_is_published(tmp_path, broker):
    config = config_file(tmp_path, broker)
    enrol(config, MEMBER, 7)
    hq = Subscriber(broker.port, PREFIX + "members/deleted")
    try:
        with footfall_running(config):
            wait_until((tmp_path / "state" / "admin.sock").exists, 60, "the daemon's admin socket")
            typo = footfall("erase", "--config", str(config), "--member-id", "m-47111")
            assert typo.returncode == 1, typo.stdout
            assert typo.stderr.startswith("error: m-47111 is not known to the running daemon on this box: not in "
                                          "the gallery"), typo.stderr
            done = footfall("erase", "--config", str(config), "--member-id", MEMBER)
            assert done.returncode == 0, done.stderr
            assert done.stdout.startswith(f"erased {MEMBER} in the running daemon: removed from gallery"), done.stdout
            # The outbox keeps its order: a notice for the typo would have come first.
            (received,) = hq.wait_for(lambda ms: ms, 10, "members/deleted")
            assert received.payload["member_id"] == MEMBER
    finally:
        hq.close()


def test_erase_and_appointments_import_need_no_model_file_and_no_match_threshold(tmp_path):
    empty = tmp_path / "models"
    empty.mkdir()
    # A recognizer not shipped in the package, its file absent, with no match threshold anywhere;
    # the thresholds a box running it must have are in the config.
    config = store_config(tmp_path, NoBroker(), f'[models]\ndir = "{empty}"\nrecognizer = "w600k_mbf.onnx"\n',
                          '[dedup]\nthreshold = 0.5\nmargin = 0.05\n', '[members]\nthreshold = 0.5\nmargin = 0.05\n')
    assert entry_for("w600k_mbf.onnx").match_threshold is None and not list(empty.iterdir())
    enrol(config, MEMBER, 7)

    done = footfall("erase", "--config", str(config), "--member-id", MEMBER)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"erased {MEMBER}: removed from gallery;"), done.stdout

    bookings = tmp_path / "appointments.jsonl"
    bookings.write_text(json.dumps({"appointment_id": "A-2", "member_id": "m-1", "channel": "phone", "advisor": "Li",
                                    "scheduled_at": "2026-11-23T15:00:00+08:00"}) + "\n")
    imported = footfall("appointments", "import", "--config", str(config), str(bookings))
    assert imported.returncode == 0, imported.stderr
    assert f"{bookings}: 1 imported, 0 skipped" in imported.stdout
