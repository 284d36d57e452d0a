"""The docking folder: which clip files are there, which are complete, and what happens to them after.

A clip is complete ("ready") when
1. its size and mtime were the same at two looks at least `stable_s` apart (a copy in progress changes
   both; this is the main gate, since plain `cp`, rsync and SMB clients take no lock), and
2. no process holds a lock on it for writing. Checked with a non-blocking shared `flock` and a
   non-blocking POSIX read lock (`lockf`), each taken and released at once: two system calls, no scan of
   /proc/*/fd. This catches writers that lock while they write (docking software that does, `flock`-based
   scripts, Samba with POSIX locking of its clients' locks); it cannot see writers that do not lock,
   which is why (1) stays the rule. A Linux read lease (F_SETLEASE) would see any open-for-write, but it
   needs the file's owner or CAP_LEASE and sends SIGIO (fatal by default) when a writer opens the file
   while we hold it, so it is not used.
MP4/MOV files are also checked for whole boxes (`clip_time.check_complete`) before they are read.

Hidden files (a leading dot: rsync's and many tools' temporary names) and the `move_to` folder are never
looked at.
"""

from __future__ import annotations

import errno
import fcntl
import fnmatch
import hashlib
import os
import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from edge_agent.capture.bodycam.settings import BodycamSettings

FINGERPRINT_SPAN = 1 << 20  # bytes hashed at each end of a clip


@dataclass(frozen=True)
class FileState:
    path: Path
    size: int
    mtime_ns: int


@dataclass
class _Seen:
    size: int
    mtime_ns: int
    since: float  # monotonic time of the first look that saw this size and mtime


def fingerprint(path: Path, size: int) -> str:
    """sha256 of the size and the first and last MiB: names the recording, whatever its path or mtime."""
    digest = hashlib.sha256(size.to_bytes(8, "little"))
    with path.open("rb") as file:
        digest.update(file.read(FINGERPRINT_SPAN))
        if size > FINGERPRINT_SPAN:
            file.seek(max(FINGERPRINT_SPAN, size - FINGERPRINT_SPAN))
            digest.update(file.read(FINGERPRINT_SPAN))
    return digest.hexdigest()


def held_for_writing(path: Path) -> bool:
    """Whether another process holds an exclusive flock or a POSIX write lock on the file (see the
    module docstring); an unopenable file counts as held (not ready)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError:
        return True
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        try:
            fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EAGAIN):
                return True
            # ENOLCK or EINVAL: the file system keeps no POSIX locks; nothing to see there
        return False
    finally:
        os.close(fd)  # releases both locks


class DockFolder:
    """Finds clip files under `settings.folder` and tells which have held still long enough."""

    def __init__(self, settings: BodycamSettings) -> None:
        assert settings.folder is not None  # CameraSettings refuses type = bodycam without a folder
        self.settings = settings
        self.root = settings.folder.resolve()
        self.move_to = settings.move_to.resolve() if settings.move_to is not None else None
        self._seen: dict[Path, _Seen] = {}

    def files(self) -> list[FileState]:
        """Every regular file matching `patterns` below the folder (sorted by path)."""
        found: list[FileState] = []
        for parent, folders, names in os.walk(self.root):
            here = Path(parent)
            folders[:] = sorted(
                name for name in folders if not name.startswith(".") and here / name != self.move_to
            )
            for name in names:
                if name.startswith(".") or not any(
                    fnmatch.fnmatchcase(name, p) for p in self.settings.patterns
                ):
                    continue
                path = here / name
                try:
                    info = path.stat()
                except OSError:  # gone since the listing
                    continue
                if stat.S_ISREG(info.st_mode):
                    found.append(FileState(path, info.st_size, info.st_mtime_ns))
        return sorted(found, key=lambda state: state.path)

    def ready(self, files: list[FileState]) -> list[FileState]:
        """The files whose size and mtime held still for `stable_s` over at least two looks and that no
        process holds locked for writing; remembers what it saw for the next call."""
        now = time.monotonic()
        present = {state.path for state in files}
        for gone in self._seen.keys() - present:
            del self._seen[gone]
        complete: list[FileState] = []
        for state in files:
            seen = self._seen.get(state.path)
            if seen is None or (seen.size, seen.mtime_ns) != (state.size, state.mtime_ns):
                self._seen[state.path] = _Seen(state.size, state.mtime_ns, now)
                continue  # first look at this size and mtime: ready at the earliest on the next
            if now - seen.since < self.settings.stable_s:
                continue
            if held_for_writing(state.path):
                seen.since = now  # a writer is at it: the quiet time starts again when it lets go
                continue
            complete.append(state)
        return complete

    def forget(self, path: Path) -> None:
        self._seen.pop(path, None)

    def dispose(self, path: Path) -> Path | None:
        """Apply `after` to a processed clip: None for keep or delete, else where it was moved."""
        if self.settings.after == "keep":
            return None
        if self.settings.after == "delete":
            path.unlink(missing_ok=True)
            self.forget(path)
            return None
        assert self.move_to is not None  # the settings refuse after = move without move_to
        try:
            relative = path.relative_to(self.root)
        except ValueError:  # found under another spelling of the folder: keep at least its name
            relative = Path(path.name)
        target = _free_name(self.move_to / relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        _move(path, target)
        self.forget(path)
        return target


def _free_name(target: Path) -> Path:
    """`target`, or with -1, -2, ... before the suffix when a file of that name is there (never overwrite)."""
    candidate = target
    number = 0
    while candidate.exists():
        number += 1
        candidate = target.with_name(f"{target.stem}-{number}{target.suffix}")
    return candidate


def _move(source: Path, target: Path) -> None:
    """Rename within a file system; across file systems copy to a hidden name, fsync, rename into place,
    and only then delete the source, so a power cut leaves at least one whole copy."""
    try:
        os.link(source, target)  # fails if target exists: never overwrites
    except FileExistsError:
        raise
    except OSError:
        pass  # another file system, or one without hard links (FAT/exFAT docking drives)
    else:
        source.unlink()
        return
    if source.stat().st_dev == target.parent.stat().st_dev:
        if target.exists():
            raise FileExistsError(errno.EEXIST, "will not overwrite", str(target))
        source.rename(target)
        return
    partial = target.with_name(f".{target.name}.partial")
    shutil.copy2(source, partial)
    with partial.open("rb") as file:
        os.fsync(file.fileno())
    if target.exists():
        partial.unlink()
        raise FileExistsError(errno.EEXIST, "will not overwrite", str(target))
    partial.rename(target)
    source.unlink()
