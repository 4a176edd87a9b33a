"""Entrance scenarios through the real models: generated clips in, visits and re-entries out.

Each entry of a person is a short clip of them walking in through the door, rendered from a
real photo at a given store time. Re-entries on the same day use the same photo (same clothes,
same light); members are enrolled from other photos than the ones the camera sees.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from footfall.config.schema import parse_config
from footfall.dedup.enrol import embeddings_from_photos
from footfall.dedup.gallery import Person
from footfall.edge.pipeline import Pipeline, replay
from footfall.edge.sources import FileSource
from footfall.edge.store import Store as BoxStore
from footfall.recognition.images import read_image
from footfall.tooling.scenario import (
    DOOR_NAME,
    SECOND_CAMERA,
    Appearance,
    Clip,
    SpriteBank,
    camera_settings,
    render_clip,
    second_view,
)

TZ = ZoneInfo("Asia/Shanghai")


def at(hh: int, mm: int, day: int = 23) -> datetime:
    return datetime(2026, 11, day, hh, mm, tzinfo=TZ)


@pytest.fixture(scope="module")
def bank(faces_dir, default_analyzer) -> SpriteBank:
    return SpriteBank(faces_dir, default_analyzer)


@pytest.fixture(scope="module")
def people(bank) -> list[str]:
    """Identities with at least four photos, in a fixed order."""
    return [i for i in bank.identities() if len(bank.photos(i)) >= 4]


class Store:
    """A store replaying clips through one pipeline, with its state in `storage`."""

    def __init__(self, tmp: Path, bank: SpriteBank, analyzer, **config) -> None:
        self.tmp, self.bank, self.analyzer = tmp, bank, analyzer
        self.storage = tmp / "state"
        self.config = parse_config({"store_id": "sh-001", "timezone": "Asia/Shanghai",
                                    "storage": {"dir": str(self.storage)}, **config})
        self.clips = 0

    def clip(self, when: datetime, *walkers: tuple[str, str], camera: str = "door-1", lanes=None,
             unusable: tuple[int, ...] = (), together: bool = False, **how) -> FileSource:
        """A 4-second clip starting at `when` with each (identity, photo) walking in (`how`: facing,
        direction); the walkers numbered in `unusable` never show a usable face; `together`: side
        by side, stepping in at the same moment."""
        return self.render(self.scene(when, *walkers, camera=camera, lanes=lanes, unusable=unusable,
                                      together=together, **how))

    def scene(self, when: datetime, *walkers: tuple[str, str], camera: str = "door-1", lanes=None,
              unusable: tuple[int, ...] = (), together: bool = False, **how) -> Clip:
        """The clip `clip` renders."""
        lanes = lanes or [0.3 + 0.4 * i for i in range(len(walkers))]
        appearances = tuple(Appearance(ident, photo, enter_at=0.3 + (0.0 if together else 0.4 * i), walk=3.0,
                                       lane=lane, face_unusable=i in unusable, **how)
                            for i, ((ident, photo), lane) in enumerate(zip(walkers, lanes)))
        return Clip(camera, when, 4.5, appearances, fps=10)

    def render(self, clip: Clip) -> FileSource:
        """`clip` rendered into a file the pipeline replays."""
        self.clips += 1
        path = render_clip(clip, self.tmp / f"clip{self.clips}.avi", self.bank, seed=self.clips)
        return FileSource(clip.camera_id, path, clip.start_time, fps=5)

    def run(self, *sources: FileSource, enrol=()):
        with BoxStore(self.config, self.analyzer.pack.spec, media_clock=True) as box:
            for person, photos in enrol:
                images = [(p, read_image(self.bank.faces_dir / person.person_id / p)) for p in photos]
                box.gallery.enroll(person, embeddings_from_photos(self.analyzer, images))
            decisions = replay(Pipeline(self.config, self.analyzer), box, sources)
            return [d for d in decisions if d.kind != "same_entry"]


@pytest.fixture
def store(tmp_path, bank, default_analyzer) -> Store:
    return Store(tmp_path, bank, default_analyzer)


def kinds(decisions) -> list[str]:
    return [d.kind for d in decisions]


def test_a_stranger_returning_within_three_hours_of_the_last_entry_reenters(store, people, bank):
    me = (people[0], bank.photos(people[0])[0])
    decisions = store.run(
        store.clip(at(10, 0), me),    # visit
        store.clip(at(10, 40), me),   # 40 min later: re-entry
        store.clip(at(13, 10), me),   # 2 h 30 after that re-entry: re-entry
        store.clip(at(14, 0), me),    # 4 h after the first entry, 50 min after the last: re-entry
        store.clip(at(17, 10), me),   # 3 h 10 after the last entry: a new visit
    )
    assert kinds(decisions) == ["visit", "reentry", "reentry", "reentry", "visit"]
    assert len({d.visitor_id for d in decisions[:4]}) == 1
    assert decisions[4].visitor_id != decisions[0].visitor_id
    assert all(d.member_id is None and d.role == "visitor" for d in decisions)


def test_an_entry_after_the_stores_midnight_is_a_new_visit(store, people, bank):
    me = (people[1], bank.photos(people[1])[0])
    decisions = store.run(store.clip(at(23, 30), me), store.clip(at(0, 20, day=24), me))
    assert kinds(decisions) == ["visit", "visit"]
    assert decisions[0].visitor_id != decisions[1].visitor_id


def test_two_strangers_walking_in_together_are_two_visits_never_merged(store, people, bank):
    a, b = people[2], people[3]
    decisions = store.run(
        store.clip(at(11, 0), (a, bank.photos(a)[0]), (b, bank.photos(b)[0])),
        store.clip(at(11, 30), (b, bank.photos(b)[0])),
    )
    assert kinds(decisions) == ["visit", "visit", "reentry"]
    assert decisions[0].visitor_id != decisions[1].visitor_id
    assert decisions[2].visitor_id in {decisions[0].visitor_id, decisions[1].visitor_id}


def test_a_member_is_recognised_by_id_and_staff_produce_nothing(store, bank):
    # Recognition accuracy across photos is measured by the calibration benchmark (0.85 per
    # passage at the default threshold, 310 identities); this test is about what follows a match, so it uses two
    # people whose enrolment photos are clear, frontal colour portraits.
    member, staff = "deepface_p05", "deepface_p03"
    m_photos, s_photos = bank.photos(member), bank.photos(staff)
    enrol = [
        (Person(member, "Ms Member", "member", tier="gold", consent=True), m_photos[1:3]),
        (Person(staff, "Staff", "staff", consent=True), s_photos[1:3]),
    ]
    decisions = store.run(
        store.clip(at(10, 0), (member, m_photos[0])),
        store.clip(at(10, 5), (staff, s_photos[0])),
        store.clip(at(10, 50), (member, m_photos[0])),
        enrol=enrol,
    )
    counted = [d for d in decisions if d.kind != "staff"]
    assert kinds(counted) == ["visit", "reentry"]
    assert all(d.member_id == member and d.visitor_id == member and d.role == "member" for d in counted)
    assert counted[0].person.tier == "gold"
    staff_seen = [d for d in decisions if d.kind == "staff"]
    assert len(staff_seen) == 1 and staff_seen[0].visitor_id is None


def test_two_cameras_seeing_the_same_person_make_one_entry(store, people, bank):
    me = (people[6], bank.photos(people[6])[0])
    decisions = store.run(store.clip(at(12, 0), me, camera="door-1"),
                          store.clip(at(12, 0) + timedelta(seconds=2), me, camera="door-2"))
    assert kinds(decisions) == ["visit"]


def test_a_restart_inside_the_window_keeps_the_reentry(store, people, bank):
    me = (people[7], bank.photos(people[7])[0])
    (before,) = store.run(store.clip(at(15, 0), me))
    (after,) = store.run(store.clip(at(16, 0), me))  # a new pipeline on the same storage
    assert (before.kind, after.kind) == ("visit", "reentry")
    assert after.visitor_id == before.visitor_id


def test_in_memory_windows_forget_across_a_restart(tmp_path, bank, default_analyzer, people):
    store = Store(tmp_path, bank, default_analyzer, privacy={"anonymous_store": "memory"})
    me = (people[7], bank.photos(people[7])[0])
    (before,) = store.run(store.clip(at(15, 0), me))
    (after,) = store.run(store.clip(at(16, 0), me))
    assert (before.kind, after.kind) == ("visit", "visit")
    assert not (store.storage / "windows.db").exists()


def test_a_closed_windows_embedding_is_gone_from_the_sqlite_files(store, people, bank):
    me = (people[8], bank.photos(people[8])[0])
    other = (people[9], bank.photos(people[9])[0])
    (visit,) = store.run(store.clip(at(9, 0), me))
    db = store.storage / "windows.db"
    con = sqlite3.connect(db)
    (blob,) = con.execute("SELECT vector FROM window_vectors JOIN windows USING (visitor_id) "
                          "WHERE visitor_id = ?", (visit.visitor_id,)).fetchone()
    con.close()
    assert blob in db.read_bytes() + _wal(db), "while the window is open its vector is on disk"
    store.run(store.clip(at(12, 30), other))  # 3 h 30 later: the first window has closed
    raw = db.read_bytes() + _wal(db)
    assert blob not in raw
    assert visit.visitor_id.encode() not in raw
    assert np.frombuffer(blob, dtype=np.float32).size == 512


def _wal(db: Path) -> bytes:
    wal = db.with_name(db.name + "-wal")
    return wal.read_bytes() if wal.exists() else b""


# -- every entrant counted; one person, one visit ----------------------------------------------

def test_a_walk_in_whose_face_never_gives_a_usable_shot_is_one_visit_counted_unidentified(store, people, bank):
    me = (people[8], bank.photos(people[8])[0])
    other = (people[9], bank.photos(people[9])[0])
    decisions = store.run(store.clip(at(10, 0), me, unusable=(0,)), store.clip(at(10, 30), other))
    assert kinds(decisions) == ["visit", "visit"]
    assert [d.identified for d in decisions] == [False, True]
    assert decisions[0].role == "visitor" and decisions[0].visitor_id != decisions[1].visitor_id


def test_a_face_seen_in_fewer_frames_than_min_hits_is_not_counted(tmp_path, bank, default_analyzer, people):
    store = Store(tmp_path, bank, default_analyzer, tracking={"min_hits": 1000})
    me = (people[8], bank.photos(people[8])[0])
    assert store.run(store.clip(at(10, 0), me, unusable=(0,))) == []


def test_a_member_recognised_late_is_a_reentry_of_the_visit_they_started_unrecognised(store, bank):
    member = "deepface_p05"
    photos = bank.photos(member)
    (first,) = store.run(store.clip(at(10, 0), (member, photos[0])))  # not yet enrolled
    assert (first.kind, first.member_id) == ("visit", None)
    enrol = [(Person(member, "Ms Member", "member", consent=True), photos[1:3])]
    (late,) = store.run(store.clip(at(11, 30), (member, photos[0])), enrol=enrol)
    assert (late.kind, late.member_id, late.visitor_id) == ("reentry", member, first.visitor_id)
    assert late.visit_started == first.visit_started
    assert late.recognised_late  # the daemon sends the arrival pop-up for it


# -- bodies, the entry line and the door ---------------------------------------------------------

@pytest.fixture
def door(tmp_path, bank, default_analyzer) -> Store:
    """A store whose door has two cameras, each with the rendered entry line."""
    cameras = [camera_settings(Clip(cam, at(0, 0), 1.0, (), door=DOOR_NAME), f"{cam}.avi")
               for cam in ("door-1", SECOND_CAMERA)]
    return Store(tmp_path, bank, default_analyzer, cameras=cameras)


def test_someone_seen_only_from_behind_is_one_visit_counted_unidentified(door, people):
    decisions = door.run(door.clip(at(10, 0), (people[10], door.bank.photos(people[10])[0]), facing="back"))
    assert [(d.kind, d.identified, d.member_id) for d in decisions] == [("visit", False, None)]


def test_people_walking_out_across_the_entry_line_are_exits_not_visits(door, people, bank):
    a, b = people[11], people[12]
    decisions = door.run(door.clip(at(10, 0), (a, bank.photos(a)[0]), (b, bank.photos(b)[0]),
                                   facing="back", direction="out"))
    assert kinds(decisions) == ["exit", "exit"]


def test_two_people_stepping_in_side_by_side_are_two_visits(door, people, bank):
    a, b = people[13], people[14]
    decisions = door.run(door.clip(at(10, 0), (a, bank.photos(a)[0]), (b, bank.photos(b)[0]),
                                   lanes=[0.35, 0.65], together=True))
    assert kinds(decisions) == ["visit", "visit"]
    assert decisions[0].visitor_id != decisions[1].visitor_id


def test_one_person_filmed_by_both_cameras_of_a_door_is_one_visit(door, people, bank):
    me = (people[15], bank.photos(people[15])[0])
    first = door.scene(at(10, 0), me)
    behind = door.scene(at(10, 30), me, facing="back")  # no face on either camera: joined by time and place
    decisions = door.run(door.render(first), door.render(second_view(first)),
                         door.render(behind), door.render(second_view(behind)))
    assert [(d.kind, d.identified) for d in decisions] == [("visit", True), ("visit", False)]


def test_two_people_stepping_in_together_on_both_cameras_of_a_door_stay_two_visits(door, people, bank):
    a, b = people[16], people[17]
    clip = door.scene(at(10, 0), (a, bank.photos(a)[0]), (b, bank.photos(b)[0]), lanes=[0.35, 0.65], together=True)
    decisions = door.run(door.render(clip), door.render(second_view(clip)))
    assert kinds(decisions) == ["visit", "visit"]
