"""The demo's day as the CRM and the guides play it: bookings, a no-show and a guide's ack.

The CRM's exports are imported the way an operator imports them (the code of `footfall members
import` and `footfall appointments import`): a booking for each enrolled member, who then
arrives (one early, one late), and one for a member enrolled from the CRM export with a profile,
who never comes: a no-show once the grace period has passed. After the day, a guide takes the
first arrival on the store's `alerts/ack` topic, as the guide console publishes it, stamped on
the day's replayed clock, so head office's response times read as a store's would.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from footfall.cli.imports import import_file
from footfall.config.schema import Config
from footfall.sync import events
from footfall.tooling.scenario import Scenario, SpriteBank

GUIDE = "Wang Fang"
ANSWERED_AFTER = timedelta(seconds=45)  # the guide's ack, after the arrival alert
ABSENT_BOOKED_AT = (16, 0)  # the no-show's booking, store time: hours of the day still follow it
ADVISORS = ("Li Na", "Zhang Wei")
CHANNELS = ("wechat", "phone", "mini_program")


@dataclass(frozen=True)
class Booking:
    """One appointment of the day, and whether its member comes (the truth the summary shows)."""

    appointment_id: str
    member_id: str
    scheduled_at: datetime
    channel: str
    advisor: str
    arrives: bool

    def line(self) -> dict[str, str]:
        """The appointments/upsert fields: one line of the CRM's export."""
        return {"appointment_id": self.appointment_id, "member_id": self.member_id,
                "scheduled_at": events.iso(self.scheduled_at), "channel": self.channel, "advisor": self.advisor}


@dataclass(frozen=True)
class CrmDay:
    """The CRM's side of the demo's day: bookings and the member who booked and does not come."""

    bookings: list[Booking]
    absent: dict[str, Any] | None  # a members/upsert line (photos as paths), or None without spare photos

    @property
    def arrivals(self) -> int:
        return sum(b.arrives for b in self.bookings)

    @property
    def no_shows(self) -> int:
        return sum(not b.arrives for b in self.bookings)


def plan_crm_day(scenario: Scenario, bank: SpriteBank) -> CrmDay:
    """Book each enrolled member near their first arrival (the first 15 min early, the next 15 min
    late, ...), and a member nobody sees enter, enrolled from a person of the photo folder who does
    not walk in that day (booked without a face on the box when there is none)."""
    firsts: dict[str, datetime] = {}
    for walk in sorted(scenario.walks, key=lambda w: w.at):
        if walk.role == "member" and walk.direction == "in":
            firsts.setdefault(walk.identity, walk.at)
    bookings = []
    for k, (member_id, first) in enumerate(sorted(firsts.items(), key=lambda m: m[1])):
        hour = first.replace(minute=0, second=0, microsecond=0)
        scheduled = hour + timedelta(minutes=30 if k % 2 == 0 else 0)  # 11:15 -> 11:30; 14:15 -> 14:00
        bookings.append(Booking(f"demo-{k + 1}", member_id, scheduled, CHANNELS[k % 2], ADVISORS[k % 2], True))
    walking = {w.identity for w in scenario.walks}
    spare = [i for i in bank.identities() if i not in walking and len(bank.photos(i)) >= 3]
    absent_id = spare[0] if spare else "demo-member-away"
    day = (next(iter(firsts.values())) if firsts else scenario.clips[0][0].start_time).astimezone(scenario.tz)
    at = day.replace(hour=ABSENT_BOOKED_AT[0], minute=ABSENT_BOOKED_AT[1], second=0, microsecond=0)
    bookings.append(Booking(f"demo-{len(bookings) + 1}", absent_id, at, CHANNELS[2], ADVISORS[0], False))
    absent = None
    if spare:
        photos = [str(scenario.faces_dir / absent_id / p) for p in bank.photos(absent_id)[1:3]]
        absent = {"member_id": absent_id, "name": absent_id, "role": "member", "tier": "silver", "consent": True,
                  "profile": {"phone": "+86 138 0000 0000", "last_purchase": "trail shoes, 3 weeks ago",
                              "tags": ["booked on the mini-program"]},
                  "images": photos}
    return CrmDay(bookings, absent)


def import_crm_day(config: Config, crm: CrmDay, folder: Path) -> None:
    """Write the CRM's two exports into `folder` (made if need be) and import them into the store of `config`."""
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [("appointments.jsonl", events.APPOINTMENTS_UPSERT, [b.line() for b in crm.bookings])]
    if crm.absent is not None:
        jobs.insert(0, ("members.jsonl", events.MEMBERS_UPSERT, [crm.absent]))
    for name, topic, lines in jobs:
        path = folder / name
        path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
        done = import_file(config, path, topic, progress=False)
        if done.skipped:
            raise RuntimeError(f"the demo's own {name} was not imported whole: {done.summary(path)}")


def guide_ack(alert: events.ArrivalAlert, guide: str = GUIDE, after: timedelta = ANSWERED_AFTER) -> events.Ack:
    """The `alerts/ack` of a guide taking an arrival alert `after` its time, as the console sends it."""
    return events.Ack(alert.visit_event_id, guide, store_id=alert.store_id, ts=alert.ts + after)
