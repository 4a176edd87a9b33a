"""Verification on real labelled photos: genuine and impostor pairs separate at the configured threshold."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import embed_labelled, make_analyzer

from footfall.models.manifest import entry_for
from footfall.recognition.evaluation import far_at, pair_scores, tar_at, tar_at_far

MAX_FAR = 1e-3
MIN_TAR = 0.95


def assert_separates(embeddings: np.ndarray, identities: list[str], threshold: float) -> tuple[float, float]:
    genuine, impostor = pair_scores(embeddings, identities)
    assert genuine.size >= 200 and impostor.size >= 6000
    far, tar = far_at(impostor, threshold), tar_at(genuine, threshold)
    assert far <= MAX_FAR, f"FAR {far:.5f} at threshold {threshold}"
    assert tar >= MIN_TAR, f"TAR {tar:.4f} at threshold {threshold}"
    return tar, far


def test_default_pack_separates_genuine_from_impostor_pairs_at_its_configured_threshold(
        labelled_embeddings, default_analyzer):
    embeddings, identities = labelled_embeddings
    assert default_analyzer.pack.recognizer.file == "edgeface_xs.onnx"
    assert_separates(embeddings, identities, default_analyzer.pack.match_threshold)


@pytest.mark.slow
@pytest.mark.parametrize("detector,recognizer", [
    ("det_500m.onnx", "mobilefacenet.onnx"),
    ("scrfd_2.5g_bnkps.onnx", "face-reidentification-retail-0095.onnx"),
    ("face_detection_yunet_2023mar.onnx", "face-reidentification-retail-0095.onnx"),
])
def test_other_packs_from_the_models_dir_separate_at_their_own_thresholds(detector, recognizer, shared_models, faces_dir):
    analyzer = make_analyzer(shared_models, detector, recognizer)
    assert analyzer.pack.match_threshold == entry_for(recognizer).match_threshold
    embeddings, identities = embed_labelled(analyzer, faces_dir)
    assert embeddings.shape[1] == entry_for(recognizer).embedding_dim
    assert_separates(embeddings, identities, analyzer.pack.match_threshold)


def test_embeddings_are_unit_length(labelled_embeddings):
    embeddings, _ = labelled_embeddings
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)


def test_every_photo_is_nearest_to_another_photo_of_the_same_person(labelled_embeddings):
    embeddings, identities = labelled_embeddings
    sims = embeddings @ embeddings.T
    np.fill_diagonal(sims, -np.inf)
    nearest = np.asarray(identities)[sims.argmax(axis=1)]
    assert np.mean(nearest == np.asarray(identities)) >= 0.98


def test_tar_at_far_allows_at_most_the_given_share_of_impostors():
    impostor = np.linspace(-0.2, 0.5, 1000)  # 1000 pairs: FAR 1e-3 admits one
    genuine = np.array([0.45, 0.499, 0.6, 0.9])
    tar, threshold = tar_at_far(genuine, impostor, 1e-3)
    assert far_at(impostor, threshold) <= 1e-3
    assert np.sum(impostor >= threshold) == 0 or np.sum(impostor >= threshold) == 1
    assert tar == pytest.approx(0.5)  # 0.6 and 0.9 are above the second-highest impostor


def test_pair_scores_split_same_and_different_identities():
    e = np.eye(3, dtype=np.float32)
    genuine, impostor = pair_scores(np.vstack([e[0], e[0], e[1]]), ["a", "a", "b"])
    assert genuine.tolist() == [1.0] and impostor.tolist() == [0.0, 0.0]
