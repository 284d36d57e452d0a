"""The usearch vector index of one embedding model's templates, keyed by template id.

SQLite is the source of truth; the index is a derived, rebuildable cache of it. It is saved atomically
(temporary file, fsync, rename), so a crash leaves either the old or the new file, never half of one.
The caller compares its keys with SQLite on open and rebuilds it on any difference.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from usearch.index import Index

from edge_agent.errors import EdgeAgentError

IndexDtype = Literal["f32", "f16", "i8"]
# Search breadth (HNSW ef). At 1M vectors f16 keeps 0.91 of the correct own-template answers at 256 vs
# 0.74 at usearch's default 64, for 1.6 ms instead of 0.5 ms per search (docs/benchmarks.md).
EXPANSION_SEARCH = 256
F32 = npt.NDArray[np.float32]


class TemplateIndex:
    """Euclidean nearest-neighbour search over templates (usearch `l2sq`, reported as distances)."""

    def __init__(self, path: Path, dimensions: int, dtype: IndexDtype, index: Index) -> None:
        self.path = path
        self.dimensions = dimensions
        self.dtype = dtype
        self._index = index
        self._index.expansion_search = EXPANSION_SEARCH  # type: ignore[misc]  # settable at run time

    @classmethod
    def empty(cls, path: Path, dimensions: int, dtype: IndexDtype) -> TemplateIndex:
        return cls(path, dimensions, dtype, Index(ndim=dimensions, metric="l2sq", dtype=dtype))

    @classmethod
    def load(cls, path: Path, dimensions: int, dtype: IndexDtype) -> TemplateIndex | None:
        """The saved index, or None when it is missing, unreadable or of another shape or dtype."""
        if not path.is_file():
            return None
        try:
            index = Index.restore(str(path), view=False)
        except (RuntimeError, ValueError, OSError):
            return None
        if index is None or index.ndim != dimensions or str(index.dtype).split(".")[-1].lower() != dtype:
            return None
        return cls(path, dimensions, dtype, index)

    def __len__(self) -> int:
        return len(self._index)

    def keys(self) -> set[int]:
        return {int(key) for key in self._index.keys}

    def add(self, keys: npt.NDArray[np.int64], vectors: F32) -> None:
        if len(keys) == 0:
            return
        if vectors.ndim != 2 or vectors.shape[1] != self.dimensions:
            raise EdgeAgentError(
                f"embeddings must have {self.dimensions} values each, got shape {tuple(vectors.shape)}"
            )
        self._index.add(keys.astype(np.uint64), vectors.astype(np.float32))

    def remove(self, keys: npt.NDArray[np.int64]) -> None:
        for key in keys:
            self._index.remove(int(key))

    def search(self, vector: F32, count: int) -> tuple[npt.NDArray[np.int64], F32]:
        """Up to `count` nearest template ids and their Euclidean distances, nearest first."""
        if len(self._index) == 0 or count < 1:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        found = self._index.search(vector.astype(np.float32), min(count, len(self._index)))
        keys = np.asarray(found.keys, dtype=np.int64)
        distances = np.sqrt(np.maximum(np.asarray(found.distances, dtype=np.float32), 0.0))
        return keys, distances

    def save(self) -> None:
        """Write the index atomically: a reader or a crash sees the old file or the new one."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        try:
            self._index.save(str(temporary))
            with temporary.open("rb") as handle:
                os.fsync(handle.fileno())
            temporary.replace(self.path)
            directory = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except OSError as exc:
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise EdgeAgentError(f"cannot save the watchlist index {self.path}: {exc.strerror}") from None

    @property
    def memory_bytes(self) -> int:
        return int(self._index.memory_usage)
