"""`footfall bench soak`: a short soak of the daemon against a local Mosquitto loses no event."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from support.broker import mosquitto_path

pytestmark = pytest.mark.skipif(mosquitto_path() is None, reason="mosquitto is not installed")

KEYS = {"rss_mb_start", "rss_mb_end", "events_sent", "events_received", "lost", "max_outbox_depth",
        "threads_start", "threads_end", "fds_start", "fds_end"}


def test_a_short_soak_reports_its_figures_and_loses_nothing(faces_dir):
    done = subprocess.run([sys.executable, "-m", "footfall", "bench", "soak", "--minutes", "0.2", "--json",
                           "--faces", str(faces_dir)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert KEYS <= result.keys()
    assert result["loops"] >= 1 and result["exit_code"] == 0
    assert result["events_sent"] > 0 and result["lost"] == 0
    assert result["events_received"] == result["events_sent"]
    assert result["threads_end"] <= result["threads_start"] + 1
    assert result["rss_mb_start"] > 0 and result["fds_end"] > 0
