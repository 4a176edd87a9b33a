"""What operators see of live cameras: status camera_stats, the doctor's line and /metrics."""

from __future__ import annotations

import urllib.error
import urllib.request
from datetime import UTC, datetime

import pytest

from footfall.cli.doctor import _status_fields, describe_live
from footfall.edge.metrics import CameraMeter, MetricsServer, render
from footfall.edge.sources import LiveSource
from footfall.sync.events import Status


def camera(camera_id: str, received: int, analysed: int, skipped: int) -> LiveSource:
    source = LiveSource(camera_id, "rtsp://127.0.0.1:9/x", fps=10, now=lambda: datetime.now(UTC))
    source.stats.received, source.stats.converted, source.stats.analysed = received, analysed + skipped, analysed
    source.stats.skipped, source.stats.decode_s = skipped, 0.5
    return source


def test_status_carries_camera_stats_only_when_given():
    plain = Status("online", "1.0", {"door-1": "streaming"}, "ok", store_id="s", ts=datetime.now(UTC)).to_json()
    assert "camera_stats" not in plain
    stats = {"door-1": {"analysed_fps": 9.5, "skipped": 3}}
    full = Status("online", "1.0", {"door-1": "streaming"}, "ok", camera_stats=stats,
                  store_id="s", ts=datetime.now(UTC)).to_json()
    assert full["camera_stats"] == stats


def test_the_meter_reports_per_camera_totals_and_inference_per_analysed_frame():
    meter = CameraMeter([camera("door-1", received=250, analysed=100, skipped=4)])
    meter.add_inference("door-1", 2.0)
    (figures,) = meter.read()
    assert (figures.received, figures.analysed, figures.skipped) == (250, 100, 4)
    assert figures.inference_ms == pytest.approx(20.0)
    assert figures.decode_ms == pytest.approx(1000 * 0.5 / 250)
    assert {"analysed_fps", "skipped", "decode_ms", "inference_ms"} <= set(figures.status_fields())


def test_the_doctor_names_a_camera_that_falls_behind():
    status = {"state": "online", "camera_stats": {
        "door-1": {"analysed_fps": 9.9, "skipped": 0, "decode_ms": 3.0, "inference_ms": 30.0, "frame_age_s": 0.04},
        "door-2": {"analysed_fps": 6.0, "skipped": 80, "decode_ms": 3.0, "inference_ms": 60.0, "frame_age_s": 0.04}}}
    line = describe_live(status, {"door-1": 10, "door-2": 10})
    assert "door-1: 9.9/10 frames/s analysed, 0 skipped" in line
    assert line.count("behind") == 1 and "door-2: 6.0/10 frames/s analysed, 80 skipped" in line
    assert describe_live({"state": "offline"}, {}).startswith("no figures")


@pytest.mark.parametrize("payload", [b"", b"not json", b'{"state": NaN}', b"[1, 2]", b"\xff\xfe"])
def test_a_retained_status_that_is_no_json_object_gives_the_doctor_no_figures(payload):
    assert _status_fields(payload) == {}
    assert describe_live(_status_fields(payload), {"door-1": 5.0}).startswith("no figures yet")


def test_metrics_are_served_as_prometheus_text_on_loopback_and_nothing_else():
    meter = CameraMeter([camera("door-1", received=250, analysed=100, skipped=4)])
    server = MetricsServer("127.0.0.1", 0, lambda: render(meter, {"persons": 1.5}, {"footfall_decisions": 7})).start()
    try:
        page = urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5).read().decode()
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/", timeout=5)
    finally:
        server.stop()
    assert 'footfall_camera_frames_analysed_total{camera="door-1"} 100' in page
    assert 'footfall_camera_frames_skipped_total{camera="door-1"} 4' in page
    assert 'footfall_stage_seconds_total{stage="persons"} 1.5' in page
    assert "footfall_decisions 7" in page and "process_cpu_seconds_total" in page
