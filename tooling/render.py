"""`footfall render`: a test entrance clip, to try a box (or a config) without a camera.

People walk in through the door of the rendered entrance one after another, in two lanes. With
a folder of labelled photos (`<person>/<photo>`, as the benchmarks take), most of them face the
camera with a face from the folder and every third one is seen from behind; without one, nobody
has a face: everyone is seen from behind (counted as an unidentified visit). The clip is written
where the caller asks, and the camera entry that replays it is printed for the config.

A clip made from a photo folder holds those faces: it is a test fixture for the operator's own
machine, never something the store pipeline writes.
"""

from __future__ import annotations

import json
import math
import re
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from footfall.config.schema import Config, parse_config
from footfall.recognition.analyzer import FaceAnalyzer
from footfall.recognition.images import ImageError
from footfall.tooling.scenario import (
    CAMERA,
    WALK_S,
    Appearance,
    Clip,
    Facing,
    Sprite,
    SpriteBank,
    camera_settings,
    render_clip,
)

RESOLUTIONS = {"360p": (640, 360), "540p": (960, 540), "720p": (1280, 720), "1080p": (1920, 1080)}
SECONDS = (5.0, 600.0)
FPS = (5.0, 30.0)
# The camera table analyses up to 10 frames/s of the clip: at 5, a walker seen from behind whose
# detection in the door is missed once is tracked only past the entry line, and not counted
# (measured: 8 and 9 of 10 such walkers with one every 3 or 4 s; 10 of 10 at 10 frames/s).
ANALYSED_FPS = 10.0
WIDTH, HEIGHT = (320, 1920), (240, 1080)
# A 10-minute clip at 10 frames/s. Measured: 600 frames of 1080p in 11 s and 82 MB (540p: 4 s), so
# the largest clip allowed takes about 2 minutes and 0.8 GB.
MAX_FRAMES = 6000
GAP_S = 4.0  # one walker enters every GAP_S seconds, lanes alternating: one in the frame at a time
LANES = (0.3, 0.7)
BACK_EVERY = 3  # with photos, every third walker is seen from behind
SKIN = [(95, 130, 175), (120, 160, 205), (70, 100, 140), (140, 175, 215), (60, 85, 120)]  # BGR


class RenderError(ValueError):
    """A request that cannot be rendered; the message names the option."""


@dataclass(frozen=True)
class Rendered:
    """What was written: the clip, its file, and the counts a box should make of it."""

    clip: Clip
    path: Path
    facing: int  # walkers showing a face from the photo folder
    from_behind: int  # walkers seen from behind: unidentified visits

    @property
    def people(self) -> int:
        return self.facing + self.from_behind

    def summary(self) -> str:
        """What was written, what a box should count, and the camera table for the config."""
        width, height = self.clip.size
        who = (f"{self.facing} facing the camera, {self.from_behind} seen from behind" if self.facing
               else "all seen from behind (no --faces)")
        return (f"wrote {self.path}: {self.clip.duration:g} s of {width}x{height} at {self.clip.fps:g} frames/s, "
                f"{self.people} people walking in: {who}\n"
                f"a box replaying it counts {self.people} visits, {self.from_behind} of them unidentified "
                f"(no face seen), and no re-entry\n"
                f"the camera for the config (footfall run --config PATH --once replays it):\n\n"
                + self.camera_toml())

    def camera_toml(self) -> str:
        """The `[[cameras]]` table that replays the clip (its entry line, `start_time`, `fps`)."""
        settings = {k: v for k, v in camera_settings(self.clip, self.path.resolve()).items() if v is not None}
        settings["fps"] = min(ANALYSED_FPS, self.clip.fps)
        return "[[cameras]]\n" + "".join(f"{key} = {_toml(value)}\n" for key, value in settings.items())


def _toml(value: object) -> str:
    """A TOML value for a string, a number or a list of numbers (JSON's spelling is TOML's for these)."""
    return json.dumps(value)


def parse_resolution(text: str) -> tuple[int, int]:
    """(width, height) of "720p" or "WIDTHxHEIGHT"; RenderError naming --resolution otherwise."""
    named = RESOLUTIONS.get(text.strip().lower())
    if named is not None:
        return named
    m = re.fullmatch(r"\s*(\d{1,5})\s*[xX]\s*(\d{1,5})\s*", text)
    if m is None:
        raise RenderError(f"--resolution: expected {', '.join(RESOLUTIONS)} or WIDTHxHEIGHT, got {text!r}")
    width, height = int(m.group(1)), int(m.group(2))
    if not (WIDTH[0] <= width <= WIDTH[1] and HEIGHT[0] <= height <= HEIGHT[1]):
        raise RenderError(f"--resolution: {width}x{height} is outside {WIDTH[0]}x{HEIGHT[0]} to "
                          f"{WIDTH[1]}x{HEIGHT[1]}")
    return width, height


def most_people(seconds: float) -> int:
    """The most walkers a clip of `seconds` holds: one every GAP_S, the last one gone before the end."""
    return max(0, math.floor((seconds - WALK_S - 1.0) / GAP_S) + 1)


