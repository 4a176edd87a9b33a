"""Synthetic entrance videos built from real labelled photos: test fixtures and benchmark input.

A clip is a fixed entrance scene (floor, a door near the top centre, static texture, sensor
noise) through which people walk. Each appearance is a whole person: a body drawn with shaded
clothes, arms and legs in a walking cycle, and at its head the face cut out of a real labelled
photo (or, seen from behind, the back of a head). Walking in, the person stands in the door,
small and whole, comes towards the camera (the legs leave the frame at the bottom first) and
leaves the frame at the bottom; walking out is the same way backwards. Every frame's face and
person boxes are known (`placements`), so detectors, trackers and the visit logic can be scored
against ground truth.

The videos contain real faces: they are fixtures, written only where the caller asks (a
temporary folder), never by the store pipeline.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

import cv2
import numpy as np

from footfall.dedup.enrol import embeddings_from_photos
from footfall.dedup.gallery import Person
from footfall.edge.sources import FileSource
from footfall.recognition.analyzer import FaceAnalyzer
from footfall.recognition.evaluation import IMAGE_SUFFIXES
from footfall.recognition.images import ImageError, pad_photo, read_image

Facing = Literal["front", "back"]
Direction = Literal["in", "out"]

REFERENCE_HEIGHT = 540  # the face sizes below are for a 540-px-high frame and scale with the height
# A standing person is about 11 face widths tall, so a face much wider than 30 px in the door
# would put the feet below the frame: at the door the whole body stands on the floor.
FACE_AT_DOOR_PX = 30.0
FACE_NEAREST_PX = 150.0
EXIT_GROWTH = 0.1  # the face grows this much more while it leaves through the bottom edge
SLOWING_DOWN = 1.0  # the walk is twice the mean speed through the door, slowing to a halt when nearest
APPROACH = 0.8  # share of the walk spent approaching; the rest is leaving through the bottom edge
FACE_Y_AT_DOOR = 0.09  # face centre height at the door, as a fraction of the frame height
FACE_Y_NEAREST = 0.78  # ... and when nearest, with the face still whole in the frame
LANE_SPREAD = (0.26, 0.8)  # width the lanes 0..1 span at the door and nearest, in frame widths

MARGIN = 0.6  # cut-out margin around the face box, in face-box sizes, on each side
EDGE_BLEND = 0.12  # where a photo ends inside the margin, it fades over this share of the face width
HEAD_MASK = (0.62, 0.65, 0.55)  # head mask half-width, half-height (face box sizes), centre above the chin
FEATHER = 0.35  # outer share of the head mask over which it fades to transparent
SPRITE_FACE_PX = 200  # cut-outs are stored with faces no wider than this (downscaled once)

# Bodies, in head units: one unit is HEAD_UNIT face-box widths (a typical face box height);
# y runs down from the chin, x right from the face centre.
HEAD_UNIT = 1.35
CROWN_Y, SOLES_Y = -1.2, 7.2  # top of the head and soles: 7 head heights, a camera looking down
BODY_HALF_WIDTH = 1.3  # outer edge of the arms
BODY_FACE_PX = 32  # body drawings are stored for this face width and scaled per frame
SUPERSAMPLE = 2  # bodies are drawn this many times larger and shrunk: smooth outlines
WALK_PHASES = 8  # drawn poses per walking cycle
STRIDE_S = 1.0  # seconds per walking cycle (two steps)
FABRIC_GRAIN = 0.1  # relative brightness swing of the clothes' texture

DOOR = (0.37, 0.0, 0.63, 0.66)  # door opening (x1, y1, x2, y2) in fractions of the frame; its top is cut
VANISHING_Y = 0.3  # eye level: where the floor lines meet, as a fraction of the frame height

LIGHT_SWING = 0.15  # brightness varies by up to this fraction over a slow cycle
LIGHT_PERIOD_S = (20.0, 40.0)
NOISE_SIGMA = 2.5  # sensor noise, grey levels
NOISE_FIELDS = 2  # pre-drawn noise fields; each frame takes one at a random offset
NOISE_SLACK = 16  # extra rows/columns in each field, for the offsets
BLUR_SHARE = 0.3  # share of frames in which moving people are motion-blurred
BLUR_LENGTHS = (3, 5)  # vertical motion-blur kernel lengths, px
# An unusable face: Gaussian blur of this share of the face width (at least the minimum, px).
# Measured on 12 labelled photos at entrance size: sigma 4 px is still detected (11 of 12) and
# refused by the gate in every one; sigma 1.5 px lets 7 of 12 through.
UNUSABLE_BLUR_SHARE, UNUSABLE_BLUR_MIN = 0.15, 7.0
UNUSABLE_CONTRAST = 0.5
UNUSABLE_HEAD = (1.05, 1.0, 0.6)  # the blurred head region (head_mask axes): face, hair and outline
JPEG_QUALITY = 80  # for OpenCV's own MJPEG writer; FFmpeg's keeps its default


class UnknownPhotoError(LookupError):
    """An identity or photo name that is not in the labelled photo folder."""


@dataclass(frozen=True)
class Appearance:
    """One person walking through the door: which photo, when, how fast, where and which way."""

    identity: str  # folder name under faces_dir
    photo: str  # file name inside the identity folder, e.g. "3.jpg"
    enter_at: float  # seconds from the clip start when the person appears (in the door, or at the bottom)
    walk: float = 3.0  # seconds from appearing to having left the frame
    lane: float = 0.5  # horizontal position 0..1 across the frame
    # The face is found but never usable: blurred in every frame beyond what the quality gate
    # accepts. It stands for a head turned away from the camera (the gate refuses every shot).
    face_unusable: bool = False
    # "back": seen from behind the whole walk, the back of the head and no face anywhere.
    facing: Facing = "front"
    # "in": from the door towards the camera; "out": from the camera away through the door.
    direction: Direction = "in"

    def __post_init__(self) -> None:
        if not self.identity or not self.photo:
            raise ValueError(f"appearance needs an identity and a photo, got {self.identity!r}/{self.photo!r}")
        if not (math.isfinite(self.walk) and self.walk > 0):
            raise ValueError(f"{self.identity}/{self.photo}: walk must be > 0 s, got {self.walk}")
        if not 0.0 <= self.lane <= 1.0:
            raise ValueError(f"{self.identity}/{self.photo}: lane must be within 0..1, got {self.lane}")
        if not math.isfinite(self.enter_at):
            raise ValueError(f"{self.identity}/{self.photo}: enter_at must be finite, got {self.enter_at}")
        if self.facing not in ("front", "back"):
            raise ValueError(f"{self.identity}/{self.photo}: facing must be 'front' or 'back', got {self.facing!r}")
        if self.direction not in ("in", "out"):
            raise ValueError(f"{self.identity}/{self.photo}: direction must be 'in' or 'out', got {self.direction!r}")

    @property
    def leave_at(self) -> float:
        """Seconds from the clip start when the person has left the frame."""
        return self.enter_at + self.walk

    def progress(self, t: float) -> float | None:
        """Share 0..1 of the walk done at media time `t`, or None when not in the frame."""
        p = (t - self.enter_at) / self.walk
        return p if 0.0 <= p < 1.0 else None

    def course(self, progress: float) -> float:
        """Position along the path door -> camera -> gone below (0..1) at a share of the walk."""
        return progress if self.direction == "in" else 1.0 - progress


@dataclass(frozen=True)
class Clip:
    """A short video of one entrance camera; frame i is at media time i / fps."""

    camera_id: str
    start_time: datetime  # timezone-aware wall-clock time of the first frame
    duration: float  # seconds
    appearances: tuple[Appearance, ...]
    fps: float = 10.0
    size: tuple[int, int] = (960, 540)  # (width, height)
    door: str | None = None  # the door this camera watches; cameras of one door see the same people

    def __post_init__(self) -> None:
        if self.start_time.tzinfo is None or self.start_time.utcoffset() is None:
            raise ValueError(f"clip {self.camera_id}: start_time must be timezone-aware, got {self.start_time}")
        if not (math.isfinite(self.duration) and self.duration > 0):
            raise ValueError(f"clip {self.camera_id}: duration must be > 0 s, got {self.duration}")
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"clip {self.camera_id}: fps must be > 0, got {self.fps}")
        if len(self.size) != 2 or min(self.size) < 64:
            raise ValueError(f"clip {self.camera_id}: size must be (width, height) of at least 64 px, got {self.size}")
        object.__setattr__(self, "appearances", tuple(self.appearances))
        object.__setattr__(self, "size", (int(self.size[0]), int(self.size[1])))

    @property
    def frame_count(self) -> int:
        return round(self.duration * self.fps)

    def media_time(self, index: int) -> float:
        """Seconds from the clip start of frame `index`."""
        return index / self.fps

    def wall_time(self, index: int) -> datetime:
        """Wall-clock time of frame `index`."""
        return self.start_time + timedelta(seconds=self.media_time(index))


@dataclass(frozen=True, eq=False)
class Sprite:
    """A face cut-out: colour, soft alpha mask over the face and the face box inside it."""

    identity: str
    photo: str
    image: np.ndarray = field(repr=False)  # BGR uint8
    alpha: np.ndarray = field(repr=False)  # float32 0..1, same height and width as image
    face: np.ndarray  # face box (x1, y1, x2, y2) in cut-out pixels

    @property
    def face_width(self) -> float:
        return float(self.face[2] - self.face[0])


@dataclass(frozen=True, eq=False)
class Body:
    """One pose of a drawn body, premultiplied BGRA, with its chin point and face width."""

    image: np.ndarray = field(repr=False)  # uint8 (h, w, 4): colour premultiplied by alpha, alpha
    chin: tuple[float, float]  # where the face box's bottom centre goes, in body pixels
    face_width: float  # the face box width the body is drawn for, px


@dataclass(frozen=True)
class Placement:
    """Where one appearance is in one frame: the ground truth for that frame."""

    appearance: Appearance
    index: int  # position of the appearance in the clip's appearances
    progress: float  # 0..1 along the walk
    scale: float  # cut-out pixels -> frame pixels
    origin: tuple[int, int]  # top-left corner of the scaled cut-out in the frame
    size: tuple[int, int]  # (width, height) of the scaled cut-out
    face: tuple[float, float, float, float]  # face box in frame pixels (hidden when facing back); may reach beyond the frame
    person: tuple[float, float, float, float]  # the whole person, crown to soles, in frame pixels; may reach beyond
    frame_size: tuple[int, int]  # (width, height) of the frame
    pose: int = 0  # which of the WALK_PHASES poses the body is drawn in

    @property
    def face_width(self) -> float:
        return self.face[2] - self.face[0]

    @property
    def face_visible(self) -> bool:
        """Whether a face is drawn at all (not when the person is seen from behind)."""
        return self.appearance.facing == "front"

    @property
    def bounds(self) -> tuple[int, int, int, int]:
        """The scaled cut-out's box (x1, y1, x2, y2) in frame pixels; may reach beyond the frame."""
        return (self.origin[0], self.origin[1], self.origin[0] + self.size[0], self.origin[1] + self.size[1])

    @property
    def seen_person(self) -> tuple[float, float, float, float]:
        """The person box clipped to the frame: what a person detector can box."""
        w, h = self.frame_size
        x1, y1, x2, y2 = self.person
        return (max(0.0, x1), max(0.0, y1), min(float(w), x2), min(float(h), y2))

    @property
    def feet(self) -> tuple[float, float]:
        """Bottom centre of the seen person box, in frame pixels (on the bottom edge once the legs leave)."""
        x1, _, x2, y2 = self.seen_person
        return ((x1 + x2) / 2, y2)

    @property
    def visible_share(self) -> float:
        """Share of the person's height inside the frame."""
        _, y1, _, y2 = self.seen_person
        return max(0.0, y2 - y1) / (self.person[3] - self.person[1])


