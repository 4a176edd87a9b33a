"""The store daemon's set-up before it starts: a Mosquitto of the test's own (`broker`), the config
file (`store_config`, `config_file`, `camera_table`), the people enrolled and the appointments
booked. Running it is tests/support/daemon_run.py.

Registered in tests/conftest.py, so `broker` is a fixture of every test module that does not
define its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

import numpy as np
import pytest

from footfall.config.schema import load_config
from footfall.dedup.enrol import embeddings_from_photos
from footfall.dedup.gallery import Person
from footfall.edge.store import open_gallery
from footfall.recognition.analyzer import FaceAnalyzer
from footfall.recognition.images import read_image
from footfall.sync.appointments import Appointment, AppointmentStore
from support.broker import Broker
from support.clips import START

PREFIX = "footfall/sh-001/"


class HasUrl(Protocol):
    """A broker, or a stand-in that only names where one would be."""

    url: str


class NoBroker:
    """Stands in for a broker that is not there: nothing listens at its URL."""

    url = "mqtt://127.0.0.1:1"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A Mosquitto of the test's own on a free loopback port, stopped at the end."""
    b = Broker(tmp_path / "broker").start()
    yield b
    b.stop()


def store_config(tmp_path: Path, broker: HasUrl, *tables: str, timezone: str = "Asia/Shanghai",
                 mqtt: str = "") -> Path:
    """tmp_path/footfall.toml of store sh-001 on `broker`, its state in tmp_path/state; `mqtt` adds
    lines to [mqtt], `tables` (TOML tables such as `camera_table`'s) follow as written."""
    path = tmp_path / "footfall.toml"
    path.write_text(f'store_id = "sh-001"\ntimezone = "{timezone}"\n[mqtt]\nurl = "{broker.url}"\n{mqtt}\n'
                    f'[storage]\ndir = "{tmp_path / "state"}"\n' + "".join(tables))
    return path


def config_file(tmp_path: Path, broker: HasUrl, cameras: str = "") -> Path:
    """The replayed entrance's store: the same person seen again within 5 s is the same entry."""
    return store_config(tmp_path, broker, '[dedup]\nsame_entry = "5s"\n', cameras)


def camera_table(camera_id: str, source: object, *, fps: float = 5, **keys: object) -> str:
    """A [[cameras]] table; further keys (start_time, detect_source, entry_line...) as TOML values."""
    def value(v: object) -> str:
        if isinstance(v, datetime):
            return f'"{v.isoformat()}"'
        return f'"{v}"' if isinstance(v, str | Path) else str(v)

    lines = [f'id = "{camera_id}"', f"source = {value(source)}", f"fps = {fps}"]
    return "[[cameras]]\n" + "".join(f"{line}\n" for line in lines + [f"{k} = {value(v)}" for k, v in keys.items()])


# Ms Five, a gold member, and Staff Three, as the entrance clip's regulars are enrolled.
MEMBER_AND_STAFF = [
    (Person("deepface_p05", "Ms Five", "member", tier="gold", consent=True,
            profile={"last_purchase": "watch", "open_repairs": 1}), ["2.jpg", "3.jpg"]),
    (Person("deepface_p03", "Staff Three", "staff", consent=True), ["2.jpg"]),
]
# Two members who consented now, as the live camera's tests enrol them.
TWO_MEMBERS = [(Person(person_id, name, "member", consent=True, consent_at=datetime.now(UTC)), photos)
               for person_id, name, photos in [("deepface_p05", "Ms Five", ["2.jpg", "3.jpg"]),
                                               ("deepface_p03", "Mr Three", ["2.jpg"])]]


def enrol(config_path: Path, analyzer: FaceAnalyzer, faces_dir: Path,
          people: Iterable[tuple[Person, list[str]]] = MEMBER_AND_STAFF) -> dict[str, np.ndarray]:
    """Enrol each person from their photos in faces_dir/<person_id>/ before the daemon starts;
    returns the vectors stored for each."""
    gallery = open_gallery(load_config(config_path), analyzer)
    vectors = {}
    try:
        for person, photos in people:
            images = [(p, read_image(faces_dir / person.person_id / p)) for p in photos]
            vectors[person.person_id] = embeddings_from_photos(analyzer, images)
            gallery.enroll(person, vectors[person.person_id])
    finally:
        gallery.close()
    return vectors


# Ms Five booked for 10:05 (the entrance clip shows her at 10:00), and a member who never comes for 09:20.
MS_FIVE_BOOKED = Appointment("a-1", "deepface_p05", START + timedelta(minutes=5), "wechat", "Li")
NO_SHOW_BOOKED = Appointment("a-2", "m-absent", START - timedelta(minutes=40), "phone", "Wang")


def book(state: Path, appointments: Iterable[Appointment] = (MS_FIVE_BOOKED, NO_SHOW_BOOKED)) -> None:
    """Store `appointments` (Ms Five's and the no-show's unless told) in the state directory `state`
    before the daemon starts."""
    store = AppointmentStore(state / "appointments.db", "Asia/Shanghai")
    for appointment in appointments:
        store.upsert(appointment)
    store.close()
