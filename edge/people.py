"""`footfall enroll` and `footfall erase`: members and staff on this box."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from tqdm import tqdm

from footfall.config.schema import Config
from footfall.dedup.enrol import enrol_photos
from footfall.dedup.gallery import EnrolmentError, Person
from footfall.edge.pipeline import open_gallery, open_window
from footfall.recognition.analyzer import FaceAnalyzer
from footfall.recognition.images import read_image
from footfall.sync.appointments import AppointmentStore
from footfall.sync.outbox import Outbox

# PIPL/CAC measures: storing 100 000 people's faces requires a filing with the regulator.
FILING_THRESHOLD = 100_000


def enroll(config: Config, *, person_id: str, name: str, role: str, tier: str | None, consent: bool,
           photos: list[Path], progress: bool = True) -> str:
    """Enrol a person from photos (one clear face each); returns a one-line confirmation."""
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
    gallery = open_gallery(config, analyzer)
    try:
        gallery.enroll(person, vectors)
        total = len(gallery)
    finally:
        gallery.close()
    note = f"; {total} people enrolled on this box"
    if total >= 0.8 * FILING_THRESHOLD:
        note += f" (a filing with the regulator is due at {FILING_THRESHOLD})"
    skipped = f"; not used: {enrolment.report()}" if enrolment.rejected else ""
    return (f"enrolled {person_id} ({role}{', ' + tier if tier else ''}) from {len(enrolment.used)} of "
            f"{len(photos)} photo(s){skipped}{note}")


def erase(config: Config, person_id: str) -> str:
    """Remove a person from the gallery, the visit window and the appointments, on disk too;
    returns a confirmation."""
    analyzer = FaceAnalyzer.from_config(config)
    gallery = open_gallery(config, analyzer)
    window = open_window(config, analyzer)
    appointments = AppointmentStore(Path(config.storage.dir) / "appointments.db", config.timezone)
    outbox = Outbox.from_config(config.storage.dir, config.alerts.ttl, now=lambda: datetime.now(UTC))
    try:
        in_gallery = gallery.erase(person_id)
        in_window = window.forget(person_id)
        in_appointments = appointments.delete_member(person_id) > 0
        sent, unsent = outbox.forget_member(person_id)
    finally:
        gallery.close()
        window.close()
        appointments.close()
        outbox.close()
    events = "outbox" + (f" ({unsent} event(s) not yet sent were dropped)" if unsent else "")
    found = [what for what, hit in (("gallery", in_gallery), ("open visit window", in_window),
                                    ("appointments", in_appointments), (events, sent or unsent)) if hit]
    where = ", ".join(found) if found else "nothing was held"
    return f"erased {person_id}: removed from {where}; no trace of it remains on this box"
