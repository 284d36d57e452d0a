"""What the watchlist stores and returns: subjects, their templates, enrolments, and search matches."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_agent.errors import EdgeAgentError

SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


def utc_text(moment: datetime) -> str:
    """UTC ISO-8601 text, the form every time takes in the database (it sorts as text)."""
    if moment.tzinfo is None:
        raise EdgeAgentError(f"time {moment.isoformat()} has no time zone")
    return moment.astimezone(UTC).isoformat(timespec="seconds")


MAX_WATCHLIST_NAME = 64  # match events carry it (edge_agent.events.schema allows 128)


@dataclass(frozen=True)
class NewSubject:
    """Why someone is on the watchlist, who put them there, and until when. All are required."""

    display_name: str
    watchlist: str
    reason: str
    source: str
    created_by: str
    expires_at: datetime

    def check(self, now: datetime) -> None:
        for name in ("display_name", "watchlist", "reason", "source", "created_by"):
            if not str(getattr(self, name)).strip():
                raise EdgeAgentError(f"{name.replace('_', ' ')} must not be empty")
        if len(self.watchlist.strip()) > MAX_WATCHLIST_NAME:
            raise EdgeAgentError(f"watchlist name is longer than {MAX_WATCHLIST_NAME} characters")
        if self.expires_at <= now:
            raise EdgeAgentError(f"expiry {utc_text(self.expires_at)} is not in the future")


@dataclass(frozen=True)
class NewTemplate:
    """One face of a subject: its descriptor and where it came from (the photo's hash, never the photo)."""

    embedding: npt.NDArray[np.float32]
    quality: float
    photo_sha256: str

    def check(self, dimensions: int) -> None:
        if self.embedding.ndim != 1 or self.embedding.shape[0] != dimensions:
            raise EdgeAgentError(
                f"an embedding must have {dimensions} values, got shape {tuple(self.embedding.shape)}"
            )
        if not np.all(np.isfinite(self.embedding)):
            raise EdgeAgentError("an embedding holds NaN or infinite values")
        if not SHA256_HEX.match(self.photo_sha256):
            raise EdgeAgentError(f"photo_sha256 must be 64 lowercase hex digits, got {self.photo_sha256!r}")


@dataclass(frozen=True)
class Enrolment:
    """One subject to add with its templates; `subject_id` keeps a given id (a bundle's), else one is made."""

    subject: NewSubject
    templates: tuple[NewTemplate, ...]
    subject_id: str | None = None

    def check(self, now: datetime, dimensions: int) -> None:
        self.subject.check(now)
        if not self.templates:
            raise EdgeAgentError(f"subject {self.subject.display_name!r} has no face template")
        for template in self.templates:
            template.check(dimensions)


@dataclass(frozen=True)
class Subject:
    id: str
    display_name: str
    watchlist: str
    reason: str
    source: str
    created_by: str
    created_at: str
    expires_at: str
    status: str
    templates: int

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Subject:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})

    def is_live(self, now: datetime) -> bool:
        """Active and not yet expired: the only subjects that may ever match."""
        return self.status == "active" and self.expires_at > utc_text(now)

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass(frozen=True)
class Match:
    """A subject's best template for a probe, and the distance (smaller is more alike)."""

    subject: Subject
    template_id: int
    distance: float
