"""Detection: the right number of faces in real scenes, for every detector we ship or support."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from footfall.models.manifest import entry_for, locate
from footfall.recognition.boxes import decode_scrfd, fit_input, letterbox, nms
from footfall.recognition.detect import create_detector
from footfall.recognition.images import read_image

DETECTORS = ["face_detection_yunet_2023mar.onnx", "det_500m.onnx", "scrfd_2.5g_bnkps.onnx"]


def scenes_with_ground_truth(scenes_dir: Path) -> list[tuple[str, int]]:
    with open(scenes_dir / "scenes.csv", newline="") as fh:
        return [(r["file"], int(r["expected_faces"])) for r in csv.DictReader(fh) if r["expected_faces"]]


@pytest.mark.parametrize("detector_file", DETECTORS)
def test_every_scene_gives_its_labelled_face_count(detector_file, shared_models, scenes_dir):
    detector = create_detector(entry_for(detector_file), locate(detector_file, shared_models))
    scenes = scenes_with_ground_truth(scenes_dir)
    assert len(scenes) >= 13
    counts = {name: len(detector.detect(read_image(scenes_dir / name))) for name, _ in scenes}
    assert counts == dict(scenes)


def test_landmarks_lie_inside_their_box_in_image_order(default_analyzer, scenes_dir):
    for det in default_analyzer.detector.detect(read_image(scenes_dir / "bbt4.jpg")):
        x1, y1, x2, y2 = det.box
        assert np.all((det.landmarks[:, 0] >= x1 - 2) & (det.landmarks[:, 0] <= x2 + 2))
        assert np.all((det.landmarks[:, 1] >= y1 - 2) & (det.landmarks[:, 1] <= y2 + 2))
        left_eye, right_eye, nose, left_mouth, right_mouth = det.landmarks
        assert left_eye[0] < right_eye[0] and left_mouth[0] < right_mouth[0]
        assert max(left_eye[1], right_eye[1]) < nose[1] < min(left_mouth[1], right_mouth[1])


def test_yunet_on_onnxruntime_matches_opencvs_own_decoder(default_analyzer, scenes_dir):
    canvas, _ = letterbox(read_image(scenes_dir / "bbt4.jpg"), 640, 640)
    path = str(default_analyzer.pack.detector_path)
    reference = cv2.FaceDetectorYN.create(path, "", (640, 640), 0.6, 0.3, 5000).detect(canvas)[1]
    ours = default_analyzer.detector.detect(canvas)
    assert len(ours) == len(reference)
    for row in reference:
        box = np.array([row[0], row[1], row[0] + row[2], row[1] + row[3]])
        nearest = min(ours, key=lambda d: np.abs(d.box - box).sum())
        assert np.abs(nearest.box - box).max() < 1.0
        assert np.abs(nearest.landmarks.reshape(-1) - row[4:14]).max() < 1.0
        assert nearest.score == pytest.approx(row[14], abs=1e-3)


def test_a_wide_frame_is_detected_without_padding_it_to_a_square(default_analyzer, scenes_dir):
    """The fixed 640 x 640 YuNet file is relaxed at load: a 16:9 frame runs at 640 x 384."""
    image = read_image(scenes_dir / "bbt4.jpg")
    wide = cv2.copyMakeBorder(image, 0, 0, 0, image.shape[0] * 16 // 9 - image.shape[1], cv2.BORDER_CONSTANT)
    assert fit_input(wide.shape[1], wide.shape[0], 640) == (640, 384)
    square = letterbox(wide, 640, 640)[0]
    found = default_analyzer.detector.detect(wide)
    reference = default_analyzer.detector.detect(square)
    assert len(found) == len(reference) == 6
    scale = 640 / wide.shape[1]
    for det in found:
        twin = min(reference, key=lambda d: np.abs(d.box - det.box * scale).sum())
        assert np.abs(twin.box - det.box * scale).max() < 2.0


def test_a_frame_without_people_gives_no_faces(default_analyzer):
    grey_wall = np.full((480, 640, 3), 128, dtype=np.uint8)
    assert default_analyzer.detector.detect(grey_wall) == []


def test_a_wrong_image_type_is_refused_with_its_shape(default_analyzer):
    with pytest.raises(ValueError, match="BGR uint8"):
        default_analyzer.detector.detect(np.zeros((10, 10), dtype=np.float32))


def test_letterbox_keeps_aspect_and_pads_right_and_bottom():
    image = np.full((100, 200, 3), 255, dtype=np.uint8)
    canvas, lb = letterbox(image, 640, 640)
    assert lb.scale == pytest.approx(3.2)
    assert canvas.shape == (640, 640, 3)
    assert canvas[:320].min() == 255 and canvas[320:].max() == 0


def test_nms_keeps_the_best_of_overlapping_boxes_and_separate_ones():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], dtype=np.float32)
    scores = np.array([0.8, 0.9, 0.7], dtype=np.float32)
    assert nms(boxes, scores, 0.4) == [1, 2]


def test_scrfd_decoding_places_anchors_at_cell_corners_two_per_cell():
    stride, size = 32, 64  # a 2 x 2 grid, 8 anchors
    scores = np.zeros((8, 1), np.float32)
    dists = np.ones((8, 4), np.float32)  # one stride in every direction
    kps = np.zeros((8, 10), np.float32)
    _, boxes, points = decode_scrfd(scores, dists, kps, stride, size, size)
    # anchor 6 and 7: cell (x=1, y=1) -> centre (32, 32)
    assert boxes[6].tolist() == [0, 0, 64, 64]
    assert boxes[7].tolist() == boxes[6].tolist()
    assert points[2, 0].tolist() == [32, 0]  # anchor 2: cell (x=1, y=0)
