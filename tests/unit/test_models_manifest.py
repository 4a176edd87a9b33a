"""Specification of the model manifest, model lookup, verification and download."""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from footfall.models.fetch import fetch, verify_file
from footfall.models.manifest import (
    ENV_MODELS_DIR,
    PACKAGE_DIR,
    ModelError,
    entry_for,
    load_manifest,
    locate,
)

YUNET = "face_detection_yunet_2023mar.onnx"
EDGEFACE = "edgeface_xs.onnx"


@pytest.fixture(autouse=True)
def no_models_dir_override(monkeypatch):
    """Tests start without $FOOTFALL_MODELS_DIR, whatever the caller's shell has."""
    monkeypatch.delenv(ENV_MODELS_DIR, raising=False)


def copy_of_shipped(name: str, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copyfile(PACKAGE_DIR / name, directory / name))


def flip_one_byte(path: Path, offset: int = 1000) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != ENV_MODELS_DIR}
    return subprocess.run(
        [sys.executable, "-m", "footfall", *args],
        capture_output=True, text=True, timeout=60, cwd=cwd, env=env,
    )


# --- manifest contents ------------------------------------------------------


ENTRIES = list(load_manifest().values())


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.file)
def test_every_entry_pins_a_64_hex_digit_sha256(entry):
    assert re.fullmatch(r"[0-9a-f]{64}", entry.sha256)


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.file)
def test_every_entry_is_a_face_detector_a_recognizer_or_a_person_detector(entry):
    assert entry.role in {"detector", "recognizer", "person_detector"}


@pytest.mark.parametrize("entry", [e for e in ENTRIES if e.role == "person_detector"], ids=lambda e: e.file)
def test_every_person_detector_is_of_a_known_family_with_a_calibrated_threshold(entry):
    assert entry.family in {"yolox", "omz_ssd"}
    assert 0 < entry.score_threshold < 1


@pytest.mark.parametrize("entry", [e for e in ENTRIES if e.role == "recognizer"], ids=lambda e: e.file)
def test_every_recognizer_has_an_embedding_size_and_a_known_alignment_template(entry):
    assert entry.embedding_dim > 0
    assert entry.template in {"arcface", "omz"}


def test_exactly_yunet_2023mar_edgeface_xs_and_yolox_nano_are_shipped():
    assert {e.file for e in ENTRIES if e.shipped} == {YUNET, EDGEFACE, "yolox_nano.onnx"}


@pytest.mark.parametrize("name", [YUNET, EDGEFACE, "yolox_nano.onnx"])
def test_shipped_models_allow_commercial_use(name):
    entry = entry_for(name)
    assert entry.commercial_use is True
    assert "NOT for commercial use" not in entry.licence_note


@pytest.mark.parametrize("name", [YUNET, EDGEFACE, "yolox_nano.onnx"])
def test_shipped_model_files_are_in_the_package_and_match_the_manifest(name):
    assert verify_file(entry_for(name), PACKAGE_DIR / name).state == "ok"


@pytest.mark.parametrize("text", ["MIT-YuNet.txt", "BSD-3-Clause-EdgeFace.txt", "Apache-2.0-YOLOX.txt"])
def test_licence_texts_of_the_shipped_models_are_in_the_package(text):
    path = PACKAGE_DIR / "licenses" / text
    assert path.is_file()
    assert path.stat().st_size > 0


@pytest.mark.parametrize("name", ["det_500m.onnx", "w600k_mbf.onnx"])
def test_non_commercial_models_say_so_in_their_licence_note(name):
    assert "NOT for commercial use" in entry_for(name).licence_note


def test_entry_for_rejects_an_unknown_file_listing_the_known_ones():
    with pytest.raises(ModelError, match="unknown model 'nope.onnx'.*" + re.escape(YUNET)):
        entry_for("nope.onnx", "detector")


def test_entry_for_rejects_a_file_in_the_wrong_role():
    with pytest.raises(ModelError, match="is a detector, not a recognizer"):
        entry_for(YUNET, "recognizer")


# --- locate -----------------------------------------------------------------


def test_locate_prefers_the_environment_directory_over_the_configured_one(tmp_path, monkeypatch):
    env_dir, configured = tmp_path / "env", tmp_path / "configured"
    copy_of_shipped(YUNET, env_dir)
    copy_of_shipped(YUNET, configured)
    monkeypatch.setenv(ENV_MODELS_DIR, str(env_dir))
    assert locate(YUNET, configured) == env_dir / YUNET


def test_locate_prefers_the_configured_directory_over_the_shipped_pack(tmp_path):
    configured = tmp_path / "configured"
    copy_of_shipped(YUNET, configured)
    assert locate(YUNET, configured) == configured / YUNET


def test_locate_falls_back_to_the_shipped_pack(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_MODELS_DIR, str(tmp_path / "empty-env"))
    assert locate(YUNET, tmp_path / "empty-configured") == PACKAGE_DIR / YUNET


def test_locate_names_the_file_and_every_searched_directory_when_absent(tmp_path, monkeypatch):
    env_dir = tmp_path / "env"
    env_dir.mkdir()
    monkeypatch.setenv(ENV_MODELS_DIR, str(env_dir))
    with pytest.raises(ModelError) as info:
        locate("absent.onnx", tmp_path / "configured")
    message = str(info.value)
    assert "absent.onnx" in message
    assert str(env_dir) in message
    assert str(PACKAGE_DIR) in message


# --- verify_file ------------------------------------------------------------


def test_unaltered_copy_verifies_ok(tmp_path):
    verdict = verify_file(entry_for(YUNET), copy_of_shipped(YUNET, tmp_path))
    assert verdict.ok and verdict.state == "ok"


