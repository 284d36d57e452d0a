"""Signed watchlist bundles: subjects and their embeddings (never photos) moved between devices.

A bundle file is a small UTF-8 JSON envelope::

    {"format": "edge-agent-watchlist-bundle", "version": 1,
     "payload": "<base64 of the canonical JSON payload>",
     "signer": "<Ed25519 public key, 64 hex>", "signature": "<Ed25519 signature of the payload bytes, hex>"}

The signature covers the exact payload bytes, so nothing has to be re-serialised to check it, and it is
checked before anything inside the payload is read: an untrusted or altered bundle is refused without its
contents ever being parsed. The payload holds the model id, the embedding size, the bundle's creation and
expiry times, the issuer and the subjects; an embedding travels as base64 of little-endian float32 bytes.

Everything here is pure (no database): the store imports a `Bundle` in one transaction.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edge_agent import bounded, signed
from edge_agent.bounded import InputRefusedError
from edge_agent.errors import EdgeAgentError
from edge_agent.signed import HEX_DIGITS, canonical, short
from edge_agent.signed import public_key_hex as public_key_hex  # part of this module's API

BUNDLE_FORMAT = "edge-agent-watchlist-bundle"
BUNDLE_VERSION = 1


class BundleError(EdgeAgentError):
    """A bundle or key that cannot be used; the message is one line saying why."""


PAYLOAD_LIMITS = bounded.JsonLimits(bounded.MAX_BUNDLE_PAYLOAD)
BUNDLE = signed.Kind(
    BUNDLE_FORMAT, BUNDLE_VERSION, "watchlist bundle", "bundle", BundleError, bounded.MAX_BUNDLE_PAYLOAD
)


# --- keys ------------------------------------------------------------------------------------------


def generate_key(path: Path) -> str:
    """Writes a new Ed25519 private key (PEM, PKCS8, unencrypted, mode 0600) to `path`; returns the
    public key as 64 hex characters. An existing file is never overwritten."""
    return signed.generate_key(path, BundleError)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    return signed.load_private_key(path, BundleError)


def parse_public_key(hex_text: str) -> Ed25519PublicKey:
    return signed.parse_public_key(hex_text, BundleError)


# --- data ------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class BundleTemplate:
    """One embedding of a subject; `id` is the issuing device's template id (the importer assigns its own).

    Compared by value (the embedding with `np.array_equal`), so bundles compare equal after a round trip;
    like any object holding an array it is not hashable.
    """

    id: int
    quality: float
    photo_sha256: str
    created_at: str
    embedding: npt.NDArray[np.float32]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BundleTemplate):
            return NotImplemented
        same_fields = (self.id, self.quality, self.photo_sha256, self.created_at) == (
            other.id,
            other.quality,
            other.photo_sha256,
            other.created_at,
        )
        return same_fields and np.array_equal(self.embedding, other.embedding)


@dataclass(frozen=True)
class BundleSubject:
    id: str
    display_name: str
    watchlist: str
    reason: str
    source: str
    created_by: str
    created_at: str
    expires_at: str
    templates: tuple[BundleTemplate, ...]


@dataclass(frozen=True)
class Bundle:
    """A watchlist extract. Times are UTC ISO-8601 text, as in the database; `signer` (public key hex)
    is filled in by `read_bundle` and ignored by `write_bundle` unless it names a different key."""

    model_id: str
    dimensions: int
    created_at: str
    expires_at: str
    issuer: str
    subjects: tuple[BundleSubject, ...]
    signer: str = ""


# --- writing ---------------------------------------------------------------------------------------


def write_bundle(bundle: Bundle, private_key: Ed25519PrivateKey) -> bytes:
    """The signed bundle file's bytes. Refuses (BundleError) data that `read_bundle` would refuse."""
    signer = public_key_hex(private_key)
    if bundle.signer and bundle.signer.strip().lower() != signer:
        raise BundleError(f"cannot write bundle: it names signer {short(bundle.signer)}, the key is {signer}")
    return signed.seal(BUNDLE, canonical(_payload_json(bundle)).encode(), private_key)


