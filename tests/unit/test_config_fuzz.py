"""The config loader against hostile input: it refuses with a ConfigError naming the problem, never crashes.

Bounded by the hypothesis profile of conftest.py; `pytest --hypothesis-profile=long -k fuzz` runs long.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from footfall.config.schema import Config, ConfigError, load_config, parse_config

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "example.toml"
pytestmark = pytest.mark.slow  # fuzzing: the long runs of the unit folder
FUZZ = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
                    st.text(max_size=30), st.datetimes())
documents = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)), max_leaves=20)


def leaves(doc: dict, path: tuple = ()) -> list[tuple]:
    out = []
    for key, value in doc.items():
        if isinstance(value, dict):
            out += leaves(value, path + (key,))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for i, item in enumerate(value):
                out += leaves(item, path + (key, i))
        else:
            out.append(path + (key,))
    return out


def example_with_camera() -> dict:
    doc = tomllib.loads(EXAMPLE.read_text())
    doc["cameras"] = [{"id": "door-1", "source": "door.mp4", "fps": 5.0, "start_time": "2026-11-23T10:00:00+08:00"}]
    return doc


KNOWN_LEAVES = leaves(example_with_camera())


@FUZZ
@given(data=st.binary(max_size=2000))
def test_fuzz_arbitrary_bytes_are_refused_with_a_config_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("cfg") / "footfall.toml"
    path.write_bytes(data)
    try:
        load_config(path)
    except ConfigError as exc:
        assert str(path) in str(exc)


@FUZZ
@given(doc=st.dictionaries(st.text(max_size=12), documents, max_size=6))
def test_fuzz_arbitrary_documents_either_validate_or_name_a_key(doc):
    try:
        assert isinstance(parse_config(doc), Config)
    except ConfigError as exc:
        assert all(": " in line for line in str(exc).splitlines())


@FUZZ
@given(which=st.sampled_from(KNOWN_LEAVES), value=scalars)
def test_fuzz_one_wrong_value_in_a_valid_config_is_named_by_its_key_path(which, value):
    doc = example_with_camera()
    target = doc
    for part in which[:-1]:
        target = target[part]
    target[which[-1]] = value
    try:
        parse_config(doc)
    except ConfigError as exc:
        path = "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else p) for i, p in enumerate(which))
        assert path in str(exc), (path, str(exc))
