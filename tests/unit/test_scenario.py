"""Synthetic entrance clips: the video file, what the real face and person detectors and the
recognizer find in it, which way people walk across the entry line, the door's second camera,
the store day's ground truth, determinism, and errors that name the bad photo."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import cv2
import numpy as np
import pytest

from footfall.config.schema import parse_config
from footfall.models.manifest import entry_for
from footfall.recognition.analyzer import Face, FaceAnalyzer
from footfall.recognition.evaluation import labelled_photos
from footfall.recognition.persons import PersonDetector, create_person_detector
from footfall.tooling.scenario import (
    APPROACH,
    ENTRY_LINE,
    FACE_AT_DOOR_PX,
    FACE_NEAREST_PX,
    INSIDE,
    SAMPLE_FPS,
    SECOND_CAMERA,
    WALK_S,
    Appearance,
    Clip,
    Scenario,
    SpriteBank,
    UnknownPhotoError,
    build_scenario,
    camera_settings,
    entrance_background,
    expected_counts,
    face_width_at,
    frames,
    placements,
    render_clip,
    second_view,
)
from footfall.tooling.scenario import Walk as TrueWalk

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


# --- whole people ----------------------------------------------------------------------------

TZ = ZoneInfo("Asia/Shanghai")
# a colour portrait, a grey tight crop, and a light-haired person in navy and grey
PEOPLE = [("obama", "1.jpg"), ("bbt_howard", "5.jpg"), ("deepface_p11", "1.jpg")]


@pytest.fixture(scope="module")
def person_detector(shared_models: Path) -> PersonDetector:
    """YOLOX-Nano at its manifest threshold (0.3)."""
    return create_person_detector(entry_for("yolox_nano.onnx", "person_detector"), shared_models / "yolox_nano.onnx")


def test_a_walker_stands_whole_in_the_door_and_leaves_the_frame_legs_first(bank):
    clip = Clip("entrance-1", START, 3.0, (Appearance("obama", "1.jpg", enter_at=0.0, walk=3.0),))
    truth = [pl for i in range(clip.frame_count) for pl in placements(clip, bank, i)]
    door = truth[0]
    assert door.visible_share == 1.0
    assert 10 <= (door.person[3] - door.person[1]) / door.face_width <= 12.5  # a standing adult's proportions
    assert door.person[1] >= 0 and door.feet[1] < 0.7 * clip.size[1]
    legs_gone = [pl for pl in truth if pl.person[3] > clip.size[1] and pl.face[3] < clip.size[1]]
    assert legs_gone, "the face never stays in the frame once the feet have left it"
    assert [pl.visible_share for pl in truth] == sorted((pl.visible_share for pl in truth), reverse=True)
    assert truth[-1].visible_share < 0.2


@pytest.mark.parametrize("facing,direction", [("front", "in"), ("back", "in"), ("back", "out")])
def test_the_person_detector_boxes_every_walker_while_mostly_in_the_frame(
        bank, person_detector, tmp_path, facing, direction):
    mostly = boxed = 0
    for n, (identity, photo) in enumerate(PEOPLE):
        walker = Appearance(identity, photo, enter_at=0.2, walk=3.0, lane=n / 2, facing=facing, direction=direction)
        clip = Clip("entrance-1", START, 3.4, (walker,))
        decoded, _ = read_video(render_clip(clip, tmp_path / f"{n}.avi", bank, seed=n))
        for i, frame in enumerate(decoded):
            truth = [pl for pl in placements(clip, bank, i, seed=n) if pl.visible_share >= 0.5]
            if truth:
                mostly += 1
                boxed += any(iou(b.box, truth[0].seen_person) >= 0.5 for b in person_detector.detect(frame))
    assert mostly >= 3 * 10
    assert boxed >= 0.9 * mostly, f"{facing}/{direction}: the person boxed in {boxed} of {mostly} frames"


@pytest.mark.parametrize("camera", ["entrance-1", SECOND_CAMERA])
def test_nobody_is_boxed_in_an_empty_entrance(bank, person_detector, camera):
    clip = Clip(camera, START, 2.0, (), fps=2.0)
    assert [person_detector.detect(f) for f in frames(clip, bank)] == [[]] * 4


def test_a_walker_seen_from_behind_shows_no_face_that_passes_the_quality_gate(bank, default_analyzer, tmp_path):
    usable = {}
    for facing in ("front", "back"):
        clip = Clip("entrance-1", START, 3.4, (Appearance("deepface_p05", "1.jpg", enter_at=0.2, walk=3.0,
                                                           facing=facing),))
        decoded, _ = read_video(render_clip(clip, tmp_path / f"{facing}.avi", bank, seed=2))
        usable[facing] = sum(any(f.quality.passed for f in default_analyzer.analyze(frame)) for frame in decoded)
    assert usable["front"] >= 8  # the same walk facing the camera gives usable shots
    assert usable["back"] == 0


# --- the entry line --------------------------------------------------------------------------


def inside_line(point: tuple[float, float], size: tuple[int, int]) -> bool:
    """Whether a frame point is on INSIDE's side of ENTRY_LINE."""
    x1, y1, x2, y2 = ENTRY_LINE

    def side(x: float, y: float) -> float:
        return (x2 - x1) * (y - y1) - (y2 - y1) * (x - x1)

    return side(point[0] / size[0], point[1] / size[1]) * side(*INSIDE) > 0