def test_copy_with_one_flipped_byte_is_a_hash_mismatch(tmp_path):
    path = copy_of_shipped(YUNET, tmp_path)
    flip_one_byte(path)
    verdict = verify_file(entry_for(YUNET), path)
    assert verdict.state == "hash mismatch" and not verdict.ok


def test_truncated_copy_is_a_size_mismatch(tmp_path):
    path = copy_of_shipped(YUNET, tmp_path)
    path.write_bytes(path.read_bytes()[:-1])
    assert verify_file(entry_for(YUNET), path).state == "size mismatch"


def test_absent_file_is_missing(tmp_path):
    assert verify_file(entry_for(YUNET), tmp_path / YUNET).state == "missing"


def test_entry_without_pinned_size_still_catches_altered_bytes(tmp_path):
    path = copy_of_shipped(YUNET, tmp_path)
    path.write_bytes(path.read_bytes()[:-1])
    assert verify_file(replace(entry_for(YUNET), size=0), path).state == "hash mismatch"


# --- fetch ------------------------------------------------------------------


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture
def http_root(tmp_path):
    """(directory, base URL) of an HTTP server on 127.0.0.1 serving that directory."""
    root = tmp_path / "served"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def served_entry(base_url: str, path: str, **changes):
    return replace(entry_for(YUNET), url=f"{base_url}/{path}", **changes)


def test_fetch_installs_a_download_whose_hash_matches(http_root, tmp_path):
    root, base = http_root
    shutil.copyfile(PACKAGE_DIR / YUNET, root / "yunet.onnx")
    target = tmp_path / "models"
    entry = served_entry(base, "yunet.onnx")
    path = fetch(entry, target, timeout=10, progress=False)
    assert path == target / YUNET
    assert verify_file(entry, path).ok
    assert sorted(p.name for p in target.iterdir()) == [YUNET]


def test_fetch_refuses_a_download_with_the_wrong_hash_and_leaves_nothing(http_root, tmp_path):
    root, base = http_root
    wrong = bytearray((PACKAGE_DIR / YUNET).read_bytes())
    wrong[1000] ^= 0xFF
    (root / "yunet.onnx").write_bytes(bytes(wrong))
    target = tmp_path / "models"
    with pytest.raises(ModelError, match="SHA-256"):
        fetch(served_entry(base, "yunet.onnx"), target, timeout=10, progress=False)
    assert list(target.iterdir()) == []


def test_fetch_takes_the_model_out_of_a_zip_archive(http_root, tmp_path):
    root, base = http_root
    with zipfile.ZipFile(root / "buffalo.zip", "w") as zf:
        zf.write(PACKAGE_DIR / YUNET, f"buffalo/{YUNET}")
        zf.writestr("buffalo/other.onnx", b"not this one")
    target = tmp_path / "models"
    entry = served_entry(base, "buffalo.zip", archive_member=YUNET)
    path = fetch(entry, target, timeout=10, progress=False)
    assert verify_file(entry, path).ok
    assert sorted(p.name for p in target.iterdir()) == [YUNET]


def test_fetch_reports_an_archive_without_the_member_and_leaves_nothing(http_root, tmp_path):
    root, base = http_root
    with zipfile.ZipFile(root / "buffalo.zip", "w") as zf:
        zf.writestr("buffalo/other.onnx", b"not this one")
    target = tmp_path / "models"
    with pytest.raises(ModelError, match="not in the downloaded archive"):
        fetch(served_entry(base, "buffalo.zip", archive_member=YUNET), target, timeout=10, progress=False)
    assert list(target.iterdir()) == []


def test_fetch_reports_a_download_that_is_not_a_zip(http_root, tmp_path):
    root, base = http_root
    (root / "buffalo.zip").write_bytes(b"<html>rate limited</html>")
    with pytest.raises(ModelError, match="not a zip archive"):
        fetch(served_entry(base, "buffalo.zip", archive_member=YUNET), tmp_path / "m", timeout=10, progress=False)


def test_fetch_reports_an_http_error_with_the_manual_alternative(http_root, tmp_path):
    _, base = http_root
    entry = served_entry(base, "absent.onnx")
    with pytest.raises(ModelError, match="Manual alternative") as info:
        fetch(entry, tmp_path / "models", timeout=10, progress=False)
    assert entry.url in str(info.value)


def test_fetch_from_an_unreachable_address_names_it_and_the_manual_alternative(tmp_path):
    entry = replace(entry_for(YUNET), url="http://127.0.0.1:9/x")
    target = tmp_path / "models"
    with pytest.raises(ModelError) as info:
        fetch(entry, target, timeout=5, progress=False)
    message = str(info.value)
    assert "http://127.0.0.1:9/x" in message
    assert "Manual alternative" in message
    assert list(target.iterdir()) == []


def test_fetch_of_an_entry_without_url_says_to_copy_the_file_by_hand(tmp_path):
    entry = replace(entry_for(YUNET), url="")
    with pytest.raises(ModelError, match="copy the file .* by hand") as info:
        fetch(entry, tmp_path / "models", progress=False)
    assert entry.sha256 in str(info.value)


# --- command line -----------------------------------------------------------


def test_cli_models_verify_passes_on_the_shipped_pack_and_shows_licences(tmp_path):
    result = run_cli("models", "verify", "--dir", str(PACKAGE_DIR), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Apache-2.0" in result.stdout


def test_cli_models_verify_fails_on_a_corrupted_model(tmp_path):
    models = tmp_path / "models"
    flip_one_byte(copy_of_shipped(YUNET, models))
    result = run_cli("models", "verify", "--dir", str(models), cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "hash mismatch" in result.stdout
