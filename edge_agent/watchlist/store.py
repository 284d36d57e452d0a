"""The watchlist: SQLite (the source of truth, via sqlite-utils) plus a usearch index per embedding model.

Every write is one SQLite transaction that also appends its audit row; the index is updated after the
commit and saved atomically. A crash between the two leaves the index behind SQLite, which the next open
detects (its keys differ from SQLite's template ids) and repairs by rebuilding the index from SQLite.
Expired subjects never match, whether or not `purge_expired` has run.

Deletion deletes. Retiring subjects (`remove`, `purge_expired`, fleet removals, which call `remove`)
deletes their templates in SQLite (`secure_delete` overwrites the freed pages, the WAL is checkpointed
and truncated) and then REBUILDS the index from SQLite and saves it over the old file, because usearch's
own removal only marks a vector and keeps its bytes in the file. The rebuild is O(N log N) in the
templates left (about 125 s at 1M f16 vectors on 8 x86 cores, well under a second at 10k); a purge of
many subjects rebuilds once. An index file of another embedding model that holds a deleted template is
deleted too (it is rebuilt from SQLite when that model is next opened). Every index save happens under an
advisory lock on the index folder and writes what SQLite holds at that moment, so a process whose index
in memory is older than another's removal does not write the removed vector back (it rebuilds instead).

Exclusions are a reviewer's `false_match` verdicts: the embedding of a face that was wrongly matched to a
subject. A probe nearer to one of a subject's live exclusions than to that subject's best own template
does not return that subject. Only faces a reviewer has seen are kept, each until its expiry, and never
longer than its subject: removal or expiry of the subject deletes them.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import sqlite_utils

from edge_agent.config import Settings
from edge_agent.errors import EdgeAgentError
from edge_agent.watchlist import audit
from edge_agent.watchlist.index import (
    IndexDtype,
    TemplateIndex,
    discard_temporary,
    index_lock,
    keys_in_file,
)
from edge_agent.watchlist.records import Match, NewSubject, NewTemplate, Subject, utc_text
from edge_agent.watchlist.schema import migrate

Clock = Callable[[], datetime]
F32 = npt.NDArray[np.float32]

SUBJECT_QUERY = """
    SELECT s.*, (SELECT count(*) FROM templates t WHERE t.subject_id = s.id) AS templates
    FROM subjects s
