"""`footfall camera snapshot`: a frame with the entry line drawn for the installer, and no face on it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from footfall.cli.snapshot import grab
from footfall.config.schema import load_config
from footfall.recognition.persons import person_detector_from_config

CLIP = "store-aisle-detection.gif"  # Intel Corporation, CC BY 4.0 (read from the shared data, never copied)


@pytest.fixture
def config_path(tmp_path: Path, shared_dir: Path) -> Path:
    clip = shared_dir / "data" / "real" / CLIP
    if not clip.is_file():
        pytest.skip("the real clips are not in the shared data")
    path = tmp_path / "footfall.toml"
    path.write_text(f'store_id = "s1"\n[storage]\ndir = "{tmp_path / "state"}"\n[[cameras]]\nid = "aisle"\n'
                    f'source = "{clip}"\nentry_line = [0.45, 0.75, 0.95, 0.75]\ninside = [0.7, 0.5]\n')
    return path


def snapshot(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "footfall", "camera", "snapshot", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=120)


def test_the_snapshot_draws_the_line_and_pixelates_every_person(config_path, tmp_path):
    out = tmp_path / "aisle.png"
    done = snapshot(config_path, "--camera", "aisle", "--out", str(out))
    assert done.returncode == 0, done.stderr
    written = cv2.imread(str(out))
    config = load_config(config_path)
    original = grab(config.cameras[0])
    assert written.shape == original.shape
    people = person_detector_from_config(config).detect(original)
    assert len(people) >= 2
    for person in people:
        # pixelated: nearly every pixel equals its neighbour (in the original, few do)
        assert flat_share(written, person.box) > 0.8 > flat_share(original, person.box) + 0.3
    h = written.shape[0]
    line_row = written[int(0.75 * h), int(0.5 * written.shape[1]):int(0.9 * written.shape[1])]
    assert (np.abs(line_row.astype(int) - (0, 220, 255)).sum(axis=1) < 60).mean() > 0.5  # the yellow line


def flat_share(image: np.ndarray, box: np.ndarray) -> float:
    """Share of the pixels in `box` equal to their left neighbour."""
    x1, y1, x2, y2 = (int(v) for v in box)
    return float((image[y1:y2, x1 + 1:x2] == image[y1:y2, x1:x2 - 1]).all(axis=2).mean())


def test_an_unknown_camera_or_a_bad_output_name_is_a_clear_error(config_path, tmp_path):
    unknown = snapshot(config_path, "--camera", "nope", "--out", str(tmp_path / "x.png"))
    assert unknown.returncode == 2 and "no camera 'nope' (configured: aisle)" in unknown.stderr
    bad = snapshot(config_path, "--camera", "aisle", "--out", str(tmp_path / "x.txt"))
    assert bad.returncode != 0 and "write a .png or .jpg file" in bad.stderr

