"""The store: the one owner of a box's state. Passages, clock ticks, downlink messages and
operator commands go in; outbox rows come out. Real models and SQLite files, no broker.

The store clock here is a replayed day: 10:00 in Asia/Shanghai on 23 November 2026, moved by hand.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from footfall.config.schema import PrivacyConfig, load_config
from footfall.dedup.gallery import EnrolmentError, Person
from footfall.edge.decisions import Passage
from footfall.edge.store import Store
from footfall.storage.lock import StorageBusy
from footfall.sync import events
from footfall.sync.appointments import Appointment

START = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # 10:00 in the store
DIM = 512


def config(tmp_path: Path):
    path = tmp_path / "footfall.toml"
    path.write_text(f'store_id = "sh-001"\ntimezone = "Asia/Shanghai"\n[mqtt]\nurl = "mqtt://127.0.0.1:1"\n'
                    f'[storage]\ndir = "{tmp_path / "state"}"\n')
    return load_config(path)


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def passage(at: datetime, embedding: np.ndarray | None, camera: str = "door-1") -> Passage:
    return Passage(camera, at, at + timedelta(seconds=3), at + timedelta(seconds=1), embedding, 3 if embedding is not None else 0)


def rows(store: Store) -> list[tuple[str, dict]]:
    """(topic name, payload) of every row in the outbox, in order."""
    with sqlite3.connect(f"file:{store.outbox.path}?mode=ro", uri=True) as conn:
        out = [(t.split("/", 2)[2], json.loads(p)) for t, p in conn.execute("SELECT topic, payload FROM outbox ORDER BY seq")]
    conn.close()
    return out


@pytest.fixture
def store(tmp_path, default_analyzer):
    with Store(config(tmp_path), default_analyzer.pack.spec, media_clock=True) as s:
        s.advance(START)
        yield s


def test_a_second_owner_of_the_state_directory_is_refused_naming_the_holder(tmp_path, default_analyzer, store):
    with pytest.raises(StorageBusy, match=r"is in use by pid \d+ \(footfall run"):
        Store(config(tmp_path), default_analyzer.pack.spec, command="footfall erase")
    store.close()
    Store(config(tmp_path), default_analyzer.pack.spec, command="footfall erase").close()  # free once closed


def test_who_holds_the_state_directory_can_be_seen_without_taking_it(tmp_path, default_analyzer, store):
    from footfall.cli.doctor import _storage
    from footfall.storage.lock import current_holder

    holder = current_holder(tmp_path / "state")
    assert holder is not None and holder["command"] == "footfall run"
    assert f"in use by pid {holder['pid']} (footfall run" in _storage(config(tmp_path))
    store.close()
    assert current_holder(tmp_path / "state") is None
    assert _storage(config(tmp_path)).endswith("not in use")
    Store(config(tmp_path), default_analyzer.pack.spec).close()  # looking took nothing


def test_a_stranger_is_a_visit_then_a_reentry_published_and_counted(store):
    face = unit(1)
    first = store.enter([passage(START, face)])
    again = store.enter([passage(START + timedelta(minutes=20), face)])
    assert [d.kind for d in first + again] == ["visit", "reentry"]
    assert first[0].visitor_id == again[0].visitor_id
    store.advance(START + timedelta(minutes=21))
    store.tick()
    published = rows(store)
    assert [t for t, _ in published] == ["visits", "visits", "counts"]
    assert published[2][1]["visits"] == 1 and published[2][1]["reentries"] == 1


def test_an_entrant_without_a_usable_face_is_counted_unidentified_and_never_matched(store):
    store.enter([passage(START, None), passage(START + timedelta(seconds=30), None)])
    store.tick()
    visits = [p for t, p in rows(store) if t == "visits"]
    assert [(v["kind"], v["identified"]) for v in visits] == [("visit", False), ("visit", False)]
    assert visits[0]["visitor_id"] != visits[1]["visitor_id"]
    assert [p for t, p in rows(store) if t == "counts"][-1]["unidentified"] == 2


def test_a_member_walking_in_raises_one_arrival_alert_and_staff_nothing(store):
    store.gallery.enroll(Person("m-1", "Ms One", "member", tier="gold", consent=True), unit(10)[None])
    store.gallery.enroll(Person("s-1", "Mr Staff", "staff"), unit(11)[None])
    decided = store.enter([passage(START, unit(10)), passage(START + timedelta(seconds=5), unit(11))])
    store.enter([passage(START + timedelta(minutes=5), unit(10))])
    assert [d.kind for d in decided] == ["visit", "staff"]
    topics = [t for t, _ in rows(store)]
    assert topics == ["visits", "alerts/arrival", "visits"], "the member's re-entry raises no second pop-up"
    assert rows(store)[1][1]["name"] == "Ms One"


def test_windows_close_by_the_store_clock_without_any_passage(store):
    store.enter([passage(START, unit(2))])
    assert store.window.open_windows() == 1
    store.advance(START + timedelta(hours=2, minutes=59))
    store.tick()
    assert store.window.open_windows() == 1
    store.advance(START + timedelta(hours=3, minutes=1))
    store.tick()
    assert store.window.open_windows() == 0
    assert store.enter([passage(START + timedelta(hours=3, minutes=2), unit(2))])[0].kind == "visit"


def test_an_erasure_takes_the_member_from_every_part_of_the_state_at_once(store):
    store.gallery.enroll(Person("m-7", "Ms Seven", "member", consent=True), unit(7)[None])
    store.appointments.upsert(Appointment("a-1", "m-7", START + timedelta(minutes=30), "wechat", "Li"))
    store.enter([passage(START, unit(7))])
    outcome = store.command(events.MEMBERS_DELETE, json.dumps({"member_id": "m-7"}).encode())
    assert outcome.ok and outcome.reply is not None
    assert outcome.reply["held_in"][:2] == ["gallery", "open visit window"]
    assert "appointments" in outcome.reply["held_in"]
    assert store.gallery.get("m-7") is None and store.appointments.appointments() == []
    # The unsent visit and pop-up naming the member went with them; the confirmation remains.
    assert [t for t, _ in rows(store)] == ["members/deleted"]
    # The same face is now a stranger, and a stale CRM upsert cannot bring the member back.
    assert store.enter([passage(START + timedelta(minutes=1), unit(7))])[0].member_id is None
    stale = {"member_id": "m-7", "name": "Ms Seven", "role": "member", "consent": True, "embeddings": [unit(7).tolist()],
             "embedding_model": store.downlink.recognizer_sha256}
    refused = store.command(events.MEMBERS_UPSERT, json.dumps(stale).encode())
    assert not refused.ok and "was erased at" in (refused.reason or "")


def test_a_malformed_downlink_message_is_reported_on_errors_and_changes_nothing(store):
    assert store.receive("footfall/sh-001/members/upsert", b"\xff not json") is None
    store.receive("footfall/sh-001/appointments/upsert", b'{"appointment_id": 7}')
    errors = [p for t, p in rows(store) if t == "errors"]
    assert len(errors) == 2 and "UTF-8" in errors[0]["reason"] and "appointment_id" in errors[1]["reason"]
    assert len(store.gallery) == 0 and store.appointments.appointments() == []


def test_an_erasure_removes_the_unsent_error_reports_quoting_a_non_ascii_member_id(store):
    refused = {"member_id": "会员-7", "name": "王芳", "role": "member", "consent": False,
               "embeddings": [unit(7).tolist()], "embedding_model": store.downlink.recognizer_sha256}
    store.receive("footfall/sh-001/members/upsert", json.dumps(refused).encode())
    store.receive("footfall/sh-001/members/upsert", json.dumps(refused | {"member_id": "会员-70"}).encode())
    assert [p["reason"] for t, p in rows(store) if t == "errors"] == [
        "member 会员-7: consent is required (consent must be true)",
        "member 会员-70: consent is required (consent must be true)"]
    assert store.command(events.MEMBERS_DELETE, json.dumps({"member_id": "会员-7"}).encode()).ok
    assert [p["reason"] for t, p in rows(store) if t == "errors"] == [
        "member 会员-70: consent is required (consent must be true)"]
    store.outbox.close()
    raw = b"".join(f.read_bytes() for f in store.outbox.path.parent.glob("outbox.db*"))
    assert "会员-7:".encode() not in raw and "会员-7".encode("unicode_escape") not in raw

def test_counts_get_is_answered_only_under_the_stores_replies_branch(store):
    store.enter([passage(START, unit(3))])
    request = {"from": "2026-11-23T00:00:00+08:00", "to": "2026-11-24T00:00:00+08:00", "by": "day",
               "reply_to": "footfall/sh-001/replies/hq-1"}
    reply = store.receive("footfall/sh-001/counts/get", json.dumps(request).encode())
    assert reply is not None and reply.topic == "footfall/sh-001/replies/hq-1"
    assert reply.payload["buckets"][0]["visits"] == 1
    elsewhere = store.receive("footfall/sh-001/counts/get",
                              json.dumps(request | {"reply_to": "footfall/sh-002/visits"}).encode())
    assert elsewhere is None and [t for t, _ in rows(store)][-1] == "errors"



def test_a_member_recognised_only_on_a_later_passage_gets_the_pop_up_then_on_the_visit_they_began(store):
    member = unit(20)
    other = unit(21) - (unit(21) @ member) * member
    other /= np.linalg.norm(other)
    turned = 0.3 * member + np.sqrt(1 - 0.09) * other  # too far from the template to be recognised
    frontal = (member + turned) / np.linalg.norm(member + turned)  # near both
    store.gallery.enroll(Person("m-2", "Mr Two", "member", tier="gold", consent=True), member[None])
    first = store.enter([passage(START, turned.astype(np.float32))])
    later = store.enter([passage(START + timedelta(minutes=2), frontal.astype(np.float32))])
    assert [(d.kind, d.member_id) for d in first] == [("visit", None)]
    assert [(d.kind, d.member_id, d.recognised_late) for d in later] == [("reentry", "m-2", True)]
    assert later[0].visitor_id == first[0].visitor_id, "one visit, which carries the member from then on"
    published = rows(store)
    assert [t for t, _ in published] == ["visits", "visits", "alerts/arrival"]
    assert published[2][1]["visit_event_id"] == published[1][1]["event_id"]
    store.enter([passage(START + timedelta(minutes=4), frontal.astype(np.float32))])
    assert [t for t, _ in rows(store)].count("alerts/arrival") == 1


def test_a_count_only_store_enrols_nobody_and_counts_every_passage_as_a_visit(tmp_path, default_analyzer):
    count_only = config(tmp_path).model_copy(update={"privacy": PrivacyConfig(mode="count_only")})
    with Store(count_only, default_analyzer.pack.spec, media_clock=True) as store:
        store.advance(START)
        upsert = {"member_id": "m-1", "name": "M", "role": "member", "consent": True, "embeddings": [unit(1).tolist()],
                  "embedding_model": store.downlink.recognizer_sha256}
        refused = store.command(events.MEMBERS_UPSERT, json.dumps(upsert).encode())
        assert not refused.ok and "privacy.mode is count_only" in (refused.reason or "")
        with pytest.raises(EnrolmentError, match="count_only"):
            store.enroll(Person("m-1", "M", "member", consent=True), unit(1)[None])
        seen = [Passage("door-1", START + timedelta(minutes=m), START + timedelta(minutes=m, seconds=3),
                        START + timedelta(minutes=m, seconds=1), None, 3) for m in (0, 5)]
        decided = store.enter(seen)
        assert [(d.kind, d.identified) for d in decided] == [("visit", True), ("visit", True)]
        assert decided[0].visitor_id != decided[1].visitor_id
        assert len(store.gallery) == 0 and store.window.open_windows() == 0


def state_bytes(tmp_path: Path, name: str) -> bytes:
    return b"".join(f.read_bytes() for f in sorted((tmp_path / "state").glob(name + "*")))


def test_a_count_only_start_erases_the_anonymous_vectors_a_recognising_run_left_open(tmp_path, default_analyzer):
    with Store(config(tmp_path), default_analyzer.pack.spec, media_clock=True) as recognising:
        recognising.advance(START)
        recognising.enter([passage(START, unit(5))])
        assert recognising.window.open_windows() == 1
    vector = unit(5).astype("<f4").tobytes()
    assert vector in state_bytes(tmp_path, "windows.db"), "the check below would see the vector"

    count_only = config(tmp_path).model_copy(update={"privacy": PrivacyConfig(mode="count_only")})
    with Store(count_only, default_analyzer.pack.spec, media_clock=True) as store:
        assert store.window.open_windows() == 0
        assert vector not in state_bytes(tmp_path, "windows.db")


def test_enroll_on_a_count_only_box_is_refused_before_a_photo_is_read_or_a_model_looked_up(
        tmp_path, monkeypatch, capsys):
    from footfall.cli import main, people

    def no_model(*args, **kwargs):
        raise AssertionError("a face model was looked up")

    monkeypatch.setattr(people.FaceAnalyzer, "from_config", no_model)
    monkeypatch.setattr(people, "read_image", no_model)
    path = tmp_path / "footfall.toml"
    path.write_text(f'store_id = "sh-001"\ntimezone = "Asia/Shanghai"\n[mqtt]\nurl = "mqtt://127.0.0.1:1"\n'
                    f'[storage]\ndir = "{tmp_path / "state"}"\n[privacy]\nmode = "count_only"\n')
    code = main.main(["enroll", "--config", str(path), "--member-id", "m-1", "--name", "Ms One", "--consent",
                      str(tmp_path / "face.jpg")])
    assert code == 1
    assert capsys.readouterr().err.strip().startswith("error: privacy.mode is count_only")
    assert not (tmp_path / "state").exists(), "not even the state directory was opened"
