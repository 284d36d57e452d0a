"""Which clip of a docking folder comes next, and what became of each file there.

The catalogue looks at the folder (`folder.DockFolder`: which files are complete), recognises each complete
file by its row in the state database (`state.ClipState`), adds new ones (pending with their recording time
from `clip_time`, or skipped or failed with one logged line), applies `after` (keep, delete, move) once to a
done clip, and lists the clips waiting their turn, oldest recording first. Reading the clips is the
source's job (`source.BodycamSource`); the catalogue runs on the capture thread only.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from edge_agent.capture.bodycam.clip_time import ClipError, MissingTimeError, check_complete, recording_time
from edge_agent.capture.bodycam.folder import DockFolder, FileState, fingerprint
from edge_agent.capture.bodycam.settings import BodycamSettings
from edge_agent.capture.bodycam.state import FINAL, Clip, ClipState

_NEVER = datetime.max.replace(tzinfo=UTC)


class ClipCatalogue:
    """The clips of one docking folder as the state database knows them (see the module docstring)."""

    def __init__(self, settings: BodycamSettings, camera_id: str, log: Callable[[str], None]) -> None:
        self.settings = settings
        self.camera_id = camera_id
        self.log = log
        self.folder = DockFolder(settings)
        self.state: ClipState | None = None
        self.initial: set[Path] | None = None  # once: the clip files present at open
        self._delivered: set[str] = set()  # clips whose frames were all handed out in this run
        self._settled: set[FileState] = set()  # files with nothing more to do (final, after applied)
        self._clip_of: dict[Path, str] = {}  # file -> fingerprint, for the files met in this run
        self._unusable: set[Path] = set()  # files that could not even be fingerprinted (logged)

    def start(self, state: ClipState) -> None:
        """The source was opened: use `state`, and with `once` note the clip files present now."""
        self.state = state
        self.initial = {found.path for found in self.folder.files()} if self.settings.once else None

    def delivered(self, fingerprint: str) -> None:
        """Every frame of the clip was handed out (or it failed while being read): not started again."""
        self._delivered.add(fingerprint)

    def waiting(self) -> list[Clip]:
        """Look at the folder: admit the files that became complete, settle the finished ones, and return
        the clips waiting their turn, oldest recording first."""
        waiting: list[Clip] = []
        listed = self.folder.files()
        self._settled.intersection_update(listed)  # forget files that are gone
        for state in self.folder.ready([state for state in listed if state not in self._settled]):
            clip = self._known(state)
            if clip is None:
                continue
            if clip.status in FINAL:
                self._settle(state, clip)
            elif clip.fingerprint not in self._delivered and (
                self.initial is None or state.path in self.initial
            ):
                waiting.append(clip)
        waiting.sort(key=lambda clip: (clip.recorded_at or _NEVER, str(clip.path)))
        return waiting

    def _known(self, state: FileState) -> Clip | None:
        """The clip row of a complete file, adding it (pending, skipped or failed) when it is new."""
        db = self.state
        assert db is not None
        clip = db.by_file(state.path, state.size, state.mtime_ns)
        if clip is None:
            try:
                key = fingerprint(state.path, state.size)
            except OSError as exc:
                if state.path.exists() and state.path not in self._unusable:
                    self._unusable.add(state.path)
                    self.log(f"camera {self.camera_id}: clip {self.name(state.path)} cannot be read: {exc}")
                return None
            clip = db.by_fingerprint(key)
            if clip is not None:
                db.relocate(key, state.path, state.size, state.mtime_ns)
            else:
                clip = self._admit(state, key)
        self._clip_of[state.path] = clip.fingerprint
        return clip

    def _admit(self, state: FileState, key: str) -> Clip:
        """A new clip: pending with its recording time, or skipped/failed with one logged line."""
        db = self.state
        assert db is not None
        name = self.name(state.path)
        try:
            if state.size == 0:
                raise ClipError("empty file (0 bytes)")
            check_complete(state.path)
            recorded = recording_time(state.path, self.settings)
        except MissingTimeError as exc:
            self.log(f"camera {self.camera_id}: clip {name} skipped: {exc}")
            return db.add(
                key,
                state.path,
                state.size,
                state.mtime_ns,
                status="skipped",
                recorded_at=None,
                error=str(exc),
            )
        except (ClipError, OSError) as exc:
            self.log(f"camera {self.camera_id}: clip {name} failed: {exc}")
            return db.add(
                key, state.path, state.size, state.mtime_ns, status="failed", recorded_at=None, error=str(exc)
            )
        return db.add(key, state.path, state.size, state.mtime_ns, status="pending", recorded_at=recorded)

    def _settle(self, state: FileState, clip: Clip) -> None:
        """A finished clip's file: apply `after` to a done one (once), then stop looking at it."""
        self._settled.add(state)
        if clip.status != "done" or self.settings.after == "keep":
            return
        try:
            moved = self.folder.dispose(state.path)
        except OSError as exc:
            self.log(
                f"camera {self.camera_id}: clip {self.name(state.path)}: cannot {self.settings.after} "
                f"it: {exc}"
            )
            return
        where = f"moved to {moved}" if moved is not None else "deleted"
        self.log(f"camera {self.camera_id}: clip {self.name(state.path)} done, {where}")

    def fail(self, clip: Clip, reason: str) -> None:
        """Mark `clip` failed (it stays where it is, for a person to look at) and say why in one line."""
        assert self.state is not None
        self.state.finish(clip.fingerprint, "failed", reason)
        self.log(f"camera {self.camera_id}: clip {self.name(clip.path)} failed: {reason}")

    def once_finished(self) -> bool:
        """Every clip file present at `open` is finished, gone, or unreadable."""
        assert self.initial is not None and self.state is not None
        for path in self.initial:
            if not path.exists() or path in self._unusable:
                continue
            key = self._clip_of.get(path)
            clip = self.state.by_fingerprint(key) if key is not None else None
            if clip is None or clip.status not in FINAL:
                return False
        return True

    def name(self, path: Path) -> str:
        """`path` relative to the docking folder, for log lines."""
        try:
            return str(path.relative_to(self.folder.root))
        except ValueError:
            return str(path)
