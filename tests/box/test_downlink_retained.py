"""A confirmed members/delete stays done (issue 12, item 3).

A CRM that publishes its commands retained leaves them at the broker: a box re-subscribing after a
reconnect or a restart used to receive the old members/upsert again and bring an erased member
back. The box subscribes with MQTT 5 retain handling 2 (retained messages are never sent on
subscribing) and, under 3.1.1, ignores messages carrying the retain flag on its command topics.
A delete also leaves an erase tombstone: an upsert not newer (by its `ts`) than the delete is
refused, so a stale message queued behind the delete cannot undo it either.
"""

from __future__ import annotations

import pytest
from support.broker import Subscriber, wait_until
from support.daemon import PREFIX, store_config
from support.daemon_run import running
from support.downlink import reasons, with_embeddings

APPOINTMENT = {"member_id": "M-1", "scheduled_at": "2026-11-23T11:00:00+08:00", "channel": "", "advisor": ""}


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_a_retained_upsert_does_not_bring_a_deleted_member_back_after_a_restart(
        tmp_path, broker, hq, default_analyzer, protocol):
    deleted = Subscriber(broker.port, PREFIX + "members/deleted")
    config = store_config(tmp_path, broker, mqtt=f'protocol = "{protocol}"')
    try:
        with running(config, default_analyzer) as daemon:
            hq.send("members/upsert", with_embeddings(daemon, "M-1"), retain=True)  # left at the broker
            wait_until(lambda: daemon.store.gallery.get("M-1"), 10, "the member enrolled")
            hq.send("members/delete", {"member_id": "M-1"})
            deleted.wait_for(lambda ms: ms, 10, "the delete confirmed")
        for restart in range(2):  # a restart re-subscribes; so does every reconnect
            with running(config, default_analyzer) as daemon:
                sentinel = f"A-{restart}"
                hq.send("appointments/upsert", APPOINTMENT | {"appointment_id": sentinel})
                wait_until(lambda d=daemon, a=sentinel: d.store.appointments.get(a), 10, "a message sent after the restart")
                assert daemon.store.gallery.get("M-1") is None, "the erased member came back"
    finally:
        deleted.close()


def test_an_upsert_older_than_a_confirmed_delete_is_refused_and_a_newer_one_enrols_again(
        tmp_path, broker, hq, default_analyzer):
    errors = Subscriber(broker.port, PREFIX + "errors")
    deleted = Subscriber(broker.port, PREFIX + "members/deleted")
    try:
        with running(store_config(tmp_path, broker), default_analyzer) as daemon:
            hq.send("members/upsert", with_embeddings(daemon, "M-1", ts="2026-11-23T09:00:00+08:00"))
            hq.send("members/delete", {"member_id": "M-1", "ts": "2026-11-23T10:00:00+08:00"})
            deleted.wait_for(lambda ms: ms, 10, "the delete confirmed")
            # A stale upsert (sent before the delete, delivered after it) and one without a ts.
            hq.send("members/upsert", with_embeddings(daemon, "M-1", ts="2026-11-23T09:30:00+08:00"))
            hq.send("members/upsert", with_embeddings(daemon, "M-1"))
            errors.wait_for(lambda ms: len(ms) >= 2, 10, "two refusals")
            assert daemon.store.gallery.get("M-1") is None
            state = tmp_path / "state"
            held = b"".join(p.read_bytes() for p in state.glob("gallery.db*"))
            assert b"M-1" not in held, "the tombstone keeps a salted hash, not the member id"
            # Consent given again, after the delete.
            hq.send("members/upsert", with_embeddings(daemon, "M-1", ts="2026-11-23T11:00:00+08:00"))
            wait_until(lambda: daemon.store.gallery.get("M-1"), 10, "the member enrolled again")
        got = reasons(errors)
        assert "M-1 was erased at 2026-11-23T02:00:00.000+00:00 and this upsert was sent at" in got[0]
        assert "carries no ts" in got[1] and "only an upsert with a later ts (a new consent)" in got[1]
    finally:
        errors.close()
        deleted.close()
