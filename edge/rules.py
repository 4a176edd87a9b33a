"""What is counted, published and alerted: the store's rules, as pure functions.

Every function takes plain values (a pipeline decision, the store id, the time, the member's
appointments) and returns the events to emit (`sync/events.py`) or the entry to count
(`sync/counts.Counted`). No I/O, no clock, no broker, no model: the daemon reads and writes
the state files, submits the events to the outbox and handles a refusing disk, and asks these
functions what to do in between.

The rules, in the order the daemon applies them to one decision:

- a visit or a re-entry is published (`visit_event`) and counted (`entry_count`); staff and
  a second camera's view of the same entry produce nothing;
- the role of a visit is "member" exactly when it carries a member id (`decisions.role`); an entrant
  without a usable face is counted apart (`identified` false) and never matched, so never alerted;
- a member's entry marks their appointments of that store day arrived, and each one newly
  arrived raises an appointment alert (`appointment_alerts`);
- one arrival alert per visit (`arrival_alert_due`): at the visit's start, or on the entry in
  which the member is first recognised in a visit they began unrecognised (`recognised_late`);
  it carries the member's appointment of that day nearest the arrival (`nearest_appointment`);
- each due appointment raises one no-show alert, never a second (`no_show_alerts`);
- today's counts are published as one retained event (`counts_event`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import date, datetime, timedelta
from typing import Any, Literal

from footfall.dedup.gallery import Person
from footfall.edge.decisions import Decision, role
from footfall.sync import events
from footfall.sync.appointments import Appointment, Arrival
from footfall.sync.counts import Counted

SETTLED_KEPT_DAYS = 1  # settled appointments stay this many store days after theirs, then go


def counted(decision: Decision) -> bool:
    """Whether a decision is an entry of the store: a new visit or a re-entry (not staff, not a repeat view)."""
    return _entry_kind(decision) is not None


def _entry_kind(decision: Decision) -> Literal["visit", "reentry"] | None:
    if decision.kind == "visit":
        return "visit"
    if decision.kind == "reentry":
        return "reentry"
    return None


def visit_event(decision: Decision, store_id: str) -> events.VisitEvent | None:
    """The `visits` event of an entry, dated when the passage was decided (its last frame); None if not counted."""
    kind = _entry_kind(decision)
    if kind is None:
        return None
    if decision.visitor_id is None:
        raise ValueError(f"a {kind} always has its visitor id")
    return events.VisitEvent(
        store_id=store_id, ts=decision.passage.last_seen, kind=kind, visitor_id=decision.visitor_id,
        member_id=decision.member_id, role=role(decision.member_id), camera_id=decision.passage.camera_id,
        first_seen_ts=decision.passage.first_seen, identified=decision.identified)


def entry_count(decision: Decision) -> Counted | None:
    """The entry to record in the counts, at the moment the person appeared; None if not counted."""
    kind = _entry_kind(decision)
    if kind is None:
        return None
    return Counted(decision.passage.first_seen, kind, decision.member_id is not None, decision.identified)


def exit_count(decision: Decision) -> Counted | None:
    """The exit to record in the counts (someone crossing the entry line outwards), else None."""
    if decision.kind != "exit":
        return None
    return Counted(decision.passage.last_seen, "exit", False, decision.identified)


def member_entry(decision: Decision) -> str | None:
    """The member whose arrival this entry is (their appointments are looked at), or None."""
    return decision.member_id if counted(decision) and decision.member_id else None


def appointment_alerts(store_id: str, ts: datetime, arrivals: Iterable[Arrival]) -> list[events.AppointmentAlert]:
    """One alert per appointment the entry marked arrived (the store marks each once), in their order."""
    out = []
    for arrival in arrivals:
        a = arrival.appointment
        out.append(events.AppointmentAlert(
            store_id=store_id, ts=ts, appointment_id=a.appointment_id, member_id=a.member_id,
            scheduled_at=a.scheduled_at, channel=a.channel, advisor=a.advisor,
            minutes_early=arrival.minutes_early))
    return out


def arrival_alert_due(decision: Decision) -> bool:
    """One arrival pop-up per visit: a member's new visit, or the re-entry in which a member is first
    recognised in a visit they began unrecognised. Any other re-entry raises none."""
    if member_entry(decision) is None:
        return False
    return decision.kind == "visit" or decision.recognised_late


def nearest_appointment(appointments: Sequence[Appointment], arrived_at: datetime) -> Appointment | None:
    """Of a member's appointments that day, the one scheduled nearest the arrival (early or late);
    between two equally near, the first given (the store lists them earliest first). None if none."""
    if not appointments:
        return None
    return min(appointments, key=lambda a: abs((a.scheduled_at - arrived_at).total_seconds()))


def appointment_field(appointment: Appointment | None) -> dict[str, Any] | None:
    """The arrival alert's `appointment` field: id, time, channel and advisor, or None."""
    if appointment is None:
        return None
    return {"appointment_id": appointment.appointment_id, "scheduled_at": events.iso(appointment.scheduled_at),
            "channel": appointment.channel, "advisor": appointment.advisor}


def arrival_alert(decision: Decision, store_id: str, visit: events.VisitEvent,
                  appointments_of_day: Sequence[Appointment]) -> events.ArrivalAlert | None:
    """The arrival pop-up of `visit` when one is due (`arrival_alert_due`), else None.

    `appointments_of_day` are the member's appointments on the store day the person appeared,
    earliest first. The person's name, tier and CRM profile ride along; a member the gallery no
    longer describes is named by their id.
    """
    member_id = member_entry(decision)
    if member_id is None or not arrival_alert_due(decision):
        return None
    person = decision.person
    appointment = nearest_appointment(appointments_of_day, decision.passage.first_seen)
    return events.ArrivalAlert(
        store_id=store_id, ts=visit.ts, member_id=member_id, name=person.name if person else member_id,
        tier=person.tier if person else None, visit_event_id=visit.event_id,
        appointment=appointment_field(appointment), profile=dict(person.profile) if person else {})


def no_show_alerts(store_id: str, now: datetime, due: Iterable[Appointment], grace: timedelta,
                   raised: Collection[str] = (),
                   person: Callable[[str], Person | None] = lambda _: None) -> list[events.NoShowAlert]:
    """One no-show alert per due appointment (scheduled_at + grace reached, no arrival), in their order,
    except those in `raised`: a no-show already raised is never raised again. The booking's channel
    and advisor ride along, and the name, tier and CRM profile of the member `person` finds."""
    alerts = []
    for a in due:
        if a.appointment_id in raised:
            continue
        member = person(a.member_id)
        alerts.append(events.NoShowAlert(
            store_id=store_id, ts=now, appointment_id=a.appointment_id, member_id=a.member_id,
            scheduled_at=a.scheduled_at, grace_minutes=round(grace.total_seconds() / 60), channel=a.channel,
            advisor=a.advisor, name=member.name if member else None, tier=member.tier if member else None,
            profile=dict(member.profile) if member else {}))
    return alerts


def settled_kept_from(today: date) -> date:
    """The first store day whose settled appointments (arrived, or no-show raised) are still kept."""
    return today - timedelta(days=SETTLED_KEPT_DAYS)


def counts_event(store_id: str, now: datetime, today: dict[str, Any]) -> events.Counts:
    """The retained `counts` event from the counts store's payload of today (`CountStore.today`)."""
    return events.Counts(
        store_id=store_id, ts=now, date=date.fromisoformat(today["date"]), visits=today["visits"],
        reentries=today["reentries"], member_visits=today["member_visits"], by_hour=list(today["by_hour"]),
        unidentified=today["unidentified"], exits=today["exits"])
