"""Specification of the downlink (CONTRACT, topics marked "down": members, appointments, counts/get).

A message is applied whole or not at all: a rejected one changes neither the
gallery nor the appointments nor the open visit windows, and its reason names the
field (and the index of a bad image or vector) for the `errors` event. Whatever
arrives, the store's `command` never raises. Messages go through a real `Store`
(the downlink parses them, the store applies them). Photos go through the real
models (the shipped EdgeFace-XS pack, 512-d); embeddings are synthetic 512-d
vectors made "by" that recognizer.
"""

from __future__ import annotations

import base64
import json
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from footfall.config.schema import parse_config
from footfall.dedup.enrol import embeddings_from_photos
from footfall.dedup.gallery import Gallery, Person
from footfall.edge.store import Store, wall_clock
from footfall.recognition.images import read_image
from footfall.recognition.spec import recognizer_spec
from footfall.sync.appointments import Appointment
from footfall.sync.counts import CountStore
from footfall.sync.downlink import (
    MAX_PAYLOAD,
    CountsRequest,
    Outcome,
    counts_reply,
    image_size,
    parse_counts_request,
)

DIM = 512
TZ = ZoneInfo("Asia/Shanghai")
OTHER_SHA = "b" * 64
THRESHOLD, MARGIN = 0.55, 0.05
TOPICS = ["members/upsert", "members/delete", "appointments/upsert", "appointments/delete"]
NOW = datetime(2026, 11, 23, 15, 30, tzinfo=TZ)


