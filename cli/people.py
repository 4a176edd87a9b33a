"""`footfall enroll` and `footfall erase`: members and staff on this box.

With the daemon running, both go through it (the admin channel), so they take effect at once
in the service that recognises people; with it stopped they hold the storage lock themselves.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from tqdm import tqdm

from footfall.config.schema import Config
from footfall.dedup.enrol import enrol_photos
from footfall.dedup.gallery import EnrolmentError, Person, Role
from footfall.edge import admin
from footfall.edge.store import COUNT_ONLY, Store
from footfall.recognition.analyzer import FaceAnalyzer
from footfall.recognition.images import read_image
from footfall.sync import events

# PIPL/CAC measures: storing 100 000 people's faces requires a filing with the regulator.
FILING_THRESHOLD = 100_000


def enroll(config: Config, *, person_id: str, name: str, role: Role, tier: str | None, consent: bool,
           photos: list[Path], progress: bool = True) -> str:
    """Enrol a person from photos (one clear face each); returns a one-line confirmation.

    Refused in count_only before any photo is read or any model is looked up."""
    if config.privacy.mode == "count_only":
        raise EnrolmentError(COUNT_ONLY)
    if role == "member" and not consent:
        raise EnrolmentError(f"member {person_id}: consent is required (--consent records that it was given)")
    if not photos:
        raise EnrolmentError("no photos given")
    analyzer = FaceAnalyzer.from_config(config)
    images = [(str(p), read_image(p)) for p in tqdm(photos, desc="reading photos", disable=not progress, leave=False)]
    enrolment = enrol_photos(analyzer, images)
    vectors = enrolment.template
    person = Person(person_id, name, role, tier=tier, consent=consent,
                    consent_at=datetime.now(UTC) if consent else None)
    skipped = f"; not used: {enrolment.report()}" if enrolment.rejected else ""
    what = f"{person_id} ({role}{', ' + tier if tier else ''}) from {len(enrolment.used)} of {len(photos)} photo(s){skipped}"

    def local() -> str:
        with Store(config, analyzer.pack.spec, command="footfall enroll") as store:
            store.enroll(person, vectors)
            total = len(store.gallery)
        note = f"; {total} people enrolled on this box"
        if total >= 0.8 * FILING_THRESHOLD:
            note += f" (a filing with the regulator is due at {FILING_THRESHOLD})"
        return f"enrolled {what}{note}"

    def through_daemon() -> str:
        # `ts`: this enrolment is newer than any earlier erasure of the person (a new consent).
        message = {"member_id": person_id, "name": name, "role": role, "tier": tier, "consent": consent,
                   "embeddings": vectors.tolist(), "embedding_model": analyzer.pack.recognizer.sha256,
                   "ts": events.iso(datetime.now(UTC))}
        admin.apply(config.storage.dir, events.MEMBERS_UPSERT, json.dumps(message))
        return f"enrolled {what} in the running daemon"

    return admin.with_state(local=local, daemon=through_daemon)


def erase(config: Config, person_id: str) -> str:
    """Remove a person from the gallery, the visit window, the appointments and the outbox, on disk
    too, in the running daemon if there is one; returns a confirmation.

    Both ways go through the store's rules for `members/delete`: an erasure tombstone keeps a stale
    CRM upsert from enrolling the person again, and `members/deleted` tells head office (queued in
    the outbox when no daemon runs, published at its next start). No face model is opened. An id
    the box does not hold raises `NotHeld` (its tombstone is recorded all the same).
    """
    payload = json.dumps({"member_id": person_id}).encode()

    def local() -> str:
        with Store(config, command="footfall erase") as store:
            outcome = store.command(events.MEMBERS_DELETE, payload, operator=True)
        if not outcome.ok or outcome.reply is None:
            raise ValueError(f"{person_id} not erased: {outcome.reason}")
        return _erased(person_id, "", outcome.reply, "head office is told at the daemon's next start (the "
                       "members/deleted notice, the id alone, waits in the outbox until the broker has it)")

    def through_daemon() -> str:
        answer = admin.apply(config.storage.dir, events.MEMBERS_DELETE, payload)
        return _erased(person_id, " in the running daemon", answer.get("reply") or {},
                       "members/deleted is on its way to head office")

    return admin.with_state(local=local, daemon=through_daemon)


class NotHeld(ValueError):
    """An erasure of an id the box holds nowhere: most likely a mistyped id."""


def _erased(person_id: str, where: str, reply: dict, notice: str) -> str:
    held = reply.get("held_in") or []
    if not held:
        known = "to the running daemon on this box" if where else "on this box"
        raise NotHeld(f"{person_id} is not known {known}: not in the gallery, an open visit window, the "
                      f"appointments or the outbox; check the id. The erasure is recorded all the same (a CRM "
                      f"upsert sent before now will not enrol it), but head office is not told: it erases an id "
                      f"across the chain, and a mistyped id may be another member's")
    return f"erased {person_id}{where}: removed from {', '.join(held)}; {notice}"
