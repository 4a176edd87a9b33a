"""Nearest-neighbour search over unit vectors with integer ids: a thin FAISS adapter.

Inner product on L2-normalised vectors is cosine similarity. Below `HNSW_FROM`
vectors the search is exact (`IndexIDMap2(IndexFlatIP)`); from there on it is an
HNSW graph. The choice is made whenever the FAISS index is (re)built.

The vectors are also kept here, keyed by id: they are the source every build
starts from. A removed vector is zeroed wherever it was held, so its bytes
leave memory at once. HNSW cannot delete, so removed ids stay in the graph as
zeroed, filtered-out nodes until they reach `REBUILD_SHARE` of it; then the
graph is dropped and rebuilt at the next search.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

import faiss
import numpy as np

# Measured on this kind of 2-core box (one OpenMP thread), dim 256, clustered unit
# vectors (noisy samples of anisotropic identity centres), 300 queries, k = 8:
#   vectors         1k      10k     20k     50k     100k
#   flat ms/query   0.03    0.16    0.75    2.5     5.2
#   HNSW ms/query   0.05    0.20    0.28    0.48    0.50   (M=32, efConstruction=40, efSearch=64)
#   HNSW recall@1   1.000   1.000   1.000   1.000   1.000  (same nearest id as flat)
#   HNSW build s    0.0     1.0     3.5     13      32
# Up to 10k flat is as fast as HNSW and exact; at 20k it still costs under 1 ms
# (embedding one face costs ~3.5 ms) with no multi-second graph builds; beyond,
# flat grows linearly while HNSW stays under 0.5 ms.
HNSW_FROM = 20_000
HNSW_M = 32
EF_CONSTRUCTION = 40  # 80 doubled the build time and gained no recall at efSearch 64
EF_SEARCH = 64        # efSearch 32 gave recall@1 0.993 at 50k-100k
REBUILD_SHARE = 0.10  # removed share of an HNSW graph that triggers a rebuild

# One OpenMP thread: on a 2-core box two threads made single queries ~50x slower
# (10k flat: 0.19 ms -> 11 ms) and HNSW builds slower too (20k: 3.2 s -> 4.4 s).
faiss.omp_set_num_threads(1)

Mode = Literal["flat", "hnsw"]


def _matrix(vectors: np.ndarray, dim: int) -> np.ndarray:
    """(n, dim) C-contiguous float32, from one vector or a stack of them."""
    m = np.asarray(vectors, dtype=np.float32)
    if m.ndim == 1:
        m = m[None, :]
    if m.ndim != 2 or m.shape[1] != dim:
        raise ValueError(f"expected vectors of dimension {dim}, got shape {np.shape(vectors)}")
    return np.ascontiguousarray(m)


def _ids(ids: Iterable[int] | np.ndarray) -> np.ndarray:
    if not isinstance(ids, np.ndarray):
        ids = np.fromiter(ids, dtype=np.int64)
    return np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)


class VectorIndex:
    """Unit vectors under int64 ids; `search` returns cosine scores, best first.

    Not thread-safe: its owner serialises calls.
    """

    def __init__(self, dim: int, *, hnsw_from: int = HNSW_FROM, ef_search: int = EF_SEARCH) -> None:
        if dim <= 0:
            raise ValueError(f"dimension must be > 0, got {dim}")
        self.dim = dim
        self.hnsw_from = hnsw_from
        self.ef_search = ef_search
        self._vectors = np.zeros((0, dim), dtype=np.float32)  # rows [0, _n) are live
        self._id_of_row = np.zeros(0, dtype=np.int64)
        self._row_of: dict[int, int] = {}
        self._n = 0
        # faiss is SWIG-generated and its type hints do not describe the API used here: Any.
        self._faiss: Any = None
        self._built: Mode | None = None
        # HNSW only: ids removed from the graph but still nodes of it.
        self._tombstones: set[int] = set()
        self._params: Any = None
        self._selector: tuple = ()  # keeps the SWIG selector objects alive

    def __len__(self) -> int:
        return self._n

    def __contains__(self, vector_id: int) -> bool:
        return int(vector_id) in self._row_of

    def get(self, ids: Iterable[int]) -> np.ndarray:
        """The stored vectors of `ids` (a KeyError for an unknown id)."""
        return self._vectors[[self._row_of[int(i)] for i in ids]].copy()

    @property
    def mode(self) -> Mode:
        """The search in use: the built one, or the one the next build will choose."""
        if self._built is not None:
            return self._built
        return "hnsw" if self._n >= self.hnsw_from else "flat"

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors under new ids (an id already present is a ValueError)."""
        ids = _ids(ids)
        vectors = _matrix(vectors, self.dim)
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
        listed = ids.tolist()
        if len(set(listed)) != len(listed) or any(i in self._row_of for i in listed):
            raise ValueError("vector ids must be new and distinct")
        self._store(ids, vectors)
        if self._faiss is None:
            return
        if self._built == "flat" and self._n >= self.hnsw_from:
            self._drop()  # grown past the threshold: the next search builds HNSW
        elif self._built == "hnsw" and self._tombstones.intersection(listed):
            self._drop()  # an id coming back would stay filtered out
        else:
            self._faiss.add_with_ids(vectors, ids)

    def remove(self, ids: Iterable[int] | np.ndarray) -> int:
        """Remove the given ids (unknown ones are ignored); returns how many were removed."""
        present = [i for i in _ids(ids).tolist() if i in self._row_of]
        for vector_id in present:
            self._unstore(vector_id)
        if not present or self._faiss is None:
            return len(present)
        removed = np.asarray(present, dtype=np.int64)
        self._faiss_rows()[np.isin(faiss.vector_to_array(self._faiss.id_map), removed)] = 0
        if self._built == "flat":
            self._faiss.remove_ids(removed)
        else:
            self._tombstones.update(present)
            self._params, self._selector = None, ()
            if len(self._tombstones) > REBUILD_SHARE * self._faiss.ntotal:
                self._drop()
        return len(present)

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each (n, k), best first; missing neighbours have id -1 and score -inf."""
        queries = _matrix(vectors, self.dim)
        if k <= 0:
            raise ValueError(f"k must be > 0, got {k}")
        if self._n == 0:
            return (np.full((len(queries), k), -np.inf, dtype=np.float32),
                    np.full((len(queries), k), -1, dtype=np.int64))
        if self._faiss is None:
            self._build()
        if self._built == "hnsw":
            scores, ids = self._faiss.search(queries, k, params=self._search_params())
        else:
            scores, ids = self._faiss.search(queries, k)
        scores[ids < 0] = -np.inf
        return scores, ids

    # -- storage: a growable array with swap-delete ------------------------------

    def _store(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        need = self._n + len(ids)
        if need > len(self._vectors):
            capacity = max(need, 2 * len(self._vectors), 64)
            grown = np.zeros((capacity, self.dim), dtype=np.float32)
            grown[:self._n] = self._vectors[:self._n]
            self._vectors.fill(0)  # leave no copy of the vectors in the released buffer
            grown_ids = np.zeros(capacity, dtype=np.int64)
            grown_ids[:self._n] = self._id_of_row[:self._n]
            self._vectors, self._id_of_row = grown, grown_ids
        self._vectors[self._n:need] = vectors
        self._id_of_row[self._n:need] = ids
        for row, vector_id in enumerate(ids.tolist(), start=self._n):
            self._row_of[vector_id] = row
        self._n = need

    def _unstore(self, vector_id: int) -> None:
        row, last = self._row_of.pop(vector_id), self._n - 1
        if row != last:
            moved = int(self._id_of_row[last])
            self._vectors[row] = self._vectors[last]
            self._id_of_row[row] = moved
            self._row_of[moved] = row
        self._vectors[last] = 0
        self._n = last

    # -- the FAISS side ------------------------------------------------------------

    def _drop(self) -> None:
        if self._faiss is not None:
            self._faiss_rows()[:] = 0  # freed memory is not cleared: clear it first
            self._faiss.reset()
        self._faiss, self._built = None, None
        self._tombstones = set()
        self._params, self._selector = None, ()

    def _build(self) -> None:
        mode: Mode = "hnsw" if self._n >= self.hnsw_from else "flat"
        ids = self._id_of_row[:self._n]
        if mode == "flat":
            index: Any = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
        else:
            graph = faiss.IndexHNSWFlat(self.dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
            graph.hnsw.efConstruction = EF_CONSTRUCTION
            index = faiss.IndexIDMap(graph)
        index.add_with_ids(self._vectors[:self._n], ids)
        self._faiss, self._built = index, mode

    def _faiss_rows(self) -> np.ndarray:
        """FAISS's own copy of the vectors as a writable view; row i belongs to `id_map[i]`."""
        flat: Any = faiss.downcast_index(self._faiss.index)
        if self._built == "hnsw":
            flat = faiss.downcast_index(flat.storage)
        if flat.ntotal == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return faiss.rev_swig_ptr(flat.get_xb(), flat.ntotal * self.dim).reshape(-1, self.dim)

    def _search_params(self) -> Any:
        if self._params is None:
            params = getattr(faiss, "SearchParametersHNSW")()  # noqa: B009 - absent from faiss's type hints
            params.efSearch = self.ef_search
            if self._tombstones:
                batch = faiss.IDSelectorBatch(np.fromiter(self._tombstones, dtype=np.int64))
                self._selector = (batch, faiss.IDSelectorNot(batch))
                params.sel = self._selector[1]
            self._params = params
        return self._params


def best_by_owner(scores: np.ndarray, ids: np.ndarray, owner_of: Mapping[int, str]) -> list[tuple[str, float]]:
    """Collapse one query's vector hits to owners: (owner, best score), best first, each owner once.

    `scores`/`ids` are one row of `VectorIndex.search`; ids without an owner
    (missing, -1) are skipped.
    """
    seen: dict[str, float] = {}
    for score, vector_id in zip(scores.tolist(), ids.tolist()):
        owner = owner_of.get(vector_id)
        if owner is not None and owner not in seen:
            seen[owner] = float(score)
    return sorted(seen.items(), key=lambda item: -item[1])