def faces(n: int, seed: int = 0) -> np.ndarray:
    """n different people: orthonormal random 512-d vectors."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((DIM, n)))
    return q.T.astype(np.float32)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def encoded(image: np.ndarray, ext: str = ".png") -> bytes:
    ok, buf = cv2.imencode(ext, image)
    assert ok
    return buf.tobytes()


def payload(message) -> bytes:
    return json.dumps(message).encode("utf-8")


# -- fixtures ----------------------------------------------------------------------

@pytest.fixture(scope="session")
def sha() -> str:
    return recognizer_spec(parse_config({})).sha256


@pytest.fixture(scope="session")
def obama_jpeg(faces_dir: Path) -> str:
    return b64((faces_dir / "obama" / "1.jpg").read_bytes())


class Box:
    """A store on its own state directory: what a downlink message changes is its gallery, its
    appointments and its open visit windows."""

    def __init__(self, sha: str, embed_photos, root: Path | None = None, wall=wall_clock) -> None:
        self._temporary = root is None
        self.root = Path(root or tempfile.mkdtemp(prefix="downlink-"))
        config = parse_config({"store_id": "sh-001", "timezone": "Asia/Shanghai",
                               "storage": {"dir": str(self.root / "state")}})
        self.store = Store(config, recognizer_spec(config), embed_photos, wall=wall)
        assert self.store.spec.sha256 == sha
        self.gallery = self.store.gallery
        self.appointments = self.store.appointments

    def open_window(self, member_id: str) -> None:
        self.store.window.enter_member(member_id, datetime.now(UTC))

    def send(self, topic: str, message) -> Outcome:
        return self.store.command(topic, message if isinstance(message, bytes) else payload(message))

    def snapshot(self, probes: np.ndarray) -> tuple:
        matches = [m and (m.person.person_id, round(m.score, 5)) for m in map(self.gallery.match, probes)]
        return self.gallery.people(), self.appointments.appointments(), self.store.window.open_windows(), matches

    def close(self) -> None:
        self.store.close()
        if self._temporary:
            shutil.rmtree(self.root)


@pytest.fixture
def box(sha, default_analyzer, tmp_path):
    b = Box(sha, lambda imgs: embeddings_from_photos(default_analyzer, imgs), tmp_path)
    yield b
    b.close()


def member_upsert(sha: str, member_id: str = "M-1", vectors: np.ndarray | None = None, **fields) -> dict:
    vectors = faces(2) if vectors is None else vectors
    return {"member_id": member_id, "name": "Li Wei", "role": "member", "tier": "gold", "consent": True,
            "profile": {"tags": ["vip"], "open_repairs": 1},
            "embeddings": [v.tolist() for v in vectors], "embedding_model": sha} | fields


def appointment_upsert(appointment_id: str = "A-1", member_id: str = "M-1", **fields) -> dict:
    return {"appointment_id": appointment_id, "member_id": member_id,
            "scheduled_at": "2026-11-23T11:00:00+08:00", "channel": "wechat", "advisor": "Zhang Min"} | fields


def without(message: dict, key: str) -> dict:
    return {k: v for k, v in message.items() if k != key}


# -- members/upsert ----------------------------------------------------------------

def test_a_member_enrolled_from_a_photo_is_recognised_in_another_photo(box, obama_jpeg, faces_dir, default_analyzer):
    message = without(member_upsert(box.gallery.model_sha256, "M-44"), "embeddings")
    outcome = box.send("members/upsert", without(message, "embedding_model") | {"images": [obama_jpeg]})
    assert outcome == Outcome(True)
    person = box.gallery.get("M-44")
    assert (person.name, person.role, person.tier, person.consent) == ("Li Wei", "member", "gold", True)
    assert person.profile == {"tags": ["vip"], "open_repairs": 1}
    [probe] = embeddings_from_photos(default_analyzer, [("2.jpg", read_image(faces_dir / "obama" / "2.jpg"))])
    assert box.gallery.match(probe).person.person_id == "M-44"


def test_a_member_enrolled_from_embeddings_is_recognised(box, sha):
    people = faces(3)
    assert box.send("members/upsert", member_upsert(sha, "M-1", people[:1])).ok
    assert box.gallery.match(people[0]).person.person_id == "M-1"
    assert box.gallery.match(people[1]) is None


def test_raw_embeddings_are_l2_normalised_before_enrolment(box, sha):
    people = faces(2)
    raw = people * np.array([[7.5], [0.02]], dtype=np.float32)
    assert box.send("members/upsert", member_upsert(sha, "M-1", raw)).ok
    assert box.gallery.match(people[1]).score == pytest.approx(1.0, abs=1e-4)


def test_the_embedding_model_may_be_written_in_capitals(box, sha):
    assert box.send("members/upsert", member_upsert(sha, embedding_model=sha.upper())).ok


def test_staff_need_no_consent_and_tier_and_profile_are_optional(box, sha):
    message = without(without(without(member_upsert(sha, "S-1", role="staff"), "consent"), "tier"), "profile")
    assert box.send("members/upsert", message).ok
    staff = box.gallery.get("S-1")
    assert staff.role == "staff" and staff.tier is None and staff.profile == {}


def test_an_upsert_of_a_known_member_replaces_their_record_and_vectors(box, sha):
    people = faces(2)
    box.send("members/upsert", member_upsert(sha, "M-1", people[:1], tier="silver"))
    assert box.send("members/upsert", member_upsert(sha, "M-1", people[1:], tier="gold")).ok
    assert box.gallery.get("M-1").tier == "gold"
    assert box.gallery.match(people[0]) is None and box.gallery.match(people[1]).person.person_id == "M-1"
    assert len(box.gallery) == 1


def test_consent_is_stamped_with_the_clock_when_one_is_given(sha, tmp_path):
    b = Box(sha, lambda imgs: faces(len(imgs)), tmp_path, wall=lambda: NOW)
    try:
        b.send("members/upsert", member_upsert(sha))
        assert b.gallery.get("M-1").consent_at == NOW
    finally:
        b.close()


def test_an_upsert_is_kept_in_a_gallery_file_across_a_restart(tmp_path, sha):
    path = tmp_path / "state" / "gallery.db"
    people = faces(1)
    first = Box(sha, lambda imgs: faces(len(imgs)), tmp_path)
    assert first.send("members/upsert", member_upsert(sha, "M-9", people)).ok
    first.close()
    with Gallery(dim=DIM, threshold=THRESHOLD, margin=MARGIN, model_sha256=sha, db_path=path) as again:
        assert again.get("M-9").tier == "gold"
        assert again.match(people[0]).person.person_id == "M-9"


# -- members/delete ----------------------------------------------------------------

def test_delete_removes_a_member_from_gallery_window_and_appointments(box, sha):
    people = faces(2)
    box.send("members/upsert", member_upsert(sha, "M-1", people[:1]))
    box.send("members/upsert", member_upsert(sha, "M-2", people[1:]))
    for appointment_id, member_id in (("A-1", "M-1"), ("A-2", "M-2")):  # stored only: no booking event names them
        box.appointments.upsert(Appointment(appointment_id, member_id, NOW, "wechat", "Zhang Min"))
        box.open_window(member_id)
    outcome = box.send("members/delete", {"member_id": "M-1"})
    assert outcome == Outcome(True, reply={"member_id": "M-1", "removed": True,
                                           "held_in": ["gallery", "open visit window", "appointments"]})
    assert box.gallery.get("M-1") is None and box.gallery.match(people[0]) is None
    assert box.store.window.open_windows() == 1 and not box.store.window.forget("M-1")
    assert [a.appointment_id for a in box.appointments.appointments()] == ["A-2"]
    assert box.gallery.get("M-2") is not None


def test_deleting_an_unknown_member_is_answered_removed_too(box):
    # removed: true means "no trace on the box", which is also true of someone never enrolled.
    reply = box.send("members/delete", {"member_id": "M-404"}).reply
    assert reply == {"member_id": "M-404", "removed": True, "held_in": []}


# -- appointments ------------------------------------------------------------------

def test_an_appointment_upsert_is_stored_with_its_time(box):
    assert box.send("appointments/upsert", appointment_upsert(scheduled_at="2026-11-23T03:00:00Z")).ok
    assert box.appointments.get("A-1") == Appointment(
        "A-1", "M-1", datetime(2026, 11, 23, 11, 0, tzinfo=TZ), "wechat", "Zhang Min")


def test_an_appointment_for_a_member_not_yet_enrolled_is_accepted(box):
    assert box.send("appointments/upsert", appointment_upsert(member_id="M-later")).ok


def test_an_appointment_delete_removes_it_and_an_unknown_one_is_fine(box):
    box.send("appointments/upsert", appointment_upsert())
    assert box.send("appointments/delete", appointment_upsert()).ok
    assert box.appointments.appointments() == []
    assert box.send("appointments/delete", {"appointment_id": "A-404"}).ok


# -- rejections --------------------------------------------------------------------

REJECTIONS = [
    # (topic, how to break a valid message, a fragment of the reason)
    ("members/upsert", lambda m: without(m, "member_id"), "member_id is required"),
    ("members/upsert", lambda m: m | {"member_id": ""}, "member_id must be a non-empty string"),
    ("members/upsert", lambda m: m | {"member_id": 17}, "member_id must be a string"),
    ("members/upsert", lambda m: without(m, "name"), "name is required"),
    ("members/upsert", lambda m: m | {"name": ["Li"]}, "name must be a string"),
    ("members/upsert", lambda m: m | {"role": "guest"}, "role must be 'member' or 'staff'"),
    ("members/upsert", lambda m: without(m, "role"), "role is required"),
    ("members/upsert", lambda m: m | {"tier": 3}, "tier must be a string"),
    ("members/upsert", lambda m: m | {"consent": False}, "consent is required"),
    ("members/upsert", lambda m: without(m, "consent"), "consent is required"),
    ("members/upsert", lambda m: m | {"consent": "yes"}, "consent must be true or false"),
    ("members/upsert", lambda m: m | {"profile": ["vip"]}, "profile must be an object"),
    ("members/upsert", lambda m: m | {"images": ["AAAA"]}, "either images or embeddings, not both"),
    ("members/upsert", lambda m: without(m, "embeddings"), "images or embeddings is required"),
    ("members/upsert", lambda m: without(without(m, "embeddings"), "embedding_model") | {"images": []},
     "images must be a non-empty list"),
    ("members/upsert", lambda m: without(m, "embeddings") | {"images": "AAAA"}, "images must be a non-empty list"),
    ("members/upsert", lambda m: without(m, "embeddings") | {"images": [7]}, "images[0] must be a base64 string"),
    ("members/upsert", lambda m: m | {"embeddings": []}, "embeddings must be a non-empty list"),
    ("members/upsert", lambda m: m | {"embeddings": [[0.1] * DIM, [0.1] * 128]},
     "embeddings[1] has 128 values; the recognizer's embeddings are 512-d"),
    ("members/upsert", lambda m: m | {"embeddings": [[0.1] * 3 + ["x"] + [0.1] * (DIM - 4)]},
     "embeddings[0][3] must be a number"),
    ("members/upsert", lambda m: m | {"embeddings": [[True] * DIM]}, "embeddings[0][0] must be a number"),
    ("members/upsert", lambda m: m | {"embeddings": [[0.1] * DIM, [0.0] * DIM]}, "embeddings[1] is a zero vector"),
    ("members/upsert", lambda m: m | {"embeddings": [[10**400] + [0.0] * (DIM - 1)]},
     "embeddings[0][0] is not a finite number"),
    ("members/upsert", lambda m: m | {"embeddings": [0.1] * 3}, "embeddings[0] must be a list of numbers"),
    ("members/upsert", lambda m: without(m, "embedding_model"), "embedding_model is required"),
    ("members/upsert", lambda m: m | {"embedding_model": 5}, "embedding_model must be a string"),
    ("members/upsert", lambda m: m | {"embedding_model": OTHER_SHA},
     f"embeddings from another model (sha {OTHER_SHA}) are rejected"),
    ("members/delete", lambda m: {}, "member_id is required"),
    ("members/delete", lambda m: {"member_id": ["M-1"]}, "member_id must be a string"),
    ("appointments/upsert", lambda m: without(m, "appointment_id"), "appointment_id is required"),
    ("appointments/upsert", lambda m: m | {"member_id": " "}, "member_id must be a non-empty string"),
    ("appointments/upsert", lambda m: without(m, "scheduled_at"), "scheduled_at is required"),
    ("appointments/upsert", lambda m: m | {"scheduled_at": "2026-11-23T11:00:00"}, "scheduled_at must carry a UTC offset"),
    ("appointments/upsert", lambda m: m | {"scheduled_at": "tomorrow at 11"}, "scheduled_at must be an ISO 8601"),
    ("appointments/upsert", lambda m: m | {"scheduled_at": 1795000000}, "scheduled_at must be a string"),
    ("appointments/upsert", lambda m: m | {"channel": 5}, "channel must be a string"),
    ("appointments/upsert", lambda m: without(m, "advisor"), "advisor is required"),
    ("appointments/delete", lambda m: {"appointment_id": None}, "appointment_id is required"),
    ("members/upsert", lambda m: m | {"name": "Li\x07Na"}, "name holds a control character (U+0007)"),
    ("members/upsert", lambda m: m | {"tier": "gold\u2028"}, "tier holds a control character (U+2028)"),
    ("appointments/upsert", lambda m: m | {"channel": "we\x00chat"}, "channel holds a NUL character"),
    ("appointments/upsert", lambda m: m | {"advisor": "\ud800"}, "advisor holds a lone surrogate"),
]


@pytest.mark.parametrize("topic, breaks, reason", REJECTIONS, ids=[r[2][:40] for r in REJECTIONS])
def test_a_broken_message_is_rejected_naming_the_field_and_changes_nothing(box, sha, topic, breaks, reason):
    people = faces(3, seed=1)
    box.send("members/upsert", member_upsert(sha, "M-1", people[:1], tier="silver"))
    box.send("appointments/upsert", appointment_upsert("A-1", "M-1"))
    box.open_window("M-1")
    before = box.snapshot(people)
    valid = member_upsert(sha, "M-1", people[1:]) if topic.startswith("members/") else appointment_upsert()
    outcome = box.send(topic, breaks(valid))
    assert not outcome.ok and outcome.reply is None
    assert reason in outcome.reason
    assert box.snapshot(people) == before


@pytest.mark.parametrize("raw, reason", [
    (b"\xff\xfe{}", "not UTF-8"),
    (b"{\"member_id\": ", "not JSON"),
    (b"[\"member_id\", \"M-1\"]", "must be a JSON object, got an array"),
    (b"\"M-1\"", "must be a JSON object, got a string"),
    (b"", "not JSON"),
    (b"{\"embeddings\": [[NaN]]}", "not JSON"),
])
@pytest.mark.parametrize("topic", TOPICS)
def test_a_payload_that_is_not_a_json_object_is_rejected(box, topic, raw, reason):
    outcome = box.send(topic, raw)
    assert not outcome.ok and reason in outcome.reason


def test_an_oversize_payload_is_rejected_before_it_is_read(box, sha):
    message = member_upsert(sha, padding="x" * MAX_PAYLOAD)
    outcome = box.send("members/upsert", message)
    assert not outcome.ok and "over the limit of 4194304 bytes" in outcome.reason
    assert len(box.gallery) == 0


def test_an_unknown_topic_is_rejected(box):
    outcome = box.send("members/purge_all", {"member_id": "M-1"})
    assert not outcome.ok and "unknown downlink topic 'members/purge_all'" in outcome.reason


@pytest.mark.parametrize("bad, reason", [
    (b64(b"this is not a photo"), "images[1] is not a JPEG or PNG image"),
    ("%%% not base64 %%%", "images[1] is not valid base64"),
    ("truncated", "images[1]"),
])
def test_one_bad_image_of_three_enrols_nothing_and_is_named_by_index(box, sha, obama_jpeg, bad, reason):
    if bad == "truncated":
        bad = b64(base64.b64decode(obama_jpeg)[:120])
    message = without(without(member_upsert(sha, "M-7"), "embeddings"), "embedding_model")
    outcome = box.send("members/upsert", message | {"images": [obama_jpeg, bad, obama_jpeg]})
    assert not outcome.ok and reason in outcome.reason
    assert box.gallery.get("M-7") is None and len(box.gallery) == 0


def test_a_photo_without_a_face_does_not_stop_the_member_being_enrolled_from_the_others(box, sha, obama_jpeg):
    blank = b64(encoded(np.full((200, 200, 3), 128, np.uint8), ".jpg"))
    message = without(without(member_upsert(sha, "M-7"), "embeddings"), "embedding_model")
    outcome = box.send("members/upsert", message | {"images": [obama_jpeg, blank, obama_jpeg]})
    assert outcome.ok and box.gallery.get("M-7") is not None


def test_a_member_with_no_usable_photo_enrols_nothing_and_each_photo_is_named_by_index(box, sha):
    blank = b64(encoded(np.full((200, 200, 3), 128, np.uint8), ".jpg"))
    message = without(without(member_upsert(sha, "M-7"), "embeddings"), "embedding_model")
    outcome = box.send("members/upsert", message | {"images": [blank, blank]})
    assert not outcome.ok and "images[0]: no face found" in outcome.reason and "images[1]: no face found" in outcome.reason
    assert len(box.gallery) == 0


def test_a_huge_image_is_refused_from_its_header_without_decoding_it(box, sha):
    huge = encoded(np.zeros((1, 1, 3), np.uint8))
    huge = huge[:16] + (20000).to_bytes(4, "big") + (20000).to_bytes(4, "big") + huge[24:]
    message = without(without(member_upsert(sha), "embeddings"), "embedding_model") | {"images": [b64(huge)]}
    outcome = box.send("members/upsert", message)
    assert not outcome.ok and "images[0] is 20000 x 20000 pixels" in outcome.reason


def test_image_sizes_are_read_from_png_and_jpeg_headers(obama_jpeg):
    image = np.zeros((30, 40, 3), np.uint8)
    assert image_size(encoded(image, ".png")) == (40, 30)
    assert image_size(encoded(image, ".jpg")) == (40, 30)
    assert image_size(base64.b64decode(obama_jpeg)) == read_image_size(obama_jpeg)
    assert image_size(b"\xff\xd8\xff") is None and image_size(b"GIF89a") is None


def read_image_size(b64_jpeg: str) -> tuple[int, int]:
    image = cv2.imdecode(np.frombuffer(base64.b64decode(b64_jpeg), np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    h, w = image.shape[:2]
    return w, h


def test_a_failure_inside_a_store_becomes_a_rejection_not_an_exception(sha, tmp_path):
    def broken(imgs):
        raise RuntimeError("the recognizer crashed")
    b = Box(sha, broken, tmp_path)
    try:
        tiny = b64(encoded(np.zeros((8, 8, 3), np.uint8)))
        message = without(without(member_upsert(sha), "embeddings"), "embedding_model") | {"images": [tiny]}
        outcome = b.send("members/upsert", message)
        assert not outcome.ok and "the recognizer crashed" in outcome.reason
        b.appointments.close()  # a closed database fails every statement
        outcome = b.send("appointments/upsert", appointment_upsert())
        assert not outcome.ok and outcome.reason
    finally:
        b.close()


# -- counts/get --------------------------------------------------------------------

def test_an_empty_counts_request_asks_for_today_by_hour():
    request = parse_counts_request(b"", NOW, "Asia/Shanghai")
    assert request == CountsRequest(datetime(2026, 11, 23, 0, 0, tzinfo=TZ), NOW, "hour", None)
    assert parse_counts_request(b"{}", NOW, "Asia/Shanghai") == request


def test_a_counts_request_with_range_grouping_and_reply_topic():
    message = {"from": "2026-11-20T00:00:00+08:00", "to": "2026-11-23T00:00:00+08:00", "by": "day",
               "reply_to": "hq/replies/42"}
    request = parse_counts_request(payload(message), NOW, "Asia/Shanghai")
    assert request.from_ == datetime(2026, 11, 20, tzinfo=TZ) and request.to == datetime(2026, 11, 23, tzinfo=TZ)
    assert (request.by, request.reply_to) == ("day", "hq/replies/42")


@pytest.mark.parametrize("message, reason", [
    ({"by": "week"}, "by must be 'hour' or 'day'"),
    ({"from": "2026-11-23T09:00:00"}, "from must carry a UTC offset"),
    ({"to": "noon"}, "to must be an ISO 8601 timestamp"),
    ({"from": 5}, "from must be a string"),
    ({"from": "2026-11-23T12:00:00+08:00", "to": "2026-11-23T11:00:00+08:00"}, "must not be after to"),
    ({"from": "2000-01-01T00:00:00+00:00"}, "more than 400 hour buckets"),
    ({"reply_to": "hq/+/replies"}, "reply_to must be a topic name without wildcards"),
    ({"reply_to": 42}, "reply_to must be a string"),
    (["from"], "must be a JSON object"),
])
def test_a_bad_counts_request_raises_a_value_error_with_the_reason(message, reason):
    with pytest.raises(ValueError) as caught:
        parse_counts_request(payload(message), NOW, "Asia/Shanghai")
    assert reason in str(caught.value)


def test_the_counts_reply_carries_the_range_and_every_bucket():
    with CountStore(None, "Asia/Shanghai") as counts:
        counts.record(datetime(2026, 11, 23, 10, 5, tzinfo=TZ), "visit", True)
        request = parse_counts_request(payload({"from": "2026-11-23T09:00:00+08:00",
                                                "to": "2026-11-23T12:00:00+08:00"}), NOW, "Asia/Shanghai")
        reply = counts_reply("sh-001", request, counts.buckets(request.from_, request.to, request.by))
    assert reply["store_id"] == "sh-001" and reply["by"] == "hour"
    assert (reply["from"], reply["to"]) == ("2026-11-23T09:00:00.000+08:00", "2026-11-23T12:00:00.000+08:00")
    assert [(b["start"], b["visits"], b["member_visits"]) for b in reply["buckets"]] == [
        ("2026-11-23T09:00:00.000+08:00", 0, 0),
        ("2026-11-23T10:00:00.000+08:00", 1, 1),
        ("2026-11-23T11:00:00.000+08:00", 0, 0),
    ]
    json.dumps(reply)


# -- fuzzing: whatever arrives, nothing breaks -------------------------------------

FIELDS = ["member_id", "name", "role", "tier", "consent", "profile", "images", "embeddings", "embedding_model",
          "appointment_id", "scheduled_at", "channel", "advisor", "from", "to", "by", "reply_to"]
scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
           | st.text(max_size=20) | st.sampled_from(["member", "staff", "M-1", "A-1", "2026-11-23T11:00:00+08:00"]))
json_values = st.recursive(scalars, lambda children: st.lists(children, max_size=5)
                           | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=10), children, max_size=6),
                           max_leaves=25)
FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])  # examples: the profile (conftest)


@pytest.fixture(scope="module")
def fuzz_box(sha):
    """One box for every example (a store opens in tens of milliseconds), with a fake (fast) photo embedder."""
    b = Box(sha, lambda imgs: faces(len(imgs), seed=5)[: len(imgs)])
    yield b
    b.close()


def check_invariants(b: Box, topic: str, raw: bytes) -> None:
    # Someone in every part of the state again, whatever the examples before took away.
    b.gallery.enroll(Person("M-1", "Li Wei", "member", tier="gold", consent=True), faces(3, seed=1)[:1])
    b.appointments.upsert(Appointment("A-1", "M-1", NOW, "wechat", "Zhang Min"))
    b.open_window("M-1")
    probes = faces(3, seed=1)
    before = b.snapshot(probes)
    outcome = b.send(topic, raw)
    assert isinstance(outcome, Outcome)
    if not outcome.ok:
        assert isinstance(outcome.reason, str) and outcome.reason.strip()
        assert b.snapshot(probes) == before


@pytest.mark.slow
@FUZZ
@given(topic=st.sampled_from(TOPICS), raw=st.binary(max_size=300))
def test_fuzz_arbitrary_bytes_never_raise_and_rejections_change_nothing(fuzz_box, topic, raw):
    check_invariants(fuzz_box, topic, raw)


@pytest.mark.slow
@FUZZ
@given(topic=st.sampled_from(TOPICS), message=json_values)
def test_fuzz_arbitrary_json_never_raises_and_rejections_change_nothing(fuzz_box, topic, message):
    check_invariants(fuzz_box, topic, payload(message))


@st.composite
def nearly_valid(draw, sha: str):
    """A valid message of some topic with one field replaced by arbitrary JSON or removed."""
    tiny = b64(encoded(np.zeros((8, 8, 3), np.uint8)))
    photos = without(without(member_upsert(sha, "M-2"), "embeddings"), "embedding_model") | {"images": [tiny, tiny]}
    valid = [
        ("members/upsert", member_upsert(sha, "M-2", faces(2, seed=3))),
        ("members/upsert", photos),
        ("members/delete", {"member_id": "M-1"}),
        ("appointments/upsert", appointment_upsert("A-2")),
        ("appointments/delete", {"appointment_id": "A-1"}),
    ]
    topic, message = draw(st.sampled_from(valid))
    message = dict(message)
    key = draw(st.sampled_from(sorted(message)))
    if draw(st.booleans()):
        del message[key]
    else:
        message[key] = draw(json_values)
    return topic, message


@pytest.mark.slow
@FUZZ
@given(data=st.data())
def test_fuzz_nearly_valid_messages_never_raise_and_rejections_change_nothing(fuzz_box, sha, data):
    topic, message = data.draw(nearly_valid(sha))
    check_invariants(fuzz_box, topic, payload(message))


@pytest.mark.slow
@FUZZ
@given(raw=st.binary(max_size=200) | json_values.map(payload))
def test_fuzz_a_counts_request_is_either_parsed_or_refused_with_a_value_error(raw):
    try:
        request = parse_counts_request(raw, NOW, "Asia/Shanghai")
    except ValueError as exc:
        assert str(exc).strip()
    else:
        assert request.by in ("hour", "day") and request.from_ <= request.to
        assert request.from_.utcoffset() is not None and request.to.utcoffset() is not None
