"""Specification of the configuration file: defaults, durations, key-path errors, loader, CLI."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
import typing
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import BaseModel

from footfall.config.schema import Config, ConfigError, load_config, parse_config, parse_duration

EXAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "config" / "example.toml"


def config_error(toml_text: str) -> str:
    """The ConfigError message produced by validating `toml_text`."""
    with pytest.raises(ConfigError) as info:
        parse_config(tomllib.loads(toml_text))
    return str(info.value)


def camera(cam_id: str = "entrance", **extra: object) -> dict[str, object]:
    return {"id": cam_id, "source": "0", **extra}


# --- defaults ---------------------------------------------------------------


def test_empty_document_gives_the_documented_defaults():
    config = parse_config({})
    assert config.store_id == "demo-store"
    assert config.dedup.window == timedelta(hours=3)
    assert config.models.detector == "face_detection_yunet_2023mar.onnx"
    assert config.models.recognizer == "edgeface_xs.onnx"


def test_empty_document_has_no_cameras():
    assert parse_config({}).cameras == []


# --- durations --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3h", timedelta(hours=3)),
        ("90m", timedelta(minutes=90)),
        ("45s", timedelta(seconds=45)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        (5400, timedelta(seconds=5400)),
        (2.5, timedelta(seconds=2.5)),
    ],
)
def test_duration_parses_unit_suffixed_text_and_plain_seconds(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("bad", ["3 hours", "", "h", True, False])
def test_duration_rejects_words_empty_text_bare_units_and_booleans(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_dedup_window_accepts_a_duration_string():
    assert parse_config({"dedup": {"window": "90m"}}).dedup.window == timedelta(minutes=90)


def test_invalid_dedup_window_is_reported_under_its_key_path():
    assert "dedup.window" in config_error('[dedup]\nwindow = "3 hours"')


def test_zero_dedup_window_is_rejected():
    assert config_error('[dedup]\nwindow = "0s"') == "dedup.window: must be > 0"


# --- unknown keys name their path -------------------------------------------


def test_unknown_top_level_key_is_named():
    assert config_error('colour = "red"') == "colour: unknown key"


def test_unknown_nested_key_is_named_with_its_section():
    assert config_error('[dedup]\nwindw = "3h"') == "dedup.windw: unknown key"


def test_unknown_key_inside_a_list_is_named_with_its_index():
    message = config_error('[[cameras]]\nid = "a"\nsource = "0"\nfsp = 5')
    assert message == "cameras[0].fsp: unknown key"


# --- value checks -----------------------------------------------------------


def test_non_positive_fps_of_second_camera_is_the_only_reported_problem():
    with pytest.raises(ConfigError) as info:
        parse_config({"cameras": [camera("a"), camera("b", fps=0)]})
    assert str(info.value) == "cameras[1].fps: must be > 0"


def test_duplicate_camera_ids_are_rejected():
    with pytest.raises(ConfigError, match=r"cameras: .*'door'.* twice"):
        parse_config({"cameras": [camera("door"), camera("door")]})


def test_unknown_time_zone_is_rejected_naming_timezone():
    with pytest.raises(ConfigError, match=r"^timezone: .*Mars/Olympus"):
        parse_config({"timezone": "Mars/Olympus"})


def test_known_time_zone_is_accepted():
    assert parse_config({"timezone": "Asia/Singapore"}).timezone == "Asia/Singapore"


def test_non_mqtt_broker_url_is_rejected_naming_mqtt_url():
    with pytest.raises(ConfigError, match=r"^mqtt\.url: "):
        parse_config({"mqtt": {"url": "http://x"}})


@pytest.mark.parametrize("url", ["mqtt://broker", "mqtts://broker.example:8883", "mqtt://10.0.0.5:1883/"])
def test_mqtt_and_mqtts_broker_urls_are_accepted(url):
    assert parse_config({"mqtt": {"url": url}}).mqtt.url == url


def test_camera_start_time_without_utc_offset_is_rejected():
    message = config_error(
        '[[cameras]]\nid = "a"\nsource = "clip.mp4"\nstart_time = 2026-11-23T10:00:00'
    )
    assert message.startswith("cameras[0].start_time: ")
    assert "UTC offset" in message


def test_camera_start_time_with_utc_offset_is_accepted():
    config = parse_config(tomllib.loads(
        '[[cameras]]\nid = "a"\nsource = "clip.mp4"\nstart_time = 2026-11-23T10:00:00+08:00'
    ))
    assert config.cameras[0].start_time.utcoffset() == timedelta(hours=8)


def test_detector_size_must_be_a_multiple_of_32():
    message = config_error("[recognition]\ndet_size = 100")
    assert message == "recognition.det_size: must be a multiple of 32"


def test_every_problem_gets_its_own_line():
    message = config_error('colour = "red"\n[dedup]\nwindw = "3h"')
    assert sorted(message.splitlines()) == ["colour: unknown key", "dedup.windw: unknown key"]


# --- load_config ------------------------------------------------------------


def test_load_config_reads_a_valid_file(tmp_path):
    path = tmp_path / "store.toml"
    path.write_text('store_id = "sg-001"\n[dedup]\nwindow = "2h"\n', encoding="utf-8")
    config = load_config(path)
    assert (config.store_id, config.dedup.window) == ("sg-001", timedelta(hours=2))


def test_load_config_names_the_file_when_it_is_not_toml(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("store_id = = nope\n[unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="TOML") as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_load_config_names_the_file_when_it_is_not_utf8(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes('store_id = "café"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match="UTF-8") as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_load_config_names_the_file_when_it_does_not_exist(tmp_path):
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_load_config_prefixes_every_problem_with_the_file_and_key_path(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('colour = "red"\n[dedup]\nwindw = "3h"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert sorted(str(info.value).splitlines()) == [
        f"{path}: colour: unknown key",
        f"{path}: dedup.windw: unknown key",
    ]


# --- command line -----------------------------------------------------------


@pytest.mark.parametrize("command", ["run", "doctor"])
def test_cli_exits_2_and_names_the_bad_key_on_stderr(command, tmp_path):
    bad = tmp_path / "BAD.toml"
    bad.write_text('[dedup]\nwindw = "3h"\n', encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "FOOTFALL_MODELS_DIR"}
    result = subprocess.run(
        [sys.executable, "-m", "footfall", command, "--config", str(bad)],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env,
    )
    assert result.returncode == 2, result.stderr
    assert "dedup.windw" in result.stderr


# --- the shipped example ----------------------------------------------------


def _model_of(annotation: object) -> type[BaseModel] | None:
    """The BaseModel a field holds directly or as list items, else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation)
        if isinstance(item, type) and issubclass(item, BaseModel):
            return item
    return None


