"""Specification of the vector index: exact below the size threshold, HNSW above, same answers, removals stick."""

from __future__ import annotations

import numpy as np
import pytest

from footfall.dedup.index import VectorIndex, best_by_owner

DIM = 64


def looks(centres: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n unit vectors, each a noisy look of a random identity centre (cosine ~0.85 to it)."""
    noise = rng.standard_normal((n, DIM)).astype(np.float32)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    x = centres[rng.integers(0, len(centres), n)] + 0.6 * noise
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def filled(vectors: np.ndarray, hnsw_from: int) -> VectorIndex:
    index = VectorIndex(DIM, hnsw_from=hnsw_from)
    index.add(np.arange(len(vectors), dtype=np.int64) + 1000, vectors)
    return index


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    """3000 stored looks of 600 identities, and 200 new looks of them to search for."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((600, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    return looks(centres, 3000, rng), looks(centres, 200, rng)


def test_flat_and_hnsw_find_the_same_nearest_vector_on_clustered_data(data):
    vectors, probes = data
    flat, hnsw = filled(vectors, hnsw_from=10**9), filled(vectors, hnsw_from=0)
    flat_scores, flat_ids = flat.search(probes, 5)
    hnsw_scores, hnsw_ids = hnsw.search(probes, 5)
    assert (flat.mode, hnsw.mode) == ("flat", "hnsw")
    assert np.array_equal(flat_ids[:, 0], hnsw_ids[:, 0])
    assert np.allclose(flat_scores[:, 0], hnsw_scores[:, 0], atol=1e-5)


def test_scores_are_cosine_similarities_best_first(data):
    vectors, _ = data
    index = filled(vectors[:100], hnsw_from=10**9)
    scores, ids = index.search(vectors[7], 3)
    assert ids[0, 0] == 1007 and scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    assert scores[0, 1] == pytest.approx(float(vectors[7] @ vectors[ids[0, 1] - 1000]), abs=1e-5)
    assert np.all(np.diff(scores[0]) <= 0)


@pytest.mark.parametrize("hnsw_from", [10**9, 0], ids=["flat", "hnsw"])
def test_removed_ids_are_never_returned_and_the_rest_still_are(data, hnsw_from):
    vectors, _ = data
    index = filled(vectors[:1000], hnsw_from=hnsw_from)
    index.search(vectors[:1], 1)  # build before removing
    removed = np.arange(1000, 1500, dtype=np.int64)
    index.remove(removed[:20])  # a few: HNSW filters them out of the graph it has
    _, ids = index.search(vectors[:20], 10)
    assert not np.isin(ids, removed[:20]).any()
    assert index.remove(removed) == 480  # already removed ids are ignored
    _, ids = index.search(vectors[:1000], 10)
    assert not np.isin(ids, removed).any()
    assert len(index) == 500
    assert np.array_equal(index.search(vectors[500:1000], 1)[1][:, 0], np.arange(1500, 2000))


def test_the_mode_switches_to_hnsw_at_the_threshold_and_back_to_flat_when_it_shrinks(data):
    vectors, _ = data
    index = VectorIndex(DIM, hnsw_from=100)
    index.add(np.arange(99), vectors[:99])
    index.search(vectors[0], 1)
    assert index.mode == "flat"
    index.add(np.array([99]), vectors[99])
    assert index.search(vectors[99], 1)[1][0, 0] == 99
    assert index.mode == "hnsw"
    index.remove(np.arange(60))
    assert index.search(vectors[80], 1)[1][0, 0] == 80
    assert index.mode == "flat"


def test_missing_neighbours_have_id_minus_one_and_score_minus_infinity(data):
    vectors, _ = data
    empty = VectorIndex(DIM)
    scores, ids = empty.search(vectors[0], 2)
    assert ids.tolist() == [[-1, -1]] and np.all(np.isneginf(scores))
    index = filled(vectors[:2], hnsw_from=10**9)
    scores, ids = index.search(vectors[0], 4)
    assert ids[0, 2:].tolist() == [-1, -1] and np.all(np.isneginf(scores[0, 2:]))


def test_ids_must_be_new_and_vectors_of_the_right_dimension(data):
    vectors, _ = data
    index = filled(vectors[:3], hnsw_from=10**9)
    with pytest.raises(ValueError, match="new and distinct"):
        index.add(np.array([1000]), vectors[3])
    with pytest.raises(ValueError, match="dimension 64"):
        index.add(np.array([1]), np.ones(32, dtype=np.float32))


def test_hits_collapse_to_owners_each_with_their_best_score():
    scores = np.array([0.9, 0.8, 0.7, 0.6, -np.inf])
    ids = np.array([1, 2, 3, 4, -1])
    owners = {1: "a", 2: "a", 3: "b", 4: "c"}
    assert best_by_owner(scores, ids, owners) == [("a", pytest.approx(0.9)), ("b", pytest.approx(0.7)),
                                                  ("c", pytest.approx(0.6))]
