"""Moving a watchlist between devices: the live subjects to a signed bundle, and a verified bundle in.

A bundle carries descriptors and metadata, never photos. Import checks everything (signature from a
trusted key, model, sizes, expiry, no subject already present) before it writes, then adds every subject
in one transaction: a refused bundle changes nothing.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import numpy as np

from edge_agent.errors import EdgeAgentError
from edge_agent.watchlist.bundle import (
    Bundle,
    BundleSubject,
    BundleTemplate,
    load_private_key,
    read_bundle,
    write_bundle,
)
from edge_agent.watchlist.records import Enrolment, NewSubject, NewTemplate, Subject, utc_text
from edge_agent.watchlist.store import Watchlist


def export_bundle(
    watchlist: Watchlist, key_path: Path, issuer: str, expires_at: datetime
) -> tuple[bytes, int]:
    """The signed bundle of every live subject, and how many subjects it holds."""
    now = watchlist.clock()
    subjects = [s for s in watchlist.subjects() if s.is_live(now)]
    bundle = Bundle(
        model_id=watchlist.model_id,
        dimensions=watchlist.index.dimensions,
        created_at=utc_text(now),
        expires_at=utc_text(expires_at),
        issuer=issuer,
        subjects=tuple(_bundle_subject(watchlist, subject) for subject in subjects),
        signer="",
    )
    return write_bundle(bundle, load_private_key(key_path)), len(subjects)


def _bundle_subject(watchlist: Watchlist, subject: Subject) -> BundleSubject:
    rows = watchlist.conn.execute(
        "SELECT id, quality, photo_sha256, created_at, embedding FROM templates "
        "WHERE subject_id = ? ORDER BY id",
        (subject.id,),
    ).fetchall()
    templates = tuple(
        BundleTemplate(
            id=int(row["id"]),
            quality=float(row["quality"]),
            photo_sha256=row["photo_sha256"],
            created_at=row["created_at"],
            embedding=np.frombuffer(row["embedding"], dtype="<f4").astype(np.float32),
        )
        for row in rows
    )
    return BundleSubject(
        id=subject.id,
        display_name=subject.display_name,
        watchlist=subject.watchlist,
        reason=subject.reason,
        source=subject.source,
        created_by=subject.created_by,
        created_at=subject.created_at,
        expires_at=subject.expires_at,
        templates=templates,
    )


def open_bundle(watchlist: Watchlist, data: bytes, trusted_keys: Collection[str]) -> Bundle:
    """The verified bundle, for this watchlist's model (BundleError otherwise)."""
    return read_bundle(
        data,
        trusted_keys=trusted_keys,
        model_id=watchlist.model_id,
        dimensions=watchlist.index.dimensions,
        now=watchlist.clock(),
    )


def import_bundle(
    watchlist: Watchlist,
    data: bytes,
    trusted_keys: Collection[str],
    actor: str,
    *,
    skip_present: bool = False,
) -> list[Subject]:
    """Verifies the bundle, then adds all its subjects in one transaction; refuses it whole otherwise.
    With `skip_present` (a fleet delta), subjects already on the device are left as they are."""
    bundle = open_bundle(watchlist, data, trusted_keys)
    present = [s.id for s in bundle.subjects if _exists(watchlist, s.id)]
    if skip_present:
        bundle = replace(bundle, subjects=tuple(s for s in bundle.subjects if s.id not in present))
        present = []
    if present:
        raise EdgeAgentError(
            f"bundle refused: subject(s) already on this device: {', '.join(present[:5])}; nothing imported"
        )
    enrolments = [
        Enrolment(
            NewSubject(
                display_name=s.display_name,
                watchlist=s.watchlist,
                reason=s.reason,
                source=s.source,
                created_by=s.created_by,
                expires_at=datetime.fromisoformat(s.expires_at),
            ),
            tuple(NewTemplate(t.embedding, t.quality, t.photo_sha256) for t in s.templates),
            s.id,
        )
        for s in bundle.subjects
    ]
    context = {"imported_by": actor, "bundle_signer": bundle.signer, "bundle_issuer": bundle.issuer}
    return watchlist.enroll_many(enrolments, action="import", context=context)


def _exists(watchlist: Watchlist, subject_id: str) -> bool:
    return watchlist.conn.execute("SELECT 1 FROM subjects WHERE id = ?", (subject_id,)).fetchone() is not None
