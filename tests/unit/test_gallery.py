"""Specification of the gallery of members and staff, and of enrolment from photos.

A face is a person's when its best similarity to their vectors reaches the
threshold and leads every other person by the margin. Members need consent;
vectors of another dimension, length or model are refused with a message that
says which; erasure leaves no trace in the files.
"""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from footfall.dedup.enrol import embeddings_from_photos
from footfall.dedup.gallery import EnrolmentError, Gallery, Person
from footfall.recognition.images import pad_photo, read_image
from footfall.storage.sqlite import StorageError

DIM = 64
MODEL = "a" * 64
OTHER_MODEL = "b" * 64
THRESHOLD, MARGIN = 0.4, 0.1


def faces(n: int, seed: int = 0) -> np.ndarray:
    """n different people: orthonormal random vectors (distinctive bytes, similarity 0 to each other)."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((DIM, n)))
    return q.T.astype(np.float32)


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


def blend(face: np.ndarray, other: np.ndarray, similarity: float) -> np.ndarray:
    """A unit vector with exactly `similarity` to `face`, the rest along `other` (orthogonal to it)."""
    return unit(similarity * face + np.sqrt(1 - similarity**2) * other)


def between(a: np.ndarray, b: np.ndarray, sim_a: float, sim_b: float, rest: np.ndarray) -> np.ndarray:
    """A unit vector with similarity `sim_a` to a and `sim_b` to b (a, b, rest orthonormal)."""
    return unit(sim_a * a + sim_b * b + np.sqrt(1 - sim_a**2 - sim_b**2) * rest)


def member(person_id: str = "M-1001", **fields) -> Person:
    values: dict[str, Any] = {"person_id": person_id, "name": "Li Wei", "role": "member", "consent": True}
    return Person(**(values | fields))


def make_gallery(db_path: Path | None = None, **overrides) -> Gallery:
    options: dict[str, Any] = dict(dim=DIM, threshold=THRESHOLD, margin=MARGIN, model_sha256=MODEL, db_path=db_path)
    return Gallery(**(options | overrides))


@pytest.fixture
def people() -> np.ndarray:
    return faces(10)


@pytest.fixture
def gallery(people):
    g = make_gallery()
    g.enroll(member("M-1001"), np.stack([people[0], blend(people[0], people[9], 0.9)]))
    g.enroll(Person("S-7", "Zhang Min", "staff"), people[1:2])
    yield g
    g.close()


# -- matching ---------------------------------------------------------------------------

def test_an_enrolled_persons_face_matches_them_with_its_score(gallery, people):
    match = gallery.match(blend(people[0], people[8], 0.8))
    assert match is not None and match.person.person_id == "M-1001"
    assert match.score == pytest.approx(0.8, abs=1e-5)
    assert match.second_score == pytest.approx(0.0, abs=1e-5)
    assert gallery.match(people[1]).person.role == "staff"


def test_a_face_of_no_one_enrolled_matches_no_one(gallery, people):
    assert gallery.match(people[5]) is None


def test_a_match_needs_the_threshold(gallery, people):
    assert gallery.match(blend(people[0], people[8], THRESHOLD - 0.01)) is None
    assert gallery.match(blend(people[0], people[8], THRESHOLD + 0.01)).person.person_id == "M-1001"


def test_a_match_needs_a_margin_over_every_other_person(gallery, people):
    torn = between(people[0], people[1], 0.62, 0.58, people[8])  # too close to call
    assert gallery.match(torn) is None
    clear = between(people[0], people[1], 0.62, 0.45, people[8])
    match = gallery.match(clear)
    assert match.person.person_id == "M-1001"
    assert match.second_score == pytest.approx(0.45, abs=1e-5)


def test_a_person_with_no_rival_has_second_score_minus_one(people):
    with make_gallery() as g:
        g.enroll(member(), people[:1])
        assert g.match(people[0]).second_score == -1.0


def test_enrolling_again_replaces_the_persons_vectors(gallery, people):
    gallery.enroll(member("M-1001", tier="gold"), people[2:3])
    assert gallery.match(people[0]) is None
    match = gallery.match(people[2])
    assert match.person.tier == "gold"
    assert len(gallery) == 2


def test_people_are_listed_by_role(gallery):
    assert [p.person_id for p in gallery.people()] == ["M-1001", "S-7"]
    assert [p.person_id for p in gallery.people("staff")] == ["S-7"]
    assert gallery.get("S-7").name == "Zhang Min" and gallery.get("nobody") is None


def test_erasure_forgets_the_person(gallery, people):
    assert gallery.erase("M-1001") is True
    assert gallery.match(people[0]) is None
    assert gallery.get("M-1001") is None and len(gallery) == 1
    assert gallery.erase("M-1001") is False


# -- refusals ---------------------------------------------------------------------------

def test_a_member_without_consent_is_refused(people):
    with make_gallery() as g, pytest.raises(EnrolmentError, match="^member M-9: consent is required$"):
        g.enroll(member("M-9", consent=False), people[:1])
    assert len(g) == 0


def test_embeddings_of_the_wrong_dimension_are_refused_saying_expected_and_got(people):
    with make_gallery() as g, pytest.raises(EnrolmentError, match="must be 64-d .* got 128-d"):
        g.enroll(member(), np.ones((2, 128), dtype=np.float32) / np.sqrt(128))


def test_vectors_that_are_not_unit_length_are_refused_naming_the_row(people):
    with make_gallery() as g, pytest.raises(EnrolmentError, match="row 1 is not L2-normalised \\(norm 2.0000\\)"):
        g.enroll(member(), np.stack([people[0], 2 * people[1]]))


def test_non_finite_vectors_and_empty_lists_are_refused(people):
    broken = people[:2].copy()
    broken[1, 3] = np.nan
    with make_gallery() as g:
        with pytest.raises(EnrolmentError, match="row 1 has non-finite values"):
            g.enroll(member(), broken)
        with pytest.raises(EnrolmentError, match="no embeddings given"):
            g.enroll(member(), np.zeros((0, DIM), dtype=np.float32))


def test_embeddings_from_another_recognizer_are_refused_naming_both(people):
    with make_gallery() as g, pytest.raises(EnrolmentError, match=f"{OTHER_MODEL}.*{MODEL}"):
        g.enroll(member(), people[:1], model_sha256=OTHER_MODEL)


# -- persistence and privacy ------------------------------------------------------------

def raw(path: Path) -> bytes:
    """Everything SQLite keeps for a database: the main file and its WAL."""
    return b"".join(p.read_bytes() for p in (path, path.with_name(path.name + "-wal")) if p.exists())


def test_the_gallery_survives_a_restart(tmp_path, people):
    db = tmp_path / "gallery.db"
    consented = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)
    person = member(tier="gold", consent_at=consented,
                    profile={"last_purchase": "2026-10-02", "open_repairs": 1, "tags": ["vip", "茶"]})
    with make_gallery(db) as before:
        before.enroll(person, people[:2])
        before.enroll(Person("S-7", "Zhang Min", "staff"), people[2:3])
    with make_gallery(db) as after:
        assert len(after) == 2
        assert after.get("M-1001") == person
        assert after.match(people[1]).person == person
        assert after.match(people[2]).person.role == "staff"


def test_erasure_leaves_no_trace_of_the_member_in_the_files(tmp_path, people):
    db = tmp_path / "gallery.db"
    with make_gallery(db) as g:
        g.enroll(member("M-ERASE-4711", name="Wang Fang"), people[:3])
        g.enroll(member("M-KEEP-0815"), people[3:4])
        assert people[0].tobytes() in raw(db)  # the check can see them
        g.erase("M-ERASE-4711")
        leftovers = raw(db)
    assert b"M-ERASE-4711" not in leftovers and b"Wang Fang" not in leftovers
    assert not any(v.tobytes() in leftovers for v in people[:3])
    assert people[3].tobytes() in raw(db)


def test_replaced_vectors_leave_the_files(tmp_path, people):
    db = tmp_path / "gallery.db"
    with make_gallery(db) as g:
        g.enroll(member(), people[:2])
        g.enroll(member(), people[2:3])
        assert not any(v.tobytes() in raw(db) for v in people[:2])


def test_vectors_made_by_another_recognizer_are_not_loaded(tmp_path, people):
    db = tmp_path / "gallery.db"
    with make_gallery(db) as g:
        g.enroll(member(), people[:1])
    with pytest.raises(StorageError, match=f"gallery.db.*{MODEL}.*{OTHER_MODEL}"):
        make_gallery(db, model_sha256=OTHER_MODEL)


def test_the_gallery_file_is_private(tmp_path, people):
    db = tmp_path / "gallery.db"
    with make_gallery(db) as g:
        g.enroll(member(), people[:1])
        assert stat.S_IMODE(os.stat(db).st_mode) == 0o600


# -- the real path: photos -> embeddings -> gallery -> match ----------------------------------

ENROLLED = {"obama": ["1.jpg", "2.jpg"], "bbt_amy": ["1.jpg", "2.jpg"]}


def photos(faces_dir: Path, identity: str, names: list[str]) -> list[tuple[str, np.ndarray]]:
    return [(f"{identity}/{n}", read_image(faces_dir / identity / n)) for n in names]


def test_people_enrolled_from_photos_are_recognised_in_new_photos(default_analyzer, faces_dir):
    pack = default_analyzer.pack
    with Gallery(dim=pack.recognizer.embedding_dim, threshold=pack.match_threshold, margin=0.05,
                 model_sha256=pack.recognizer.sha256, db_path=None) as gallery:
        for identity, names in ENROLLED.items():
            vectors = embeddings_from_photos(default_analyzer, photos(faces_dir, identity, names))
            assert vectors.shape == (1, pack.recognizer.embedding_dim)  # one template from both photos
            gallery.enroll(member(identity, name=identity), vectors)

        for identity in ENROLLED:
            probe = embeddings_from_photos(default_analyzer, photos(faces_dir, identity, ["3.jpg"]))[0]
            match = gallery.match(probe)
            assert match is not None and match.person.person_id == identity, identity
        stranger = embeddings_from_photos(default_analyzer, photos(faces_dir, "kit_harington", ["1.jpg"]))[0]
        assert gallery.match(stranger) is None


def test_a_photo_with_several_faces_is_refused_naming_it(default_analyzer, scenes_dir):
    image = read_image(scenes_dir / "two_people.jpg")
    with pytest.raises(EnrolmentError, match="^no usable photo: two_people.jpg: 2 faces found; enrolment needs a photo of one person$"):
        embeddings_from_photos(default_analyzer, [("two_people.jpg", image)])


def test_a_photo_without_a_face_is_refused_naming_it(default_analyzer):
    grey = np.full((480, 640, 3), 128, dtype=np.uint8)
    with pytest.raises(EnrolmentError, match="^no usable photo: wall.jpg: no face found$"):
        embeddings_from_photos(default_analyzer, [("wall.jpg", grey)])


def test_a_photo_with_only_bystanders_behind_the_person_is_enrolled(default_analyzer, faces_dir):
    """faces/biden/2.jpg shows Biden and faint background faces that fail the quality gate."""
    image = read_image(faces_dir / "biden" / "2.jpg")
    faces = default_analyzer.analyze(pad_photo(image))
    assert len(faces) >= 2 and sum(f.quality.passed for f in faces) == 1
    vectors = embeddings_from_photos(default_analyzer, [("biden/2.jpg", image)])
    assert vectors.shape == (1, default_analyzer.embedder.dim)


def test_a_member_is_enrolled_from_every_usable_photo_and_each_unusable_one_is_named(default_analyzer, faces_dir,
                                                                                    scenes_dir):
    from footfall.dedup.enrol import enrol_photos

    grey = np.full((480, 640, 3), 128, dtype=np.uint8)
    good = photos(faces_dir, "obama", ["1.jpg", "2.jpg"])
    enrolment = enrol_photos(default_analyzer, [good[0], ("wall.jpg", grey),
                                                ("two.jpg", read_image(scenes_dir / "two_people.jpg")), good[1]])
    assert enrolment.used == [good[0][0], good[1][0]]
    assert enrolment.rejected == [("wall.jpg", "no face found"),
                                  ("two.jpg", "2 faces found; enrolment needs a photo of one person")]
    assert enrolment.template.shape == (1, default_analyzer.embedder.dim)
    assert abs(float(np.linalg.norm(enrolment.template)) - 1.0) < 1e-4
