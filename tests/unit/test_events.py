"""Specification of the MQTT payloads (CONTRACT, "MQTT").

Every uplink message is JSON with the contract's required fields plus
`event_id` (a UUID, the same on every re-send), `store_id` and `ts`;
timestamps are ISO 8601 with offset and milliseconds; only state (status,
today's counts) is retained; alerts, and only alerts, expire.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from footfall.sync import events
from footfall.sync.events import (
    AppointmentAlert,
    AppointmentBooked,
    ArrivalAlert,
    Counts,
    ErrorEvent,
    MemberDeleted,
    NoShowAlert,
    Status,
    VisitEvent,
    iso,
    topic,
)

TZ = ZoneInfo("Asia/Shanghai")
AT = datetime(2026, 11, 23, 10, 0, tzinfo=TZ)
STORE: dict[str, Any] = {"store_id": "sh-001", "ts": AT}
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d$")


def visit(**overrides) -> VisitEvent:
    fields: dict[str, Any] = dict(kind="visit", visitor_id="v-7f3a", member_id=None, role="visitor",
                                  camera_id="door-1", first_seen_ts=AT - timedelta(seconds=2)) | overrides
    return VisitEvent(**fields, **STORE)


def every_event() -> list[events.Event]:
    v = visit()
    return [
        v,
        ArrivalAlert("m-42", "Li Wei", "gold", v.event_id, None, {"last_purchase": "2026-10-02"}, **STORE),
        AppointmentAlert("a-1", "m-42", AT + timedelta(minutes=15), "phone", "Zhang Min", 15, **STORE),
        NoShowAlert("a-2", "m-43", AT - timedelta(minutes=30), 15, **STORE),
        MemberDeleted("m-44", **STORE),
        ErrorEvent("footfall/sh-001/members/upsert", "consent must be true", **STORE),
        Status("online", "0.1.0", {"door-1": "streaming"}, **STORE),
        Counts(date(2026, 11, 23), 12, 3, 4, [0] * 10 + [12] + [0] * 13, **STORE),
        AppointmentBooked("a-3", "m-45", AT + timedelta(days=1), "wechat", **STORE),
    ]


REQUIRED = {
    VisitEvent: {"kind", "visitor_id", "member_id", "role", "camera_id", "first_seen_ts", "identified"},
    ArrivalAlert: {"member_id", "name", "tier", "visit_event_id", "appointment"},
    AppointmentAlert: {"appointment_id", "member_id", "scheduled_at", "channel", "advisor", "minutes_early"},
    NoShowAlert: {"appointment_id", "member_id", "scheduled_at", "grace_minutes"},
    MemberDeleted: {"member_id", "removed"},
    ErrorEvent: {"topic", "reason"},
    Status: {"state", "version", "cameras"},
    Counts: {"date", "visits", "reentries", "member_visits", "unidentified", "by_hour"},
    AppointmentBooked: {"appointment_id", "member_id", "scheduled_at", "channel"},
}


# -- topics ---------------------------------------------------------------------------

def test_a_topic_is_prefix_store_and_name():
    assert topic("footfall", "sh-001", events.VISITS) == "footfall/sh-001/visits"
    assert topic("footfall", "sh-001", events.ALERT_NO_SHOW) == "footfall/sh-001/alerts/no_show"


def test_every_topic_of_the_contract_is_named_once():
    assert set(events.UPLINK) | set(events.DOWNLINK) == {
        "status", "visits", "alerts/arrival", "alerts/appointment", "alerts/no_show", "counts", "counts/get",
        "members/upsert", "members/delete", "members/deleted", "appointments/upsert", "appointments/delete",
        "errors", "appointments/booked"}


@pytest.mark.parametrize("bad", ["", "sh+1", "sh#", "a\0b"])
def test_a_store_id_that_would_break_the_topic_is_refused(bad):
    with pytest.raises(ValueError, match="store_id"):
        topic("footfall", bad, events.VISITS)


@pytest.mark.parametrize(("full", "expected"), [
    ("footfall/sh-001/visits", ("sh-001", "visits")),
    ("footfall/sh-001/alerts/arrival", ("sh-001", "alerts/arrival")),
    ("footfall/sh-001/replies/hq-1/0", ("sh-001", "replies/hq-1/0")),
])
def test_a_topic_parses_back_into_its_store_and_name(full, expected):
    assert events.parse_topic("footfall", full) == expected
    assert events.topic("footfall", *expected) == full


def test_every_built_topic_parses_back_to_what_built_it():
    for name in (*events.UPLINK, *events.DOWNLINK, events.ALERT_ACK):
        assert events.parse_topic("acme/footfall", events.topic("acme/footfall", "sh-9", name)) == ("sh-9", name)


@pytest.mark.parametrize(("full", "reason"), [
    ("other/sh-001/visits", "not under 'footfall'"),
    ("footfallx/sh-001/visits", "not under 'footfall'"),
    ("footfall", "not under 'footfall'"),
    ("footfall/", "no store id or no message name"),
    ("footfall//visits", "no store id or no message name"),
    ("footfall/sh-001", "no store id or no message name"),
    ("footfall/sh-001/", "no store id or no message name"),
    ("footfall/+/visits", "wildcard"),
    ("footfall/sh-001/#", "wildcard"),
    ("$share/hq/footfall/sh-001/visits", "not under 'footfall'"),
])
def test_a_topic_outside_the_prefix_or_missing_a_part_does_not_parse(full, reason):
    assert events.parse_topic("footfall", full) is None
    with pytest.raises(ValueError, match=re.escape(reason)):
        events.split_topic("footfall", full)


def test_a_subscription_filter_covers_one_store_or_every_store():
    assert events.topic_filter("footfall", events.VISITS) == "footfall/+/visits"
    assert events.topic_filter("footfall", "#", "sh-001") == "footfall/sh-001/#"
    assert events.topic_filter("acme/footfall", "replies/hq-1/#") == "acme/footfall/+/replies/hq-1/#"


@pytest.mark.parametrize("bad", ["", "#/visits", "visits#", "+", "alerts/+", "alerts//x", "a\0b"])
def test_a_filter_name_that_is_not_whole_levels_is_refused(bad):
    with pytest.raises(ValueError, match="topic filter name"):
        events.topic_filter("footfall", bad)


def test_a_filter_keeps_the_checks_of_prefix_and_store():
    with pytest.raises(ValueError, match="store_id"):
        events.topic_filter("footfall", "#", "sh+1")
    with pytest.raises(ValueError, match="prefix"):
        events.topic_filter("foot#", "visits")


def test_the_name_of_a_topic_is_given_only_for_the_store_asked_about():
    assert events.store_topic_name("footfall", "sh-001", "footfall/sh-001/counts/get") == "counts/get"
    assert events.store_topic_name("footfall", "sh-001", "footfall/sh-002/counts/get") is None
    assert events.store_topic_name("footfall", "sh-001", "footfall/sh-001x/visits") is None
    assert events.store_topic_name("footfall", "sh-001", "acme/sh-001/visits") is None


def test_each_event_knows_its_topic():
    assert [type(e).TOPIC for e in every_event()] == [
        "visits", "alerts/arrival", "alerts/appointment", "alerts/no_show", "members/deleted", "errors",
        "status", "counts", "appointments/booked"]


# -- payloads --------------------------------------------------------------------------

@pytest.mark.parametrize("event", every_event(), ids=lambda e: type(e).__name__)
def test_a_payload_carries_the_contract_fields_and_round_trips_through_json(event):
    payload = event.to_json()
    assert REQUIRED[type(event)] | {"event_id", "store_id", "ts"} <= payload.keys()
    assert json.loads(json.dumps(payload)) == payload
    assert payload["store_id"] == "sh-001"
    assert uuid.UUID(payload["event_id"]).version == 4


@pytest.mark.parametrize("event", every_event(), ids=lambda e: type(e).__name__)
def test_the_event_id_is_made_once_and_survives_every_serialisation(event):
    assert event.to_json()["event_id"] == event.to_json()["event_id"] == event.event_id


def test_two_events_never_share_an_id():
    assert visit().event_id != visit().event_id


def test_timestamps_are_iso_8601_with_offset_and_milliseconds():
    payload = visit().to_json()
    assert payload["ts"] == "2026-11-23T10:00:00.000+08:00"
    assert payload["first_seen_ts"] == "2026-11-23T09:59:58.000+08:00"
    for event in every_event():
        for key, value in event.to_json().items():
            if key in ("ts", "first_seen_ts", "scheduled_at"):
                assert ISO_MS.match(value), (type(event).__name__, key, value)


def test_iso_keeps_milliseconds_and_the_offset_of_the_datetime_given():
    assert iso(datetime(2026, 11, 23, 2, 0, 0, 123456, tzinfo=UTC)) == "2026-11-23T02:00:00.123+00:00"


def test_naive_datetimes_are_refused_when_the_event_is_made():
    with pytest.raises(ValueError, match="timezone-aware"):
        iso(datetime(2026, 11, 23, 10, 0))
    with pytest.raises(ValueError, match="timezone-aware"):
        VisitEvent("visit", "v", None, "visitor", "door-1", AT, store_id="sh-001", ts=datetime(2026, 11, 23))
    with pytest.raises(ValueError, match="timezone-aware"):
        visit(first_seen_ts=datetime(2026, 11, 23))


def test_a_visit_payload_is_exactly_the_contract():
    v = visit(kind="reentry", member_id="m-42", role="member")
    assert v.to_json() == {"kind": "reentry", "visitor_id": "v-7f3a", "member_id": "m-42", "role": "member",
                           "camera_id": "door-1", "first_seen_ts": "2026-11-23T09:59:58.000+08:00", "identified": True,
                           "event_id": v.event_id, "store_id": "sh-001", "ts": "2026-11-23T10:00:00.000+08:00"}


@pytest.mark.parametrize("overrides, message", [
    ({"kind": "staff"}, "kind"),
    ({"role": "staff"}, "role"),
    ({"role": "member"}, "member_id"),
    ({"member_id": "m-1"}, "member_id"),
])
def test_a_visit_outside_the_contract_cannot_be_made(overrides, message):
    with pytest.raises(ValueError, match=message):
        visit(**overrides)


def test_crm_profile_fields_ride_at_the_top_level_but_never_replace_a_required_one():
    v = visit(member_id="m-42", role="member")
    profile = {"last_purchase": "2026-10-02", "open_repairs": 1, "tags": ["vip"],
               "name": "CRM nickname", "event_id": "forged", "ts": "yesterday", "store_id": "elsewhere"}
    alert = ArrivalAlert("m-42", "Li Wei", "gold", v.event_id, {"appointment_id": "a-1"}, profile, **STORE)
    payload = alert.to_json()
    assert payload["last_purchase"] == "2026-10-02" and payload["tags"] == ["vip"] and payload["open_repairs"] == 1
    assert payload["name"] == "Li Wei"
    assert payload["event_id"] == alert.event_id and payload["store_id"] == "sh-001"
    assert payload["ts"] == "2026-11-23T10:00:00.000+08:00"
    assert payload["visit_event_id"] == v.event_id and payload["appointment"] == {"appointment_id": "a-1"}


def test_an_arrival_without_an_appointment_says_null():
    payload = ArrivalAlert("m-42", "Li Wei", None, "v-1", None, {}, **STORE).to_json()
    assert payload["appointment"] is None and payload["tier"] is None


def test_a_late_member_is_negative_minutes_early():
    alert = AppointmentAlert("a-1", "m-42", AT, "wechat", "Zhang Min", -12, **STORE)
    assert alert.to_json()["minutes_early"] == -12
    assert alert.to_json()["scheduled_at"] == "2026-11-23T10:00:00.000+08:00"


def test_member_deleted_confirms_removal():
    assert MemberDeleted("m-44", **STORE).to_json()["removed"] is True


def test_status_states_and_camera_states_are_those_of_the_contract():
    with pytest.raises(ValueError, match="state"):
        Status("rebooting", "0.1.0", {}, **STORE)
    with pytest.raises(ValueError, match="door-1"):
        Status("online", "0.1.0", {"door-1": "broken"}, **STORE)
    assert Status("offline", "0.1.0", **STORE).to_json()["cameras"] == {}


def test_counts_hold_one_day_of_24_hours():
    with pytest.raises(ValueError, match="24"):
        Counts(date(2026, 11, 23), 1, 0, 0, [1], **STORE)
    with pytest.raises(ValueError, match="date"):
        Counts(AT, 1, 0, 0, [0] * 24, **STORE)
    payload = Counts(date(2026, 11, 23), 1, 0, 0, [0] * 24, **STORE).to_json()
    assert payload["date"] == "2026-11-23" and len(payload["by_hour"]) == 24


# -- retained and expiring ----------------------------------------------------------

def test_only_state_is_retained_never_an_event_or_an_alert():
    retained = {type(e).__name__ for e in every_event() if type(e).RETAINED}
    assert retained == {"Status", "Counts"}


def test_only_pop_up_alerts_expire_no_shows_and_visits_never():
    alerts = {type(e).__name__ for e in every_event() if type(e).ALERT}
    assert alerts == {"ArrivalAlert", "AppointmentAlert"}  # a no-show is followed up at head office, however late


def test_events_are_immutable_so_a_resend_is_the_same_message():
    v = visit()
    with pytest.raises(AttributeError):
        v.event_id = "other"
