"""`footfall render`: a test entrance clip that a box replays with `footfall run --once` and counts
as the command said it would; absurd clips are refused naming the option."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from support.broker import Broker, Subscriber, wait_until

from footfall.cli.main import main

START = "2026-11-23T10:00:00+08:00"


def footfall(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "footfall", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


@pytest.mark.parametrize("with_faces", [False, True], ids=["no-faces", "faces"])
def test_a_rendered_clip_is_counted_by_footfall_run_once_as_render_says(tmp_path, faces_dir, with_faces):
    broker = Broker(tmp_path / "broker").start()
    try:
        clip = tmp_path / "door.avi"
        faces = ["--faces", str(faces_dir)] if with_faces else []
        made = footfall("render", str(clip), "--seconds", "14", "--people", "3", "--resolution", "360p",
                        "--start", START, *faces)
        assert made.returncode == 0, made.stderr
        said = made.stdout
        assert said.startswith(f"wrote {clip}: 14 s of 640x360 at 10 frames/s, 3 people walking in: ")
        behind = 1 if with_faces else 3
        assert f"a box replaying it counts 3 visits, {behind} of them unidentified" in said
        config = tmp_path / "footfall.toml"
        config.write_text(f'store_id = "try-render"\ntimezone = "Asia/Shanghai"\n'
                          f'[mqtt]\nurl = "{broker.url}"\n[storage]\ndir = "{tmp_path / "state"}"\n'
                          + said[said.index("[[cameras]]"):])
        visits = Subscriber(broker.port, "footfall/try-render/visits")
        ran = footfall("run", "--config", str(config), "--once")
        assert ran.returncode == 0, ran.stdout + ran.stderr
        wait_until(lambda: len(visits.messages) >= 3, 10, "the clip's three visits")
        got = [m.payload for m in visits.messages]
        assert [v["kind"] for v in got] == ["visit"] * 3
        assert sum(not v["identified"] for v in got) == behind
        start = datetime.fromisoformat(START)
        assert all(start <= datetime.fromisoformat(v["first_seen_ts"]) < start + timedelta(seconds=14) for v in got)
    finally:
        broker.stop()


@pytest.mark.parametrize("args, named", [
    (["--seconds", "601"], "--seconds: 601 is outside 5 to 600"),
    (["--seconds", "nan"], "--seconds: nan is outside"),
    (["--people", "0"], "--people: 0 is less than 1"),
    (["--seconds", "10", "--people", "3"], "--people: 3 do not fit in --seconds 10: at most 2"),
    (["--fps", "120"], "--fps: 120 is outside 5 to 30"),
    (["--seconds", "600", "--fps", "30"], "--seconds 600 at --fps 30 is 18000 frames, more than 6000"),
    (["--resolution", "7680x4320"], "--resolution: 7680x4320 is outside 320x240 to 1920x1080"),
    (["--resolution", "huge"], "--resolution: expected 360p, 540p, 720p, 1080p or WIDTHxHEIGHT, got 'huge'"),
    (["--start", "2026-11-23T10:00:00"], "--start must carry a UTC offset"),
    (["--faces", "no-such-folder"], "--faces: no-such-folder: not a directory"),
])
def test_render_refuses_an_absurd_clip_naming_the_option_and_writes_nothing(tmp_path, capsys, args, named):
    clip = tmp_path / "door.avi"
    assert main(["render", str(clip), *args]) == 1
    assert named in capsys.readouterr().err
    assert not clip.exists()


def test_render_writes_only_an_avi_into_an_existing_folder(tmp_path, capsys):
    assert main(["render", str(tmp_path / "door.mp4")]) == 1
    assert "give a path ending in .avi" in capsys.readouterr().err
    assert main(["render", str(tmp_path / "missing" / "door.avi")]) == 1
    assert f"the folder {tmp_path / 'missing'} does not exist" in capsys.readouterr().err
    assert not any(Path(tmp_path).rglob("door.*"))


def test_by_default_the_clip_ends_now_so_its_visits_are_today_s(tmp_path, capsys):
    clip = tmp_path / "door.avi"
    assert main(["render", str(clip), "--seconds", "5", "--people", "1", "--resolution", "360p"]) == 0
    start = re.search(r'^start_time = "(.+)"$', capsys.readouterr().out, re.MULTILINE)
    assert start, "the camera table names the clip's start_time"
    ends = datetime.fromisoformat(start.group(1)) + timedelta(seconds=5)
    assert abs((datetime.now(ends.tzinfo) - ends).total_seconds()) < 30
    assert clip.stat().st_size > 0
