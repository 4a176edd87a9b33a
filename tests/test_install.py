"""What the install leaves on a store's box (issue 12, items 8 and 18).

The unit keeps onnxruntime's telemetry off and the network closed but for what a drop-in allows;
the config holding the broker password is installed 0600 and reaches the service as a credential;
a config error never echoes a password written into `mqtt.url`; and the daemon's own process writes
no telemetry under the home directory.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
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


def test_the_unit_and_its_network_drop_in_pass_systemd_analyze_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not available")
    footfall = Path(sys.executable).with_name("footfall")
    (tmp_path / "footfall.service").write_text(UNIT.read_text().replace("/opt/footfall/.venv/bin/footfall",
                                                                        str(footfall)))
    (tmp_path / "footfall.service.d").mkdir()
    (tmp_path / "footfall.service.d" / "network.conf").write_text(DROP_IN.read_text())
    done = subprocess.run([analyze, "verify", str(tmp_path / "footfall.service")], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "SYSTEMD_LOG_LEVEL": "notice"})
    assert done.returncode == 0, done.stderr
    assert "network.conf" not in done.stderr and "Unknown" not in done.stderr, done.stderr


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