@pytest.mark.parametrize("direction", ["in", "out"])
@pytest.mark.parametrize("lane,enter_at", [(0.0, 0.0), (0.5, 0.1), (1.0, 0.0)])
def test_feet_cross_the_entry_line_once_inwards_walking_in_and_outwards_walking_out(bank, direction, lane, enter_at):
    walker = Appearance("bbt_howard", "5.jpg", enter_at=enter_at, walk=WALK_S, lane=lane,
                        facing="back" if direction == "out" else "front", direction=direction)
    clip = Clip("entrance-1", START, 4.5, (walker,), fps=SAMPLE_FPS)  # frames as the daemon samples them
    feet = [pl.feet for i in range(clip.frame_count) for pl in placements(clip, bank, i)]
    sides = [inside_line(f, clip.size) for f in feet]
    assert sum(a != b for a, b in zip(sides, sides[1:])) == 1
    assert (sides[0], sides[-1]) == ((False, True) if direction == "in" else (True, False))
    assert min(sides.count(True), sides.count(False)) >= 2  # seen on both sides before and after
    assert all(ENTRY_LINE[0] < x / clip.size[0] < ENTRY_LINE[2] for x, _ in feet)


def test_camera_settings_are_a_camera_of_the_config(tmp_path):
    clip = Clip("door-1", START, 2.0, (), door="main")
    settings = camera_settings(clip, tmp_path / "clip.avi")
    assert list(settings) == ["id", "source", "fps", "start_time", "entry_line", "inside", "door"]
    camera = parse_config({"cameras": [settings]}).cameras[0]
    assert (camera.id, camera.source, camera.door) == ("door-1", str(tmp_path / "clip.avi"), "main")
    assert (camera.entry_line, camera.inside, camera.start_time) == (ENTRY_LINE, INSIDE, START)
    assert "source" not in camera_settings(clip) and camera_settings(Clip("door-2", START, 1.0, ()))["door"] is None


def test_a_doors_second_camera_films_the_same_walks_mirrored_and_a_little_later(bank, tmp_path):
    walkers = (Appearance("obama", "1.jpg", enter_at=0.2, walk=3.0, lane=0.2),
               Appearance("bbt_penny", "2.jpg", enter_at=0.5, walk=3.0, lane=0.7, facing="back", direction="out"))
    clip = Clip("door-1", START, 4.0, walkers, door="main")
    twin = second_view(clip)
    assert (twin.camera_id, twin.door, twin.duration, twin.fps) == (SECOND_CAMERA, "main", clip.duration, clip.fps)
    assert timedelta(0) < twin.start_time - clip.start_time < timedelta(seconds=1)
    one, _ = read_video(render_clip(clip, tmp_path / "one.avi", bank, seed=1))
    two, _ = read_video(render_clip(twin, tmp_path / "two.avi", bank, seed=2))
    assert len(one) == len(two) == clip.frame_count and two[0].shape[:2] == twin.size[::-1] != one[0].shape[:2]
    for i in range(clip.frame_count):
        seen = sorted((pl.appearance.identity, pl.feet[0] / clip.size[0]) for pl in placements(clip, bank, i, seed=1))
        mirrored = sorted((pl.appearance.identity, pl.feet[0] / twin.size[0]) for pl in placements(twin, bank, i, seed=2))
        assert [who for who, _ in seen] == [who for who, _ in mirrored]  # the same people in view
        for (who, x), (_, x_twin) in zip(seen, mirrored):
            assert x_twin == pytest.approx(1 - x, abs=0.08), who


