"""The store opens, decides, applies downlink commands and erases with no model file on the box.

Its recognizer is the one config and manifest describe (`RecognizerSpec`: dimension, checksum,
thresholds), its model directory an empty folder, and no photo embedder is given; onnxruntime may
open no session. Passages carry synthetic 512-d embeddings (the shipped recognizer's size). What
a state file refuses (`PRAGMA query_only`, as a disk that takes no writes) waits in memory and is
written when it takes writes again. The store clock is a replayed day: 10:00 in Asia/Shanghai.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest

from footfall.config.schema import parse_config
from footfall.edge.decisions import Passage
from footfall.edge.store import Store
from footfall.recognition.spec import recognizer_spec
from footfall.sync import events
from footfall.sync.appointments import Appointment
from footfall.sync.downlink import Reply, ReplyAddress

START = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # 10:00 in the store
DIM = 512
PREFIX = "footfall/sh-001/"


def config(tmp_path: Path):
    (tmp_path / "no-models").mkdir(exist_ok=True)
    return parse_config({"store_id": "sh-001", "timezone": "Asia/Shanghai",
                         "models": {"dir": str(tmp_path / "no-models")},
                         "storage": {"dir": str(tmp_path / "state")}})


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def passage(at: datetime, embedding: np.ndarray | None) -> Passage:
    return Passage("door-1", at, at + timedelta(seconds=3), at + timedelta(seconds=1), embedding,
                   3 if embedding is not None else 0)


def rows(store: Store) -> list[tuple[str, dict]]:
    """(topic name, payload) of every row in the outbox, in order."""
    with sqlite3.connect(f"file:{store.outbox.path}?mode=ro", uri=True) as conn:
        out = [(t.split("/", 2)[2], json.loads(p))
               for t, p in conn.execute("SELECT topic, payload FROM outbox ORDER BY seq")]
    conn.close()
    return out


def topics(store: Store) -> list[str]:
    return [t for t, _ in rows(store)]


def message(fields: dict) -> bytes:
    return json.dumps(fields).encode()


def upsert(store: Store, member_id: str, face: np.ndarray, **fields) -> bytes:
    return message({"member_id": member_id, "name": "Ms Seven", "role": "member", "tier": "gold",
                    "consent": True, "embeddings": [face.tolist()],
                    "embedding_model": store.spec.sha256} | fields)


def refuse_writes(conn: sqlite3.Connection, refused: bool = True) -> None:
    """The file takes no writes (as a full disk), or takes them again."""
    conn.execute(f"PRAGMA query_only = {'ON' if refused else 'OFF'}")


@pytest.fixture(autouse=True)
def no_model_session(monkeypatch):
    def refused(*args, **kwargs):
        raise AssertionError("an onnxruntime session was opened")

    monkeypatch.setattr("onnxruntime.InferenceSession", refused)


@pytest.fixture
def store(tmp_path):
    cfg = config(tmp_path)
    with Store(cfg, recognizer_spec(cfg), embed_photos=None, media_clock=True) as s:
        s.advance(START)
        yield s


def test_the_recognizer_comes_from_config_and_manifest_with_an_empty_model_directory(tmp_path, store):
    assert list((tmp_path / "no-models").iterdir()) == []
    assert store.spec.dim == DIM and len(store.spec.sha256) == 64
    assert store.downlink.recognizer_sha256 == store.spec.sha256
    assert 0 < store.spec.threshold("dedup.threshold") < 1 and 0 < store.spec.threshold("members.threshold") < 1


def test_strangers_are_visits_then_reentries_and_a_faceless_entrant_is_counted_unidentified(store):
    face = unit(1)
    decided = store.enter([passage(START, face), passage(START + timedelta(minutes=20), face),
                           passage(START + timedelta(minutes=21), None)])
    assert [(d.kind, d.identified) for d in decided] == [("visit", True), ("reentry", True), ("visit", False)]
    assert decided[0].visitor_id == decided[1].visitor_id
    store.tick()
    counts = [p for t, p in rows(store) if t == "counts"][-1]
    assert (counts["visits"], counts["reentries"], counts["unidentified"]) == (2, 1, 1)


def test_a_member_upserted_with_embeddings_is_recognised_and_alerted(store):
    assert store.command(events.MEMBERS_UPSERT, upsert(store, "m-7", unit(7))).ok
    decided = store.enter([passage(START, unit(7))])
    assert [(d.kind, d.member_id) for d in decided] == [("visit", "m-7")]
    assert topics(store) == ["visits", "alerts/arrival"]
    assert rows(store)[1][1]["name"] == "Ms Seven"


def test_embeddings_from_another_model_are_refused_naming_this_boxs_recognizer(store):
    refused = store.command(events.MEMBERS_UPSERT, upsert(store, "m-7", unit(7), embedding_model="b" * 64))
    assert not refused.ok and store.spec.sha256 in (refused.reason or "")
    assert len(store.gallery) == 0


def test_photos_on_a_box_without_model_files_are_refused_saying_why_and_change_nothing(store):
    ok, jpeg = cv2.imencode(".jpg", np.full((64, 64, 3), 128, np.uint8))
    assert ok
    photos = json.loads(upsert(store, "m-7", unit(7)))
    del photos["embeddings"], photos["embedding_model"]
    photos["images"] = [base64.b64encode(jpeg.tobytes()).decode()]
    refused = store.command(events.MEMBERS_UPSERT, message(photos))
    assert not refused.ok and "the photos cannot be embedded on this box" in (refused.reason or "")
    assert len(store.gallery) == 0


def test_an_erasure_takes_the_member_from_every_part_of_the_state_at_once(store):
    assert store.command(events.MEMBERS_UPSERT, upsert(store, "m-7", unit(7))).ok
    booking = {"appointment_id": "a-1", "member_id": "m-7", "scheduled_at": "2026-11-23T11:00:00+08:00",
               "channel": "wechat", "advisor": "Li"}
    assert store.command(events.APPOINTMENTS_UPSERT, message(booking)).ok
    store.enter([passage(START, unit(7))])
    store.receive(PREFIX + "members/upsert", upsert(store, "m-7", unit(7), consent=False))  # reported on errors
    assert topics(store) == ["appointments/booked", "visits", "alerts/appointment", "alerts/arrival", "errors"]

    outcome = store.command(events.MEMBERS_DELETE, message({"member_id": "m-7"}), operator=True)

    assert outcome.ok and outcome.reply == {"member_id": "m-7", "removed": True, "held_in": [
        "gallery", "open visit window", "outbox (5 event(s) not yet sent were dropped)", "appointments"]}
    assert store.gallery.get("m-7") is None and store.window.open_windows() == 0
    assert store.appointments.appointments() == []
    assert rows(store) == [("members/deleted", rows(store)[0][1])] and rows(store)[0][1]["member_id"] == "m-7"
    stale = store.command(events.MEMBERS_UPSERT, upsert(store, "m-7", unit(7)))
    assert not stale.ok and "was erased at" in (stale.reason or "")
    consented_again = upsert(store, "m-7", unit(7), ts=(datetime.now(UTC) + timedelta(minutes=1)).isoformat())
    assert store.command(events.MEMBERS_UPSERT, consented_again).ok


def test_an_operators_erasure_of_an_id_held_nowhere_is_recorded_but_not_announced(store):
    outcome = store.command(events.MEMBERS_DELETE, message({"member_id": "m-404"}), operator=True)
    assert outcome.ok and outcome.reply is not None and outcome.reply["held_in"] == []
    assert topics(store) == []
    assert store.gallery.erased_at("m-404") is not None
    store.receive(PREFIX + "members/delete", message({"member_id": "m-405"}))  # the CRM's is always answered
    assert topics(store) == ["members/deleted"]


def test_counts_get_is_answered_with_its_correlation_data_as_plain_bytes(store):
    store.enter([passage(START, unit(3))])
    request = message({"from": "2026-11-23T00:00:00+08:00", "to": "2026-11-24T00:00:00+08:00", "by": "day"})
    reply = store.receive(PREFIX + "counts/get", request, ReplyAddress(PREFIX + "replies/hq-1", b"req-17"))
    assert isinstance(reply, Reply) and (reply.topic, reply.correlation) == (PREFIX + "replies/hq-1", b"req-17")
    assert reply.payload["buckets"][0]["visits"] == 1
    assert store.receive(PREFIX + "counts/get", request, ReplyAddress(PREFIX + "visits")) is None
    assert topics(store)[-1] == "errors"
    refused = store.command(events.COUNTS_GET, request, operator=True)
    assert not refused.ok and "only to requests from the broker" in (refused.reason or "")


def test_entries_counts_db_refuses_wait_in_order_and_the_status_names_the_file(store):
    refuse_writes(store.counts._conn)
    store.enter([passage(START, unit(1)), passage(START + timedelta(minutes=1), unit(2))])
    assert [e.kind for e in store.uncounted] == ["visit", "visit"]
    assert store.storage_summary().startswith("error: ") and "counts.db" in store.storage_summary()
    assert topics(store) == ["visits", "visits"], "the visits are published all the same"
    refuse_writes(store.counts._conn, False)
    store.enter([passage(START + timedelta(minutes=2), unit(1))])  # brings the held entries in before it
    assert len(store.uncounted) == 0 and store.storage_summary() == "ok"
    today = store.counts.today(START + timedelta(minutes=3))
    assert (today["visits"], today["reentries"]) == (2, 1)


def test_a_no_show_whose_flag_is_refused_is_raised_once_and_flagged_when_the_file_takes_writes(store):
    store.appointments.upsert(Appointment("a-1", "m-9", START, "wechat", "Li"))
    conn = store.appointments._conn
    conn.execute("CREATE TEMP TRIGGER no_room BEFORE UPDATE OF flagged ON main.appointments "
                 "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END")  # only the flag is refused
    for minutes in (31, 32, 33):
        store.advance(START + timedelta(minutes=minutes))
        store.tick()
    assert topics(store).count("alerts/no_show") == 1
    assert "appointments.db" in store.storage_summary() and list(store.unflagged) == ["a-1"]
    conn.execute("DROP TRIGGER temp.no_room")
    assert store.unflagged.flush(force=True)  # what `tick` does once a second
    assert store.appointments.due_no_shows(START + timedelta(minutes=40), timedelta(minutes=30)) == []
    assert store.storage_summary() == "ok"


def test_open_windows_windows_db_refused_are_written_when_it_takes_writes_again(tmp_path, store):
    refuse_writes(store.window._conn)
    first = store.enter([passage(START, unit(5))])
    store.tick()
    assert "windows.db" in store.storage_summary()
    refuse_writes(store.window._conn, False)
    assert store.unsaved_windows.flush(force=True)  # what `tick` does once a second
    assert store.storage_summary() == "ok"
    store.close()
    cfg = config(tmp_path)
    with Store(cfg, recognizer_spec(cfg), media_clock=True) as again:
        later = again.enter([passage(START + timedelta(minutes=10), unit(5))])
    assert (later[0].kind, later[0].visitor_id) == ("reentry", first[0].visitor_id)


def test_an_erasure_drops_the_members_events_the_outbox_refused_and_holds_in_memory(store):
    assert store.command(events.MEMBERS_UPSERT, upsert(store, "m-7", unit(7))).ok
    refuse_writes(store.outbox._conn)
    store.enter([passage(START, unit(7)), passage(START, unit(3))])
    assert [e.TOPIC for e in store.unstored] == ["visits", "alerts/arrival", "visits"]
    refuse_writes(store.outbox._conn, False)  # the disk takes writes again before the retry

    outcome = store.command(events.MEMBERS_DELETE, message({"member_id": "m-7"}), operator=True)

    assert outcome.ok and "outbox (2 event(s) not yet sent were dropped)" in outcome.reply["held_in"]
    assert len(store.unstored) == 0
    assert [(t, p.get("member_id")) for t, p in rows(store)] == [("visits", None), ("members/deleted", "m-7")]
