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

from footfall.config.schema import parse_config
from footfall.recognition.analyzer import FaceAnalyzer
from footfall.recognition.evaluation import labelled_photos
from footfall.recognition.images import pad_photo, read_image

REPO = Path(__file__).resolve().parents[1]

# Fixtures that tests in several modules share live in tests/support and are registered here.
pytest_plugins = [
    "support.pg",
    "support.clips",
    "support.daemon",
    "support.downlink",
    "support.daemon_uplink",
    "support.hq_collector",
    "support.browser",
    "support.console",
    "support.dashboard",
]

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


# Markers come from the folder a test lives in (tests/README.md): `unit`, `box`, `hq` or
# `end_to_end`. Everything outside unit/ runs real servers or whole processes and is also `slow`,
# so `pytest -m "not slow"` is the fast core; a slow test inside unit/ says so with its own marker.
PLACES = ("unit", "box", "hq", "end_to_end")
TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        place = Path(item.path).resolve().relative_to(TESTS).parts[0]
        if place not in PLACES:
            raise pytest.UsageError(f"{item.nodeid}: a test lives in one of tests/{{{','.join(PLACES)}}}/")
        item.add_marker(place)
        if place != "unit":
            item.add_marker(pytest.mark.slow)