# --- face cut-outs ------------------------------------------------------------------------------


def head_mask(shape: tuple[int, int], face: np.ndarray,
              axes: tuple[float, float, float] = HEAD_MASK) -> np.ndarray:
    """Alpha 0..1 over the face: an ellipse from the hairline to below the chin, feathered at its rim.

    It keeps the face and little else of the photo: the drawn head, hair and neck surround it.
    `axes` are the half-width and half-height in face box sizes and the centre's height above the chin.
    """
    h, w = shape
    x1, y1, x2, y2 = (float(v) for v in face)
    fw, fh = x2 - x1, y2 - y1
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    r = np.hypot((xs - (x1 + x2) / 2) / (axes[0] * fw), (ys - (y2 - axes[2] * fh)) / (axes[1] * fh))
    a = np.clip((1.0 - r) / FEATHER, 0.0, 1.0)
    return (a * a * (3 - 2 * a)).astype(np.float32)  # smoothstep: no visible ramp boundary


def extend_photo(image: np.ndarray, left: int, top: int, right: int, bottom: int, face_px: float) -> np.ndarray:
    """The photo grown by the given borders, filled with a smooth extrapolation of its edges.

    Tight face crops end before the cut-out margin does; a cut mask would shave the cheeks and
    crown off the face. The fill is a normalised convolution (blurred colours / blurred
    coverage): out-of-focus surroundings with no streaks, into which the photo fades.
    """
    if max(left, top, right, bottom) <= 0:
        return image
    h, w = image.shape[:2]
    grown = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    inside = np.zeros(grown.shape[:2], np.float32)
    inside[top:top + h, left:left + w] = 1.0
    sigma = 0.4 * face_px
    colours = cv2.GaussianBlur(grown.astype(np.float32), (0, 0), sigma)
    coverage = cv2.GaussianBlur(inside, (0, 0), sigma)[..., None]
    fill = colours / np.maximum(coverage, 1e-6)
    fill[coverage[..., 0] < 1e-6] = image.reshape(-1, 3).mean(axis=0)
    # fade the photo into the fill over a band inside its extended edges only (the distance
    # is to the nearest border pixel; the grown image's own outline does not count)
    inward = cv2.distanceTransform(inside.astype(np.uint8), cv2.DIST_L2, 5)
    blend = np.clip(inward / max(EDGE_BLEND * face_px, 1.0), 0.0, 1.0)
    blend = (blend * blend * (3 - 2 * blend))[..., None]
    return np.clip(grown * blend + fill * (1.0 - blend) + 0.5, 0, 255).astype(np.uint8)


def hide_boxes(alpha: np.ndarray, boxes: list[np.ndarray], keep: np.ndarray) -> np.ndarray:
    """`alpha` made transparent over `boxes` (other people's faces), except inside `keep`."""
    mask = np.ones_like(alpha)
    for box in boxes:
        pad = 0.15 * (box[2] - box[0])
        x1, y1, x2, y2 = _int_box(box + np.array([-pad, -pad, pad, pad]), alpha.shape)
        mask[y1:y2, x1:x2] = 0.0
    x1, y1, x2, y2 = _int_box(keep, alpha.shape)
    mask[y1:y2, x1:x2] = 1.0
    sigma = max(1.0, 0.05 * float(keep[2] - keep[0]))
    return alpha * cv2.GaussianBlur(mask, (0, 0), sigma)