def expected_keys(model: type[BaseModel] = Config, prefix: str = "") -> set[str]:
    """Dotted names of every leaf key of `model` (list sections as their table name)."""
    keys: set[str] = set()
    for name, field in model.model_fields.items():
        sub = _model_of(field.annotation)
        if sub is None:
            keys.add(prefix + name)
        else:
            keys |= expected_keys(sub, prefix + name + ".")
    return keys


_HEADER = re.compile(r"^\s*(?:#\s*)?\[\[?\s*([A-Za-z0-9_.-]+)\s*\]\]?\s*(?:#.*)?$")
_ASSIGNMENT = re.compile(r"^\s*(?:#\s*)?([A-Za-z0-9_.-]+)\s*=")


def assigned_keys(text: str) -> set[str]:
    """Dotted names assigned in TOML text, counting commented-out tables and keys."""
    keys: set[str] = set()
    table = ""
    for line in text.splitlines():
        if header := _HEADER.match(line):
            table = header.group(1) + "."
        elif assignment := _ASSIGNMENT.match(line):
            keys.add(table + assignment.group(1))
    return keys


def test_assigned_keys_helper_reads_commented_tables_and_keys():
    text = '# top\nstore_id = "x"\n[dedup]\n# window = "3h"\n# [[cameras]]\n# id = "a"\n'
    assert assigned_keys(text) == {"store_id", "dedup.window", "cameras.id"}


def test_expected_keys_helper_walks_nested_sections_and_camera_tables():
    keys = expected_keys()
    assert {"store_id", "dedup.window", "recognition.quality.min_score", "cameras.fps"} <= keys
    assert "recognition.quality" not in keys and "cameras" not in keys


def _example_path() -> Path:
    if not EXAMPLE_CONFIG.is_file():
        pytest.skip(f"{EXAMPLE_CONFIG} not written yet")
    return EXAMPLE_CONFIG


def test_example_config_loads_without_error():
    load_config(_example_path())


def test_example_config_mentions_every_config_key():
    """Each key of the Config model appears as `name =` (possibly commented) in its table."""
    text = _example_path().read_text(encoding="utf-8")
    missing = sorted(expected_keys() - assigned_keys(text))
    assert missing == []


def test_a_broker_port_outside_the_tcp_range_is_refused():
    with pytest.raises(ConfigError, match=r"mqtt\.url: must look like"):
        parse_config({"mqtt": {"url": "mqtt://broker:99999"}})
