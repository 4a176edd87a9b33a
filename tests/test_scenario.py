"""Synthetic entrance clips: the video file, what the real detector and recognizer find in it,
determinism, and errors that name the bad photo."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pytest

from footfall.recognition.analyzer import Face, FaceAnalyzer
from footfall.recognition.evaluation import labelled_photos
from footfall.tooling.scenario import (
    APPROACH,
    FACE_AT_DOOR_PX,
    FACE_NEAREST_PX,
    Appearance,
    Clip,
    SpriteBank,
    UnknownPhotoError,
    entrance_background,
    face_width_at,
    frames,
    placements,
    render_clip,
)

START = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)
# a colour portrait, and a 150 x 150 grey tight crop whose face runs off the photo's edges
WALKERS = [("obama", "1.jpg"), ("bbt_howard", "5.jpg")]


def read_video(path: Path) -> tuple[list[np.ndarray], cv2.VideoCapture]:
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened(), f"{path} does not open"
    decoded: list[np.ndarray] = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return decoded, capture
        decoded.append(frame)


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def mid_walk(appearance: Appearance, t: float) -> bool:
    p = appearance.progress(t)
    return p is not None and 1 / 3 <= p <= 2 / 3


def largest(faces: list[Face]) -> Face:
    return max(faces, key=lambda f: f.detection.width * f.detection.height)


@pytest.fixture(scope="module")
def bank(faces_dir: Path, default_analyzer: FaceAnalyzer) -> SpriteBank:
    return SpriteBank(faces_dir, default_analyzer)


@dataclass
class Walk:
    clip: Clip
    frames: list[np.ndarray]
    faces: list[list[Face]]  # what the default analyzer finds in each decoded frame
    truth: list[list]  # placements per frame

    def frames_where(self, pick) -> list[int]:
        return [i for i in range(len(self.frames)) if pick(self.clip.media_time(i))]


@pytest.fixture(scope="module", params=WALKERS, ids=lambda w: "/".join(w))
def walk(request, bank: SpriteBank, default_analyzer: FaceAnalyzer, tmp_path_factory) -> Walk:
    """One person walking in, rendered, decoded and analysed frame by frame."""
    identity, photo = request.param
    clip = Clip("entrance-1", START, 4.0, (Appearance(identity, photo, enter_at=0.5, walk=3.0, lane=0.5),))
    path = render_clip(clip, tmp_path_factory.mktemp("walk") / "walk.avi", bank, seed=1)
    decoded, _ = read_video(path)
    faces = [default_analyzer.analyze(f, gated=False) for f in decoded]
    truth = [placements(clip, bank, i, seed=1) for i in range(len(decoded))]
    return Walk(clip, decoded, faces, truth)


# --- the file ------------------------------------------------------------------------------


def test_rendered_file_opens_with_the_clips_frame_count_size_and_fps(bank, tmp_path):
    clip = Clip("entrance-2", START, 1.25, (Appearance("obama", "2.jpg", enter_at=0.1),), fps=8.0, size=(640, 360))
    path = render_clip(clip, tmp_path / "clip.avi", bank)
    decoded, capture = read_video(path)
    assert path == tmp_path / "clip.avi"
    assert clip.frame_count == 10 and len(decoded) == 10
    assert capture.get(cv2.CAP_PROP_FRAME_COUNT) == 10
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(8.0)
    assert {f.shape for f in decoded} == {(360, 640, 3)}


def test_frames_have_media_and_wall_times():
    clip = Clip("entrance-1", START, 2.0, ())
    assert clip.frame_count == 20
    assert clip.media_time(5) == pytest.approx(0.5)
    assert clip.wall_time(5) == datetime(2025, 3, 1, 9, 30, 0, 500000, tzinfo=UTC)


# --- what the models see -------------------------------------------------------------------


def test_detector_finds_exactly_the_walkers_face_in_mid_walk(walk):
    appearance = walk.clip.appearances[0]
    mid = walk.frames_where(lambda t: mid_walk(appearance, t))
    assert len(mid) >= 9
    found = [
        i for i in mid
        if len(walk.faces[i]) == 1
        and iou(walk.faces[i][0].detection.box, walk.truth[i][0].face) >= 0.5
        and 35 <= walk.faces[i][0].detection.width <= 200
    ]
    assert len(found) >= 0.8 * len(mid), f"face found in {len(found)} of {len(mid)} mid-walk frames"


def test_no_face_before_the_person_enters_or_after_they_left(walk):
    appearance = walk.clip.appearances[0]
    away = walk.frames_where(lambda t: t < appearance.enter_at or t >= appearance.leave_at)
    assert len(away) >= 8
    assert [i for i in away if walk.faces[i]] == []
    assert all(not walk.truth[i] for i in away)


def test_face_grows_from_the_door_towards_the_camera(walk):
    widths = [pl[0].face_width for pl in walk.truth if pl]
    assert widths[0] == pytest.approx(FACE_AT_DOOR_PX, rel=0.1)
    assert max(widths) >= 0.95 * FACE_NEAREST_PX
    assert face_width_at(APPROACH - 1e-9, 540) == pytest.approx(FACE_NEAREST_PX)
    tops = [pl[0].face[1] for pl in walk.truth if pl]
    assert tops == sorted(tops)  # it only ever comes nearer, i.e. lower in the frame


def test_identity_is_kept_in_mid_walk_frames(walk, labelled_embeddings, faces_dir, default_analyzer):
    embeddings, identities = labelled_embeddings
    names = [p.path.name for p in labelled_photos(faces_dir)]
    appearance = walk.clip.appearances[0]
    ids = np.asarray(identities)
    same = (ids == appearance.identity) & (np.asarray(names) != appearance.photo)
    assert same.any()
    threshold = default_analyzer.pack.match_threshold
    mid = walk.frames_where(lambda t: mid_walk(appearance, t))
    genuine, impostor = [], []
    for i in mid:
        if not walk.faces[i]:
            genuine.append(-1.0)
            continue
        scores = embeddings @ largest(walk.faces[i]).embedding
        genuine.append(float(scores[same].max()))
        impostor.append(float(scores[ids != appearance.identity].max()))
    matched = sum(g >= threshold for g in genuine)
    assert matched >= 0.75 * len(mid), f"matched another photo of the same person in {matched} of {len(mid)} frames"
    assert max(impostor) < threshold, f"a different identity scored {max(impostor):.3f}"


def test_two_people_in_adjacent_lanes_give_two_faces_and_the_nearer_one_is_drawn_over(
        bank, default_analyzer, tmp_path):
    first = Appearance("obama", "1.jpg", enter_at=0.3, walk=3.0, lane=0.35)
    second = Appearance("deepface_p02", "2.jpg", enter_at=0.6, walk=3.0, lane=0.65)
    clip = Clip("entrance-1", START, 3.0, (first, second))
    decoded, _ = read_video(render_clip(clip, tmp_path / "two.avi", bank))
    both = [i for i in range(len(decoded))
            if mid_walk(first, clip.media_time(i)) and mid_walk(second, clip.media_time(i))]
    assert len(both) >= 6
    two = 0
    for i in both:
        truth = placements(clip, bank, i)
        assert [pl.appearance for pl in truth] == [second, first]  # farther (smaller) first, nearer drawn last
        boxes = [d.box for d in default_analyzer.detector.detect(decoded[i])]
        two += len(boxes) == 2 and all(max(iou(b, pl.face) for b in boxes) >= 0.5 for pl in truth)
    assert two >= 0.8 * len(both), f"two faces in {two} of {len(both)} frames"
    overlapping = [i for i in both if _overlap(*(pl.bounds for pl in placements(clip, bank, i)))]
    assert overlapping, "the cut-outs never overlap: no occlusion was exercised"


def _overlap(a, b) -> bool:
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


def test_an_empty_entrance_has_slow_light_changes_and_fresh_noise_every_frame(bank):
    clip = Clip("entrance-1", START, 20.0, (), fps=2.0)
    shots = list(frames(clip, bank, seed=5))
    background = entrance_background(clip.size, clip.camera_id).astype(np.float64)
    gains = np.array([f.mean() / background.mean() for f in shots])
    assert 0.83 <= gains.min() and gains.max() <= 1.17
    assert gains.max() - gains.min() > 0.05
    assert np.abs(np.diff(gains)).max() < 0.05  # slow: a few percent per half second at most
    assert not np.array_equal(shots[0], shots[1])
    assert np.array_equal(entrance_background(clip.size, "entrance-1"), entrance_background(clip.size, "entrance-1"))


# --- determinism and errors ----------------------------------------------------------------


def test_the_same_seed_renders_the_same_frames_and_another_seed_does_not(bank, tmp_path):
    clip = Clip("entrance-1", START, 1.0, (Appearance("bbt_penny", "2.jpg", enter_at=0.0, walk=2.0),))
    first, _ = read_video(render_clip(clip, tmp_path / "a.avi", bank, seed=3))
    again, _ = read_video(render_clip(clip, tmp_path / "b.avi", bank, seed=3))
    other, _ = read_video(render_clip(clip, tmp_path / "c.avi", bank, seed=4))
    assert len(first) == len(again) == len(other) == 10
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not any(np.array_equal(a, c) for a, c in zip(first, other))


@pytest.mark.parametrize("identity,photo,named", [
    ("nobody", "1.jpg", "nobody"),
    ("..", "faces", "'..'"),
    ("obama", "99.jpg", "99.jpg"),
])
def test_an_unknown_identity_or_photo_is_named_and_nothing_is_written(bank, tmp_path, identity, photo, named):
    with pytest.raises(UnknownPhotoError, match=named):
        bank.sprite(identity, photo)
    clip = Clip("entrance-1", START, 1.0, (Appearance(identity, photo, enter_at=0.0),))
    with pytest.raises(UnknownPhotoError, match=named):
        render_clip(clip, tmp_path / "bad.avi", bank)
    assert not (tmp_path / "bad.avi").exists()


def test_the_bank_lists_identities_and_their_photos_sorted(bank):
    identities = bank.identities()
    assert identities == sorted(identities) and len(identities) >= 20
    assert "obama" in identities and "manifest.csv" not in identities
    assert bank.photos("obama")[:2] == ["1.jpg", "2.jpg"]
    assert bank.sprite("obama", "1.jpg") is bank.sprite("obama", "1.jpg")


def test_a_naive_start_time_or_a_lane_off_the_frame_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        Clip("entrance-1", datetime(2025, 3, 1, 9, 30), 1.0, ())
    with pytest.raises(ValueError, match="lane"):
        Appearance("obama", "1.jpg", enter_at=0.0, lane=1.5)
