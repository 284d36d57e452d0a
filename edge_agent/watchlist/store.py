"""The watchlist: SQLite (the source of truth, via sqlite-utils) plus a usearch index per embedding model.

`Watchlist` is the one object the rest of the agent uses; each of its jobs is a module of its own:
enrolment (`enrolment`), retiring subjects by removal or expiry (`retirement`), reviewers' exclusions
(`exclusions`), search (`search`), numbers (`stats`), and keeping the index equal to SQLite
(`index_sync`, which also says how deletion deletes).

Every write is one SQLite transaction that also appends its audit row; the index is updated after the
commit and saved atomically. A crash between the two leaves the index behind SQLite, which the next open
detects and repairs by rebuilding the index from SQLite. Expired subjects never match, whether or not
`purge_expired` has run. Distances, in the index and in the exact checks alike, are those of the
embedder's metric (`edge_agent.face_metric`).
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlite_utils

from edge_agent.config import Settings
from edge_agent.errors import EdgeAgentError
from edge_agent.face_metric import EUCLIDEAN, FaceMetric
from edge_agent.watchlist import audit, exclusions, tables
from edge_agent.watchlist.enrolment import insert_enrolment
from edge_agent.watchlist.exclusions import Exclusion
from edge_agent.watchlist.index import IndexDtype, TemplateIndex, discard_temporary, index_lock
from edge_agent.watchlist.index_sync import SyncedIndex
from edge_agent.watchlist.records import Enrolment, Match, NewSubject, NewTemplate, Subject
from edge_agent.watchlist.retirement import expired_subject_ids, retire
from edge_agent.watchlist.schema import migrate
from edge_agent.watchlist.search import nearest_subjects
from edge_agent.watchlist.stats import Stats, watchlist_stats
from edge_agent.watchlist.tables import F32, Clock


def utc_now() -> datetime:
    return datetime.now(UTC)


class Watchlist:
    """One watchlist database and the index of one embedding model's templates."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        path: Path,
        model_id: str,
        index: TemplateIndex,
        clock: Clock,
    ) -> None:
        self.conn = conn
        self.db = sqlite_utils.Database(conn)
        self.path = path
        self.model_id = model_id
        self._synced = SyncedIndex(conn, path, model_id, index)
        self.clock = clock
        self.notices: list[str] = []

    @property
    def index(self) -> TemplateIndex:
        """The index as SQLite's templates last rebuilt or extended it (a rebuild replaces the object)."""
        return self._synced.index

    # ---- opening ----------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        model_id: str,
        dimensions: int,
        metric: FaceMetric = EUCLIDEAN,
        index_dtype: IndexDtype = "f16",
        clock: Clock = utc_now,
    ) -> Watchlist:
        """Opens (creating if needed) the database and the model's index, repairing the index if it
        disagrees with SQLite; what was repaired is in `notices`. `metric` is the embedder's (its
        manifest entry's `metric`; dlib's Euclidean is the only one there is)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(path, isolation_level=None, timeout=30.0)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA secure_delete = ON")  # removed templates are overwritten, not just freed
            migrate(conn, str(path))
        except sqlite3.DatabaseError as exc:
            raise EdgeAgentError(f"{path}: not a usable watchlist database ({exc})") from None
        index_path = index_path_for(path, model_id)
        with index_lock(index_path.parent):
            stale = discard_temporary(index_path)
            index = TemplateIndex.load(index_path, dimensions, index_dtype, metric)
            watchlist = cls(
                conn,
                path,
                model_id,
                index or TemplateIndex.empty(index_path, dimensions, index_dtype, metric),
                clock,
            )
            if stale:
                watchlist.notices.append("a temporary index file left by an interrupted save was deleted")
            notice = watchlist._synced.reconcile(found=index is not None)
            if notice is not None:
                watchlist.notices.append(notice)
        return watchlist

    @classmethod
    def for_settings(
        cls, settings: Settings, dimensions: int, path: Path | None = None, metric: FaceMetric = EUCLIDEAN
    ) -> Watchlist:
        """The configured watchlist (or the one at `path`) for the configured embedder network: its
        templates are shared by every build of that network, so the index is keyed by the network."""
        return cls.open(
            path or settings.watchlist.path,
            model_id=settings.embedder.model,
            dimensions=dimensions,
            metric=metric,
            index_dtype=settings.watchlist.index_dtype,
        )

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Watchlist:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def rebuild_index(self) -> None:
        """Replaces the index, in memory and on disk, with one built from SQLite's templates now."""
        self._synced.rebuild()

    # ---- writing ------------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One SQLite write transaction: everything inside it lands, or none of it."""
        with tables.transaction(self.conn):
            yield

    def enroll(
        self, subject: NewSubject, templates: Sequence[NewTemplate], subject_id: str | None = None
    ) -> Subject:
        """Adds a subject with its templates and the audit row, in one transaction."""
        (enrolled,) = self.enroll_many([Enrolment(subject, tuple(templates), subject_id)])
        return enrolled

    def enroll_many(
        self, enrolments: Sequence[Enrolment], action: str = "enroll", context: dict[str, Any] | None = None
    ) -> list[Subject]:
        """Adds several subjects in ONE transaction (all or none), an audit row each; `context` goes into
        every audit row (e.g. the signer of an imported bundle)."""
        now = self.clock()
        for enrolment in enrolments:
            enrolment.check(now, self.index.dimensions)
        added: list[tuple[str, list[int], Enrolment]] = []
        with self.transaction():
            for enrolment in enrolments:
                subject_id = enrolment.subject_id or f"s-{secrets.token_hex(6)}"
                ids = insert_enrolment(
                    self.db,
                    self.model_id,
                    subject_id,
                    enrolment,
                    action=action,
                    context=context or {},
                    now=now,
                )
                added.append((subject_id, ids, enrolment))
        self._synced.added(
            [i for _, ids, _ in added for i in ids],
            [t.embedding for _, _, enrolment in added for t in enrolment.templates],
        )
        return [self.subject(subject_id) for subject_id, _, _ in added]

    def remove(self, subject_id: str, actor: str, why: str) -> Subject:
        """Removes a subject: its templates, exclusions and index vectors go (the index is rebuilt from
        SQLite, see `index_sync`); the row stays as 'removed'."""
        return self.remove_many([subject_id], actor, why)[0]

    def remove_many(self, subject_ids: Sequence[str], actor: str, why: str) -> list[Subject]:
        """`remove` for several subjects (a fleet's full bundle), with one index rebuild for all of them."""
        return self._retire_all(subject_ids, "removed", "remove", actor, {"why": why})

    def purge_expired(self, actor: str) -> list[Subject]:
        """Retires every subject whose expiry has passed: templates, exclusions and vectors deleted, an audit
        row each; expired exclusions of live subjects are deleted too (audited, `exclusion_expired`)."""
        moment = self.clock()
        exclusions.purge_expired_exclusions(self.conn, actor, moment)
        return self._retire_all(expired_subject_ids(self.conn, moment), "expired", "purge", actor, {})

    def _retire_all(
        self, subject_ids: Sequence[str], status: str, action: str, actor: str, details: dict[str, Any]
    ) -> list[Subject]:
        """Retires each subject (one transaction each), then rebuilds the index once for all of them."""
        retired = [
            retire(
                self.conn, self.clock, subject_id, status=status, action=action, actor=actor, details=details
            )
            for subject_id in subject_ids
        ]
        if retired:
            self._synced.deleted([i for _, deleted in retired for i in deleted])
        return [subject for subject, _ in retired]

    def add_exclusion(
        self, subject_id: str, event_id: str, embedding: F32, actor: str, expires_at: datetime
    ) -> Exclusion:
        """Keeps a reviewer's `false_match` verdict on match event `event_id`: the wrongly matched face's
        embeddings (one, or the (m, d) stack of every embedding of the track that voted for the match, so
        the look-alike's other views are covered too), so that face stops matching this subject until
        `expires_at`. One transaction with its audit row (the event id, expiry and how many embeddings,
        never the embeddings); any refusal writes nothing."""
        return exclusions.add_exclusion(
            self.conn,
            self.model_id,
            self.index.dimensions,
            subject_id=subject_id,
            event_id=event_id,
            embedding=embedding,
            actor=actor,
            expires_at=expires_at,
            now=self.clock(),
        )

    def record_match(self, subject_id: str, actor: str, details: dict[str, Any]) -> None:
        """An audit row for a decided match (the event id, camera, distance): who was flagged, when."""
        with self.transaction():
            audit.append(
                self.conn,
                actor=actor,
                action="match",
                subject_id=subject_id,
                details=details,
                at=self.clock(),
            )

    # ---- reading ------------------------------------------------------------------------------

    def subject(self, subject_id: str) -> Subject:
        return tables.subject(self.conn, subject_id)

    def subjects(self, include_inactive: bool = False) -> list[Subject]:
        return tables.subjects(self.conn, include_inactive)

    def templates(self, subject_id: str) -> list[dict[str, Any]]:
        return tables.templates(self.conn, subject_id)

    def exclusions(self, subject_id: str) -> list[Exclusion]:
        """A subject's exclusions, oldest first, expired ones not yet purged included (check expires_at)."""
        return exclusions.exclusions(self.conn, subject_id)

    def search(self, probe: F32, k: int = 5) -> list[Match]:
        """The `k` nearest live subjects, each by its best template, with exact float32 distances; a subject
        is left out when the probe is nearer to one of its live exclusions than to its best template."""
        return nearest_subjects(self.conn, self.path, self.model_id, self.index, self.clock, probe, k)

    def live_templates(self) -> int:
        """Templates a probe can match now (subject active, not expired): the comparisons of a search."""
        return tables.live_templates(self.conn, self.model_id, self.clock())

    def stats(self) -> Stats:
        return watchlist_stats(self.conn, self.index, self.clock())


def index_path_for(db_path: Path, model_id: str) -> Path:
    """`watchlist.db` → `watchlist.db.index/<model id>.usearch`."""
    return db_path.with_name(f"{db_path.name}.index") / f"{model_id}.usearch"
