"""Shared fixtures: where the real models and labelled photos are, and analyzers built on them.

Real data is found through $FOOTFALL_SHARED_DIR or `../shared` beside the
checkout; tests that need it skip, naming the reason, only when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings
from pg import hq_db, postgres  # noqa: F401  (PostgreSQL fixtures for the HQ tests)

from footfall.config.schema import parse_config
from footfall.recognition.analyzer import FaceAnalyzer
from footfall.recognition.evaluation import labelled_photos
from footfall.recognition.images import pad_photo, read_image

REPO = Path(__file__).resolve().parents[1]

# Fuzzing: a bounded number of examples in the normal suite; the long run is
# `pytest --hypothesis-profile=long -k fuzz` (or FOOTFALL_FUZZ_EXAMPLES=N for another count).
FUZZ_EXAMPLES = int(os.environ.get("FOOTFALL_FUZZ_EXAMPLES", "200"))
settings.register_profile("default", max_examples=FUZZ_EXAMPLES, deadline=None)
settings.register_profile("long", max_examples=max(FUZZ_EXAMPLES, 20_000), deadline=None)
settings.load_profile("default")


def _shared_dir() -> Path | None:
    env = os.environ.get("FOOTFALL_SHARED_DIR")
    candidate = Path(env) if env else REPO.parent / "shared"
    return candidate if candidate.is_dir() else None


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    found = _shared_dir()
    if found is None:
        pytest.skip("shared test data not found: set FOOTFALL_SHARED_DIR or place it at ../shared")
    return found


@pytest.fixture(scope="session")
def shared_models(shared_dir: Path) -> Path:
    return shared_dir / "models"


@pytest.fixture(scope="session")
def faces_dir(shared_dir: Path) -> Path:
    return shared_dir / "data" / "faces"


@pytest.fixture(scope="session")
def scenes_dir(shared_dir: Path) -> Path:
    return shared_dir / "data" / "scenes"


def make_analyzer(models_dir: Path | None, detector: str | None = None, recognizer: str | None = None) -> FaceAnalyzer:
    """An analyzer through the normal config path."""
    models: dict[str, str] = {}
    if models_dir is not None:
        models["dir"] = str(models_dir)
    if detector:
        models["detector"] = detector
    if recognizer:
        models["recognizer"] = recognizer
    return FaceAnalyzer.from_config(parse_config({"models": models}))


@pytest.fixture(scope="session")
def default_analyzer() -> FaceAnalyzer:
    """The default pack shipped in the package: YuNet + EdgeFace-XS."""
    return make_analyzer(None)


@pytest.fixture(scope="session")
def labelled_embeddings(faces_dir: Path, default_analyzer: FaceAnalyzer) -> tuple[np.ndarray, list[str]]:
    """Embedding of the largest face of every labelled photo, with the default pack."""
    return embed_labelled(default_analyzer, faces_dir)


def embed_labelled(analyzer: FaceAnalyzer, faces_dir: Path) -> tuple[np.ndarray, list[str]]:
    vectors, identities = [], []
    for photo in labelled_photos(faces_dir):
        faces = analyzer.analyze(pad_photo(read_image(photo.path)), gated=False)
        assert faces, f"no face found in {photo.path}"
        largest = max(faces, key=lambda f: f.detection.width * f.detection.height)
        assert largest.embedding is not None
        vectors.append(largest.embedding)
        identities.append(photo.identity)
    return np.stack(vectors), identities


# Tests that run whole processes, brokers, browsers, benchmarks or generated store days are
# `slow`; `pytest -m "not slow"` is the fast core (units and in-process broker checks), the full
# suite runs everything.
SLOW_MODULES = {
    "test_admin_channel", "test_camera_faults", "test_cli_bench_demo", "test_cli_people", "test_cli_store",
    "test_console_hardening",
    "test_config_fuzz", "test_daemon", "test_demo_console", "test_privacy", "test_retention_clock",
    "test_scenarios", "test_soak", "test_storage_faults", "test_downlink_attacks", "test_downlink_retained",
    "test_mqtt_dead_letter", "test_install", "test_calibration", "test_hq_reconcile", "test_hq_dashboard",
    "test_hq_dashboard_browser", "test_hq_dashboard_hardening", "test_hq_collector", "test_hq_read",
    "test_hq_storage", "test_hq_erasure", "test_real_clips", "test_snapshot",
}

# Live cameras: each starts GStreamer's RTSP server (and a daemon).
SLOW_MODULES |= {"test_rtsp_live", "test_decided_on_time"}

# Downlink bursts: Mosquitto and a daemon (restarted once).
SLOW_MODULES |= {"test_downlink_burst"}

# Erasure on disk: PostgreSQL, and daemons whose files are read while they run.
SLOW_MODULES |= {"test_erasure_on_disk"}

# Erasure on a stopped box, and failures on the box that must be seen: Mosquitto, daemons, `footfall` processes.
SLOW_MODULES |= {"test_erasure_offline", "test_box_failures"}

# The guide console fed by a real daemon: Mosquitto, `footfall run`, Chromium.
SLOW_MODULES |= {"test_console_daemon"}

# HQ hardening: each starts PostgreSQL and Mosquitto.
SLOW_MODULES |= {"test_hq_poison", "test_hq_identities", "test_hq_bounds"}

# HQ logins refused by PostgreSQL (`footfall hq` processes), and a store's bookings and no-shows
# through a real daemon, Mosquitto and the collector.
SLOW_MODULES |= {"test_hq_login", "test_hq_bookings"}

# Each unit run as its service: Mosquitto, PostgreSQL and a `footfall` process per service.
SLOW_MODULES |= {"test_units"}

# The TLS proxy example: nginx in front of a console and a dashboard (PostgreSQL).
SLOW_MODULES |= {"test_tls_proxy"}

# `footfall render` clips replayed by `footfall run --once` through Mosquitto.
SLOW_MODULES |= {"test_render"}

# Texts the box takes, at head office: Mosquitto, the collector and PostgreSQL.
SLOW_MODULES |= {"test_hq_text_bounds"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        module = getattr(item, "module", None)
        if (module is not None and module.__name__ in SLOW_MODULES) or "fuzz" in item.name:
            item.add_marker(pytest.mark.slow)
