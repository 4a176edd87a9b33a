"""Vectors grouped by owner over one FAISS index: the bookkeeping the gallery and the visit window share.

An owner (an enrolled person, a visitor's open window) holds vector ids, oldest
first. Ids are issued in increasing order and never reused while the process
runs, so a row already on disk never meets a new vector under its id; every id
maps back to its owner, which turns nearest-vector hits into nearest owners. A
vector that leaves (forgotten owner, capped owner, close) leaves the index,
which zeroes its copies (see index.py). Not thread-safe: the owner of an
`OwnedVectors` serialises calls.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from footfall.dedup.index import VectorIndex, best_by_owner


def vectors_to_keep(vector_ids: list[int], limit: int) -> list[int]:
    """The first vector and the most recent ones, at most `limit` (ids oldest first)."""
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    if len(vector_ids) <= limit:
        return list(vector_ids)
    return [vector_ids[0], *vector_ids[len(vector_ids) - limit + 1:]]


class OwnedVectors:
    """Unit vectors of `dim` dimensions, each owned by one string id, searchable by owner."""

    def __init__(self, dim: int) -> None:
        self.index = VectorIndex(dim)
        self.dim = dim
        self._ids: dict[str, list[int]] = {}  # owner -> vector ids, oldest first
        self._owner_of: dict[int, str] = {}
        self._next_id = 1

    def __len__(self) -> int:
        """How many vectors are held (all owners)."""
        return len(self._owner_of)

    def ids_of(self, owner: str) -> list[int]:
        """The owner's vector ids, oldest first (empty for an unknown owner)."""
        return list(self._ids.get(owner, ()))

    def owner_of(self, vector_id: int) -> str | None:
        """Who owns this vector id, or None."""
        return self._owner_of.get(vector_id)

    def vectors_of(self, owner: str) -> np.ndarray:
        """The owner's vectors, (n, dim), in the order of `ids_of`."""
        return self.index.get(self._ids.get(owner, ()))

    def widest(self) -> int:
        """The most vectors any one owner holds (0 when empty)."""
        return max((len(ids) for ids in self._ids.values()), default=0)

    def next_ids(self, n: int) -> list[int]:
        """The ids the next `add` or `replace` of `n` vectors will issue (none is taken yet):
        for a caller that writes the rows to disk before memory changes."""
        return list(range(self._next_id, self._next_id + n))

    def add(self, owner: str, vectors: np.ndarray) -> list[int]:
        """Append one vector or a stack of them to `owner`'s; returns their new ids."""
        if not owner:
            raise ValueError("owner must not be empty")
        matrix = np.asarray(vectors, dtype=np.float32)
        if matrix.ndim == 1:
            matrix = matrix[None, :]
        ids = self.next_ids(len(matrix))
        self.index.add(np.asarray(ids, dtype=np.int64), matrix)  # a bad shape raises before any bookkeeping
        self._next_id += len(ids)
        self._ids.setdefault(owner, []).extend(ids)
        self._owner_of.update((i, owner) for i in ids)
        return ids

    def replace(self, owner: str, vectors: np.ndarray) -> tuple[list[int], list[int]]:
        """`owner`'s vectors become `vectors`: (new ids, removed ids)."""
        removed = self.forget(owner)
        return self.add(owner, vectors), removed

    def restore(self, rows: Iterable[tuple[int, str, np.ndarray]]) -> int:
        """Take back stored (vector id, owner, vector) rows under their own ids, in id order per owner.

        Later ids are issued above the highest one restored. Returns how many rows were restored.
        """
        ids: list[int] = []
        owners: list[str] = []
        vectors: list[np.ndarray] = []
        for vector_id, owner, vector in rows:
            ids.append(int(vector_id))
            owners.append(owner)
            vectors.append(np.asarray(vector, dtype=np.float32).reshape(self.dim))
        if not ids:
            return 0
        self.index.add(np.asarray(ids, dtype=np.int64), np.stack(vectors))  # a known id raises first
        for vector_id, owner in zip(ids, owners):
            self._ids.setdefault(owner, []).append(vector_id)
            self._owner_of[vector_id] = owner
        self._next_id = max(self._next_id, max(ids) + 1)
        return len(ids)

    def forget(self, owner: str) -> list[int]:
        """Remove every vector of `owner` (from the index too); returns the removed ids."""
        ids = self._ids.pop(owner, [])
        self._drop(ids)
        return ids

    def cap(self, owner: str, limit: int) -> list[int]:
        """Keep `owner`'s first vector and most recent ones, at most `limit`; returns the removed ids."""
        ids = self._ids.get(owner)
        if not ids:
            return []
        kept = vectors_to_keep(ids, limit)
        if len(kept) == len(ids):
            return []
        keep = set(kept)
        dropped = [i for i in ids if i not in keep]
        self._ids[owner] = kept
        self._drop(dropped)
        return dropped

    def clear(self) -> None:
        """Remove every vector of every owner (from the index too)."""
        self._drop(list(self._owner_of))
        self._ids.clear()

    def nearest_owners(self, vector: np.ndarray, k: int) -> list[tuple[str, float]]:
        """Owners of the `k` vectors nearest to `vector`: (owner, best score), best first, each once."""
        if not self._owner_of:
            return []
        scores, ids = self.index.search(vector, k)
        return best_by_owner(scores[0], ids[0], self._owner_of)

    def nearest_rival(self, owner: str, k: int) -> float:
        """The best score another owner's vector reaches among the `k` nearest of each of `owner`'s
        vectors (-1.0 if none does)."""
        own = self._ids.get(owner)
        if not own:
            return -1.0
        scores, ids = self.index.search(self.index.get(own), k)
        return max((s for row_s, row_i in zip(scores, ids) for s, i in zip(row_s.tolist(), row_i.tolist())
                    if self._owner_of.get(i) not in (None, owner)), default=-1.0)

    def _drop(self, ids: list[int]) -> None:
        self.index.remove(ids)
        for vector_id in ids:
            self._owner_of.pop(vector_id, None)