def _int_box(box: np.ndarray, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    h, w = shape[:2]
    return (max(0, math.floor(box[0])), max(0, math.floor(box[1])),
            min(w, math.ceil(box[2])), min(h, math.ceil(box[3])))


def cut_out(image: np.ndarray, face: np.ndarray, others: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cut-out, alpha, face box in it): the face with MARGIN on each side."""
    fw, fh = float(face[2] - face[0]), float(face[3] - face[1])
    h, w = image.shape[:2]
    x1, y1 = math.floor(face[0] - MARGIN * fw), math.floor(face[1] - MARGIN * fh)
    x2, y2 = math.ceil(face[2] + MARGIN * fw), math.ceil(face[3] + MARGIN * fh)
    inner = image[max(0, y1):min(h, y2), max(0, x1):min(w, x2)]
    crop = extend_photo(inner, max(0, -x1), max(0, -y1), max(0, x2 - w), max(0, y2 - h), fw)
    shift = np.array([x1, y1, x1, y1], dtype=np.float32)
    local = (face - shift).astype(np.float32)
    alpha = hide_boxes(head_mask(crop.shape[:2], local), [b - shift for b in others], local)
    scale = min(1.0, SPRITE_FACE_PX / fw)
    if scale < 1.0:
        size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
        crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
        alpha = cv2.resize(alpha, size, interpolation=cv2.INTER_AREA)
        local = local * np.float32(scale)
    return np.ascontiguousarray(crop), alpha, local


# --- bodies -------------------------------------------------------------------------------------

# A shape in head units: ("poly", points), ("ellipse", (cx, cy, ax, ay)) or ("limb", joints
# (x, y, width)); a step paints shapes in one material, shaded as one rounded surface.
Shape = tuple[str, Sequence[tuple[float, ...]]]
Step = tuple[str, list[Shape], float]  # material, shapes, shading half-width in head units

SHIRTS = [(110, 60, 30), (40, 40, 170), (205, 205, 205), (120, 120, 120), (60, 110, 60), (35, 35, 40),
          (150, 185, 200), (190, 150, 110), (60, 40, 110), (130, 90, 150), (90, 50, 140)]
TROUSERS = [(110, 70, 45), (40, 38, 40), (95, 95, 100), (70, 95, 95), (45, 60, 80), (80, 60, 50), (90, 55, 35)]
SHOES = [(30, 30, 32), (215, 215, 220), (35, 55, 85)]
HAIR = [(25, 25, 30), (30, 45, 70), (50, 75, 110), (45, 60, 120), (70, 115, 160)]
SKIN_TINT = (0.82, 0.98, 1.2)  # BGR ratios of a skin tone to its grey level
HAIR_SHADE = 0.8  # hair seen in the room's light is darker than where the photo sampled it


@dataclass(frozen=True)
class Look:
    """A person's colours (BGR): clothes chosen by the identity, skin and hair read off the photo."""

    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    shirt: tuple[float, float, float]
    trousers: tuple[float, float, float]
    shoes: tuple[float, float, float]
    short_sleeves: bool


def look_of(sprite: Sprite) -> Look:
    """The look of the person in a cut-out: the same identity always wears the same clothes."""
    rng = np.random.default_rng(zlib.crc32(sprite.identity.encode()))
    x1, y1, x2, y2 = (float(v) for v in sprite.face)
    fw, fh = x2 - x1, y2 - y1
    cheeks = sprite.image[round(y1 + 0.5 * fh):round(y1 + 0.75 * fh), round(x1 + 0.2 * fw):round(x2 - 0.2 * fw)]
    top = max(0, round(y1 - 0.2 * fh))
    hair = sprite.image[top:max(top + 1, round(y1 + 0.05 * fh)), round(x1 + 0.25 * fw):round(x2 - 0.25 * fw)]

    def median(region: np.ndarray) -> tuple[float, float, float]:
        b, g, r = np.median(region.reshape(-1, 3), axis=0)
        return (float(b), float(g), float(r))

    def pick(palette: list[tuple[int, int, int]]) -> tuple[float, float, float]:
        b, g, r = palette[int(rng.integers(len(palette)))]
        return (float(b), float(g), float(r))

    skin, hair_colour = median(cheeks), median(hair)
    shirt, trousers, shoes = pick(SHIRTS), pick(TROUSERS), pick(SHOES)
    palette_hair = pick(HAIR)
    if _greyscale(sprite.image):  # a black-and-white photo: tint the skin
        skin = tuple(float(np.mean(skin)) * t for t in SKIN_TINT)  # type: ignore[assignment]
    # what lies above the face box is not always hair (a light backdrop, a bald head, the
    # extended edge of a tight crop): then a hair colour that stands out from the skin
    if _greyscale(sprite.image) or np.mean(hair_colour) > 130 or math.dist(hair_colour, skin) < 40:
        hair_colour = palette_hair
    hair_colour = tuple(HAIR_SHADE * v for v in hair_colour)  # type: ignore[assignment]
    return Look(skin, hair_colour, shirt, trousers, shoes, bool(rng.random() < 0.4))


def _greyscale(image: np.ndarray) -> bool:
    return float(np.ptp(image.reshape(-1, 3).astype(np.int16), axis=1).mean()) < 4.0


def _swing(phase: float, side: int) -> tuple[float, float]:
    """(forward, lift) of one leg: how far ahead (towards the camera) it is, and how far raised."""
    a = phase + (0.0 if side < 0 else math.pi)
    return math.sin(a), 0.25 * max(0.0, math.cos(a))


def _legs(phase: float) -> tuple[list[Shape], list[Shape]]:
    """(trousers, shoes): hips to ankles, the leading foot lower in the frame, the swinging one raised."""
    trousers: list[Shape] = [("poly", [(-0.82, 2.5), (0.82, 2.5), (0.86, 3.2), (0.1, 3.45), (-0.1, 3.45), (-0.86, 3.2)])]
    shoes: list[Shape] = []
    for side in (-1, 1):
        forward, lift = _swing(phase, side)
        ankle = 6.85 + 0.25 * forward - lift
        trousers.append(("limb", [(side * 0.42, 3.0, 0.8), (side * 0.38, 4.85 + 0.14 * forward - 0.5 * lift, 0.52),
                                  (side * 0.36, ankle, 0.38)]))
        shoes.append(("ellipse", [(side * 0.37, ankle + 0.17, 0.27 * (1 + 0.06 * forward), 0.17)]))
    return trousers, shoes


def _arms(phase: float, short_sleeves: bool) -> tuple[list[Shape], list[Shape]]:
    """(sleeves, bare skin): arms swinging against the legs, a hand at each end."""
    sleeves: list[Shape] = []
    skin: list[Shape] = []
    for side in (-1, 1):
        ahead = -_swing(phase, side)[0]
        shoulder = (side * 0.9, 0.5, 0.44)
        elbow = (side * (1.12 - 0.03 * ahead), 1.95 + 0.1 * ahead, 0.38)
        wrist = (side * (1.08 - 0.12 * ahead), 3.15 + 0.2 * ahead, 0.32)
        if short_sleeves:
            cuff = tuple(s + 0.55 * (e - s) for s, e in zip(shoulder, elbow))
            sleeves.append(("limb", [shoulder, cuff]))
            skin.append(("limb", [cuff, elbow, wrist]))
        else:
            sleeves.append(("limb", [shoulder, elbow, wrist]))
        skin.append(("ellipse", [(wrist[0], wrist[1] + 0.22, 0.17, 0.26)]))
    return sleeves, skin


TORSO = [(-0.3, 0.12), (0.3, 0.12), (0.78, 0.3), (0.98, 0.55), (0.95, 1.2), (0.8, 2.1), (0.84, 2.8),
         (-0.84, 2.8), (-0.8, 2.1), (-0.95, 1.2), (-0.98, 0.55), (-0.78, 0.3)]
NECK = [(-0.25, -0.35), (0.25, -0.35), (0.29, 0.3), (-0.29, 0.3)]


def body_steps(phase: float, facing: Facing, short_sleeves: bool) -> list[Step]:
    """What to paint, back to front, for one pose: the head seen from the front (the face goes on
    top of it) or from behind (hair over the whole head)."""
    trousers, shoes = _legs(phase)
    sleeves, arm_skin = _arms(phase, short_sleeves)
    steps: list[Step] = []
    if facing == "front":
        steps.append(("hair", [("ellipse", [(0.0, -0.7, 0.5, 0.56)])], 0.35))
    steps += [("skin", [("poly", NECK)], 0.2), ("trousers", trousers, 0.3), ("shoes", shoes, 0.12),
              ("shirt", [("poly", TORSO)], 0.7)]
    if facing == "front":
        steps.append(("skin", [("poly", [(-0.2, 0.1), (0.2, 0.1), (0.0, 0.45)])], 0.1))  # open collar
    steps += [("shirt", sleeves, 0.18), ("skin", arm_skin, 0.12)]
    if facing == "front":
        steps.append(("skin", [("ellipse", [(0.0, -0.5, 0.42, 0.53)])], 0.35))
    else:
        head: list[Shape] = [("ellipse", [(side * 0.42, -0.5, 0.07, 0.14)]) for side in (-1, 1)]  # ears
        steps.append(("skin", head + [("ellipse", [(0.0, -0.52, 0.43, 0.55)])], 0.3))
        steps.append(("hair", [("ellipse", [(0.0, -0.62, 0.47, 0.61)])], 0.35))  # hair covers the head
    return steps


def _paint(mask: np.ndarray, shapes: list[Shape], unit: float, origin: tuple[float, float]) -> None:
    """Fill `shapes` (head units) into `mask` at `unit` px per head unit, chin at `origin`."""
    ox, oy = origin

    def px(x: float, y: float) -> tuple[int, int]:
        return round(ox + x * unit), round(oy + y * unit)

    for kind, spec in shapes:
        if kind == "poly":
            cv2.fillPoly(mask, [np.array([px(x, y) for x, y in spec], np.int32)], 255)
        elif kind == "ellipse":
            ((cx, cy, ax, ay),) = spec
            cv2.ellipse(mask, px(cx, cy), (round(ax * unit), round(ay * unit)), 0, 0, 360, 255, -1)
        else:  # a limb: tapered segments with round joints
            for (xa, ya, wa), (xb, yb, wb) in zip(spec, spec[1:]):
                dx, dy = xb - xa, yb - ya
                nx, ny = -dy / math.hypot(dx, dy), dx / math.hypot(dx, dy)
                quad = [px(xa + nx * wa / 2, ya + ny * wa / 2), px(xb + nx * wb / 2, yb + ny * wb / 2),
                        px(xb - nx * wb / 2, yb - ny * wb / 2), px(xa - nx * wa / 2, ya - ny * wa / 2)]
                cv2.fillConvexPoly(mask, np.array(quad, np.int32), 255)
            for x, y, w in spec:
                cv2.circle(mask, px(x, y), round(w / 2 * unit), 255, -1)


@lru_cache(maxsize=4)
def _textures(seed: int, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(fabric, hair) brightness textures of one person, shared by all their poses."""
    rng = np.random.default_rng([seed, 7])
    # hair: long thin streaks, no blotches that a face detector takes for eyes on the back of a head
    return _noise(rng, shape, (12, 12)), _noise(rng, shape, (40, 3))


def _noise(rng: np.random.Generator, shape: tuple[int, int], grain: tuple[int, int]) -> np.ndarray:
    """Smooth unit noise over `shape` with features about `grain` (rows, columns) px apart."""
    h, w = shape
    coarse = rng.normal(0, 1, (h // grain[0] + 2, w // grain[1] + 2)).astype(np.float32)
    return cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)


def draw_body(look: Look, phase: float, facing: Facing, seed: int = 0) -> Body:
    """One pose of a body as premultiplied BGRA, for a face BODY_FACE_PX wide.

    Each painted part is shaded by its distance to its own outline (a rounded surface, darker
    at the edges), lit from above, with a fabric texture: a person detector finds flat-coloured
    clothes much less often (seen from behind, 75 % of frames instead of 98 %).
    """
    unit = BODY_FACE_PX * HEAD_UNIT * SUPERSAMPLE
    width = math.ceil(2 * (BODY_HALF_WIDTH + 0.15) * unit)
    height = math.ceil((SOLES_Y - CROWN_Y + 0.6) * unit)
    chin = (width / 2, (0.2 - CROWN_Y) * unit)
    fabric, strands = _textures(seed, (height, width))
    light = np.linspace(1.1, 0.88, height, dtype=np.float32)[:, None]
    canvas = np.zeros((height, width, 3), np.float32)
    covered = np.zeros((height, width), np.float32)
    mask = np.zeros((height, width), np.uint8)
    for material, shapes, half_width in body_steps(phase, facing, look.short_sleeves):
        mask[:] = 0
        _paint(mask, shapes, unit, chin)
        x, y, w, h = cv2.boundingRect(mask)
        part = (slice(max(0, y - 1), y + h + 1), slice(max(0, x - 1), x + w + 1))
        inside = mask[part] > 0
        depth = np.clip(cv2.distanceTransform(mask[part], cv2.DIST_L2, 3) / (half_width * unit), 0.0, 1.0)
        grain = 1 + (0.12 * strands[part] if material == "hair" else FABRIC_GRAIN * fabric[part])
        shade = (0.62 + 0.38 * depth * depth * (3 - 2 * depth)) * light[part[0]] * grain
        canvas[part][inside] = (shade[..., None] * np.array(getattr(look, material), np.float32))[inside]
        covered[part][inside] = 1.0
    small = (width // SUPERSAMPLE, height // SUPERSAMPLE)
    bgra = np.dstack([canvas, 255.0 * covered[..., None]])  # colour is 0 wherever alpha is: premultiplied
    image = np.clip(cv2.resize(bgra, small, interpolation=cv2.INTER_AREA) + 0.5, 0, 255).astype(np.uint8)
    return Body(image, (chin[0] / SUPERSAMPLE, chin[1] / SUPERSAMPLE), float(BODY_FACE_PX))


# --- the bank -----------------------------------------------------------------------------------


class SpriteBank:
    """Face cut-outs of labelled photos, found once with the face detector, and the bodies drawn for them."""

    def __init__(self, faces_dir: Path, analyzer: FaceAnalyzer) -> None:
        self.faces_dir = Path(faces_dir)
        if not self.faces_dir.is_dir():
            raise FileNotFoundError(f"{self.faces_dir}: not a directory of <identity>/<photo> folders")
        self._detector = analyzer.detector
        self._sprites: dict[tuple[str, str], Sprite] = {}
        self._bodies: dict[tuple[str, str, str], tuple[Body, ...]] = {}

    def identities(self) -> list[str]:
        """Sorted names of the identity folders that hold at least one photo."""
        return sorted(d.name for d in self.faces_dir.iterdir() if d.is_dir() and _photo_names(d))

    def photos(self, identity: str) -> list[str]:
        """Sorted file names of that identity's photos."""
        known = self.identities()
        if identity not in known:
            raise UnknownPhotoError(
                f"unknown identity {identity!r}: no folder of photos by that name in {self.faces_dir} "
                f"({len(known)} identities, e.g. {', '.join(known[:3])})")
        return _photo_names(self.faces_dir / identity)

    def sprite(self, identity: str, photo: str) -> Sprite:
        """The cut-out of the largest face in that photo (cached)."""
        key = (identity, photo)
        if key not in self._sprites:
            self._sprites[key] = self._make(identity, photo)
        return self._sprites[key]

    def bodies(self, identity: str, photo: str, facing: Facing) -> tuple[Body, ...]:
        """The WALK_PHASES poses of that person's body, seen from the front or from behind (cached)."""
        key = (identity, photo, facing)
        if key not in self._bodies:
            look = look_of(self.sprite(identity, photo))
            seed = zlib.crc32(identity.encode())
            self._bodies[key] = tuple(draw_body(look, 2 * math.pi * k / WALK_PHASES, facing, seed)
                                      for k in range(WALK_PHASES))
        return self._bodies[key]

    def _make(self, identity: str, photo: str) -> Sprite:
        names = self.photos(identity)
        if photo not in names:
            raise UnknownPhotoError(f"unknown photo {photo!r} of {identity!r}: it has {', '.join(names)}")
        path = self.faces_dir / identity / photo
        image = read_image(path)
        padded = pad_photo(image)
        detections = self._detector.detect(padded)
        if not detections:
            raise ImageError(f"{path}: the face detector finds no face to cut out")
        # pad_photo borders are symmetric: the offset back to the photo is half the growth
        offset = np.array([(padded.shape[1] - image.shape[1]) // 2, (padded.shape[0] - image.shape[0]) // 2] * 2,
                          dtype=np.float32)
        ranked = sorted(detections, key=lambda d: d.width * d.height, reverse=True)
        boxes = [d.box - offset for d in ranked]
        crop, alpha, face = cut_out(image, boxes[0], boxes[1:])
        for a in (crop, alpha, face):
            a.setflags(write=False)  # shared by every clip that uses this photo
        return Sprite(identity, photo, crop, alpha, face)


def _photo_names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


# --- where people are -----------------------------------------------------------------------


def face_width_at(progress: float, height: int) -> float:
    """Face box width in px at a point of the path door -> camera -> gone (`Appearance.course`).

    The apparent size goes as 1 / distance, so its inverse is linear in the distance walked;
    people come through the door briskly and slow down inside (the distance is a quadratic in
    time, SLOWING_DOWN of the mean speed faster at the door and as much slower when nearest).
    Leaving through the bottom edge the face grows only a little more.
    """
    k = height / REFERENCE_HEIGHT
    if progress < APPROACH:
        q = progress / APPROACH
        q += SLOWING_DOWN * q * (1 - q)
        return k / ((1 - q) / FACE_AT_DOOR_PX + q / FACE_NEAREST_PX)
    return k * FACE_NEAREST_PX * (1 + EXIT_GROWTH * (progress - APPROACH) / (1 - APPROACH))


def drift_of(seed: int, index: int) -> tuple[float, float, float]:
    """(amplitude in frame widths, cycles per walk, phase) of one appearance's sideways sway."""
    rng = np.random.default_rng([seed, 1, index])
    return float(rng.uniform(0.01, 0.025)), float(rng.uniform(0.5, 1.0)), float(rng.uniform(0, 2 * math.pi))


def person_box(face: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """The whole person (crown to soles, arm to arm) around a face box, in the same pixels."""
    x1, _, x2, y2 = face
    unit = HEAD_UNIT * (x2 - x1)
    cx = (x1 + x2) / 2
    return (cx - BODY_HALF_WIDTH * unit, y2 + CROWN_Y * unit, cx + BODY_HALF_WIDTH * unit, y2 + SOLES_Y * unit)


def pose_at(appearance: Appearance, t: float, offset: float) -> int:
    """Which of the WALK_PHASES poses the walking cycle is in at media time `t`."""
    cycles = (t - appearance.enter_at) / STRIDE_S + offset / (2 * math.pi)
    return math.floor(cycles * WALK_PHASES) % WALK_PHASES


def place(appearance: Appearance, sprite: Sprite, t: float, size: tuple[int, int],
          drift: tuple[float, float, float] = (0.0, 1.0, 0.0), index: int = 0) -> Placement | None:
    """Where the appearance is at media time `t`, or None when it is not in the frame."""
    p = appearance.progress(t)
    if p is None:
        return None
    c = appearance.course(p)
    width, height = size
    k = height / REFERENCE_HEIGHT
    face_w = face_width_at(c, height)
    scale = face_w / sprite.face_width
    fx1, fy1, fx2, fy2 = (float(v) * scale for v in sprite.face)
    # on a camera above the floor, height in the image and lateral spread are both linear in
    # 1 / distance, hence in face width: approaching, they follow the face's growth
    near = min(1.0, (face_w / k - FACE_AT_DOOR_PX) / (FACE_NEAREST_PX - FACE_AT_DOOR_PX))
    y_near = FACE_Y_NEAREST * height
    if c < APPROACH:
        cy = FACE_Y_AT_DOOR * height + near * (y_near - FACE_Y_AT_DOOR * height)
    else:  # leave: the cut-out's top edge and the crown reach the bottom of the frame at the end of the path
        above = max((fy1 + fy2) / 2, (fy2 - fy1) / 2 - CROWN_Y * HEAD_UNIT * face_w)
        cy = y_near + (c - APPROACH) / (1 - APPROACH) * (height + above - y_near)
    spread = LANE_SPREAD[0] + near * (LANE_SPREAD[1] - LANE_SPREAD[0])
    amplitude, cycles, phase = drift
    cx = width * ((DOOR[0] + DOOR[2]) / 2 + (appearance.lane - 0.5) * spread
                  + amplitude * math.sin(2 * math.pi * cycles * p + phase))
    origin = (round(cx - (fx1 + fx2) / 2), round(cy - (fy1 + fy2) / 2))
    h, w = sprite.image.shape[:2]
    face = (origin[0] + fx1, origin[1] + fy1, origin[0] + fx2, origin[1] + fy2)
    return Placement(appearance, index, p, scale, origin, (max(1, round(w * scale)), max(1, round(h * scale))),
                     face, person_box(face), (width, height), pose_at(appearance, t, phase))


def placements(clip: Clip, bank: SpriteBank, index: int, *, seed: int = 0) -> list[Placement]:
    """Everyone in frame `index`, farthest first (the drawing order: nearer people occlude)."""
    return _placements(clip, _sprites_for(clip, bank), index, seed)


def _placements(clip: Clip, sprites: list[Sprite], index: int, seed: int) -> list[Placement]:
    t = clip.media_time(index)
    found = []
    for i, (appearance, sprite) in enumerate(zip(clip.appearances, sprites)):
        placed = place(appearance, sprite, t, clip.size, drift_of(seed, i), i)
        if placed is not None and _on_screen(placed, clip.size):
            found.append(placed)
    return sorted(found, key=lambda pl: pl.face_width)


def _on_screen(placed: Placement, size: tuple[int, int]) -> bool:
    x1, y1, x2, y2 = placed.person
    return x1 < size[0] and y1 < size[1] and x2 > 0 and y2 > 0


def _sprites_for(clip: Clip, bank: SpriteBank) -> list[Sprite]:
    return [bank.sprite(a.identity, a.photo) for a in clip.appearances]


def _bodies_for(clip: Clip, bank: SpriteBank) -> list[tuple[Body, ...]]:
    return [bank.bodies(a.identity, a.photo, a.facing) for a in clip.appearances]


# --- the scene ------------------------------------------------------------------------------


def entrance_background(size: tuple[int, int], camera_id: str) -> np.ndarray:
    """The empty entrance: wall, door, tiled floor, static texture.

    Seeded by the camera id, so one camera shows the same scene in every clip.
    """
    width, height = size
    rng = np.random.default_rng(zlib.crc32(camera_id.encode()))
    floor_top = int(DOOR[3] * height)
    tint = rng.uniform(-8, 8, 3)
    img = np.empty((height, width, 3), np.float32)
    wall = np.linspace(0, 1, floor_top, dtype=np.float32)[:, None, None]
    img[:floor_top] = np.array([152, 166, 176]) + tint + 25 * wall
    floor = np.linspace(0, 1, height - floor_top, dtype=np.float32)[:, None, None]
    img[floor_top:] = np.array([100, 108, 112]) + tint + 70 * floor  # lit from the door side
    img += cv2.resize(rng.normal(0, 5, (height // 12 + 2, width // 12 + 2)).astype(np.float32),
                      (width, height), interpolation=cv2.INTER_CUBIC)[..., None]
    img = np.clip(img, 0, 255).astype(np.uint8)
    _draw_floor_tiles(img, floor_top)
    _draw_door(img, rng)
    grain = rng.normal(0, 2.0, (height, width, 1))
    return np.clip(img + grain, 0, 255).astype(np.uint8)


def _draw_floor_tiles(img: np.ndarray, floor_top: int) -> None:
    height, width = img.shape[:2]
    vx, vy = width * (DOOR[0] + DOOR[2]) / 2, VANISHING_Y * height
    grout = (70, 78, 84)
    for xb in np.linspace(-1.5 * width, 2.5 * width, 23):  # lines running towards the door
        x_top = vx + (xb - vx) * (floor_top - vy) / (height - vy)
        cv2.line(img, (round(x_top), floor_top), (round(xb), height), grout, 1, cv2.LINE_AA)
    for step in range(1, 40):  # rows of tiles: height above eye level goes as 1 / distance
        y = vy + 1.6 * (height - vy) / (1.0 + 0.35 * step)
        if floor_top < y < height:
            cv2.line(img, (0, round(y)), (width, round(y)), grout, 1, cv2.LINE_AA)


def _draw_door(img: np.ndarray, rng: np.random.Generator) -> None:
    height, width = img.shape[:2]
    x1, y1, x2, y2 = (round(f * s) for f, s in zip(DOOR, (width, height, width, height)))
    rows = np.linspace(0, 1, y2 - y1, dtype=np.float32)[:, None, None]
    outside = np.array([175, 172, 165], np.float32) - 60 * rows  # daylight, pavement darker
    img[y1:y2, x1:x2] = np.clip(outside + rng.normal(0, 3, (y2 - y1, x2 - x1, 1)), 0, 255).astype(np.uint8)
    cv2.line(img, (x1, round(y1 + 0.62 * (y2 - y1))), (x2, round(y1 + 0.62 * (y2 - y1))), (150, 150, 145), 2)
    frame_px = max(3, round(0.012 * width))
    cv2.rectangle(img, (x1 - frame_px // 2, y1 - frame_px // 2), (x2 + frame_px // 2, y2), (60, 66, 72), frame_px)
    mid = (x1 + x2) // 2  # the two glass leaves meet in the middle
    cv2.line(img, (mid, y1), (mid, y2), (80, 86, 92), max(2, frame_px // 2))
    mat = np.array([[x1 - 10, y2 + 4], [x2 + 10, y2 + 4], [x2 + 40, y2 + height // 10], [x1 - 40, y2 + height // 10]])
    cv2.fillConvexPoly(img, mat.astype(np.int32), (58, 60, 62), cv2.LINE_AA)


@dataclass(frozen=True)
class _Effects:
    """Per-frame randomness of one render, drawn up front from the seed."""

    gain: np.ndarray  # brightness factor per frame
    blur: np.ndarray  # motion-blur kernel length per frame, 1 = none
    field: np.ndarray  # which noise field per frame
    offset: np.ndarray  # (dy, dx) into that field per frame
    noise: np.ndarray  # (NOISE_FIELDS, h + slack, w + slack, 3) uint8, centred on 128


def _effects(clip: Clip, seed: int) -> _Effects:
    rng = np.random.default_rng([seed, 0])
    n = clip.frame_count
    width, height = clip.size
    period = rng.uniform(*LIGHT_PERIOD_S)
    t = np.arange(n) / clip.fps
    gain = 1.0 + LIGHT_SWING * np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi))
    blur = np.where(rng.random(n) < BLUR_SHARE, rng.choice(BLUR_LENGTHS, n), 1)
    noise = rng.standard_normal((NOISE_FIELDS, height + NOISE_SLACK, width + NOISE_SLACK, 3), dtype=np.float32)
    noise = np.clip(noise * NOISE_SIGMA + 128.5, 0, 255).astype(np.uint8)
    return _Effects(gain, blur, rng.integers(0, NOISE_FIELDS, n), rng.integers(0, NOISE_SLACK, (n, 2)), noise)


def _draw_body(frame: np.ndarray, body: Body, placed: Placement, blur: int) -> None:
    """Blend the body, scaled to the placement's face, into `frame` in place, clipped to the frame."""
    s = placed.face_width / body.face_width
    fx1, _, fx2, fy2 = placed.face
    x0, y0 = (fx1 + fx2) / 2 - body.chin[0] * s, fy2 - body.chin[1] * s
    h, w = body.image.shape[:2]
    left, top = max(0, math.floor(x0)), max(0, math.floor(y0))
    right, bottom = min(frame.shape[1], math.ceil(x0 + w * s)), min(frame.shape[0], math.ceil(y0 + h * s))
    if right <= left or bottom <= top:
        return
    # only the part inside the frame is resampled: a near body is mostly below the bottom edge
    m = np.array([[s, 0.0, x0 - left], [0.0, s, y0 - top]], np.float32)
    layer = cv2.warpAffine(body.image, m, (right - left, bottom - top), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0))
    if blur > 1:
        layer = cv2.blur(layer, (1, blur))
    colour, alpha = layer[..., :3], layer[..., 3]
    keep = cv2.merge([cv2.bitwise_not(alpha)] * 3)  # 255 - alpha: premultiplied "over"
    roi = np.ascontiguousarray(frame[top:bottom, left:right])
    frame[top:bottom, left:right] = cv2.add(cv2.multiply(roi, keep, scale=1 / 255), np.ascontiguousarray(colour))


def _unusable(image: np.ndarray, face_width: float) -> np.ndarray:
    """`image` blurred and flattened beyond what the quality gate accepts as a face."""
    image = cv2.GaussianBlur(image, (0, 0), max(UNUSABLE_BLUR_MIN, UNUSABLE_BLUR_SHARE * face_width))
    # flatter too: the sensor noise added to every frame must not sharpen it back above the gate
    return cv2.addWeighted(image, UNUSABLE_CONTRAST, image, 0, (1 - UNUSABLE_CONTRAST) * float(image.mean()))


def _smudge_head(frame: np.ndarray, placed: Placement) -> None:
    """Blur the whole head of an unusable face in `frame`: the drawn outline of head and hair
    around a blurred face is sharp enough for the gate otherwise."""
    x1, y1, x2, y2 = placed.face
    fw, fh = x2 - x1, y2 - y1
    box = np.array([x1 - 0.6 * fw, y1 - 0.6 * fh, x2 + 0.6 * fw, y2 + 0.4 * fh])
    left, top, right, bottom = _int_box(box, frame.shape[:2])
    if right <= left or bottom <= top:
        return
    roi = np.ascontiguousarray(frame[top:bottom, left:right])
    local = np.array([x1 - left, y1 - top, x2 - left, y2 - top], np.float32)
    a = head_mask(roi.shape[:2], local, UNUSABLE_HEAD)
    frame[top:bottom, left:right] = cv2.blendLinear(_unusable(roi, fw), roi, a, 1.0 - a)


def _draw(frame: np.ndarray, sprite: Sprite, placed: Placement, blur: int) -> None:
    """Blend the scaled face cut-out into `frame` in place, clipped to the frame."""
    size = placed.size
    interpolation = cv2.INTER_AREA if placed.scale < 1 else cv2.INTER_LINEAR
    image = cv2.resize(sprite.image, size, interpolation=interpolation)
    alpha = cv2.resize(sprite.alpha, size, interpolation=interpolation)
    if blur > 1:  # the camera is fixed: only what moves smears, and people move mostly downwards
        image, alpha = cv2.blur(image, (1, blur)), cv2.blur(alpha, (1, blur))
    if placed.appearance.face_unusable:
        image = _unusable(image, placed.face_width)
    x, y = placed.origin
    fx1, fy1 = max(0, x), max(0, y)
    fx2, fy2 = min(frame.shape[1], x + size[0]), min(frame.shape[0], y + size[1])
    if fx2 <= fx1 or fy2 <= fy1:
        return
    a = np.ascontiguousarray(alpha[fy1 - y:fy2 - y, fx1 - x:fx2 - x])
    part = np.ascontiguousarray(image[fy1 - y:fy2 - y, fx1 - x:fx2 - x])
    frame[fy1:fy2, fx1:fx2] = cv2.blendLinear(part, np.ascontiguousarray(frame[fy1:fy2, fx1:fx2]), a, 1.0 - a)


def frames(clip: Clip, bank: SpriteBank, *, seed: int = 0) -> Iterator[np.ndarray]:
    """The clip's frames as BGR uint8 arrays, before compression.

    Unknown identities or photos raise here, before any frame is made.
    """
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    return _frames(clip, _sprites_for(clip, bank), _bodies_for(clip, bank), seed)


def _frames(clip: Clip, sprites: list[Sprite], bodies: list[tuple[Body, ...]], seed: int) -> Iterator[np.ndarray]:
    background = entrance_background(clip.size, clip.camera_id)
    fx = _effects(clip, seed)
    width, height = clip.size
    for i in range(clip.frame_count):
        frame = background.copy()
        blur = int(fx.blur[i])
        for placed in _placements(clip, sprites, i, seed):
            _draw_body(frame, bodies[placed.index][placed.pose], placed, blur)
            if placed.face_visible:
                _draw(frame, sprites[placed.index], placed, blur)
                if placed.appearance.face_unusable:
                    _smudge_head(frame, placed)
        dy, dx = fx.offset[i]
        noise = fx.noise[fx.field[i], dy:dy + height, dx:dx + width]
        yield cv2.addWeighted(frame, float(fx.gain[i]), noise, 1.0, -128.0)


def _open_writer(path: Path, fps: float, size: tuple[int, int]) -> cv2.VideoWriter:
    fourcc = cv2.VideoWriter.fourcc(*"MJPG")
    # FFmpeg's MJPEG encoder takes about half the time of OpenCV's own, which is the fallback
    # for builds without FFmpeg (its quality is settable; FFmpeg's is its default)
    for api in (cv2.CAP_FFMPEG, cv2.CAP_OPENCV_MJPEG):
        writer = cv2.VideoWriter(str(path), api, fourcc, fps, size)
        if writer.isOpened():
            writer.set(cv2.VIDEOWRITER_PROP_QUALITY, JPEG_QUALITY)
            return writer
    raise OSError(f"{path}: cannot open for writing an MJPG video")


def render_clip(clip: Clip, path: Path, bank: SpriteBank, *, seed: int = 0) -> Path:
    """Write the clip as a video file (MJPG in .avi, readable by cv2.VideoCapture) and return its path."""
    path = Path(path)
    if path.suffix.lower() != ".avi":
        raise ValueError(f"{path}: clips are written as MJPG in .avi; use a .avi path")
    stream = frames(clip, bank, seed=seed)  # unknown names fail before the file is created
    writer = _open_writer(path, clip.fps, clip.size)
    try:
        for frame in stream:
            writer.write(frame)
    finally:
        writer.release()
    return path


# --- a store day ------------------------------------------------------------------------------

STORE_TZ = "Asia/Shanghai"
DEFAULT_DAY = date(2026, 11, 23)  # tests and benchmarks replay a fixed day; the demo replays today
CAMERA = "door-1"
CLIP_FPS = 10.0
SAMPLE_FPS = 5.0
# Each walk of the store day, door to gone: long enough for the feet to show in at least two
# frames sampled at SAMPLE_FPS on each side of the entry line.
WALK_S = 4.0
# The rendered camera's entry line, in fractions of the frame: across the floor below the door
# (whose threshold is at DOOR[3]); the store is below it, towards the camera. A walker's feet are
# at 0.67 in the door and leave the frame at the bottom after a fifth of the walk.
ENTRY_LINE = (0.05, 0.85, 0.95, 0.85)
INSIDE = (0.5, 0.95)
DOOR_NAME = "main"
# A second camera on the same door: mounted across from the first (lanes mirrored), a little
# closer (a larger frame: people are bigger in pixels, the same in fractions) and a little
# farther inside (people pass it later), so the same walk is seen twice.
SECOND_CAMERA = "door-1b"
SECOND_CAMERA_SIZE = (1024, 576)
SECOND_CAMERA_LAG_S = 0.4


@dataclass(frozen=True)
class Walk:
    """Ground truth: who walks in or out, when, with which photo, in which clip (and the clips of
    the door's other cameras showing the same walk), facing the camera or not."""

    identity: str
    photo: str
    clip: int
    at: datetime
    leave: datetime
    role: str  # "visitor" | "member" | "staff"
    facing: Facing = "front"
    direction: Direction = "in"
    face_unusable: bool = False
    clips: tuple[int, ...] = ()  # every clip showing this walk, `clip` first

    @property
    def unidentified(self) -> bool:
        """A walk-in that no face tells who it was: seen from behind, or no usable face."""
        return self.direction == "in" and (self.facing == "back" or self.face_unusable)


@dataclass
class Scenario:
    clips: list[tuple[Clip, Path]]
    walks: list[Walk]
    enrol: list[tuple[Person, list[str]]]
    window: timedelta
    tz: ZoneInfo
    faces_dir: Path

    def sources(self) -> list[FileSource]:
        return [FileSource(c.camera_id, p, c.start_time, SAMPLE_FPS) for c, p in self.clips]

    def cameras(self) -> list[dict[str, object]]:
        """One `cameras` config entry per camera of the day (its entry line and door)."""
        settings: dict[str, dict[str, object]] = {}
        for clip, path in self.clips:
            settings.setdefault(clip.camera_id, camera_settings(clip, path))
        return list(settings.values())


def camera_settings(clip: Clip, source: Path | str | None = None) -> dict[str, object]:
    """The config keys of the camera that filmed `clip` (a `cameras` entry), with `source` when given."""
    settings: dict[str, object] = {"id": clip.camera_id}
    if source is not None:
        settings["source"] = str(source)
    settings.update({"fps": min(SAMPLE_FPS, clip.fps), "start_time": clip.start_time.isoformat(),
                     "entry_line": list(ENTRY_LINE), "inside": list(INSIDE), "door": clip.door})
    return settings


def second_view(clip: Clip) -> Clip:
    """The same walks through the door's second camera: mirrored lanes, a larger frame, a small lag."""
    mirrored = tuple(replace(a, lane=1.0 - a.lane) for a in clip.appearances)
    return Clip(SECOND_CAMERA, clip.start_time + timedelta(seconds=SECOND_CAMERA_LAG_S), clip.duration, mirrored,
                fps=clip.fps, size=SECOND_CAMERA_SIZE, door=DOOR_NAME)


# One walk of the plan: who, and how ("face": walks in facing the camera; "back": walks in seen
# from behind; "out": walks out, seen from behind).
Planned = tuple[str, str]


def _day_plan(bank: SpriteBank, start: datetime, size: str,
              past_midnight: bool) -> tuple[list[tuple[datetime, list[Planned]]], list[str], str]:
    """(when and who, members, staff): every identity with enough photos takes a role."""
    people = [i for i in bank.identities() if len(bank.photos(i)) >= 3]
    portraits = [i for i in people if i.startswith("deepface")]
    members, staff = portraits[:2], portraits[2]
    strangers = [i for i in people if i not in members and i != staff]
    if size == "small":
        strangers = strangers[:4]
    h = lambda hh, mm=0: start + timedelta(hours=hh, minutes=mm)  # noqa: E731
    plan: list[tuple[datetime, list[Planned]]] = [(h(9, 30), [(staff, "face")])]
    # each stranger: a first entry, most come back; the gaps walk the counting rule's edges
    returns = [timedelta(minutes=40), timedelta(hours=2, minutes=50), timedelta(hours=3, minutes=10), None]
    for k, who in enumerate(strangers):
        first = h(10) + timedelta(minutes=37 * k)
        plan.append((first, [(who, "face")]))
        gap = returns[k % len(returns)]
        if gap is not None:
            plan.append((first + gap, [(who, "face")]))
    # two strangers walking in together, and one coming back just after midnight
    if len(strangers) >= 2:
        plan.append((h(19), [(strangers[0], "face"), (strangers[1], "face")]))
    plan.append((h(23, 50), [(strangers[-1], "face")]))
    if past_midnight:
        plan.append((h(24, 20), [(strangers[-1], "face")]))
    for k, who in enumerate(members):
        plan.append((h(11 + 3 * k, 15), [(who, "face")]))
        plan.append((h(12 + 3 * k, 5), [(who, "face")]))
    # two walking in with their backs to the camera, two leaving (seen from behind)
    plan += [(h(12, 40), [(strangers[1], "back")]), (h(16, 25), [(strangers[2 % len(strangers)], "back")]),
             (h(10, 25), [(strangers[0], "out")]), (h(13, 0), [(members[0], "out")])]
    return sorted(plan, key=lambda p: p[0]), members, staff


def _appearances(bank: SpriteBank, group: list[Planned]) -> tuple[Appearance, ...]:
    return tuple(Appearance(who, bank.photos(who)[0], enter_at=0.4 + 0.6 * i, walk=WALK_S, lane=0.3 + 0.4 * i,
                            facing="front" if how == "face" else "back", direction="out" if how == "out" else "in")
                 for i, (who, how) in enumerate(group))


def build_scenario(bank: SpriteBank, out_dir: Path, window: timedelta, *, size: str = "day",
                   day: date = DEFAULT_DAY, past_midnight: bool = True, door_cameras: int = 1) -> Scenario:
    """The store day: every identity with enough photos takes a role; entries spread over the day.

    Besides the face walk-ins (strangers coming back, two walking in together, members, staff),
    two people walk in with their backs to the camera and two walk out. With `past_midnight`, a
    stranger also comes back just after the store day ends (a new visit). With `door_cameras=2`
    every walk is also filmed by the door's second camera (`second_view`): still one walk each.
    """
    if door_cameras not in (1, 2):
        raise ValueError(f"door_cameras must be 1 or 2, got {door_cameras}")
    tz = ZoneInfo(STORE_TZ)
    plan, members, staff = _day_plan(bank, datetime(day.year, day.month, day.day, tzinfo=tz), size, past_midnight)
    clips: list[tuple[Clip, Path]] = []
    walks: list[Walk] = []
    for n, (start, group) in enumerate(plan):
        clip = Clip(CAMERA, start, 5.0, _appearances(bank, group), fps=CLIP_FPS,
                    door=DOOR_NAME if door_cameras == 2 else None)
        views = [clip] + ([second_view(clip)] if door_cameras == 2 else [])
        first = len(clips)
        for v, view in enumerate(views):
            name = f"clip{n:03d}.avi" if v == 0 else f"clip{n:03d}b.avi"
            clips.append((view, render_clip(view, out_dir / name, bank, seed=n + 1000 * v)))
        for a in clip.appearances:
            role = "member" if a.identity in members else "staff" if a.identity == staff else "visitor"
            walks.append(Walk(a.identity, a.photo, first, start + timedelta(seconds=a.enter_at),
                              start + timedelta(seconds=a.leave_at), role, a.facing, a.direction, a.face_unusable,
                              tuple(range(first, len(clips)))))
    enrol = [(Person(m, m, "member", tier="gold", consent=True), bank.photos(m)[1:3]) for m in members]
    enrol.append((Person(staff, staff, "staff", consent=True), bank.photos(staff)[1:3]))
    return Scenario(clips, walks, enrol, window, tz, bank.faces_dir)


def expected_counts(walks: list[Walk], window: timedelta, tz: ZoneInfo) -> dict[str, int]:
    """The counting rule applied to the ground truth.

    visits: walk-ins that start a visit, unidentified ones included (`unidentified`: seen from
    behind or with no usable face; nobody can tell who they were, so each is a new visit and
    never a re-entry, and it does not count as anyone's last entry); reentries: face walk-ins
    within `window` of the same person's last identified entry on the same store day;
    member_visits: visits of members recognised by face; exits: walks out. Staff walking in
    with their face shown are not counted.
    """
    last: dict[str, datetime] = {}
    counts = dict.fromkeys(("visits", "reentries", "member_visits", "exits", "unidentified"), 0)
    for w in sorted(walks, key=lambda w: w.at):
        if w.direction == "out":
            counts["exits"] += 1
        elif w.unidentified:
            counts["visits"] += 1
            counts["unidentified"] += 1
        elif w.role != "staff":
            prev = last.get(w.identity)
            same_day = prev is not None and prev.astimezone(tz).date() == w.at.astimezone(tz).date()
            if prev is not None and same_day and w.at - prev < window:
                counts["reentries"] += 1
            else:
                counts["visits"] += 1
                counts["member_visits"] += w.role == "member"
            last[w.identity] = w.at
    return counts


def enrolment(scenario: Scenario, analyzer: FaceAnalyzer) -> list[tuple[Person, np.ndarray]]:
    """The scenario's members and staff with the embeddings of their enrolment photos."""
    return [(person, embeddings_from_photos(
                analyzer, [(p, read_image(scenario.faces_dir / person.person_id / p)) for p in photos]))
            for person, photos in scenario.enrol]
