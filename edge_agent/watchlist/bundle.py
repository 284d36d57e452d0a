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
import binascii
import contextlib
import errno
import json
import math
import os
import tempfile
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

from edge_agent.errors import EdgeAgentError

BUNDLE_FORMAT = "edge-agent-watchlist-bundle"
BUNDLE_VERSION = 1
_SIGNATURE_BYTES = 64
_PUBLIC_KEY_BYTES = 32
_HEX_DIGITS = frozenset("0123456789abcdef")


class BundleError(EdgeAgentError):
    """A bundle or key that cannot be used; the message is one line saying why."""


# --- keys ------------------------------------------------------------------------------------------


def generate_key(path: Path) -> str:
    """Writes a new Ed25519 private key (PEM, PKCS8, unencrypted, mode 0600) to `path`; returns the
    public key as 64 hex characters. An existing file is never overwritten."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    _write_new_private_file(path, pem)
    return public_key_hex(key)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BundleError(f"cannot read signing key {path}: {exc.strerror or exc}") from None
    try:
        key = load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise BundleError(f"{path} is not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise BundleError(f"{path} is not an Ed25519 private key ({type(key).__name__})")
    return key


def public_key_hex(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """The raw 32-byte public key as 64 lowercase hex characters (how devices name a trusted signer)."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def parse_public_key(hex_text: str) -> Ed25519PublicKey:
    text = hex_text.strip().lower()
    if len(text) != 2 * _PUBLIC_KEY_BYTES:
        raise BundleError(
            f"not an Ed25519 public key: expected {2 * _PUBLIC_KEY_BYTES} hex characters, got {len(text)}"
        )
    if not set(text) <= _HEX_DIGITS:
        raise BundleError("not an Ed25519 public key: it is not hexadecimal")
    try:
        return Ed25519PublicKey.from_public_bytes(bytes.fromhex(text))
    except ValueError:
        raise BundleError("not an Ed25519 public key: not a valid curve point") from None


def _write_new_private_file(path: Path, data: bytes) -> None:
    """Temp file (0600) beside `path`, fsync, then publish it under `path` without ever replacing one."""
    if path.exists() or path.is_symlink():
        raise _refuse_overwrite(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        temporary = Path(name)
        try:
            with os.fdopen(descriptor, "wb") as handle:
                os.fchmod(handle.fileno(), 0o600)
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            _publish(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
        _fsync_directory(path.parent)
    except FileExistsError:
        raise _refuse_overwrite(path) from None
    except OSError as exc:
        raise BundleError(f"cannot write signing key {path}: {exc.strerror or exc}") from None


def _publish(temporary: Path, path: Path) -> None:
    """A hard link appears atomically and fails if `path` exists (a rename would silently replace it);
    file systems without hard links (FAT) get a rename after one more existence check."""
    try:
        path.hardlink_to(temporary)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS):
            raise
        if path.exists():
            raise FileExistsError(errno.EEXIST, "exists", str(path)) from None
        temporary.replace(path)


def _fsync_directory(folder: Path) -> None:
    with contextlib.suppress(OSError):
        handle = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)


def _refuse_overwrite(path: Path) -> BundleError:
    return BundleError(f"{path} already exists: refusing to overwrite a signing key")


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
        raise BundleError(
            f"cannot write bundle: it names signer {_short(bundle.signer)}, the key is {signer}"
        )
    payload = _canonical(_payload_json(bundle)).encode()
    envelope = {
        "format": BUNDLE_FORMAT,
        "version": BUNDLE_VERSION,
        "payload": base64.b64encode(payload).decode("ascii"),
        "signer": signer,
        "signature": private_key.sign(payload).hex(),
    }
    return (_canonical(envelope) + "\n").encode()


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
    payload, signer, signature = _open_envelope(data)
    _check_signature(payload, signer, signature, trusted_keys)
    return _parse_payload(payload, signer, model_id, dimensions, now.astimezone(UTC))


def _open_envelope(data: bytes) -> tuple[bytes, str, str]:
    """(payload bytes, signer hex, signature hex) from the outer JSON, before any signature check."""
    try:
        envelope = json.loads(data.decode("utf-8"), parse_constant=_refuse_constant)
    except ValueError:
        raise BundleError("not a watchlist bundle: not UTF-8 JSON") from None
    if not isinstance(envelope, dict) or envelope.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"not a watchlist bundle: format is not {BUNDLE_FORMAT!r}")
    version = envelope.get("version")
    if version != BUNDLE_VERSION or isinstance(version, bool):
        raise BundleError(
            f"unsupported watchlist bundle version {_short(str(version))} "
            f"(this edge-agent reads version {BUNDLE_VERSION})"
        )
    payload_text = _envelope_text(envelope, "payload")
    if payload_text is None:
        raise BundleError("not a watchlist bundle: missing 'payload'")
    if _envelope_text(envelope, "signature") is None:
        raise BundleError("bundle is unsigned")
    signer = _envelope_text(envelope, "signer")
    if signer is None:
        raise BundleError("bundle is unsigned: it names no signer key")
    try:
        payload = base64.b64decode(payload_text, validate=True)
    except (binascii.Error, ValueError):
        raise BundleError("not a watchlist bundle: payload is not base64") from None
    return payload, signer, str(envelope["signature"])


def _envelope_text(envelope: Mapping[str, object], key: str) -> str | None:
    """A non-empty text field of the envelope, None when absent, null or empty."""
    value = envelope.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BundleError(f"not a watchlist bundle: {key!r} is not text")
    return value


def _check_signature(payload: bytes, signer: str, signature: str, trusted_keys: Collection[str]) -> None:
    try:
        public_key = parse_public_key(signer)
    except BundleError as exc:
        raise BundleError(f"bundle signer is {exc}") from None
    trusted = {key.strip().lower() for key in trusted_keys}
    if public_key_hex(public_key) not in trusted:
        hint = "" if trusted else " (this device trusts no bundle keys)"
        raise BundleError(f"bundle signed by untrusted key {public_key_hex(public_key)[:16]}…{hint}")
    try:
        raw_signature = bytes.fromhex(signature)
    except ValueError:
        raw_signature = b""
    if len(raw_signature) != _SIGNATURE_BYTES:
        raise BundleError("bundle signature is malformed")
    try:
        public_key.verify(raw_signature, payload)
    except InvalidSignature:
        raise BundleError("bundle signature does not verify: the bundle was altered or damaged") from None


def _parse_payload(payload: bytes, signer: str, model_id: str, dimensions: int, now: datetime) -> Bundle:
    try:
        fields = _Fields(
            json.loads(payload.decode("utf-8"), parse_constant=_refuse_constant), "bundle payload"
        )
    except ValueError:
        raise BundleError("bundle payload is not valid JSON") from None
    bundle_model = fields.text("model_id")
    if bundle_model != model_id:
        raise BundleError(f"bundle is for model {_short(bundle_model)}, this device uses {model_id}")
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
    if len(photo_sha256) != 64 or not set(photo_sha256) <= _HEX_DIGITS:
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
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BundleError(f"{where}: 'embedding' is not base64") from None
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


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


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


def _short(text: str, keep: int = 80) -> str:
    """Untrusted text made safe for a one-line message: printable, and cut to `keep` characters."""
    shown = text if text.isprintable() else repr(text)[1:-1]
    return shown if len(shown) <= keep else shown[:keep] + "…"
