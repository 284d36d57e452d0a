"""Ed25519-signed envelopes: the one format for everything a device accepts from outside (watchlist
bundles, fleet commands). A UTF-8 JSON object::

    {"format": "<kind>", "version": N, "payload": "<base64 of the payload bytes>",
     "signer": "<Ed25519 public key, 64 hex>", "signature": "<Ed25519 signature of the payload, hex>"}

The signature covers the exact payload bytes, so nothing is re-serialised to check it, and `unseal`
checks it before anything inside the payload is read: an untrusted or altered envelope is refused without
its contents ever being parsed. The outer JSON is read within the bounds of `edge_agent.bounded` (size
first, then nesting depth), and the payload's base64 within the kind's payload limit. Every refusal is one
line (`error` of the caller's kind) saying why.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

from edge_agent import bounded
from edge_agent.bounded import InputRefusedError, refuse_constant
from edge_agent.errors import EdgeAgentError

__all__ = ["refuse_constant"]  # re-exported for the payload parsers

SIGNATURE_BYTES = 64
PUBLIC_KEY_BYTES = 32
HEX_DIGITS = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class Kind:
    """What an envelope holds, for its `format` field and for messages ("watchlist bundle", "bundle")."""

    format: str
    version: int
    name: str  # in "not a <name>"
    short: str  # in "<short> is unsigned"
    error: type[EdgeAgentError]
    max_payload: int  # bytes of payload (after base64) this kind may carry

    @property
    def max_envelope(self) -> int:
        """The largest envelope that can hold `max_payload`: base64 of it plus the fixed fields."""
        return bounded.base64_length(self.max_payload) + bounded.ENVELOPE_OVERHEAD


def canonical(value: object) -> str:
    """The one JSON spelling of `value`: sorted keys, no spaces, UTF-8 text (not \\u escapes), no NaN or
    infinity. Signed payloads and the watchlist's audit chain (`edge_agent.watchlist.audit`) both hash
    these exact bytes, so an old signed command and an old audit chain verify only while it never changes.
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def short(text: str, keep: int = 80) -> str:
    """Untrusted text made safe for a one-line message: printable, and cut to `keep` characters."""
    shown = text if text.isprintable() else repr(text)[1:-1]
    return shown if len(shown) <= keep else shown[:keep] + "…"


