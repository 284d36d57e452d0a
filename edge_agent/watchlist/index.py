"""The usearch vector index of one embedding model's templates, keyed by template id.

SQLite is the source of truth; the index is a derived, rebuildable cache of it. It is saved atomically
(temporary file, fsync, rename, fsync of the folder), so a crash leaves either the old or the new file,
never half of one. The caller compares its keys with SQLite on open and rebuilds it on any difference.

Deletion: usearch's own `remove` only marks a vector deleted; the vector's bytes stay in memory and in
every later save of that index. So this class has no `remove`: a retired template leaves the index only
when the index is rebuilt from SQLite (`build`) and saved over the old file, which then holds only live
templates' vectors. A saved file that still holds deleted vectors (written by an older edge-agent) says
so in its header (`deleted_on_disk`), and the caller rebuilds it. A leftover temporary file from a crash
during a save is deleted on open (`discard_temporary`): it may hold vectors removed since. The replaced
file's disk blocks are released to the filesystem, not overwritten (as with SQLite's truncated WAL);
flash media and journalling make overwriting no stronger a guarantee, so encrypt the disk for that.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from usearch.index import Index

from edge_agent.errors import EdgeAgentError
from edge_agent.face_metric import FaceMetric

IndexDtype = Literal["f32", "f16", "i8"]
F32 = npt.NDArray[np.float32]

# How the index searches, by its size. Measured on the watchlist bench's vectors (real lfw-devtrain
# templates among mixture distractors, f16, one thread, the share of probes whose own template is among
# the 32 candidates returned; docs/benchmarks.md, "Watchlist search"):
# - up to 10,000 templates an exact scan (usearch's SIMD brute force) is as fast as the graph (0.24 ms at
#   10k) and never misses; it also spares small watchlists a graph built on many threads at once, which
#   lost 1.8 % of the own templates at 807 vectors;
# - above, HNSW with connectivity 32 and expansion_add 64 (connectivity 16 / 40 kept 0.908 of them at 1M
#   and ef 256), searched wider as the graph grows: at 100k, ef 384 keeps 0.999 in 1.5 ms (p50); at 1M
#   0.996 in 3.6 ms, where ef 64 keeps 0.920 in 0.8 ms; the 1M build takes 296-303 s on 2 cores.
EXACT_UP_TO = 10_000
CONNECTIVITY = 32
EXPANSION_ADD = 64
# Recall first (`edge-agent bench watchlist --size N`): at 20,807 vectors ef 128 keeps 1.000 in 0.17 ms; at
# 50,807 ef 384 keeps 1.000 (0.88 ms) where 192 keeps 0.998; at 100,807 0.999 (1.4 ms); at 1M 0.996.
BREADTH_BY_SIZE = ((25_000, 128),)  # (up to this many vectors, ef); larger: WIDEST
WIDEST = 384


def search_breadth(size: int) -> int:
    """HNSW expansion_search for an index of `size` vectors: recall of the templates that make true
    matches first, then speed (docs/benchmarks.md, "Watchlist search")."""
    for up_to, breadth in BREADTH_BY_SIZE:
        if size <= up_to:
            return breadth
    return WIDEST


class TemplateIndex:
    """Nearest-neighbour search over templates in the embedder's metric (usearch ranks by the metric's
    `usearch_kind`; `search` reports the metric's distances)."""

    def __init__(
        self,
        path: Path,
        dimensions: int,
        dtype: IndexDtype,
        metric: FaceMetric,
        index: Index,
        deleted_on_disk: int = 0,
    ) -> None:
        self.path = path
        self.dimensions = dimensions
        self.dtype = dtype
        self.metric = metric
        self.deleted_on_disk = deleted_on_disk
        """How many deleted (marked, not erased) vectors the file this index was loaded from holds."""
        self._index = index

    @classmethod
    def empty(cls, path: Path, dimensions: int, dtype: IndexDtype, metric: FaceMetric) -> TemplateIndex:
        index = Index(
            ndim=dimensions,
            metric=metric.usearch_kind,
            dtype=dtype,
            connectivity=CONNECTIVITY,
            expansion_add=EXPANSION_ADD,
        )
        return cls(path, dimensions, dtype, metric, index)

    @classmethod
    def build(
        cls,
        path: Path,
        dimensions: int,
        dtype: IndexDtype,
        metric: FaceMetric,
        keys: npt.NDArray[np.int64],
        vectors: F32,
    ) -> TemplateIndex:
        """A fresh index of exactly these vectors (not saved). O(N log N): HNSW is built anew, about
        5 min for 1M f16 vectors on 2 x86 cores (docs/benchmarks.md), well under a second at 10k."""
        fresh = cls.empty(path, dimensions, dtype, metric)
        fresh.add(keys, vectors)
        return fresh

    @classmethod
    def load(cls, path: Path, dimensions: int, dtype: IndexDtype, metric: FaceMetric) -> TemplateIndex | None:
        """The saved index, or None when it is missing, unreadable or of another shape or dtype."""
        if not path.is_file():
            return None
        try:
            header = Index.metadata(str(path))
            index = Index.restore(str(path), view=False)
        except (RuntimeError, ValueError, OSError):
            return None
        if index is None or index.ndim != dimensions or str(index.dtype).split(".")[-1].lower() != dtype:
            return None
        deleted = int(header.get("count_deleted", 0)) if isinstance(header, dict) else 0
        return cls(path, dimensions, dtype, metric, index, deleted_on_disk=deleted)

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

    def search(self, vector: F32, count: int) -> tuple[npt.NDArray[np.int64], F32]:
        """Up to `count` nearest template ids and their distances in the index's metric, nearest first."""
        if len(self._index) == 0 or count < 1:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        size = len(self._index)
        if size <= EXACT_UP_TO:
            found = self._index.search(vector.astype(np.float32), min(count, size), exact=True)
        else:
            self._index.expansion_search = max(search_breadth(size), count)  # type: ignore[misc]
            found = self._index.search(vector.astype(np.float32), min(count, size))
        keys = np.asarray(found.keys, dtype=np.int64)
        return keys, self.metric.from_index(found.distances)

    @property
    def temporary_path(self) -> Path:
        return temporary_path_for(self.path)

    def save(self) -> None:
        """Write the index atomically: a reader or a crash sees the old file or the new one."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.temporary_path
        try:
            self._index.save(str(temporary))
            with temporary.open("rb") as handle:
                os.fsync(handle.fileno())
            temporary.replace(self.path)
            _fsync_folder(self.path.parent)
        except OSError as exc:
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise EdgeAgentError(f"cannot save the watchlist index {self.path}: {exc.strerror}") from None
        self.deleted_on_disk = 0

    @property
    def memory_bytes(self) -> int:
        return int(self._index.memory_usage)


def temporary_path_for(path: Path) -> Path:
    """Where `save` writes before the rename."""
    return path.with_name(f".{path.name}.tmp")


def discard_temporary(path: Path) -> bool:
    """Deletes the temporary file a save killed midway left beside `path`; whether there was one.
    Call it under `index_lock`, or a live save of another process loses its file."""
    temporary = temporary_path_for(path)
    try:
        temporary.unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise EdgeAgentError(f"cannot delete the stale index file {temporary}: {exc.strerror}") from None
    _fsync_folder(path.parent)
    return True


def keys_in_file(path: Path) -> set[int]:
    """The live keys of a saved index of any shape (memory-mapped, not loaded); empty if unreadable."""
    try:
        index = Index.restore(str(path), view=True)
    except (RuntimeError, ValueError, OSError):
        return set()
    return set() if index is None else {int(key) for key in index.keys}


@contextlib.contextmanager
def index_lock(folder: Path) -> Iterator[None]:
    """An exclusive advisory lock over the index folder, held while one process reads SQLite's templates
    and writes an index from them, so two processes cannot save indexes of two different moments in
    the wrong order (the later save would bring back a template the other had just deleted)."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise EdgeAgentError(f"cannot lock the watchlist index folder {folder}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _fsync_folder(folder: Path) -> None:
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
