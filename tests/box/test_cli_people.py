"""`footfall enroll` and `footfall erase`: people on the box, with consent, and gone without trace."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

from footfall.config.schema import load_config
from footfall.edge.store import open_gallery
from footfall.recognition.analyzer import FaceAnalyzer


def footfall(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "footfall", *args], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ), cwd=cwd)


def write_config(tmp_path) -> str:
    path = tmp_path / "footfall.toml"
    path.write_text(f'store_id = "sh-001"\ntimezone = "Asia/Shanghai"\n[storage]\ndir = "{tmp_path / "state"}"\n')
    return str(path)


def test_a_member_is_enrolled_from_photos_only_with_consent(tmp_path, faces_dir):
    config = write_config(tmp_path)
    photos = [str(faces_dir / "obama" / n) for n in ("1.jpg", "2.jpg")]
    refused = footfall("enroll", "--config", config, "--member-id", "m-1", "--name", "Barack", *photos)
    assert refused.returncode == 1 and "consent is required" in refused.stderr
    done = footfall("enroll", "--config", config, "--member-id", "m-1", "--name", "Barack", "--tier", "gold",
                    "--consent", *photos)
    assert done.returncode == 0, done.stderr
    assert "enrolled m-1 (member, gold) from 2 of 2 photo(s); 1 people enrolled" in done.stdout
    cfg = load_config(config)
    gallery = open_gallery(cfg, FaceAnalyzer.from_config(cfg))
    try:
        person = gallery.get("m-1")
        assert person.consent and person.consent_at is not None and person.tier == "gold"
    finally:
        gallery.close()


def test_a_photo_that_is_not_an_image_or_shows_two_people_is_refused_by_name(tmp_path, scenes_dir):
    config = write_config(tmp_path)
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"\x00" * 100)
    done = footfall("enroll", "--config", config, "--member-id", "s-1", "--name", "S", "--role", "staff", str(junk))
    assert done.returncode == 1 and "junk.jpg" in done.stderr and "not a decodable image" in done.stderr
    two = str(scenes_dir / "two_people.jpg")
    done = footfall("enroll", "--config", config, "--member-id", "s-1", "--name", "S", "--role", "staff", two)
    assert done.returncode == 1 and "two_people.jpg: 2 faces found" in done.stderr


def test_erase_removes_every_trace_from_the_gallery_file(tmp_path, faces_dir):
    config = write_config(tmp_path)
    photos = [str(faces_dir / "obama" / "1.jpg")]
    assert footfall("enroll", "--config", config, "--member-id", "member-4711", "--name", "B", "--consent",
                    *photos).returncode == 0
    db = tmp_path / "state" / "gallery.db"
    with sqlite3.connect(db) as con:
        (vector,) = con.execute("SELECT vector FROM person_vectors WHERE person_id = 'member-4711'").fetchone()
    con.close()
    assert len(vector) == 512 * 4
    done = footfall("erase", "--config", config, "--member-id", "member-4711")
    assert done.returncode == 0, done.stderr
    assert "erased member-4711: removed from gallery" in done.stdout
    raw = {p.name: p.read_bytes() for p in (tmp_path / "state").iterdir() if p.is_file()}
    # The one copy of the id left: the members/deleted notice for head office, queued in the outbox.
    assert [name for name, data in raw.items() if b"member-4711" in data] == ["outbox.db"]
    assert raw["outbox.db"].count(b"member-4711") == 1
    assert all(vector not in data for data in raw.values())