"""


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Enrolment:
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
class Exclusion:
    """A reviewer's verdict that one match event's face is not this subject (the embedding is not here)."""

    id: int
    subject_id: str
    event_id: str
    created_at: str
    expires_at: str
    created_by: str


EXCLUSION_COLUMNS = "id, subject_id, event_id, created_at, expires_at, created_by"


@dataclass(frozen=True)
class Stats:
    subjects: dict[str, int]
    live_subjects: int
    templates: int
    index_vectors: int
    index_dtype: str
    index_bytes_on_disk: int
    audit_rows: int
    audit_head: str
    audit_anchor: str


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
        self.index = index
        self.clock = clock
        self.notices: list[str] = []

    # ---- opening ----------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        model_id: str,
        dimensions: int,
        index_dtype: IndexDtype = "f16",
        clock: Clock = utc_now,
    ) -> Watchlist:
        """Opens (creating if needed) the database and the model's index, repairing the index if it
        disagrees with SQLite; what was repaired is in `notices`."""
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
            index = TemplateIndex.load(index_path, dimensions, index_dtype)
            watchlist = cls(
                conn, path, model_id, index or TemplateIndex.empty(index_path, dimensions, index_dtype), clock
            )
            if stale:
                watchlist.notices.append("a temporary index file left by an interrupted save was deleted")
            watchlist._reconcile(found=index is not None)
        return watchlist

    @classmethod
    def for_settings(cls, settings: Settings, dimensions: int, path: Path | None = None) -> Watchlist:
        """The configured watchlist (or the one at `path`) for the configured embedder network: its
        templates are shared by every build of that network, so the index is keyed by the network."""
        return cls.open(
            path or settings.watchlist.path,
            model_id=settings.embedder.model,
            dimensions=dimensions,
            index_dtype=settings.watchlist.index_dtype,
        )

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Watchlist:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _template_ids(self) -> set[int]:
        rows = self.conn.execute("SELECT id FROM templates WHERE model_id = ?", (self.model_id,))
        return {int(row[0]) for row in rows}

    def _reconcile(self, found: bool) -> None:
        """Rebuilds the index when its keys differ from SQLite's, or its file still holds deleted vectors
        (an index saved by an edge-agent before deletion rebuilt it). Runs under `index_lock`."""
        expected = self._template_ids()
        have = self.index.keys()
        deleted = self.index.deleted_on_disk
        if have == expected and (found or not expected) and deleted == 0:
            return
        self._rebuild()
        before = f"the index had {len(have)} vector(s)" if found else "there was no readable index"
        if deleted:
            before += f" and its file still held {deleted} deleted one(s)"
        self.notices.append(
            f"watchlist index rebuilt from SQLite: {before}, SQLite has {len(expected)} template(s)"
        )

    def rebuild_index(self) -> None:
        """Replaces the index, in memory and on disk, with one built from SQLite's templates now."""
        with index_lock(self.index.path.parent):
            self._rebuild()

    def _rebuild(self) -> None:
        """`rebuild_index` for a caller that holds `index_lock`."""
        rows = self.conn.execute(
            "SELECT id, embedding FROM templates WHERE model_id = ? ORDER BY id", (self.model_id,)
        ).fetchall()
        keys = np.array([row["id"] for row in rows], dtype=np.int64)
        vectors = (
            np.stack([self._vector(row["embedding"]) for row in rows])
            if rows
            else np.zeros((0, self.index.dimensions), np.float32)
        )
        fresh = TemplateIndex.build(self.index.path, self.index.dimensions, self.index.dtype, keys, vectors)
        fresh.save()
        self.index = fresh

    def _index_added(self, ids: Sequence[int], vectors: Sequence[F32]) -> None:
        """After an enrolment's commit: adds its vectors to the index and saves, or, when the index in
        memory is not SQLite's templates before the enrolment (another process removed or added some
        since), rebuilds the index from SQLite instead, so no save brings back a deleted vector."""
        with index_lock(self.index.path.parent):
            expected = self._template_ids()
            have = self.index.keys()
            if have.isdisjoint(ids) and have | set(ids) == expected:
                if ids:
                    self.index.add(np.array(ids, dtype=np.int64), np.stack(vectors))
                self.index.save()
            else:
                self._rebuild()

    def _index_deleted(self, deleted: Sequence[int]) -> None:
        """After templates were deleted in SQLite: the index is rebuilt from SQLite and saved over the old
        file (usearch's removal would only mark them), and another model's index file holding any of them
        is deleted (it is rebuilt from SQLite when that model is next opened)."""
        folder = self.index.path.parent
        with index_lock(folder):
            self._rebuild()
            gone = set(deleted)
            for other in sorted(folder.glob("*.usearch")):
                if other != self.index.path and gone and not gone.isdisjoint(keys_in_file(other)):
                    try:
                        other.unlink()
                    except OSError as exc:
                        raise EdgeAgentError(
                            f"cannot delete {other}, which holds deleted templates: {exc.strerror}"
                        ) from None
                discard_temporary(other)

    # ---- writing ------------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One SQLite write transaction: everything inside it lands, or none of it."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

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
        created = utc_text(now)
        added: list[tuple[str, list[int], Enrolment]] = []
        with self.transaction():
            for enrolment in enrolments:
                subject_id = enrolment.subject_id or f"s-{secrets.token_hex(6)}"
                self._insert_subject(subject_id, enrolment.subject, created)
                ids = [self._insert_template(subject_id, t, created) for t in enrolment.templates]
                self._audit_enrolment(subject_id, ids, enrolment, action, context or {}, now)
                added.append((subject_id, ids, enrolment))
        self._index_added(
            [i for _, ids, _ in added for i in ids],
            [t.embedding for _, _, enrolment in added for t in enrolment.templates],
        )
        return [self.subject(subject_id) for subject_id, _, _ in added]

    def _audit_enrolment(
        self,
        subject_id: str,
        ids: list[int],
        enrolment: Enrolment,
        action: str,
        context: dict[str, Any],
        now: datetime,
    ) -> None:
        subject = enrolment.subject
        audit.append(
            self.conn,
            actor=subject.created_by,
            action=action,
            subject_id=subject_id,
            details={
                **context,
                "display_name": subject.display_name,
                "watchlist": subject.watchlist,
                "reason": subject.reason,
                "source": subject.source,
                "expires_at": utc_text(subject.expires_at),
                "model_id": self.model_id,
                audit.SUBJECT_HASH_KEY: audit.subject_digest(self.conn, subject_id),
                "templates": [
                    {"id": i, "photo_sha256": t.photo_sha256, "quality": round(t.quality, 4)}
                    for i, t in zip(ids, enrolment.templates, strict=True)
                ],
            },
            at=now,
        )

    def _insert_subject(self, subject_id: str, subject: NewSubject, created: str) -> None:
        if self.conn.execute("SELECT 1 FROM subjects WHERE id = ?", (subject_id,)).fetchone():
            raise EdgeAgentError(f"subject {subject_id} already exists")
        self.db.table("subjects").insert(
            {
                "id": subject_id,
                "display_name": subject.display_name.strip(),
                "watchlist": subject.watchlist.strip(),
                "reason": subject.reason.strip(),
                "source": subject.source.strip(),
                "created_by": subject.created_by.strip(),
                "created_at": created,
                "expires_at": utc_text(subject.expires_at),
                "status": "active",
            }
        )

    def _insert_template(self, subject_id: str, template: NewTemplate, created: str) -> int:
        cursor = self.conn.execute(
            "INSERT INTO templates (subject_id, model_id, embedding, quality, photo_sha256, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                subject_id,
                self.model_id,
                template.embedding.astype("<f4").tobytes(),
                float(template.quality),
                template.photo_sha256,
                created,
            ),
        )
        assert cursor.lastrowid is not None
        return int(cursor.lastrowid)

    def remove(self, subject_id: str, actor: str, why: str) -> Subject:
        """Removes a subject: its templates, exclusions and index vectors go (the index is rebuilt from
        SQLite, see the module notes); the row stays as 'removed'."""
        subject, deleted = self._retire(subject_id, "removed", "remove", actor, {"why": why})
        self._index_deleted(deleted)
        return subject

    def remove_many(self, subject_ids: Sequence[str], actor: str, why: str) -> list[Subject]:
        """`remove` for several subjects (a fleet's full bundle), with one index rebuild for all of them."""
        retired = [
            self._retire(subject_id, "removed", "remove", actor, {"why": why}) for subject_id in subject_ids
        ]
        if retired:
            self._index_deleted([i for _, deleted in retired for i in deleted])
        return [subject for subject, _ in retired]

    def purge_expired(self, actor: str) -> list[Subject]:
        """Retires every subject whose expiry has passed: templates, exclusions and vectors deleted, an audit
        row each; expired exclusions of live subjects are deleted too (audited, `exclusion_expired`)."""
        moment = self.clock()
        self._purge_expired_exclusions(actor, moment)
        now = utc_text(moment)
        rows = self.conn.execute(
            "SELECT id FROM subjects WHERE status = 'active' AND expires_at <= ? ORDER BY id", (now,)
        ).fetchall()
        retired = [self._retire(row["id"], "expired", "purge", actor, {}) for row in rows]
        if retired:
            self._index_deleted([i for _, deleted in retired for i in deleted])
        return [subject for subject, _ in retired]

    def _retire(
        self, subject_id: str, status: str, action: str, actor: str, details: dict[str, Any]
    ) -> tuple[Subject, list[int]]:
        """Status check, deletion of templates and exclusions, and audit row in one write transaction, so
        two processes retiring the same subject cannot both do it. Returns the subject and the deleted
        template ids; the caller then rebuilds the index (`_index_deleted`)."""
        with self.transaction():
            subject = self.subject(subject_id)
            if subject.status != "active":
                raise EdgeAgentError(f"subject {subject.id} is already {subject.status}")
            ids = [
                int(row[0])
                for row in self.conn.execute("SELECT id FROM templates WHERE subject_id = ?", (subject.id,))
            ]
            exclusions = [
                int(row[0])
                for row in self.conn.execute("SELECT id FROM exclusions WHERE subject_id = ?", (subject.id,))
            ]
            self.conn.execute("DELETE FROM templates WHERE subject_id = ?", (subject.id,))
            self.conn.execute("DELETE FROM exclusions WHERE subject_id = ?", (subject.id,))
            self.conn.execute("UPDATE subjects SET status = ? WHERE id = ?", (status, subject.id))
            details = {
                **details,
                "display_name": subject.display_name,
                "templates_deleted": ids,
                "exclusions_deleted": exclusions,
                audit.SUBJECT_HASH_KEY: audit.subject_digest(self.conn, subject.id),
            }
            audit.append(
                self.conn, actor=actor, action=action, subject_id=subject.id, details=details, at=self.clock()
            )
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the deleted templates' pages leave the WAL
        return self.subject(subject.id), ids

    def add_exclusion(
        self, subject_id: str, event_id: str, embedding: F32, actor: str, expires_at: datetime
    ) -> Exclusion:
        """Keeps a reviewer's `false_match` verdict on match event `event_id`: the wrongly matched face's
        embeddings (one, or the (m, d) stack of every embedding of the track that voted for the match, so
        the look-alike's other views are covered too), so that face stops matching this subject until
        `expires_at`. One transaction with its audit row (the event id, expiry and how many embeddings,
        never the embeddings); any refusal writes nothing."""
        now = self.clock()
        dimensions = self.index.dimensions
        if (
            not isinstance(embedding, np.ndarray)
            or embedding.ndim not in (1, 2)
            or embedding.shape[-1] != dimensions
            or embedding.size == 0
        ):
            shape = tuple(embedding.shape) if isinstance(embedding, np.ndarray) else type(embedding).__name__
            raise EdgeAgentError(f"an exclusion embedding must have {dimensions} values, got shape {shape}")
        embedding = embedding.reshape(-1, dimensions)
        if not np.all(np.isfinite(embedding)):
            raise EdgeAgentError("an exclusion embedding holds NaN or infinite values")
        if not event_id.strip():
            raise EdgeAgentError("an exclusion needs the event id of the reviewed match")
        if not actor.strip():
            raise EdgeAgentError("an exclusion needs the reviewer (actor)")
        expiry = utc_text(expires_at)  # a time without a zone is refused here, before any comparison
        if expires_at <= now:
            raise EdgeAgentError(f"exclusion expiry {expiry} is not in the future")
        with self.transaction():
            subject = self.subject(subject_id)
            if not subject.is_live(now):
                state = subject.status if subject.status != "active" else "expired"
                raise EdgeAgentError(
                    f"subject {subject.id} is {state}; exclusions are for live subjects only"
                )
            if self.conn.execute("SELECT 1 FROM exclusions WHERE event_id = ?", (event_id,)).fetchone():
                raise EdgeAgentError(f"event {event_id} already has an exclusion")
            cursor = self.conn.execute(
                "INSERT INTO exclusions (subject_id, model_id, embedding, event_id, created_at, expires_at, "
                "created_by) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    subject.id,
                    self.model_id,
                    embedding.astype("<f4").tobytes(),
                    event_id,
                    utc_text(now),
                    expiry,
                    actor.strip(),
                ),
            )
            assert cursor.lastrowid is not None
            details: dict[str, object] = {
                "event_id": event_id,
                "expires_at": expiry,
                "model_id": self.model_id,
            }
            if len(embedding) > 1:
                details["embeddings"] = len(embedding)
            audit.append(
                self.conn,
                actor=actor.strip(),
                action="exclusion",
                subject_id=subject.id,
                details=details,
                at=now,
            )
        return self._exclusion(int(cursor.lastrowid))

    def _purge_expired_exclusions(self, actor: str, now: datetime) -> int:
        """Deletes every exclusion whose expiry has passed, an audit row each; returns how many."""
        with self.transaction():
            rows = self.conn.execute(
                f"SELECT {EXCLUSION_COLUMNS} FROM exclusions WHERE expires_at <= ? ORDER BY id",
                (utc_text(now),),
            ).fetchall()
            for row in rows:
                self.conn.execute("DELETE FROM exclusions WHERE id = ?", (row["id"],))
                audit.append(
                    self.conn,
                    actor=actor,
                    action="exclusion_expired",
                    subject_id=row["subject_id"],
                    details={"event_id": row["event_id"], "expires_at": row["expires_at"]},
                    at=now,
                )
        if rows:
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the deleted embeddings leave the WAL
        return len(rows)

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
        row = self.conn.execute(f"{SUBJECT_QUERY} WHERE s.id = ?", (subject_id,)).fetchone()
        if row is None:
            raise EdgeAgentError(f"no subject with id {subject_id!r}")
        return Subject.from_row(dict(row))

    def subjects(self, include_inactive: bool = False) -> list[Subject]:
        where = "" if include_inactive else "WHERE s.status = 'active'"
        rows = self.conn.execute(f"{SUBJECT_QUERY} {where} ORDER BY s.created_at, s.id").fetchall()
        return [Subject.from_row(dict(row)) for row in rows]

    def templates(self, subject_id: str) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT id, model_id, quality, photo_sha256, created_at FROM templates WHERE subject_id = ? "
            "ORDER BY id",
            (subject_id,),
        )
        return [dict(row) for row in rows]

    def exclusions(self, subject_id: str) -> list[Exclusion]:
        """A subject's exclusions, oldest first, expired ones not yet purged included (check expires_at)."""
        rows = self.conn.execute(
            f"SELECT {EXCLUSION_COLUMNS} FROM exclusions WHERE subject_id = ? ORDER BY id", (subject_id,)
        )
        return [Exclusion(**dict(row)) for row in rows]

    def _exclusion(self, exclusion_id: int) -> Exclusion:
        row = self.conn.execute(
            f"SELECT {EXCLUSION_COLUMNS} FROM exclusions WHERE id = ?", (exclusion_id,)
        ).fetchone()
        return Exclusion(**dict(row))

    def search(self, probe: F32, k: int = 5) -> list[Match]:
        """The `k` nearest live subjects, each by its best template, with exact float32 distances; a subject
        is left out when the probe is nearer to one of its live exclusions than to its best template."""
        if probe.ndim != 1 or probe.shape[0] != self.index.dimensions:
            raise EdgeAgentError(
                f"a probe must have {self.index.dimensions} values, got shape {tuple(probe.shape)}"
            )
        now = self.clock()
        count = max(4 * k, 32)
        while True:
            keys, _ = self.index.search(probe, count)
            matches = self._best_per_subject(probe, keys, now)
            if len(matches) >= k or count >= len(self.index):
                return matches[:k]
            count *= 4

    def _best_per_subject(self, probe: F32, keys: npt.NDArray[np.int64], now: datetime) -> list[Match]:
        if len(keys) == 0:
            return []
        marks = ",".join("?" * len(keys))
        rows = self.conn.execute(
            f"SELECT t.id AS template_id, t.embedding, t.subject_id FROM templates t "
            f"JOIN subjects s ON s.id = t.subject_id "
            f"WHERE t.id IN ({marks}) AND s.status = 'active' AND s.expires_at > ?",
            (*[int(key) for key in keys], utc_text(now)),
        ).fetchall()
        best: dict[str, tuple[float, int]] = {}
        for row in rows:
            distance = self._distance(probe, row["embedding"])
            current = best.get(row["subject_id"])
            if current is None or distance < current[0]:
                best[row["subject_id"]] = (distance, int(row["template_id"]))
        self._drop_excluded(probe, best, now)
        ranked = sorted(best.items(), key=lambda item: item[1][0])
        return [Match(self.subject(sid), template_id, distance) for sid, (distance, template_id) in ranked]

    def _drop_excluded(self, probe: F32, best: dict[str, tuple[float, int]], now: datetime) -> None:
        """Removes from `best` each subject with a live exclusion nearer to the probe than its best
        template. One indexed query; with no exclusions it finds no rows and nothing else runs."""
        if not best:
            return
        marks = ",".join("?" * len(best))
        rows = self.conn.execute(
            f"SELECT subject_id, embedding FROM exclusions "
            f"WHERE subject_id IN ({marks}) AND model_id = ? AND expires_at > ?",
            (*best, self.model_id, utc_text(now)),
        ).fetchall()
        for row in rows:
            subject_id = row["subject_id"]
            if subject_id in best and self._nearest(probe, row["embedding"]) < best[subject_id][0]:
                del best[subject_id]

    def _nearest(self, probe: F32, blob: bytes) -> float:
        """Distance from the probe to the nearest embedding of an exclusion (it may hold several)."""
        vectors = np.frombuffer(blob, dtype="<f4").reshape(-1, self.index.dimensions).astype(np.float64)
        return float(np.linalg.norm(vectors - probe, axis=1).min())

    def _distance(self, probe: F32, blob: bytes) -> float:
        return float(np.linalg.norm(self._vector(blob).astype(np.float64) - probe))

    def _vector(self, blob: bytes) -> F32:
        vector = np.frombuffer(blob, dtype="<f4").astype(np.float32)
        if vector.shape[0] != self.index.dimensions:
            raise EdgeAgentError(
                f"{self.path}: a stored template has {vector.shape[0]} values, the model needs "
                f"{self.index.dimensions}"
            )
        return vector

    def stats(self) -> Stats:
        by_status = {
            row["status"]: int(row["n"])
            for row in self.conn.execute("SELECT status, count(*) AS n FROM subjects GROUP BY status")
        }
        live = self.conn.execute(
            "SELECT count(*) FROM subjects WHERE status = 'active' AND expires_at > ?",
            (utc_text(self.clock()),),
        ).fetchone()[0]
        templates = self.conn.execute("SELECT count(*) FROM templates").fetchone()[0]
        audit_rows = self.conn.execute("SELECT count(*) FROM audit").fetchone()[0]
        on_disk = self.index.path.stat().st_size if self.index.path.is_file() else 0
        head = audit.anchor(self.conn)
        return Stats(
            subjects=by_status,
            live_subjects=int(live),
            templates=int(templates),
            index_vectors=len(self.index),
            index_dtype=self.index.dtype,
            index_bytes_on_disk=on_disk,
            audit_rows=int(audit_rows),
            audit_head=head.hash,
            audit_anchor=head.text,
        )


def index_path_for(db_path: Path, model_id: str) -> Path:
    """`watchlist.db` → `watchlist.db.index/<model id>.usearch`."""
    return db_path.with_name(f"{db_path.name}.index") / f"{model_id}.usearch"
