"""Specification of still-photo reading: errors name the file, good files decode, small photos get padded."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from footfall.recognition.images import ImageError, decode_image, pad_photo, read_image


def gradient_image(height: int = 120, width: int = 160) -> np.ndarray:
    """A deterministic BGR test picture."""
    y, x = np.mgrid[0:height, 0:width]
    return np.dstack([x * 255 // width, y * 255 // height, (x + y) % 256]).astype(np.uint8)


def encoded(image: np.ndarray, ext: str) -> bytes:
    ok, buf = cv2.imencode(ext, image)
    assert ok
    return buf.tobytes()


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# --- unreadable files raise ImageError naming the path ----------------------


def _empty(tmp: Path) -> Path:
    return write(tmp / "empty.jpg", b"")


def _random_bytes(tmp: Path) -> Path:
    return write(tmp / "noise.jpg", np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes())


def _text(tmp: Path) -> Path:
    return write(tmp / "notes.png", b"these are not the pixels you are looking for\n" * 20)


def _truncated_jpeg(tmp: Path) -> Path:
    data = encoded(gradient_image(), ".jpg")
    return write(tmp / "cut.jpg", data[: int(len(data) * 0.4)])


def _missing(tmp: Path) -> Path:
    return tmp / "never-written.jpg"


@pytest.mark.parametrize(
    "make",
    [_empty, _random_bytes, _text, _truncated_jpeg, _missing],
    ids=["empty", "random-bytes", "text", "truncated-jpeg", "missing"],
)
def test_unusable_file_raises_image_error_naming_the_path(make, tmp_path):
    path = make(tmp_path)
    with pytest.raises(ImageError) as info:
        read_image(path)
    assert str(path) in str(info.value)


def test_image_error_is_a_value_error():
    """Callers that catch ValueError (the CLI does) also catch bad images."""
    with pytest.raises(ValueError):
        decode_image(b"", "upload")


def test_decode_image_names_the_given_source():
    with pytest.raises(ImageError, match="^member-42.jpg: "):
        decode_image(b"\x00" * 64, "member-42.jpg")


# --- valid files -------------------------------------------------------------


def test_png_round_trips_to_an_identical_bgr_uint8_array(tmp_path):
    original = gradient_image(90, 70)
    image = read_image(write(tmp_path / "face.png", encoded(original, ".png")))
    assert image.shape == (90, 70, 3)
    assert image.dtype == np.uint8
    np.testing.assert_array_equal(image, original)


def test_grayscale_png_is_read_as_three_channels(tmp_path):
    gray = gradient_image(40, 50)[:, :, 0]
    image = read_image(write(tmp_path / "gray.png", encoded(gray, ".png")))
    assert image.shape == (40, 50, 3)


def test_read_image_accepts_a_string_path(tmp_path):
    path = write(tmp_path / "face.jpg", encoded(gradient_image(), ".jpg"))
    assert read_image(str(path)).shape == (120, 160, 3)


# --- pad_photo ---------------------------------------------------------------


def test_small_photo_gets_a_black_border_of_half_its_size_on_each_side():
    photo = gradient_image(150, 150)
    padded = pad_photo(photo)
    assert padded.shape == (300, 300, 3)
    np.testing.assert_array_equal(padded[75:225, 75:225], photo)
    border = padded.copy()
    border[75:225, 75:225] = 0
    assert not border.any()


def test_small_non_square_photo_is_padded_per_axis():
    assert pad_photo(gradient_image(100, 200)).shape == (200, 400, 3)


def test_photo_at_or_above_the_size_limit_is_left_untouched():
    photo = gradient_image(480, 640)
    result = pad_photo(photo)
    assert result.shape == (480, 640, 3)
    np.testing.assert_array_equal(result, photo)
