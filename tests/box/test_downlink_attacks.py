"""Hostile downlink traffic through a real Mosquitto into a running Daemon (issue 12, items 1, 7, 9, 13, 16).

Whoever can publish on a store's downlink topics (the CRM, head office, or anyone holding their
credentials) must not be able to exhaust the box: images are counted and sized from their headers
before anything is decoded, a QoS 0 flood is dropped at a bounded inbox (QoS 1 messages wait at
the broker instead: tests/box/test_downlink_burst.py) and its error reports are rate limited, ids
have a length cap, counts/get answers go only under the store's `replies/` branch and are rate
limited, and a person holds a bounded number of vectors. Each refusal is shown next to a
message that was applied afterwards, so the daemon is known to be alive.
"""

from __future__ import annotations

import base64
import struct
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from support.broker import Subscriber, wait_until
from support.daemon import PREFIX, store_config
from support.daemon_run import running
from support.downlink import Hq, counts_request, reasons, unit_vectors, upsert, with_embeddings

import footfall.sync.downlink as downlink_module
from footfall.dedup.gallery import EnrolmentError, Gallery, Person


@pytest.fixture
def errors(broker):
    sub = Subscriber(broker.port, PREFIX + "errors")
    yield sub
    sub.close()


def one_bit_png(width: int, height: int) -> bytes:
    """A valid black 1-bit greyscale PNG: a few KiB to send, width x height pixels to decode."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = (b"\x00" + bytes((width + 7) // 8)) * height
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b"")


def accounted(reports) -> int:
    """Rejections an errors consumer can count: one per report, plus what each says it left out
    (a summary report stands only for the ones it left out)."""
    return sum(m.payload.get("suppressed", 0) + (0 if "see suppressed" in m.payload["reason"] else 1)
               for m in reports)


# -- item 1: image bombs -----------------------------------------------------------------------------

def test_an_image_bomb_is_refused_from_the_headers_before_anything_is_decoded(
        tmp_path, broker, hq, errors, default_analyzer, obama_jpeg, monkeypatch):
    decoded: list[str] = []
    real_decode = downlink_module.decode_image
    monkeypatch.setattr(downlink_module, "decode_image",
                        lambda data, where: decoded.append(where) or real_decode(data, where))
    with running(store_config(tmp_path, broker), default_analyzer) as daemon:
        # The attack as found: 16 one-bit 8192 x 8192 PNGs, ~1 Gpx to decode from a small message.
        bomb = base64.b64encode(one_bit_png(8192, 8192)).decode()
        hq.send("members/upsert", upsert("M-bomb", images=[bomb] * 16))
        # Fewer images, each under the per-image cap, too many pixels together.
        big = base64.b64encode(one_bit_png(3800, 3800)).decode()
        hq.send("members/upsert", upsert("M-big", images=[big] * 3))
        # One image over the per-image cap.
        hq.send("members/upsert", upsert("M-huge", images=[bomb]))
        errors.wait_for(lambda ms: len(ms) >= 3, 30, "three refusals")
        hq.send("members/upsert", upsert("M-ok", images=[obama_jpeg]))  # a real photo is still enrolled
        wait_until(lambda: daemon.store.gallery.get("M-ok"), 30, "the real photo's enrolment")
    got = reasons(errors)
    assert "images: 16 images, more than the limit of 8 per message" in got[0]
    assert "pixels in all, more than the limit of 32000000" in got[1] and "nothing was decoded" in got[1]
    assert "images[0] is 8192 x 8192 pixels, more than 16000000 pixels" in got[2]
    assert decoded == ["images[0]"], "only the accepted photo was ever decoded"
    assert [daemon.store.gallery.get(m) for m in ("M-bomb", "M-big", "M-huge")] == [None, None, None]


@pytest.fixture(scope="session")
def obama_jpeg(faces_dir: Path) -> str:
    return base64.b64encode((faces_dir / "obama" / "1.jpg").read_bytes()).decode("ascii")


# -- item 7: floods ------------------------------------------------------------------------------------

def test_a_flood_is_dropped_at_a_bounded_inbox_with_rate_limited_reports_and_the_loop_keeps_going(
        tmp_path, broker, hq, errors, default_analyzer):
    config = store_config(tmp_path, broker, "[downlink]\ninbox = 50\nerror_reports_per_minute = 60\n")
    flood = 4000
    with running(config, default_analyzer) as daemon:
        gaps: list[float] = []
        peak = [0]
        done = threading.Event()

        def watch() -> None:  # what the watchdog looks at: how long since the loop last went round
            while not done.is_set():
                gaps.append(time.monotonic() - daemon._last_loop)
                peak[0] = max(peak[0], daemon.inbox.qsize())
                time.sleep(0.005)

        watcher = threading.Thread(target=watch)
        watcher.start()
        started = time.monotonic()
        for i in range(flood):  # tiny bad messages, as fast as one client can send them
            hq.send("members/upsert", b"{}", qos=0, wait=False)
            if i % 500 == 499:
                time.sleep(0.3)  # ~1 500 messages a second
        sent_for = time.monotonic() - started
        hq.send("appointments/upsert", {"appointment_id": "A-after", "member_id": "M-1",
                                        "scheduled_at": "2026-11-23T11:00:00+08:00", "channel": "", "advisor": ""})
        wait_until(lambda: daemon.store.appointments.get("A-after"), 30, "a message sent after the flood to be applied")
        done.set()
        watcher.join()
        rejected = daemon.store.rejected
        elapsed = time.monotonic() - started
        error_rows = daemon.store.outbox.stats().sent + daemon.store.outbox.stats().pending - 1  # minus the first counts
    # QoS 0 messages are dropped once 50 wait (and the MQTT thread stops reading); the QoS 1 message
    # sent after the flood may come on top.
    assert daemon.inbox_limit == 50 and peak[0] <= 51
    assert rejected > 0
    # At most the burst plus one a second were reported; the rest are counted in `suppressed`.
    allowed = 6 + elapsed + 1
    time.sleep(0.5)
    assert len(errors.messages) <= allowed, (len(errors.messages), allowed, sent_for)
    assert error_rows <= allowed + 2
    assert accounted(errors.messages) <= rejected
    assert any(m.payload.get("suppressed", 0) > 0 for m in errors.messages) or len(errors.messages) == rejected
    assert max(gaps) < 2.0, f"the decision loop stood still for {max(gaps):.1f} s"


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_an_oversized_payload_never_reaches_the_decision_loop(tmp_path, broker, errors, default_analyzer, protocol):
    config = store_config(tmp_path, broker, "[downlink]\nmax_payload = 65536\n", mqtt=f'protocol = "{protocol}"')
    hq = Hq(broker.port)
    try:
        with running(config, default_analyzer) as daemon:
            seen: list[int] = []
            real = daemon.store.receive
            daemon.store.receive = lambda topic, payload, props=None: seen.append(len(payload)) or real(
                topic, payload, props)
            hq.send("members/upsert", upsert("M-1", padding="x" * 200_000))
            hq.send("appointments/upsert", {"appointment_id": "A-1", "member_id": "M-1", "channel": "", "advisor": "",
                                            "scheduled_at": "2026-11-23T11:00:00+08:00"})
            wait_until(lambda: daemon.store.appointments.get("A-1"), 15, "the small message after the big one")
            assert max(seen) < 65536, "the big payload was never handed to the decision loop"
            if protocol == "3.1.1":  # an MQTT 5 broker does not even send it (Maximum Packet Size)
                errors.wait_for(lambda ms: ms, 10, "the refusal")
                assert "over the limit of 65536 bytes (downlink.max_payload)" in reasons(errors)[0]
    finally:
        hq.close()


# -- item 9: ids echoed back ---------------------------------------------------------------------------

def test_ids_over_the_length_cap_are_refused_and_never_echoed(tmp_path, broker, hq, errors, default_analyzer):
    deleted = Subscriber(broker.port, PREFIX + "members/deleted")
    try:
        with running(store_config(tmp_path, broker), default_analyzer) as daemon:
            hq.send("members/delete", {"member_id": "m" * 100_000})
            hq.send("appointments/upsert", {"appointment_id": "a" * 129, "member_id": "M-1", "channel": "",
                                            "advisor": "", "scheduled_at": "2026-11-23T11:00:00+08:00"})
            hq.send("members/delete", {"member_id": "M-short"})
            deleted.wait_for(lambda ms: ms, 10, "the short delete's answer")
            errors.wait_for(lambda ms: len(ms) >= 2, 10, "two refusals")
            assert daemon.store.appointments.appointments() == []
        assert [m.payload["member_id"] for m in deleted.messages] == ["M-short"]
        got = reasons(errors)
        assert "member_id is 100000 characters long, over the limit of 128" in got[0]
        assert "appointment_id is 129 characters long, over the limit of 128" in got[1]
        assert all(len(m.body) < 1024 for m in errors.messages)
    finally:
        deleted.close()


# -- item 13: counts/get -------------------------------------------------------------------------------

def test_counts_answers_go_only_under_the_stores_replies_branch(tmp_path, broker, hq, errors, default_analyzer):
    everything = Subscriber(broker.port, "#")
    try:
        with running(store_config(tmp_path, broker), default_analyzer):
            counts_request(hq, PREFIX + "visits")                # the box's own uplink
            counts_request(hq, PREFIX + "alerts/arrival")
            counts_request(hq, reply_to="footfall/sh-002/replies/x")  # another store's branch
            counts_request(hq, reply_to="anywhere/else")
            counts_request(hq, PREFIX + "replies/#")             # a filter, not a topic
            counts_request(hq, PREFIX + "replies/hq-1")          # the one allowed
            errors.wait_for(lambda ms: len(ms) >= 5, 10, "five refusals")
            everything.wait_for(lambda ms: any(m.topic == PREFIX + "replies/hq-1" for m in ms), 10, "the answer")
            time.sleep(0.3)
        answers = [m.topic for m in everything.messages if "buckets" in m.payload]
        assert answers == [PREFIX + "replies/hq-1"]
        assert all("must be under footfall/sh-001/replies/" in r for r in reasons(errors)[:4])
    finally:
        everything.close()


def test_counts_requests_are_rate_limited(tmp_path, broker, hq, errors, default_analyzer):
    replies = Subscriber(broker.port, PREFIX + "replies/#")
    config = store_config(tmp_path, broker, "[downlink]\ncounts_requests_per_minute = 20\n")  # bursts of 2
    try:
        with running(config, default_analyzer):
            for i in range(20):
                counts_request(hq, f"{PREFIX}replies/{i}")
            # Every refusal is reported: one by one up to the burst (6), the rest counted in `suppressed`
            # of a report made once the error-report rate allows (one a second).
            errors.wait_for(lambda ms: accounted(ms) >= 20 - len(replies.messages), 10, "every refusal accounted for")
            time.sleep(0.5)
        assert 1 <= len(replies.messages) <= 3
        assert "more than 20 counts/get requests a minute" in reasons(errors)[0]
        assert len(errors.messages) <= 8
        assert accounted(errors.messages) == 20 - len(replies.messages)
    finally:
        replies.close()


# -- item 16: vectors per person -----------------------------------------------------------------------

def test_more_vectors_than_the_cap_are_refused(tmp_path, broker, hq, errors, default_analyzer):
    with running(store_config(tmp_path, broker), default_analyzer) as daemon:
        hq.send("members/upsert", with_embeddings(daemon, "M-many", 21))
        hq.send("members/upsert", with_embeddings(daemon, "M-fine", 20, seed=1))
        wait_until(lambda: daemon.store.gallery.get("M-fine"), 10, "the upsert at the cap")
        errors.wait_for(lambda ms: ms, 10, "the refusal")
        assert daemon.store.gallery.get("M-many") is None
    assert "embeddings: 21 vectors, more than the limit of 20 per person (members.max_vectors)" in reasons(errors)[0]


def test_the_search_narrows_again_after_the_widest_person_is_erased():
    gallery = Gallery(dim=256, threshold=0.5, margin=0.05, model_sha256="a" * 64, db_path=None, max_vectors=50)
    widths: list[int] = []
    real_search = gallery._vectors.index.search
    gallery._vectors.index.search = lambda v, k: widths.append(k) or real_search(v, k)
    vectors = np.asarray(unit_vectors(51), dtype=np.float32)
    with pytest.raises(EnrolmentError, match="51 embeddings, more than the limit of 50 per person"):
        gallery.enroll(Person("wide", "W", "member", consent=True), vectors)  # the CLI and imports too
    gallery.enroll(Person("wide", "W", "member", consent=True), vectors[:50])
    gallery.enroll(Person("narrow", "N", "member", consent=True), vectors[50:])
    gallery.match(vectors[50])
    gallery.erase("wide")
    assert gallery.match(vectors[50]).person.person_id == "narrow"
    assert widths == [51, 2]
    gallery.enroll(Person("twice", "T", "member", consent=True), vectors[:3])
    gallery.enroll(Person("twice", "T", "member", consent=True), vectors[3:4])  # replaced by fewer
    gallery.match(vectors[50])
    assert widths[-1] == 2