def _payload_json(bundle: Bundle) -> dict[str, object]:
    if bundle.dimensions <= 0:
        raise BundleError(f"cannot write bundle: dimensions must be positive, got {bundle.dimensions}")
    return {
        "model_id": bundle.model_id,
        "dimensions": bundle.dimensions,
        "created_at": _utc_for_writing(bundle.created_at, "bundle created_at"),
        "expires_at": _utc_for_writing(bundle.expires_at, "bundle expires_at"),
        "issuer": bundle.issuer,
        "subjects": [_subject_json(subject, bundle.dimensions) for subject in bundle.subjects],
    }


def _subject_json(subject: BundleSubject, dimensions: int) -> dict[str, object]:
    where = f"subject {subject.id!r}"
    return {
        "id": subject.id,
        "display_name": subject.display_name,
        "watchlist": subject.watchlist,
        "reason": subject.reason,
        "source": subject.source,
        "created_by": subject.created_by,
        "created_at": _utc_for_writing(subject.created_at, f"{where} created_at"),
        "expires_at": _utc_for_writing(subject.expires_at, f"{where} expires_at"),
        "templates": [_template_json(t, dimensions, f"{where} template {t.id}") for t in subject.templates],
    }


def _template_json(template: BundleTemplate, dimensions: int, where: str) -> dict[str, object]:
    embedding = np.asarray(template.embedding)
    if embedding.shape != (dimensions,):
        raise BundleError(
            f"cannot write bundle: {where}: embedding shape {embedding.shape}, expected ({dimensions},)"
        )
    if not np.isfinite(embedding).all() or not math.isfinite(template.quality):
        raise BundleError(f"cannot write bundle: {where}: NaN or infinite values")
    return {
        "id": template.id,
        "quality": float(template.quality),
        "photo_sha256": template.photo_sha256,
        "created_at": _utc_for_writing(template.created_at, f"{where} created_at"),
        "embedding": base64.b64encode(embedding.astype("<f4").tobytes()).decode("ascii"),
    }


def _utc_for_writing(text: str, where: str) -> str:
    value = _parse_utc(text)
    if value is None:
        raise BundleError(f"cannot write bundle: {where} {text!r} is not an ISO-8601 time with a timezone")
    return value


# --- reading ---------------------------------------------------------------------------------------


