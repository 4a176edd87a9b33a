"""Specification of vector ownership: each vector belongs to one owner, ids are never reused,
what an owner loses leaves the index, and search answers with owners."""

from __future__ import annotations

import numpy as np
import pytest

from footfall.dedup.vectors import OwnedVectors, vectors_to_keep

DIM = 16


def unit(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_ids_are_issued_in_order_per_owner_and_never_reused():
    owned = OwnedVectors(DIM)
    v = unit(6)
    assert owned.next_ids(2) == [1, 2]
    assert owned.add("a", v[:2]) == [1, 2]
    assert owned.add("b", v[2]) == [3]  # one vector, not a stack
    assert owned.add("a", v[3]) == [4]
    assert owned.ids_of("a") == [1, 2, 4]
    assert owned.forget("a") == [1, 2, 4]
    assert owned.add("a", v[4:6]) == [5, 6]
    assert len(owned) == 3
    assert owned.owner_of(3) == "b" and owned.owner_of(1) is None


def test_replace_issues_the_announced_ids_and_removes_the_old_ones():
    owned = OwnedVectors(DIM)
    v = unit(5)
    owned.add("p", v[:3])
    announced = owned.next_ids(2)
    new, removed = owned.replace("p", v[3:5])
    assert new == announced == [4, 5]
    assert removed == [1, 2, 3]
    assert owned.ids_of("p") == [4, 5]
    assert all(i not in owned.index for i in removed)
    np.testing.assert_array_equal(owned.vectors_of("p"), v[3:5])


def test_a_forgotten_owner_is_gone_from_the_search_and_the_index():
    owned = OwnedVectors(DIM)
    v = unit(4)
    owned.add("a", v[:2])
    owned.add("b", v[2:4])
    assert owned.nearest_owners(v[0], 4)[0] == ("a", pytest.approx(1.0))
    owned.forget("a")
    assert [owner for owner, _ in owned.nearest_owners(v[0], 4)] == ["b"]
    assert len(owned.index) == 2
    assert owned.forget("a") == [] and owned.forget("nobody") == []


def test_nearest_owners_names_each_owner_once_best_first():
    owned = OwnedVectors(DIM)
    v = unit(3)
    owned.add("a", np.stack([v[0], v[0]]))
    owned.add("b", v[1])
    ranked = owned.nearest_owners(v[0], 3)
    assert [owner for owner, _ in ranked] == ["a", "b"]
    assert ranked[0][1] == pytest.approx(1.0)
    assert OwnedVectors(DIM).nearest_owners(v[0], 3) == []


def test_cap_keeps_the_first_and_the_latest_vectors():
    owned = OwnedVectors(DIM)
    v = unit(5)
    for row in v:
        owned.add("visitor", row)
    assert owned.cap("visitor", 3) == [2, 3]
    assert owned.ids_of("visitor") == [1, 4, 5]
    assert 2 not in owned.index and 3 not in owned.index
    assert owned.cap("visitor", 3) == []
    assert owned.cap("nobody", 3) == []


def test_vectors_to_keep_is_the_first_and_the_most_recent():
    assert vectors_to_keep([1, 2], 3) == [1, 2]
    assert vectors_to_keep([1, 2, 3, 4, 5], 3) == [1, 4, 5]
    assert vectors_to_keep([1, 2, 3], 1) == [1]
    with pytest.raises(ValueError, match="limit"):
        vectors_to_keep([1], 0)


def test_widest_follows_the_owner_with_the_most_vectors():
    owned = OwnedVectors(DIM)
    assert owned.widest() == 0
    v = unit(5)
    owned.add("wide", v[:4])
    owned.add("narrow", v[4])
    assert owned.widest() == 4
    owned.forget("wide")
    assert owned.widest() == 1


def test_restore_keeps_stored_ids_and_issues_new_ones_above_them():
    owned = OwnedVectors(DIM)
    v = unit(3)
    assert owned.restore([(7, "a", v[0]), (9, "b", v[1]), (12, "a", v[2])]) == 3
    assert owned.ids_of("a") == [7, 12] and owned.ids_of("b") == [9]
    assert owned.next_ids(1) == [13]
    with pytest.raises(ValueError, match="new and distinct"):
        owned.restore([(9, "c", v[0])])
    assert owned.ids_of("c") == [] and owned.owner_of(9) == "b"  # nothing half-restored
    assert owned.restore([]) == 0


def test_a_wrong_dimension_changes_nothing():
    owned = OwnedVectors(DIM)
    with pytest.raises(ValueError, match="dimension"):
        owned.add("a", np.ones(DIM + 1, dtype=np.float32))
    assert len(owned) == 0 and owned.ids_of("a") == [] and owned.next_ids(1) == [1]
    with pytest.raises(ValueError, match="owner"):
        owned.add("", unit(1))


def test_nearest_rival_is_the_best_score_of_another_owner():
    owned = OwnedVectors(DIM)
    v = unit(3, seed=1)
    owned.add("a", v[0])
    assert owned.nearest_rival("a", 4) == -1.0  # alone
    owned.add("b", v[1])
    assert owned.nearest_rival("a", 4) == pytest.approx(float(v[0] @ v[1]), abs=1e-5)
    assert owned.nearest_rival("nobody", 4) == -1.0


def test_clear_removes_every_vector_from_the_index():
    owned = OwnedVectors(DIM)
    owned.add("a", unit(3))
    owned.add("b", unit(2, seed=2))
    owned.clear()
    assert len(owned) == 0 and len(owned.index) == 0 and owned.ids_of("a") == []
