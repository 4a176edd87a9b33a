"""What the install leaves on a store's box and at head office (issue 12, items 8 and 18; issue 19).

The units keep onnxruntime's telemetry off and the network closed but for what a drop-in allows;
every unit parses (`systemd-analyze verify`) and starts a real `footfall` command; the files under
/etc/footfall stay root's and reach each service as credentials named after them, the names the
example configs use; a config error never echoes a password written into `mqtt.url`; the daemon's
own process writes no telemetry under the home directory. The store box's install leaves out what
only head office and the benchmarks need, and a command that needs it names the extra to install.
(The units' hardening, and each unit run as its service: tests/end_to_end/test_units.py.)
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "footfall.service"
DROP_IN = REPO / "systemd" / "footfall.service.d" / "network.conf.example"


def unit_lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def test_the_unit_turns_telemetry_off_and_allows_only_loopback_and_what_the_drop_in_lists():
    lines = unit_lines(UNIT)
    assert "Environment=ORT_DISABLE_TELEMETRY=1" in lines
    assert "IPAddressDeny=any" in lines and "IPAddressAllow=localhost" in lines
    assert [x for x in lines if x.startswith("IPAddressAllow=")] == ["IPAddressAllow=localhost"]
    allowed = [x for x in unit_lines(DROP_IN) if x.startswith("IPAddressAllow=")]
    assert len(allowed) == 2 and unit_lines(DROP_IN)[0] == "[Service]"


def test_the_unit_reads_the_config_as_a_credential():
    lines = unit_lines(UNIT)
    assert "LoadCredential=footfall.toml:/etc/footfall/footfall.toml" in lines
    (start,) = [x for x in lines if x.startswith("ExecStart=")]
    assert start.endswith("--config ${CREDENTIALS_DIRECTORY}/footfall.toml")


UNITS = sorted(p.name for p in (REPO / "systemd").glob("*.service"))


def exec_start(unit: str, credentials: str = "/run/credentials/x") -> list[str]:
    (start,) = [x.split("=", 1)[1] for x in unit_lines(REPO / "systemd" / unit) if x.startswith("ExecStart=")]
    return [word.replace("${CREDENTIALS_DIRECTORY}", credentials) for word in start.split()]


def test_there_is_a_unit_for_every_service():
    assert {" ".join(exec_start(u)[1:3]).removesuffix(" --config") for u in UNITS} == {
        "run", "console", "hq collect", "hq serve"}


@pytest.mark.parametrize("unit", UNITS)
def test_the_unit_and_its_drop_ins_pass_systemd_analyze_verify(unit, tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not available")
    footfall = Path(sys.executable).with_name("footfall")
    (tmp_path / unit).write_text((REPO / "systemd" / unit).read_text().replace("/opt/footfall/.venv/bin/footfall",
                                                                               str(footfall)))
    (tmp_path / f"{unit}.d").mkdir()
    # the network drop-in serves every unit; the daemon's own drop-ins are checked with it
    drop_ins = [DROP_IN, *(REPO / "systemd" / f"{unit}.d").glob("*.conf.example")]
    for drop_in in drop_ins:
        (tmp_path / f"{unit}.d" / drop_in.name.removesuffix(".example")).write_text(drop_in.read_text())
    done = subprocess.run([analyze, "verify", str(tmp_path / unit)], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "SYSTEMD_LOG_LEVEL": "notice"})
    assert done.returncode == 0, done.stderr
    assert ".conf" not in done.stderr and "Unknown" not in done.stderr, done.stderr


@pytest.mark.parametrize("unit", UNITS)
def test_the_units_command_is_a_footfall_command_that_takes_its_options(unit):
    argv = exec_start(unit)
    assert argv[0] == "/opt/footfall/.venv/bin/footfall"
    done = subprocess.run([sys.executable, "-m", "footfall", *argv[1:], "--help"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    words = argv[1:argv.index("--config")]
    assert done.stdout.startswith(f"usage: footfall {' '.join(words)} ") and "--config" in done.stdout


@pytest.mark.parametrize("unit", UNITS)
def test_every_credential_is_a_root_file_under_etc_footfall_named_as_the_config_names_it(unit):
    """The config names a secret by its path under /etc/footfall (root's commands read it there);
    under the unit, the credential of the same file name is read instead (config.schema.from_credentials)."""
    examples = "".join((REPO / "config" / name).read_text() for name in ("example.toml", "hq.example.toml"))
    loaded = [x.split("=", 1)[1] for x in unit_lines(REPO / "systemd" / unit) if x.startswith("LoadCredential=")]
    assert loaded
    for line in loaded:
        name, source = line.split(":", 1)
        assert source == f"/etc/footfall/{name}"
        if not name.endswith(".toml"):
            assert re.search(rf'password_file = "/etc/footfall/{re.escape(name)}"', examples), name
    config = exec_start(unit, "/creds")[-1]
    assert any(config == f"/creds/{line.split(':')[0]}" for line in loaded)


def test_a_file_the_config_names_is_read_from_the_units_credential_of_that_name(tmp_path, monkeypatch):
    from footfall.config.hq import database_password, parse_hq_config
    from footfall.config.schema import parse_config

    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    (tmp_path / "mqtt-password").write_text("handed over\n")
    (tmp_path / "hq-db-password").write_text("db handed over\n")
    config = parse_config({"mqtt": {"username": "sh-001", "password_file": "/etc/footfall/mqtt-password",
                                    "ca_file": "/etc/ssl/certs/ca-certificates.crt"}})
    assert config.mqtt.secret() == "handed over"
    assert config.mqtt.ca_file == Path("/etc/ssl/certs/ca-certificates.crt")  # no credential of that name
    hq = parse_hq_config({"database": {"password_file": "/etc/footfall/hq-db-password"}})
    assert database_password(hq.database) == "db handed over"
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    outside = parse_config({"mqtt": {"username": "sh-001", "password_file": str(tmp_path / "mqtt-password")}})
    assert outside.mqtt.secret() == "handed over"  # root's own commands read the file itself


def test_the_console_logs_in_with_its_own_password_file(tmp_path):
    from footfall.config.schema import parse_config

    (tmp_path / "console").write_text("console secret\n")
    config = parse_config({"mqtt": {"username": "sh-001", "password": "box secret"},
                           "console": {"mqtt_username": "sh-001-console", "mqtt_password_file": str(tmp_path / "console")}})
    mqtt = config.console_mqtt()
    assert (mqtt.username, mqtt.secret()) == ("sh-001-console", "console secret")
    assert "secret" not in repr(config)


def test_the_store_box_install_leaves_out_head_office_and_benchmark_packages():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]

    def names(requirements: list[str]) -> set[str]:
        return {re.split(r"[\[<>=~!; ]", r, maxsplit=1)[0].lower() for r in requirements}

    base, extras = names(project["dependencies"]), project["optional-dependencies"]
    assert {"psycopg", "psycopg-pool", "insightface", "scipy", "opencv-python"}.isdisjoint(base)
    assert "opencv-python-headless" in base
    assert {"psycopg", "psycopg-pool"} <= names(extras["hq"]) and {"insightface", "scipy"} <= names(extras["bench"])
    assert "footfall[hq,bench]" in extras["test"]


def without(tmp_path: Path, *modules: str) -> dict[str, str]:
    """The environment of a `footfall` process on an install that lacks `modules`."""
    for name in modules:
        (tmp_path / name).mkdir(parents=True)
        (tmp_path / name / "__init__.py").write_text(f"raise ModuleNotFoundError({name!r}, name={name!r})\n")
    return {**os.environ, "PYTHONPATH": str(tmp_path)}


def test_the_box_commands_run_without_head_office_and_benchmark_packages(tmp_path):
    env = without(tmp_path, "psycopg", "psycopg_pool", "insightface", "scipy")
    for argv in (["--help"], ["run", "--help"], ["console", "--help"], ["hq", "serve", "--help"]):
        done = subprocess.run([sys.executable, "-m", "footfall", *argv], capture_output=True, text=True,
                              timeout=60, env=env)
        assert done.returncode == 0, (argv, done.stderr)
    code = "from footfall.tooling.demo import _start_hq; print(_start_hq(None, None))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert done.stdout.splitlines() == [
        "HQ dashboard: not started (psycopg is not installed: pip install 'footfall[hq]')", "None"], done.stderr


@pytest.mark.parametrize("argv", [["hq", "collect", "--config", "HQ"], ["hq", "counts"], ["bench", "hq"]])
def test_a_command_that_needs_the_hq_extra_says_so(tmp_path, argv):
    (tmp_path / "hq.toml").write_text("")
    argv = [str(tmp_path / "hq.toml") if a == "HQ" else a for a in argv]
    done = subprocess.run([sys.executable, "-m", "footfall", *argv], capture_output=True, text=True, timeout=60,
                          env=without(tmp_path / "lib", "psycopg", "psycopg_pool"))
    assert done.returncode == 1
    assert done.stderr.strip() == (f"error: `footfall {' '.join(argv[:2])}` needs psycopg, which comes with the "
                                   f"extra footfall[hq]: pip install 'footfall[hq]'")


def test_the_readme_installs_the_config_readable_by_root_only():
    readme = (REPO / "README.md").read_text()
    (line,) = [x for x in readme.splitlines() if "/etc/footfall/footfall.toml" in x and x.startswith("install")]
    assert re.search(r"-m 0600\b", line), line
    assert "install -d -m 0700 /etc/footfall" in readme


def test_a_config_error_never_echoes_a_password_in_the_broker_url(tmp_path):
    config = tmp_path / "footfall.toml"
    config.write_text('store_id = "sh-001"\n[mqtt]\nurl = "mqtts://sh-001:Tr0ub4dor&3@broker.example.com:8883"\n')
    done = subprocess.run([sys.executable, "-m", "footfall", "run", "--config", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "mqtt.url: must not carry credentials (put them in mqtt.username and mqtt.password)" in done.stderr
    assert "Tr0ub4dor" not in done.stderr + done.stdout and "sh-001:" not in done.stderr
    assert "mqtts://***@broker.example.com:8883" in done.stderr


def test_the_daemons_process_writes_no_onnxruntime_telemetry(tmp_path):
    """onnxruntime keeps a device id and an event queue under ~/.cache/Microsoft unless told not to."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"} | {"HOME": str(home)}
    code = ("import numpy as np\n"
            "from footfall.config.schema import parse_config\n"
            "from footfall.recognition.analyzer import FaceAnalyzer\n"
            "FaceAnalyzer.from_config(parse_config({})).analyze(np.zeros((480, 640, 3), np.uint8))\n"
            "import os; print(os.environ['ORT_DISABLE_TELEMETRY'])\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"
    assert [str(p.relative_to(home)) for p in home.rglob("*")] == []
