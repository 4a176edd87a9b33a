"""Specification of the store's rules (`edge/rules.py`): what is counted, published and alerted.

Pure functions on plain values: no broker, no model, no state file. Time is a fake clock in
milliseconds from 10:00 local time on 23 November 2026 in a store in Asia/Shanghai; decisions
are built by hand as the pipeline would hand them over.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from footfall.dedup.gallery import Person
from footfall.edge import rules
from footfall.edge.decisions import Decision, Passage, role
from footfall.sync import events
from footfall.sync.appointments import Appointment, Arrival, minutes_early
from footfall.sync.counts import Counted

TZ = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 11, 23, 10, 0, tzinfo=TZ)
STORE = "sh-001"
GRACE = timedelta(minutes=15)
FACE = np.ones(4, dtype=np.float32) / 2.0
LI = Person("M-1", "Li Wei", "member", tier="gold", consent=True, profile={"last_purchase": "watch"})
GUARD = Person("S-1", "Guard", "staff")


def ms(n: int) -> datetime:
    """The fake clock: `n` milliseconds after T0."""
    return T0 + timedelta(milliseconds=n)


Kind = Literal["visit", "reentry", "same_entry", "staff"]
MIN = 60_000  # a minute, in milliseconds


def passage(start: int, end: int | None = None, *, face: bool = True, camera: str = "door") -> Passage:
    """Someone in front of `camera` from `start` to `end` (ms); `face=False`: no usable shot."""
    end = start + 2_000 if end is None else end
    return Passage(camera, ms(start), ms(end), ms((start + end) // 2), FACE if face else None, 3 if face else 0)


def decision(kind: Kind, p: Passage, visitor: str | None = "v-1", member: str | None = None,
             person: Person | None = None, *, late: bool = False) -> Decision:
    started = p.first_seen if kind == "visit" else (None if kind in ("staff", "same_entry") else ms(0))
    return Decision(kind, p, visitor, member, person, started, 0.9, late)


def member_visit(start: int, *, kind: Kind = "visit", late: bool = False) -> Decision:
    return decision(kind, passage(start), "M-1", "M-1", LI, late=late)


def appointment(appointment_id: str, hour: int, minute: int = 0, member: str = "M-1") -> Appointment:
    return Appointment(appointment_id, member, T0.replace(hour=hour, minute=minute), "wechat", "Zhang Min")


@dataclass
class Outcome:
    """What the rules made of a run of decisions: the events in order and the entries counted."""

    emitted: list[events.Event] = field(default_factory=list)
    counted: list[Counted] = field(default_factory=list)

    def of(self, kind: type[events.Event]) -> list:
        return [e for e in self.emitted if isinstance(e, kind)]


def apply(decisions: list[Decision], appointments_of_day: Sequence[Appointment] = ()) -> Outcome:
    """The rules applied to decisions in order, as the daemon applies them (without the I/O)."""
    out = Outcome()
    for d in decisions:
        visit = rules.visit_event(d, STORE)
        count = rules.entry_count(d)
        assert (visit is None) == (count is None) == (not rules.counted(d))
        if visit is None or count is None:
            continue
        out.emitted.append(visit)
        out.counted.append(count)
        alert = rules.arrival_alert(d, STORE, visit, appointments_of_day)
        if alert is not None:
            out.emitted.append(alert)
    return out


# -- what is counted and published ---------------------------------------------------

def test_a_new_visitor_is_published_when_decided_and_counted_when_they_appeared():
    d = decision("visit", passage(1_250, 4_750))
    out = apply([d])
    [visit] = out.emitted
    assert isinstance(visit, events.VisitEvent)
    assert (visit.kind, visit.visitor_id, visit.member_id, visit.role) == ("visit", "v-1", None, "visitor")
    assert (visit.ts, visit.first_seen_ts, visit.camera_id, visit.identified) == (ms(4_750), ms(1_250), "door", True)
    assert visit.to_json()["ts"] == "2026-11-23T10:00:04.750+08:00"  # milliseconds survive to the payload
    assert out.counted == [Counted(ms(1_250), "visit", False, True)]


def test_a_reentry_is_published_and_counted_as_a_reentry_of_the_same_visitor():
    out = apply([decision("visit", passage(0)), decision("reentry", passage(30 * MIN))])
    assert [(e.kind, e.visitor_id) for e in out.of(events.VisitEvent)] == [("visit", "v-1"), ("reentry", "v-1")]
    assert [c.kind for c in out.counted] == ["visit", "reentry"]


def test_staff_produce_nothing():
    d = decision("staff", passage(0), None, None, GUARD)
    assert not rules.counted(d)
    assert rules.visit_event(d, STORE) is None and rules.entry_count(d) is None
    assert rules.member_entry(d) is None and not rules.arrival_alert_due(d)
    assert apply([d], [appointment("A-1", 10)]) == Outcome()


def test_another_view_of_an_entry_already_counted_produces_nothing():
    out = apply([decision("visit", passage(0)), decision("same_entry", passage(500, camera="side"))])
    assert len(out.emitted) == 1 and len(out.counted) == 1


def test_the_role_is_member_exactly_when_a_member_id_is_carried():
    assert role("M-1") == "member"
    assert role(None) == "visitor" and role("") == "visitor"
    out = apply([member_visit(0)])
    [visit] = out.of(events.VisitEvent)
    assert (visit.role, visit.member_id) == ("member", "M-1")
    assert out.counted == [Counted(ms(0), "visit", True, True)]


def test_an_unidentified_entrant_is_counted_apart_and_never_alerted():
    d = decision("visit", passage(0, face=False), "u-1")
    out = apply([d], [appointment("A-1", 10)])
    [visit] = out.emitted
    assert isinstance(visit, events.VisitEvent) and visit.identified is False and visit.role == "visitor"
    assert out.counted == [Counted(ms(0), "visit", False, False)]
    assert rules.member_entry(d) is None and not rules.arrival_alert_due(d)


def test_a_visit_or_reentry_without_its_visitor_id_is_refused():
    with pytest.raises(ValueError, match="visitor id"):
        rules.visit_event(decision("visit", passage(0), None), STORE)


# -- arrival alerts ------------------------------------------------------------------

def test_a_member_s_visit_raises_one_arrival_pop_up_naming_them_and_their_visit():
    out = apply([member_visit(1_000)])
    visit, alert = out.emitted
    assert isinstance(visit, events.VisitEvent) and isinstance(alert, events.ArrivalAlert)
    assert (alert.member_id, alert.name, alert.tier, alert.profile) == ("M-1", "Li Wei", "gold", LI.profile)
    assert alert.visit_event_id == visit.event_id and alert.ts == visit.ts
    assert alert.appointment is None  # no appointment that day


def test_a_member_s_reentry_raises_no_second_arrival_pop_up():
    out = apply([member_visit(0), member_visit(20 * MIN, kind="reentry"), member_visit(50 * MIN, kind="reentry")])
    assert len(out.of(events.VisitEvent)) == 3
    assert len(out.of(events.ArrivalAlert)) == 1
    assert out.of(events.ArrivalAlert)[0].visit_event_id == out.emitted[0].event_id


def test_a_late_recognised_member_gets_the_pop_up_of_the_visit_they_began():
    began = decision("visit", passage(0), "v-7")  # not recognised on the way in
    late = decision("reentry", passage(40 * MIN), "v-7", "M-1", LI, late=True)
    again = decision("reentry", passage(70 * MIN), "v-7", "M-1", LI)
    out = apply([began, late, again])
    assert [(v.kind, v.visitor_id, v.role) for v in out.of(events.VisitEvent)] == [
        ("visit", "v-7", "visitor"), ("reentry", "v-7", "member"), ("reentry", "v-7", "member")]
    [alert] = out.of(events.ArrivalAlert)
    assert alert.member_id == "M-1" and alert.visit_event_id == out.of(events.VisitEvent)[1].event_id


def test_an_unrecognised_passage_into_a_member_s_visit_marks_arrivals_but_raises_no_pop_up():
    # the window puts an anonymous re-entry into the member's open visit: it is theirs, not a new arrival
    d = decision("reentry", passage(30 * MIN), "M-1", "M-1", LI)
    assert rules.member_entry(d) == "M-1"
    assert not rules.arrival_alert_due(d)
    assert apply([d], [appointment("A-1", 11)]).of(events.ArrivalAlert) == []


def test_a_member_the_gallery_no_longer_describes_is_named_by_their_id():
    out = apply([decision("visit", passage(0), "M-9", "M-9", None)])
    [alert] = out.of(events.ArrivalAlert)
    assert (alert.name, alert.tier, alert.profile) == ("M-9", None, {})


def test_the_pop_up_carries_a_copy_of_the_profile_not_the_gallery_s_own():
    person = Person("M-2", "Chen Jie", "member", consent=True, profile={"tags": "vip"})
    d = decision("visit", passage(0), "M-2", "M-2", person)
    alert = rules.arrival_alert(d, STORE, rules.visit_event(d, STORE), [])
    assert alert is not None
    person.profile["tags"] = "changed"
    assert alert.profile == {"tags": "vip"}


# -- the appointment in the arrival alert --------------------------------------------

def test_the_arrival_alert_carries_the_appointment_of_that_day_nearest_the_arrival():
    day = [appointment("A-morning", 9), appointment("A-noon", 12), appointment("A-evening", 18)]
    arrived = 90 * MIN + 1  # 11:30:00.001: nearer noon than nine
    out = apply([member_visit(arrived)], day)
    [alert] = out.of(events.ArrivalAlert)
    assert alert.appointment == {"appointment_id": "A-noon", "scheduled_at": "2026-11-23T12:00:00.000+08:00",
                                 "channel": "wechat", "advisor": "Zhang Min"}


def test_the_nearest_appointment_may_be_one_already_past():
    day = [appointment("A-1", 10), appointment("A-2", 14)]
    assert rules.nearest_appointment(day, ms(100 * MIN)).appointment_id == "A-1"


def test_between_two_equally_near_appointments_the_earlier_is_carried():
    day = [appointment("A-1", 10), appointment("A-2", 12)]
    assert rules.nearest_appointment(day, ms(60 * MIN)).appointment_id == "A-1"
    assert rules.nearest_appointment([], ms(0)) is None


def test_the_appointment_is_chosen_by_when_the_member_appeared_not_when_the_passage_was_decided():
    day = [appointment("A-1", 10, 1), appointment("A-2", 10, 9)]
    d = decision("visit", passage(0, 8 * MIN), "M-1", "M-1", LI)  # appeared 10:00, decided 10:08
    alert = rules.arrival_alert(d, STORE, rules.visit_event(d, STORE), day)
    assert alert is not None and alert.appointment["appointment_id"] == "A-1"


# -- appointment alerts --------------------------------------------------------------

def test_each_appointment_the_entry_marked_arrived_raises_one_appointment_alert():
    early, late = appointment("A-1", 10, 15), appointment("A-2", 9, 45)
    arrivals = [Arrival(late, ms(0), minutes_early(late.scheduled_at, ms(0))),
                Arrival(early, ms(0), minutes_early(early.scheduled_at, ms(0)))]
    alerts = rules.appointment_alerts(STORE, ms(2_000), arrivals)
    assert [(a.appointment_id, a.minutes_early, a.member_id, a.ts) for a in alerts] == [
        ("A-2", -15, "M-1", ms(2_000)), ("A-1", 15, "M-1", ms(2_000))]
    assert alerts[1].to_json()["scheduled_at"] == "2026-11-23T10:15:00.000+08:00"


def test_an_entry_that_marked_no_appointment_arrived_raises_no_appointment_alert():
    assert rules.appointment_alerts(STORE, ms(0), []) == []


# -- no-shows ------------------------------------------------------------------------

def test_a_due_appointment_raises_a_no_show_with_its_grace_in_minutes():
    a = appointment("A-1", 9, 30)
    [alert] = rules.no_show_alerts(STORE, ms(0), [a], GRACE)
    assert (alert.appointment_id, alert.member_id, alert.scheduled_at, alert.grace_minutes, alert.ts) == (
        "A-1", "M-1", a.scheduled_at, 15, ms(0))


def test_a_no_show_is_raised_once_per_appointment():
    due = [appointment("A-1", 9), appointment("A-2", 9, 30, member="M-2")]
    raised: set[str] = set()
    ticks = []
    for tick in range(3):  # the same appointments still listed as due on later ticks (their flags unsaved)
        alerts = rules.no_show_alerts(STORE, ms(tick * MIN), due, GRACE, raised=raised)
        raised |= {a.appointment_id for a in alerts}
        ticks.append([a.appointment_id for a in alerts])
    assert ticks == [["A-1", "A-2"], [], []]


def test_settled_appointments_are_kept_until_the_next_store_day_ends():
    assert rules.settled_kept_from(date(2026, 11, 23)) == date(2026, 11, 22)


# -- counts --------------------------------------------------------------------------

def test_today_s_counts_are_one_retained_event_of_the_store_s_day():
    today = {"date": "2026-11-23", "visits": 5, "reentries": 2, "member_visits": 1, "unidentified": 1, "exits": 3,
             "by_hour": [0] * 10 + [5] + [0] * 13}
    event = rules.counts_event(STORE, ms(MIN), today)
    assert event.RETAINED and event.TOPIC == events.COUNTS
    assert event.to_json() == {**today, "event_id": event.event_id, "store_id": STORE,
                               "ts": "2026-11-23T10:01:00.000+08:00"}
    today["by_hour"][10] = 99
    assert event.by_hour[10] == 5  # the event keeps its own list