def check_request(seconds: float, people: int, fps: float, size: tuple[int, int]) -> None:
    """RenderError naming the option when the clip would be absurd (too long, too crowded, too many frames)."""
    if not (math.isfinite(seconds) and SECONDS[0] <= seconds <= SECONDS[1]):
        raise RenderError(f"--seconds: {seconds:g} is outside {SECONDS[0]:g} to {SECONDS[1]:g}")
    if not (math.isfinite(fps) and FPS[0] <= fps <= FPS[1]):
        raise RenderError(f"--fps: {fps:g} is outside {FPS[0]:g} to {FPS[1]:g}")
    if people < 1:
        raise RenderError(f"--people: {people} is less than 1")
    if people > most_people(seconds):
        raise RenderError(f"--people: {people} do not fit in --seconds {seconds:g}: at most {most_people(seconds)} "
                          f"(one every {GAP_S:g} s, each walk {WALK_S:g} s)")
    frames = round(seconds * fps)
    if frames > MAX_FRAMES:
        raise RenderError(f"--seconds {seconds:g} at --fps {fps:g} is {frames} frames, more than {MAX_FRAMES}; "
                          f"lower one of them")
    parse_resolution(f"{size[0]}x{size[1]}")


class FacelessBank(SpriteBank):
    """Walkers without a photo: only ever seen from behind, so no face is drawn; the skin of the
    neck and hands and the hair take a tone chosen per walker, the clothes as for anyone."""

    def __init__(self) -> None:
        # No photo folder and no face detector: every cut-out is made here, none is read.
        self.faces_dir = Path(".")
        self._sprites: dict[tuple[str, str], Sprite] = {}
        self._bodies = {}

    def identities(self) -> list[str]:
        return []

    def photos(self, identity: str) -> list[str]:
        return ["-"]

    def sprite(self, identity: str, photo: str) -> Sprite:
        key = (identity, photo)
        if key not in self._sprites:
            b, g, r = SKIN[zlib.crc32(identity.encode()) % len(SKIN)]
            image = np.empty((120, 100, 3), np.uint8)
            image[:] = (b, g, r)
            face = np.array([25.0, 30.0, 75.0, 90.0], np.float32)
            alpha = np.zeros(image.shape[:2], np.float32)
            for a in (image, alpha, face):
                a.setflags(write=False)
            self._sprites[key] = Sprite(identity, photo, image, alpha, face)
        return self._sprites[key]


def faces_to_show(bank: SpriteBank, wanted: int) -> list[tuple[str, str]]:
    """(person, photo) for up to `wanted` different people of the folder, each the first photo the
    face detector finds a face in; people with no such photo are passed over."""
    chosen: list[tuple[str, str]] = []
    for identity in bank.identities():
        if len(chosen) == wanted:
            break
        for photo in bank.photos(identity):
            try:
                bank.sprite(identity, photo)
            except ImageError:
                continue
            chosen.append((identity, photo))
            break
    return chosen


def plan(people: int, faces: list[tuple[str, str]]) -> list[Appearance]:
    """Who walks in when: one every GAP_S seconds in alternating lanes. With photos, each walker
    shows a face of another person of the folder, except every BACK_EVERY-th one and those past
    the folder's people, who are seen from behind (their clothes still come from a photo)."""
    walkers: list[Appearance] = []
    unused = list(faces)
    facing: Facing
    for i in range(people):
        if unused and (i + 1) % BACK_EVERY:
            (identity, photo), facing = unused.pop(0), "front"
        elif faces:
            (identity, photo), facing = faces[i % len(faces)], "back"
        else:
            (identity, photo), facing = (f"walker-{i}", "-"), "back"
        walkers.append(Appearance(identity, photo, enter_at=0.5 + GAP_S * i, walk=WALK_S,
                                  lane=LANES[i % len(LANES)], facing=facing))
    return walkers


def render(out: Path, *, seconds: float, people: int, fps: float, size: tuple[int, int],
           start: datetime | None = None, faces_dir: Path | None = None, config: Config | None = None) -> Rendered:
    """Write the clip to `out` (.avi, MJPG); RenderError naming the option for a bad request.

    `start` is the wall-clock time of the first frame; by default the clip ends now, so a replay's
    visits are in today's counts at once.

    With `faces_dir`, the faces are cut out of its photos with the face detector of `config`
    (default: the shipped pack), loaded only once the request has been checked.
    """
    check_request(seconds, people, fps, size)
    out = Path(out)
    if out.suffix.lower() != ".avi":
        raise RenderError(f"{out}: the clip is written as MJPG in .avi: give a path ending in .avi")
    if not out.parent.is_dir():
        raise RenderError(f"{out}: the folder {out.parent} does not exist")
    if start is None:
        start = datetime.now().astimezone().replace(microsecond=0) - timedelta(seconds=round(seconds))
    if start.tzinfo is None or start.utcoffset() is None:
        raise RenderError(f"--start: {start.isoformat()} carries no UTC offset (e.g. 2026-11-23T10:00:00+08:00)")
    bank: SpriteBank = FacelessBank()
    faces: list[tuple[str, str]] = []
    if faces_dir is not None:
        try:
            bank = SpriteBank(faces_dir, FaceAnalyzer.from_config(config or parse_config({})))
        except FileNotFoundError as exc:
            raise RenderError(f"--faces: {exc}") from None
        faces = faces_to_show(bank, people)
        if not faces:
            raise RenderError(f"--faces: {faces_dir} holds no <person>/<photo> with a face the detector finds")
    walkers = plan(people, faces)
    clip = Clip(CAMERA, start, seconds, tuple(walkers), fps=fps, size=size)
    render_clip(clip, out, bank)
    facing = sum(w.facing == "front" for w in walkers)
    return Rendered(clip, out, facing, people - facing)