# --- a store day -----------------------------------------------------------------------------
# (slow: each renders a whole small store day through both cameras of the door)


@pytest.fixture(scope="module")
def two_camera_day(bank, tmp_path_factory) -> Scenario:
    return build_scenario(bank, tmp_path_factory.mktemp("day"), timedelta(hours=3), size="small", door_cameras=2)


@pytest.mark.slow
def test_two_cameras_on_one_door_film_every_walk_of_the_day_and_it_stays_one_walk(two_camera_day):
    day = two_camera_day
    firsts = [c for c, _ in day.clips if c.camera_id == "door-1"]
    assert len(firsts) * 2 == len(day.clips) and {c.door for c, _ in day.clips} == {"main"}
    assert len(day.walks) == sum(len(c.appearances) for c in firsts)
    for walk in day.walks:
        (one, one_path), (two, two_path) = (day.clips[k] for k in walk.clips)
        assert (one.camera_id, two.camera_id, one) == ("door-1", SECOND_CAMERA, day.clips[walk.clip][0])
        assert timedelta(0) < two.start_time - one.start_time < timedelta(seconds=1)
        assert [(a.identity, a.photo, a.enter_at, a.walk, a.facing, a.direction) for a in one.appearances] == \
               [(a.identity, a.photo, a.enter_at, a.walk, a.facing, a.direction) for a in two.appearances]
        assert [a.lane for a in two.appearances] == [1 - a.lane for a in one.appearances]
        assert one_path != two_path and one_path.parent == two_path.parent


@pytest.mark.slow
def test_the_store_day_has_walk_ins_seen_from_behind_people_leaving_and_two_coming_in_together(two_camera_day):
    day = two_camera_day
    back_in = [w for w in day.walks if w.direction == "in" and w.facing == "back"]
    leaving = [w for w in day.walks if w.direction == "out"]
    assert len(back_in) >= 2 and len(leaving) >= 2 and {w.facing for w in leaving} == {"back"}
    together = [c for c, _ in day.clips if c.camera_id == "door-1" and len(c.appearances) == 2]
    assert [[(a.facing, a.direction) for a in c.appearances] for c in together] == [[("front", "in")] * 2]
    counts = expected_counts(day.walks, day.window, day.tz)
    assert (counts["exits"], counts["unidentified"]) == (len(leaving), len(back_in))
    assert {s.camera_id for s in day.sources()} == {"door-1", SECOND_CAMERA}


def test_expected_counts_of_a_hand_written_day():
    def walk(who: str, hh: int, mm: int, role: str = "visitor", day: int = 23, **how) -> TrueWalk:
        at = datetime(2026, 11, day, hh, mm, tzinfo=TZ)
        return TrueWalk(who, "1.jpg", 0, at, at + timedelta(seconds=3), role, **how)

    walks = [
        walk("sam", 9, 0, "staff"),                                  # staff: not counted
        walk("sam", 9, 30, "staff", facing="back"),                  # from behind nobody knows: a visit
        walk("ann", 10, 0),                                          # visit
        walk("bob", 12, 0, face_unusable=True),                      # no usable face: an unidentified visit
        walk("ann", 12, 30, facing="back"),                          # from behind: an unidentified visit
        walk("bob", 12, 30),                                         # his first identified entry: a visit
        walk("mia", 13, 0, "member"),                                # member visit
        walk("ann", 13, 30),  # 3 h 30 after her last identified entry (the walk from behind is nobody's): visit
        walk("mia", 13, 40, "member"),                               # re-entry
        walk("ann", 14, 0),                                          # re-entry
        walk("mia", 14, 10, "member", facing="back", direction="out"),  # exit
        walk("ann", 14, 20, facing="back", direction="out"),         # exit
        walk("ann", 0, 10, day=24),                                  # past the store's midnight: a visit
    ]
    assert expected_counts(walks, timedelta(hours=3), TZ) == {
        "visits": 8, "reentries": 2, "member_visits": 1, "exits": 2, "unidentified": 3}


def test_an_unknown_facing_or_direction_is_refused():
    with pytest.raises(ValueError, match="facing"):
        Appearance("obama", "1.jpg", enter_at=0.0, facing="side")
    with pytest.raises(ValueError, match="direction"):
        Appearance("obama", "1.jpg", enter_at=0.0, direction="through")
