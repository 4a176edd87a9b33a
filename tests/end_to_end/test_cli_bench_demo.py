"""The command line: the recognition benchmark's JSON and the zero-configuration demo."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from footfall.tooling.local_hq import hq_unavailable

REQUIRED_KEYS = {"tar_at_far_1e-3", "threshold", "det_ms_p50", "embed_ms_p50", "faces_per_s", "naive_faces_per_s"}


def footfall(*args: str, env: dict[str, str] | None = None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "footfall", *args], capture_output=True, text=True,
                          timeout=600, env={**os.environ, **(env or {})}, cwd=cwd)


def test_bench_recognition_prints_one_json_object_with_the_contract_keys(faces_dir):
    done = footfall("bench", "recognition", "--faces", str(faces_dir), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert REQUIRED_KEYS <= result.keys()
    assert result["images"] == 115 and result["images_without_face"] == 0
    assert result["tar_at_far_1e-3"] >= 0.95
    assert result["faces_per_s"] > 0 and result["naive_faces_per_s"] > 0
    # both sides embed every face they find; their detectors run at different input sizes
    # (ours keeps the aspect, OpenCV's pads to a square), so a faint background face may differ
    assert abs(result["naive_faces"] - result["faces"]) <= 0.03 * result["faces"]


def test_bench_measures_another_pack_from_the_models_dir_against_insightface(faces_dir, shared_models):
    done = footfall("bench", "recognition", "--faces", str(faces_dir), "--json", "--models-dir", str(shared_models),
                    "--detector", "det_500m.onnx", "--recognizer", "mobilefacenet.onnx")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["naive"].startswith("insightface")
    assert result["recognizer"] == "mobilefacenet.onnx" and result["tar_at_far_1e-3"] >= 0.95


def test_bench_names_an_unknown_model(faces_dir):
    done = footfall("bench", "recognition", "--faces", str(faces_dir), "--recognizer", "nope.onnx")
    assert done.returncode == 1
    assert "unknown model 'nope.onnx'" in done.stderr


def test_demo_runs_with_zero_configuration_keeps_its_servers_up_as_asked_and_ends_with_a_summary(
        faces_dir, tmp_path):
    keep = 10.0
    errors = tempfile.TemporaryFile()  # the log, apart from the printed decisions and summary
    proc = subprocess.Popen([sys.executable, "-m", "footfall", "demo", "--keep", f"{keep:g}"], cwd=tmp_path,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors, text=True,
                            env={**os.environ, "FOOTFALL_SAMPLE_FACES": str(faces_dir), "PYTHONUNBUFFERED": "1"})
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()
    try:
        deadline = time.monotonic() + 300
        while not any("stays at" in line for line in lines):
            assert proc.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "".join(lines)
            time.sleep(0.1)
        kept_from = time.monotonic()
        out = "".join(lines)
        servers = [re.search(rf"{what}:\s+(http://\S+)", out).group(1)
                   for what in ("guide console", "HQ dashboard") if hq_unavailable() is None or what != "HQ dashboard"]
        answers: list[tuple[float, bool]] = []  # (seconds into the keep, every server answered)
        while proc.poll() is None:
            answers.append((time.monotonic() - kept_from, all(_answers(url + "/login") for url in servers)))
            time.sleep(0.5)
        ended = time.monotonic() - kept_from
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)
    errors.seek(0)
    assert proc.returncode == 0, "".join(lines) + errors.read().decode(errors="replace")
    during = [ok for at, ok in answers if at < keep - 1]
    assert len(during) >= keep - 2 and all(during), answers
    assert keep - 1 <= ended < keep + 30, f"the demo ended {ended:.1f} s into a keep of {keep:g} s"
    assert "demo ended: console, dashboard, broker and database stopped" in "".join(lines)
    assert not any(_answers(url + "/login") for url in servers), "nothing answers once the demo has ended"
    check_summary("".join(lines), tmp_path)


def check_summary(out: str, tmp_path: Path) -> None:
    """What a finished demo printed: every decision and alert, and a summary matching the script."""
    assert "reentry" in out and "member deepface_p01" in out and "ARRIVAL" in out
    assert "broker: mosquitto on mqtt://127.0.0.1:" in out, "the demo publishes through a broker it starts"
    assert "guide console: http://127.0.0.1:" in out, "and shows the guide console's address"
    summary = out[out.index("summary of"):].splitlines()
    rows = {line.rsplit(maxsplit=2)[0].strip(): line.split()[-2:] for line in summary[2:11]}
    assert list(rows) == ["visits", "re-entries", "member visits", "unidentified", "exits", "arrival alerts",
                          "appointment alerts", "no-show alerts", "guide acks"]
    for label, (counted, expected) in rows.items():
        assert counted == expected, label
    # the CRM's bookings were imported: members arrive for theirs, one never comes, a guide answers
    assert "imported booking demo-1: deepface_p01" in out
    assert [int(rows[k][0]) for k in ("appointment alerts", "no-show alerts", "guide acks")] == [2, 1, 1]
    assert "BOOKED   deepface_p01" in out and "NO-SHOW" in out and "ACK      Wang Fang" in out
    if hq_unavailable() is None:
        assert "HQ dashboard:  http://127.0.0.1:" in out, "with PostgreSQL, the HQ dashboard's address too"
        hq_line = next(line for line in summary if line.strip().startswith("HQ (PostgreSQL):"))
        visits_counted = summary[2].split()[-2]
        assert hq_line.split(":")[1].split()[0] == visits_counted, "HQ ingested every visit the store published"
        assert "refused" not in hq_line, hq_line
        table = out[out.index("HQ, by store:"):].splitlines()[2:5]
        assert [line.split()[0] for line in table] == ["demo-store", "demo-store-2", "demo-store-3"]
        assert all(line.split()[1] == visits_counted for line in table), "three stores, the same day"
        # three stores booked the same three appointments; only the first store's console was answered
        assert ("HQ appointments, all stores: 9 booked, 6 arrived, 3 no-shows; guides answered 1 of 6 arrival "
                "alerts (median 45 s)") in out
    assert not any(tmp_path.iterdir()), "the demo leaves nothing on disk"


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


PIPELINE_KEYS = {"fps", "naive_fps", "visits_true", "visits_counted", "reentries_true", "reentries_counted",
                 "merges_of_different_people"}


def test_bench_pipeline_counts_a_generated_store_day_like_the_ground_truth(faces_dir):
    done = footfall("bench", "pipeline", "--faces", str(faces_dir), "--size", "small", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert PIPELINE_KEYS <= result.keys()
    assert result["visits_counted"] == result["visits_true"] > 0
    assert result["reentries_counted"] == result["reentries_true"] > 0
    assert result["member_visits_counted"] == result["member_visits_true"] == 2
    assert result["unidentified_counted"] == result["unidentified_true"]
    assert result["exits_counted"] == result["exits_true"]
    assert result["merges_of_different_people"] == 0
    # once per passage (3 best shots) plus at most two early refreshes, never once per frame
    assert result["embedded_faces"] <= 6 * result["walks"] < result["frames"]
    assert result["alerts_measured"] == 20 and result["alert_latency_ms_p95"] > 0
