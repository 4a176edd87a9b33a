"""hq.toml: the example parses, errors name the key, and the password never comes from the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from footfall.config.hq import PASSWORD_ENV, database_password, load_hq_config, parse_hq_config
from footfall.config.schema import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_the_example_is_valid_and_holds_the_defaults():
    config = load_hq_config(REPO / "config" / "hq.example.toml")
    assert config == parse_hq_config({})


@pytest.mark.parametrize("data, message", [
    ({"database": {"url": "postgresql://hq:secret@db/footfall"}}, "database.url: must not carry a password"),
    ({"database": {"url": "mysql://db/x"}}, "database.url: must be a libpq URL"),
    ({"collector": {"batchsize": 10}}, "collector.batchsize: unknown key"),
    ({"collector": {"batch_size": 0}}, "collector.batch_size: must be >= 1"),
    ({"collector": {"group": "a/b"}}, "collector.group"),
    ({"timezones": {"sh-001": "Mars/Olympus"}}, "unknown IANA time zone"),
    ({"silent_after": "soon"}, "silent_after"),
])
def test_errors_name_the_key(data, message):
    with pytest.raises(ConfigError, match=message):
        parse_hq_config(data)


def test_the_password_comes_from_the_file_else_the_environment(tmp_path):
    assert database_password(parse_hq_config({}).database, env={PASSWORD_ENV: "from-env"}) == "from-env"
    assert database_password(parse_hq_config({}).database, env={}) is None
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    config = parse_hq_config({"database": {"password_file": str(secret)}})
    assert database_password(config.database, env={PASSWORD_ENV: "from-env"}) == "from-file"
    with pytest.raises(ConfigError, match="database.password_file"):
        database_password(parse_hq_config({"database": {"password_file": str(tmp_path / "none")}}).database)