def read_bundle(
    data: bytes, *, trusted_keys: Collection[str], model_id: str, dimensions: int, now: datetime
) -> Bundle:
    """The bundle in `data`, if a trusted key signed it, it suits this device's model, and it is current.

    Checks, in order: envelope, signer trusted, signature valid, then the payload: model, embedding size,
    bundle expiry, and every subject (fields present and typed, not expired, not repeated) and template.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("read_bundle needs a timezone-aware `now`")
    payload, signer = signed.unseal(BUNDLE, data, trusted_keys)
    return _parse_payload(payload, signer, model_id, dimensions, now.astimezone(UTC))


def _parse_payload(payload: bytes, signer: str, model_id: str, dimensions: int, now: datetime) -> Bundle:
    try:
        document = bounded.load_json(
            payload, bounded.JsonLimits(bounded.MAX_BUNDLE_PAYLOAD), "bundle payload"
        )
    except InputRefusedError as exc:
        raise BundleError(str(exc)) from None
    fields = _Fields(document, "bundle payload")
    bundle_model = fields.text("model_id")
    if bundle_model != model_id:
        raise BundleError(f"bundle is for model {short(bundle_model)}, this device uses {model_id}")
    bundle_dimensions = fields.integer("dimensions")
    if bundle_dimensions != dimensions:
        raise BundleError(f"bundle holds {bundle_dimensions}-d embeddings, this device uses {dimensions}-d")
    expires_at = fields.time("expires_at")
    if _expired(expires_at, now):
        raise BundleError(f"bundle expired at {expires_at}")
    subjects = tuple(
        _parse_subject(item, index, dimensions, now) for index, item in enumerate(fields.items("subjects"), 1)
    )
    _refuse_repeats(subjects)
    return Bundle(
        model_id=bundle_model,
        dimensions=bundle_dimensions,
        created_at=fields.time("created_at"),
        expires_at=expires_at,
        issuer=fields.text("issuer"),
        subjects=subjects,
        signer=public_key_hex(parse_public_key(signer)),
    )


def _parse_subject(item: object, index: int, dimensions: int, now: datetime) -> BundleSubject:
    fields = _Fields(item, f"bundle subject #{index}")
    subject_id = fields.text("id")
    fields = _Fields(item, f"bundle subject {subject_id!r}")
    expires_at = fields.time("expires_at")
    if _expired(expires_at, now):
        raise BundleError(f"bundle subject {subject_id!r} expired at {expires_at}")
    templates = tuple(
        _parse_template(entry, f"bundle subject {subject_id!r} template #{number}", dimensions)
        for number, entry in enumerate(fields.items("templates"), 1)
    )
    return BundleSubject(
        id=subject_id,
        display_name=fields.text("display_name"),
        watchlist=fields.text("watchlist"),
        reason=fields.text("reason", required=True),
        source=fields.text("source", required=True),
        created_by=fields.text("created_by"),
        created_at=fields.time("created_at"),
        expires_at=expires_at,
        templates=templates,
    )


def _parse_template(item: object, where: str, dimensions: int) -> BundleTemplate:
    fields = _Fields(item, where)
    photo_sha256 = fields.text("photo_sha256")
    if len(photo_sha256) != 64 or not set(photo_sha256) <= HEX_DIGITS:
        raise BundleError(f"{where}: 'photo_sha256' is not a SHA-256 hex digest")
    return BundleTemplate(
        id=fields.integer("id"),
        quality=fields.number("quality"),
        photo_sha256=photo_sha256,
        created_at=fields.time("created_at"),
        embedding=_decode_embedding(fields.text("embedding"), where, dimensions),
    )


def _decode_embedding(text: str, where: str, dimensions: int) -> npt.NDArray[np.float32]:
    try:
        raw = bounded.b64decode(text, 4 * dimensions, f"{where}: 'embedding'")
    except InputRefusedError as exc:
        raise BundleError(str(exc)) from None
    if len(raw) != 4 * dimensions:
        raise BundleError(f"{where}: embedding has {len(raw) / 4:g} values, expected {dimensions}")
    embedding = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    if not np.isfinite(embedding).all():
        raise BundleError(f"{where}: embedding holds NaN or infinite values")
    embedding.flags.writeable = False
    return embedding


def _refuse_repeats(subjects: tuple[BundleSubject, ...]) -> None:
    seen: set[str] = set()
    for subject in subjects:
        if subject.id in seen:
            raise BundleError(f"bundle lists subject {subject.id!r} twice")
        seen.add(subject.id)


class _Fields:
    """Typed access to one JSON object of the payload; errors name where the object is."""

    def __init__(self, value: object, where: str) -> None:
        if not isinstance(value, dict):
            raise BundleError(f"{where}: not a JSON object")
        self._values: dict[str, object] = value
        self.where = where

    def _get(self, key: str) -> object:
        if key not in self._values or self._values[key] is None:
            raise BundleError(f"{self.where}: missing {key!r}")
        return self._values[key]

    def text(self, key: str, *, required: bool = False) -> str:
        """A text field; `required` also refuses one that is empty or only spaces."""
        value = self._get(key)
        if not isinstance(value, str):
            raise BundleError(f"{self.where}: {key!r} must be text")
        if required and not value.strip():
            raise BundleError(f"{self.where}: {key!r} is empty")
        return value

    def integer(self, key: str) -> int:
        value = self._get(key)
        if not isinstance(value, int) or isinstance(value, bool):
            raise BundleError(f"{self.where}: {key!r} must be an integer")
        return value

    def number(self, key: str) -> float:
        value = self._get(key)
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
            raise BundleError(f"{self.where}: {key!r} must be a finite number")
        return float(value)

    def time(self, key: str) -> str:
        """A time field, returned as normalised UTC ISO-8601 text."""
        value = _parse_utc(self.text(key))
        if value is None:
            raise BundleError(f"{self.where}: {key!r} is not an ISO-8601 time with a timezone")
        return value

    def items(self, key: str) -> list[object]:
        value = self._get(key)
        if not isinstance(value, list):
            raise BundleError(f"{self.where}: {key!r} must be a list")
        return value


# --- helpers ---------------------------------------------------------------------------------------


def _parse_utc(text: str) -> str | None:
    """`text` as UTC ISO-8601 (the database's spelling), or None if it is not a timezone-aware time."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    if value.tzinfo is None or value.utcoffset() is None:
        return None
    return value.astimezone(UTC).isoformat()


def _expired(utc_text: str, now: datetime) -> bool:
    return datetime.fromisoformat(utc_text) < now
