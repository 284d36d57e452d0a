"""The hash of a subject row that the audit chain records (`edge_agent.watchlist.subject_hashes`)."""

from __future__ import annotations

from edge_agent.watchlist.subject_hashes import SUBJECT_COLUMNS, subject_sha256


def test_a_subject_hash_covers_every_column_and_tags_what_is_not_text() -> None:
    row = {name: f"value of {name}" for name in SUBJECT_COLUMNS}
    digest = subject_sha256(row)
    for name in SUBJECT_COLUMNS:
        assert subject_sha256(row | {name: row[name] + " "}) != digest, name
    assert subject_sha256(row | {"expires_at": 5}) != subject_sha256(row | {"expires_at": "5"})
    assert subject_sha256(row | {"reason": b"x"}) != subject_sha256(row | {"reason": "78"})
    assert subject_sha256(row | {"unrelated": "x"}) == digest
