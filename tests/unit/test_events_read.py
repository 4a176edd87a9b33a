"""Specification of reading the MQTT payloads back (sync/events.py `from_json`, `check_fields`).

Every payload class reads what it writes: write -> JSON -> from_json gives the same object. A
payload outside the contract is refused with a PayloadError naming the field; its `reason` is
fixed wording (safe to log), the message adds the offending detail.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

import pytest
from test_events import AT, STORE, TZ, every_event

from footfall.config.schema import ConfigError, parse_config
from footfall.sync import events
from footfall.sync.events import (
    Ack,
    AppointmentAlert,
    AppointmentRef,
    AppointmentUpsert,
    ArrivalAlert,
    CountsBucket,
    CountsReply,
    NoShowAlert,
    PayloadError,
    Status,
    VisitEvent,
)


def every_payload() -> list[events.Payload]:
    booked_at = AT + timedelta(hours=2)
    return [
        *every_event(),
        Ack("visit-1", "Wang Fang", **STORE),
        ArrivalAlert("m-42", "Li Wei", None, "visit-1", {"appointment_id": "a-1", "scheduled_at": events.iso(booked_at),
                                                         "channel": "wechat", "advisor": "Li Na"},
                     {"tags": ["vip"], "open_repairs": 1}, **STORE),
        NoShowAlert("a-2", "m-43", booked_at, 15, "phone", "Li Na", "Sun Li", "gold", {"phone": "+86 138"}, **STORE),
        VisitEvent("reentry", "m-42", "m-42", "member", "door-2", AT, False, **STORE),
        Status("online", "0.2.0", {"door-1": "streaming", "door-2": "reconnecting"}, "error: disk full", 2, 17,
               "Asia/Shanghai", {"door-1": {"analysed_fps": 9.5, "skipped": 0, "frame_age_s": 0.125}}, **STORE),
        events.ErrorEvent("footfall/sh-001/members/upsert", "cannot decode image:\nline two", 3, **STORE),
        AppointmentUpsert("a-9", "m-44", booked_at, "", ""),
        AppointmentRef("a-1", booked_at, "wechat", "Li Na"),
        AppointmentRef(),
        CountsBucket(AT, 3, 1, 1, 1, 2),
        CountsReply("sh-001", AT, AT + timedelta(hours=2), "hour",
                    [CountsBucket(AT, 3, 1, 1), CountsBucket(AT + timedelta(hours=1), 0, 0, 0)]),
    ]


@pytest.mark.parametrize("payload", every_payload(), ids=lambda p: type(p).__name__)
def test_every_payload_reads_back_equal_to_what_was_written(payload):
    written = json.loads(json.dumps(payload.to_json()))
    read = type(payload).from_json(written)
    assert read == payload
    assert read.to_json() == payload.to_json()


def test_each_topic_name_has_the_class_that_writes_it():
    assert {name: cls.__name__ for name, cls in events.PAYLOADS.items()} == {
        "status": "Status", "visits": "VisitEvent", "alerts/arrival": "ArrivalAlert",
        "alerts/appointment": "AppointmentAlert", "alerts/no_show": "NoShowAlert", "counts": "Counts",
        "members/deleted": "MemberDeleted", "errors": "ErrorEvent", "appointments/booked": "AppointmentBooked",
        "alerts/ack": "Ack", "appointments/upsert": "AppointmentUpsert", "appointments/delete": "AppointmentDelete"}
    assert set(events.UPLINK) | {events.ALERT_ACK} <= set(events.PAYLOADS)


def test_answers_go_under_the_replies_branch():
    assert events.reply_name("hq-1", "0") == "replies/hq-1/0"
    assert events.replies_branch("footfall", "sh-001") == "footfall/sh-001/replies/"
    assert events.is_reply("replies/hq-1/0") and not events.is_reply("replies") and not events.is_reply("visits")
    assert events.topic("footfall", "sh-001", events.reply_name("hq-1", "0")).startswith(
        events.replies_branch("footfall", "sh-001"))


def test_profile_fields_come_back_as_the_profile_and_unknown_fields_of_other_events_are_ignored():
    alert = ArrivalAlert("m-1", "Li Wei", "gold", "v-1", None, {}, **STORE).to_json()
    read = ArrivalAlert.from_json({**alert, "last_purchase": "2026-10-02", "images": ["QUJD"]})
    assert read.profile == {"last_purchase": "2026-10-02", "images": ["QUJD"]}
    visit = every_event()[0].to_json()
    assert VisitEvent.from_json({**visit, "embedding": [0.1] * 4}) == every_event()[0].__class__.from_json(visit)


def test_fields_added_after_the_first_boxes_take_their_defaults_when_left_out():
    visit = every_event()[0].to_json()
    del visit["identified"]
    assert VisitEvent.from_json(visit).identified is True
    counts = next(e for e in every_event() if isinstance(e, events.Counts)).to_json()
    for key in ("unidentified", "exits"):
        del counts[key]
    read = events.Counts.from_json(counts)
    assert (read.unidentified, read.exits) == (0, 0)


def test_an_arrival_alerts_booking_is_read_with_its_time():
    booked = events.iso(AT + timedelta(minutes=30))
    alert = ArrivalAlert("m-1", "Li Wei", None, "v-1", {"appointment_id": "a-1", "scheduled_at": booked}, {}, **STORE)
    assert alert.booking == AppointmentRef("a-1", AT + timedelta(minutes=30))
    assert ArrivalAlert("m-1", "Li Wei", None, "v-1", None, {}, **STORE).booking is None


# -- refusals -------------------------------------------------------------------------------

def visit_json(**fields: Any) -> dict[str, Any]:
    return {**every_event()[0].to_json(), **fields}


def appointment_json(**fields: Any) -> dict[str, Any]:
    alert = AppointmentAlert("a-1", "m-42", AT, "wechat", "Li Na", 5, **STORE)
    return {**alert.to_json(), **fields}


def status_json(**fields: Any) -> dict[str, Any]:
    return {**Status("online", "0.2.0", {"door-1": "streaming"}, **STORE).to_json(), **fields}


REFUSED: dict[str, tuple[type[events.Payload], dict[str, Any], str, str]] = {
    # case: (class, payload, reason, detail in the message)
    "missing field": (VisitEvent, visit_json(visitor_id=None), "visitor_id is required", ""),
    "wrong type": (VisitEvent, visit_json(camera_id=7), "camera_id must be a string", ""),
    "blank id": (VisitEvent, visit_json(visitor_id="  "), "visitor_id must not be empty", ""),
    "NUL": (VisitEvent, visit_json(visitor_id="v\x001"), "visitor_id holds a NUL character", ""),
    "newline": (VisitEvent, visit_json(visitor_id="v-1\nINFO forged"), "visitor_id holds a control character",
                " (U+000A)"),
    "C1 control": (VisitEvent, visit_json(camera_id="door\x9b1"), "camera_id holds a control character", " (U+009B)"),
    "lone surrogate": (Ack, Ack("v-1", "Wang \ud83d", **STORE).to_json(), "guide holds a lone surrogate", ""),
    "id over 200": (VisitEvent, visit_json(visitor_id="v" * 201), "visitor_id is longer than 200 characters", ""),
    "tier over 256": (ArrivalAlert, ArrivalAlert("m-1", "Li", "t" * 257, "v", None, {}, **STORE).to_json(),
                      "tier is longer than 256 characters", ""),
    "channel over 256": (AppointmentAlert, appointment_json(channel="c" * 257), "channel is longer than 256 characters",
                         ""),
    "advisor over 256": (AppointmentUpsert, {**AppointmentUpsert("a", "m", AT, "phone", "").to_json(),
                                             "advisor": "a" * 257}, "advisor is longer than 256 characters", ""),
    "unknown kind": (VisitEvent, visit_json(kind="teleport"), "unknown visit kind", " 'teleport'"),
    "role without member": (VisitEvent, visit_json(role="member"), "member_id is required for role 'member'", ""),
    "time without offset": (VisitEvent, visit_json(ts="2026-11-23T10:00:00"), "ts must carry a UTC offset", ""),
    "not a time": (VisitEvent, visit_json(first_seen_ts="tomorrow"),
                   "first_seen_ts must be an ISO 8601 timestamp with offset", ""),
    "offset no zone has": (VisitEvent, visit_json(ts="2026-11-23T10:00:00.000+23:59"),
                           "ts has a UTC offset no time zone has", " (+23:59)"),
    "infinite minutes": (AppointmentAlert, appointment_json(minutes_early=float("inf")),
                         "minutes_early must be a finite number", ""),
    "minutes too large for a float": (NoShowAlert, {**appointment_json(), "grace_minutes": 10**400},
                                      "grace_minutes is out of range (at most 527040 minutes either way)", ""),
    "minutes as text": (AppointmentAlert, appointment_json(minutes_early="5"), "minutes_early must be a number", ""),
    "count as bool": (events.Counts, {**every_event()[7].to_json(), "visits": True}, "visits must be an integer", ""),
    "count out of range": (events.Counts, {**every_event()[7].to_json(), "visits": 2**31}, "visits is out of range", ""),
    "not 24 hours": (events.Counts, {**every_event()[7].to_json(), "by_hour": [0] * 23},
                     "by_hour must be 24 non-negative integers", ""),
    "not a date": (events.Counts, {**every_event()[7].to_json(), "date": "2026-13-01"},
                   "date is not a calendar date YYYY-MM-DD", ""),
    "camera state": (Status, status_json(cameras={"door-1": "broken"}),
                     "cameras must map camera ids to one of streaming, reconnecting, ended", ""),
    "too many cameras": (Status, status_json(cameras={f"d{i}": "ended" for i in range(65)}),
                         "cameras must be an object of at most 64 entries", ""),
    "storage": (Status, status_json(storage="fine"), 'storage must be "ok" or "error: <reason>"', ""),
    "camera figures": (Status, status_json(camera_stats={"door-1": {"fps": float("nan")}}),
                       "camera_stats must map camera ids to objects of finite numbers", ""),
    "appointment not an object": (ArrivalAlert, {**every_event()[1].to_json(), "appointment": "a-1"},
                                  "appointment must be an object or null", ""),
    "booking time": (ArrivalAlert, {**every_event()[1].to_json(), "appointment": {"scheduled_at": "soon"}},
                     "scheduled_at must be an ISO 8601 timestamp with offset", ""),
    "bucket": (CountsReply, {"store_id": "sh-001", "from": events.iso(AT), "to": events.iso(AT), "by": "week",
                             "buckets": []}, "unknown bucket length", " 'week'"),
    "not an object": (Ack, [1, 2], "payload is not a JSON object", ""),  # type: ignore[dict-item]
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_payload_outside_the_contract_is_refused_naming_the_field(case):
    cls, payload, reason, detail = REFUSED[case]
    with pytest.raises(PayloadError) as refused:
        cls.from_json(payload)
    assert refused.value.reason.startswith(reason), refused.value.reason
    assert str(refused.value) == refused.value.reason + detail


def test_the_bounds_are_inclusive():
    alert = ArrivalAlert("m" * 200, "n" * 256, "t" * 256, "v" * 200, None, {}, **STORE)
    assert ArrivalAlert.from_json(alert.to_json()) == alert
    assert AppointmentAlert.from_json(appointment_json(minutes_early=-527040, channel="c" * 256)).minutes_early == -527040


def test_the_box_never_accepts_a_text_longer_than_its_events_carry():
    """The box's downlink limits (config) stop where the events' bounds do, so nothing the box takes
    from the CRM makes an alert or a booking that head office refuses."""
    for key, most in (("max_id_length", events.MAX_ID), ("max_text_length", events.MAX_TEXT)):
        parse_config({"store_id": "sh-001", "downlink": {key: most}})
        with pytest.raises(ConfigError, match=f"downlink.{key}"):
            parse_config({"store_id": "sh-001", "downlink": {key: most + 1}})


# -- decoding and partial checks -----------------------------------------------------------------

@pytest.mark.parametrize(("body", "reason"), [
    (b"\xff\xfe{}", "malformed JSON: not UTF-8"),
    (b"[" * 5000, "malformed JSON: nested too deeply"),
    (b'{"visits": NaN}', "malformed JSON: NaN or Infinity is not a JSON number"),
    (b'{"event_id": "x", ', "malformed JSON"),
    (b"null", "payload is not a JSON object"),
])
def test_a_payload_that_is_not_a_json_object_is_refused(body, reason):
    with pytest.raises(PayloadError) as refused:
        events.decode_object(body)
    assert refused.value.reason == reason


def test_a_partial_check_looks_only_at_the_fields_given_and_those_asked_for():
    events.Counts.check_fields({"visits": 1, "by_hour": [0] * 24})  # no envelope, no date: fine
    events.Counts.check_fields({"visits": 1, "name": None, "date": None})  # null counts as absent
    with pytest.raises(PayloadError, match="reentries is required"):
        events.Counts.check_fields({"visits": 1}, required=("visits", "reentries"))
    with pytest.raises(PayloadError, match="date is not a calendar date"):
        events.Counts.check_fields({"date": "someday"})
    with pytest.raises(PayloadError, match="ts must"):
        Ack.check_fields({"visit_event_id": "v", "ts": "yesterday"})


def test_a_reply_with_buckets_in_another_zone_reads_the_same_instants():
    bucket = CountsBucket.from_json({"start": "2026-11-23T02:00:00.000+00:00", "visits": 1, "reentries": 0,
                                     "member_visits": 0})
    assert bucket.start == AT.replace(hour=10) and bucket.unidentified == 0
    assert date(2026, 11, 23) == bucket.start.astimezone(TZ).date()