def public_key_hex(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """The raw 32-byte public key as 64 lowercase hex characters (how devices name a trusted signer)."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


# --- keys ------------------------------------------------------------------------------------------


def generate_key(path: Path, error: type[EdgeAgentError] = EdgeAgentError) -> str:
    """Writes a new Ed25519 private key (PEM, PKCS8, unencrypted, mode 0600) to `path`; returns the
    public key as 64 hex characters. An existing file is never overwritten."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    _write_new_private_file(path, pem, error)
    return public_key_hex(key)


def load_private_key(path: Path, error: type[EdgeAgentError] = EdgeAgentError) -> Ed25519PrivateKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise error(f"cannot read signing key {path}: {exc.strerror or exc}") from None
    try:
        key = load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise error(f"{path} is not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise error(f"{path} is not an Ed25519 private key ({type(key).__name__})")
    return key


def parse_public_key(hex_text: str, error: type[EdgeAgentError] = EdgeAgentError) -> Ed25519PublicKey:
    text = hex_text.strip().lower()
    if len(text) != 2 * PUBLIC_KEY_BYTES:
        raise error(
            f"not an Ed25519 public key: expected {2 * PUBLIC_KEY_BYTES} hex characters, got {len(text)}"
        )
    if not set(text) <= HEX_DIGITS:
        raise error("not an Ed25519 public key: it is not hexadecimal")
    try:
        return Ed25519PublicKey.from_public_bytes(bytes.fromhex(text))
    except ValueError:
        raise error("not an Ed25519 public key: not a valid curve point") from None


def _write_new_private_file(path: Path, data: bytes, error: type[EdgeAgentError]) -> None:
    """Temp file (0600) beside `path`, fsync, then publish it under `path` without ever replacing one."""
    if path.exists() or path.is_symlink():
        raise _refuse_overwrite(path, error)
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
        raise _refuse_overwrite(path, error) from None
    except OSError as exc:
        raise error(f"cannot write signing key {path}: {exc.strerror or exc}") from None


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


def _refuse_overwrite(path: Path, error: type[EdgeAgentError]) -> EdgeAgentError:
    return error(f"{path} already exists: refusing to overwrite a signing key")


# --- envelopes -------------------------------------------------------------------------------------


def seal(kind: Kind, payload: bytes, private_key: Ed25519PrivateKey) -> bytes:
    envelope = {
        "format": kind.format,
        "version": kind.version,
        "payload": base64.b64encode(payload).decode("ascii"),
        "signer": public_key_hex(private_key),
        "signature": private_key.sign(payload).hex(),
    }
    return (canonical(envelope) + "\n").encode()


def unseal(kind: Kind, data: bytes, trusted_keys: Collection[str]) -> tuple[bytes, str]:
    """(payload bytes, signer hex) of an envelope a trusted key signed; `kind.error` otherwise."""
    payload, signer, signature = open_envelope(kind, data)
    check_signature(kind, payload, signer, signature, trusted_keys)
    return payload, signer


def open_envelope(kind: Kind, data: bytes) -> tuple[bytes, str, str]:
    """(payload bytes, signer hex, signature hex) from the outer JSON, before any signature check."""
    error = kind.error
    try:
        envelope = bounded.load_json(data, bounded.JsonLimits(kind.max_envelope), "envelope")
    except InputRefusedError as exc:
        raise error(f"not a {kind.name}: {exc}") from None
    if not isinstance(envelope, dict) or envelope.get("format") != kind.format:
        raise error(f"not a {kind.name}: format is not {kind.format!r}")
    version = envelope.get("version")
    if version != kind.version or isinstance(version, bool):
        raise error(
            f"unsupported {kind.name} version {short(str(version))} "
            f"(this edge-agent reads version {kind.version})"
        )
    payload_text = _text(kind, envelope, "payload")
    if payload_text is None:
        raise error(f"not a {kind.name}: missing 'payload'")
    if _text(kind, envelope, "signature") is None:
        raise error(f"{kind.short} is unsigned")
    signer = _text(kind, envelope, "signer")
    if signer is None:
        raise error(f"{kind.short} is unsigned: it names no signer key")
    try:
        payload = bounded.b64decode(payload_text, kind.max_payload, "payload")
    except InputRefusedError as exc:
        raise error(f"not a {kind.name}: {exc}") from None
    return payload, signer, str(envelope["signature"])


def _text(kind: Kind, envelope: Mapping[str, object], key: str) -> str | None:
    """A non-empty text field of the envelope, None when absent, null or empty."""
    value = envelope.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise kind.error(f"not a {kind.name}: {key!r} is not text")
    return value


def check_signature(
    kind: Kind,
    payload: bytes,
    signer: str,
    signature: str,
    trusted_keys: Collection[str],
) -> None:
    error = kind.error
    try:
        public_key = parse_public_key(signer, kind.error)
    except EdgeAgentError as exc:
        raise error(f"{kind.short} signer is {exc}") from None
    trusted = {key.strip().lower() for key in trusted_keys}
    if public_key_hex(public_key) not in trusted:
        hint = "" if trusted else f" (this device trusts no {kind.short} keys)"
        raise error(f"{kind.short} signed by untrusted key {public_key_hex(public_key)[:16]}…{hint}")
    try:
        raw_signature = bytes.fromhex(signature)
    except ValueError:
        raw_signature = b""
    if len(raw_signature) != SIGNATURE_BYTES:
        raise error(f"{kind.short} signature is malformed")
    try:
        public_key.verify(raw_signature, payload)
    except InvalidSignature:
        raise error(
            f"{kind.short} signature does not verify: the {kind.short} was altered or damaged"
        ) from None
