"""Signed watchlist bundles: keys, round trip, and every refusal with its one-line reason.

The embeddings are real descriptors of the shared people/ photos, computed with the project's pipeline.
"""

from __future__ import annotations

import base64
import json
import stat
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from edge_agent.errors import EdgeAgentError
from edge_agent.vision.faces import FacePipeline
from edge_agent.vision.manifest import sha256_of
from edge_agent.watchlist.bundle import (
    Bundle,
    BundleError,
    BundleSubject,
    BundleTemplate,
    generate_key,
    load_private_key,
    parse_public_key,
    public_key_hex,
    read_bundle,
    write_bundle,
)

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(days=30)
PHOTOS = {
    "barack_obama": ("obama.jpg", "obama2.jpg"),
    "joe_biden": ("biden.jpg",),
    "rose_leslie": ("img1.jpg",),
}

Payload = dict[str, object]


@pytest.fixture(scope="session")
def pipeline() -> FacePipeline:
    from edge_agent.config import load_settings

    return FacePipeline.from_settings(load_settings(None, use_environment=False))


@pytest.fixture(scope="session")
def subjects(faces_dir: Path, pipeline: FacePipeline) -> tuple[BundleSubject, ...]:
    """One subject per person in PHOTOS, with a template per photo (its real 128-d descriptor)."""
    from edge_agent.capture.media import read_image

    found = []
    for person, names in PHOTOS.items():
        templates = []
        for number, name in enumerate(names, 1):
            path = faces_dir / "people" / person / name
            described, _ = pipeline.describe_one(read_image(path), "largest")
            assert described is not None, f"no face in {path}"
            templates.append(
                BundleTemplate(
                    id=number,
                    quality=0.75 + number / 100,
                    photo_sha256=sha256_of(path),
                    created_at="2026-11-01T09:30:00+00:00",
                    embedding=described.descriptor,
                )
            )
        found.append(
            BundleSubject(
                id=person,
                display_name=person.replace("_", " ").title(),
                watchlist="vip",
                reason="test enrolment",
                source="shared/faces/people",
                created_by="tester",
                created_at="2026-11-01T09:30:00+00:00",
                expires_at=(LATER + timedelta(days=1)).isoformat(),
                templates=tuple(templates),
            )
        )
    return tuple(found)


@pytest.fixture(scope="session")
def model(pipeline: FacePipeline) -> tuple[str, int]:
    return pipeline.embedder.model_id, pipeline.embedder.spec.dimensions


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def bundle(subjects: tuple[BundleSubject, ...], model: tuple[str, int]) -> Bundle:
    return Bundle(
        model_id=model[0],
        dimensions=model[1],
        created_at=NOW.isoformat(),
        expires_at=LATER.isoformat(),
        issuer="hq-laptop",
        subjects=subjects,
    )


@pytest.fixture
def read(key: Ed25519PrivateKey, model: tuple[str, int]) -> Callable[[bytes], Bundle]:
    """read_bundle as this device (trusting `key`, on the pipeline's model) at NOW."""

    def read(data: bytes) -> Bundle:
        return read_bundle(
            data, trusted_keys=[public_key_hex(key)], model_id=model[0], dimensions=model[1], now=NOW
        )

    return read


def envelope_of(data: bytes) -> dict[str, object]:
    parsed = json.loads(data)
    assert isinstance(parsed, dict)
    return parsed


def encode(envelope: dict[str, object]) -> bytes:
    return json.dumps(envelope).encode()


def payload_of(data: bytes) -> Payload:
    text = envelope_of(data)["payload"]
    assert isinstance(text, str)
    parsed = json.loads(base64.b64decode(text))
    assert isinstance(parsed, dict)
    return parsed


def signed(payload_bytes: bytes, key: Ed25519PrivateKey) -> bytes:
    """An envelope around arbitrary payload bytes, correctly signed: tests what the reader checks after."""
    return encode(
        {
            "format": "edge-agent-watchlist-bundle",
            "version": 1,
            "payload": base64.b64encode(payload_bytes).decode(),
            "signer": public_key_hex(key),
            "signature": key.sign(payload_bytes).hex(),
        }
    )


def first_subject(payload: Payload) -> dict[str, object]:
    items = payload["subjects"]
    assert isinstance(items, list) and isinstance(items[0], dict)
    return items[0]


def first_template(payload: Payload) -> dict[str, object]:
    items = first_subject(payload)["templates"]
    assert isinstance(items, list) and isinstance(items[0], dict)
    return items[0]


def refusal(call: Callable[[], object]) -> str:
    with pytest.raises(BundleError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message
    return message


# --- keys ------------------------------------------------------------------------------------------


def test_generate_key_writes_a_private_pem_and_returns_its_public_hex(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "signing.pem"
    public = generate_key(path)
    assert len(public) == 64 and int(public, 16) >= 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert public_key_hex(load_private_key(path)) == public
    assert [p.name for p in path.parent.iterdir()] == ["signing.pem"]  # no temporary file left behind


def test_generate_key_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "signing.pem"
    path.write_bytes(b"precious")
    assert (
        refusal(lambda: generate_key(path)) == f"{path} already exists: refusing to overwrite a signing key"
    )
    assert path.read_bytes() == b"precious"


def test_load_private_key_errors(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    assert refusal(lambda: load_private_key(missing)) == (
        f"cannot read signing key {missing}: No such file or directory"
    )
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key")
    assert refusal(lambda: load_private_key(garbage)) == f"{garbage} is not an unencrypted PEM private key"
    other = tmp_path / "ec.pem"
    ec_key = ec.generate_private_key(ec.SECP256R1())
    other.write_bytes(ec_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    assert refusal(lambda: load_private_key(other)) == f"{other} is not an Ed25519 private key (ECPrivateKey)"


def test_parse_public_key(key: Ed25519PrivateKey) -> None:
    text = public_key_hex(key)
    assert public_key_hex(parse_public_key(f"  {text.upper()}\n")) == text
    assert refusal(lambda: parse_public_key("1a2b")) == (
        "not an Ed25519 public key: expected 64 hex characters, got 4"
    )
    assert refusal(lambda: parse_public_key("zz" * 32)) == "not an Ed25519 public key: it is not hexadecimal"
    assert issubclass(BundleError, EdgeAgentError)


# --- round trip ------------------------------------------------------------------------------------


def test_round_trip(bundle: Bundle, key: Ed25519PrivateKey, read: Callable[[bytes], Bundle]) -> None:
    data = write_bundle(bundle, key)
    loaded = read(data)
    assert loaded == replace(bundle, signer=public_key_hex(key))
    template = loaded.subjects[0].templates[0]
    assert template.embedding.dtype == np.float32 and template.embedding.shape == (128,)
    assert np.array_equal(template.embedding, bundle.subjects[0].templates[0].embedding)
    assert not template.embedding.flags.writeable


def test_the_file_is_the_documented_envelope_and_carries_no_photos(
    bundle: Bundle, key: Ed25519PrivateKey
) -> None:
    data = write_bundle(bundle, key)
    envelope = envelope_of(data)
    assert sorted(envelope) == ["format", "payload", "signature", "signer", "version"]
    assert (envelope["format"], envelope["version"], envelope["signer"]) == (
        "edge-agent-watchlist-bundle",
        1,
        public_key_hex(key),
    )
    payload = payload_of(data)
    assert sorted(payload) == ["created_at", "dimensions", "expires_at", "issuer", "model_id", "subjects"]
    template = first_template(payload)
    assert sorted(template) == ["created_at", "embedding", "id", "photo_sha256", "quality"]
    raw = base64.b64decode(str(template["embedding"]))
    assert np.array_equal(np.frombuffer(raw, "<f4"), bundle.subjects[0].templates[0].embedding)
    assert len(data) < 8000  # 4 templates of 128 floats: embeddings and metadata only


def test_times_are_normalised_to_utc(
    bundle: Bundle, key: Ed25519PrivateKey, read: Callable[[bytes], Bundle]
) -> None:
    loaded = read(write_bundle(replace(bundle, created_at="2026-11-23T13:00:00+01:00"), key))
    assert loaded.created_at == "2026-11-23T12:00:00+00:00"


def test_write_refuses_what_read_would_refuse(bundle: Bundle, key: Ed25519PrivateKey) -> None:
    subject = bundle.subjects[0]
    short = replace(subject.templates[0], embedding=subject.templates[0].embedding[:127])
    broken = replace(bundle, subjects=(replace(subject, templates=(short,)),))
    assert refusal(lambda: write_bundle(broken, key)) == (
        "cannot write bundle: subject 'barack_obama' template 1: embedding shape (127,), expected (128,)"
    )
    naive = replace(bundle, expires_at="2026-12-01T00:00:00")
    assert refusal(lambda: write_bundle(naive, key)) == (
        "cannot write bundle: bundle expires_at '2026-12-01T00:00:00' is not an ISO-8601 time with a timezone"
    )
    other = public_key_hex(Ed25519PrivateKey.generate())
    assert refusal(lambda: write_bundle(replace(bundle, signer=other), key)).startswith(
        f"cannot write bundle: it names signer {other}, the key is "
    )


# --- refusals before the signature ------------------------------------------------------------------


def test_not_a_bundle(bundle: Bundle, key: Ed25519PrivateKey, read: Callable[[bytes], Bundle]) -> None:
    good = envelope_of(write_bundle(bundle, key))
    assert refusal(lambda: read(b"\x89PNG\r\n\x1a\n")) == "not a watchlist bundle: envelope is not UTF-8 JSON"
    assert refusal(lambda: read(b"[1, 2]")) == (
        "not a watchlist bundle: format is not 'edge-agent-watchlist-bundle'"
    )
    assert refusal(lambda: read(encode({**good, "format": "zip"}))) == (
        "not a watchlist bundle: format is not 'edge-agent-watchlist-bundle'"
    )
    assert refusal(lambda: read(encode({**good, "version": 2}))) == (
        "unsupported watchlist bundle version 2 (this edge-agent reads version 1)"
    )
    without_payload = {k: v for k, v in good.items() if k != "payload"}
    assert refusal(lambda: read(encode(without_payload))) == "not a watchlist bundle: missing 'payload'"
    assert refusal(lambda: read(encode({**good, "payload": "not base64!"}))) == (
        "not a watchlist bundle: payload is not base64"
    )
    assert (
        refusal(lambda: read(encode({**good, "signer": 7}))) == "not a watchlist bundle: 'signer' is not text"
    )


def test_unsigned(bundle: Bundle, key: Ed25519PrivateKey, read: Callable[[bytes], Bundle]) -> None:
    good = envelope_of(write_bundle(bundle, key))
    without_signature = {k: v for k, v in good.items() if k != "signature"}
    assert refusal(lambda: read(encode(without_signature))) == "bundle is unsigned"
    assert refusal(lambda: read(encode({**good, "signature": ""}))) == "bundle is unsigned"
    assert (
        refusal(lambda: read(encode({**good, "signer": None})))
        == "bundle is unsigned: it names no signer key"
    )


def test_untrusted_signer(bundle: Bundle, model: tuple[str, int]) -> None:
    stranger = Ed25519PrivateKey.generate()
    data = write_bundle(bundle, stranger)
    prefix = public_key_hex(stranger)[:16]

    def read_trusting(keys: list[str]) -> Bundle:
        return read_bundle(data, trusted_keys=keys, model_id=model[0], dimensions=model[1], now=NOW)

    someone = public_key_hex(Ed25519PrivateKey.generate())
    assert refusal(lambda: read_trusting([someone])) == f"bundle signed by untrusted key {prefix}…"
    assert refusal(lambda: read_trusting([])) == (
        f"bundle signed by untrusted key {prefix}… (this device trusts no bundle keys)"
    )
    assert read_trusting([someone, public_key_hex(stranger).upper()]).issuer == "hq-laptop"


def test_signer_that_is_not_a_key(
    bundle: Bundle, key: Ed25519PrivateKey, read: Callable[[bytes], Bundle]
) -> None:
    good = envelope_of(write_bundle(bundle, key))
    assert refusal(lambda: read(encode({**good, "signer": "1a2b3c4d"}))) == (
        "bundle signer is not an Ed25519 public key: expected 64 hex characters, got 8"
    )


def test_tampered_payload(bundle: Bundle, key: Ed25519PrivateKey, read: Callable[[bytes], Bundle]) -> None:
    data = write_bundle(bundle, key)
    payload = payload_of(data)
    first_subject(payload)["expires_at"] = "2099-01-01T00:00:00+00:00"
    altered = base64.b64encode(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).decode()
    tampered = encode({**envelope_of(data), "payload": altered})
    assert (
        refusal(lambda: read(tampered))
        == "bundle signature does not verify: the bundle was altered or damaged"
    )


def test_the_signature_is_checked_before_the_payload_is_parsed(
    bundle: Bundle, key: Ed25519PrivateKey, read: Callable[[bytes], Bundle]
) -> None:
    junk = encode(
        {**envelope_of(write_bundle(bundle, key)), "payload": base64.b64encode(b"{not json").decode()}
    )
    assert (
        refusal(lambda: read(junk)) == "bundle signature does not verify: the bundle was altered or damaged"
    )
    assert refusal(lambda: read(signed(b"{not json", key))) == "bundle payload is not UTF-8 JSON"


def test_malformed_signature(bundle: Bundle, key: Ed25519PrivateKey, read: Callable[[bytes], Bundle]) -> None:
    good = envelope_of(write_bundle(bundle, key))
    assert refusal(lambda: read(encode({**good, "signature": "abcd"}))) == "bundle signature is malformed"
    assert refusal(lambda: read(encode({**good, "signature": "xy" * 64}))) == "bundle signature is malformed"


# --- refusals of a correctly signed payload ---------------------------------------------------------


def _set(path: tuple[str, ...], value: object) -> Callable[[Payload], None]:
    """A mutation that sets payload[path...] (subject and template paths go to the first of each)."""

    def mutate(payload: Payload) -> None:
        target = {"payload": payload, "subject": first_subject(payload), "template": first_template(payload)}[
            path[0]
        ]
        if value is _DELETE:
            del target[path[1]]
        else:
            target[path[1]] = value

    return mutate


_DELETE = object()
OBAMA = "bundle subject 'barack_obama'"
OBAMA_T1 = "bundle subject 'barack_obama' template #1"
SIGNED_REFUSALS: list[tuple[Callable[[Payload], None], str]] = [
    (
        _set(("payload", "model_id"), "arcface-r100"),
        "bundle is for model arcface-r100, this device uses {model}",
    ),
    (_set(("payload", "dimensions"), 512), "bundle holds 512-d embeddings, this device uses 128-d"),
    (_set(("payload", "dimensions"), "128"), "bundle payload: 'dimensions' must be an integer"),
    (
        _set(("payload", "expires_at"), "2026-11-23T11:59:59+00:00"),
        "bundle expired at 2026-11-23T11:59:59+00:00",
    ),
    (
        _set(("payload", "expires_at"), "2026-12-01"),
        "bundle payload: 'expires_at' is not an ISO-8601 time with a timezone",
    ),
    (_set(("payload", "issuer"), _DELETE), "bundle payload: missing 'issuer'"),
    (_set(("payload", "subjects"), {}), "bundle payload: 'subjects' must be a list"),
    (_set(("subject", "id"), _DELETE), "bundle subject #1: missing 'id'"),
    (_set(("subject", "reason"), _DELETE), f"{OBAMA}: missing 'reason'"),
    (_set(("subject", "source"), "  "), f"{OBAMA}: 'source' is empty"),
    (_set(("subject", "watchlist"), None), f"{OBAMA}: missing 'watchlist'"),
    (
        _set(("subject", "expires_at"), "2026-11-01T00:00:00+00:00"),
        f"{OBAMA} expired at 2026-11-01T00:00:00+00:00",
    ),
    (_set(("subject", "templates"), "none"), f"{OBAMA}: 'templates' must be a list"),
    (_set(("subject", "id"), "rose_leslie"), "bundle lists subject 'rose_leslie' twice"),
    (
        _set(("template", "photo_sha256"), "photo.jpg"),
        f"{OBAMA_T1}: 'photo_sha256' is not a SHA-256 hex digest",
    ),
    (_set(("template", "quality"), True), f"{OBAMA_T1}: 'quality' must be a finite number"),
    (_set(("template", "id"), 1.5), f"{OBAMA_T1}: 'id' must be an integer"),
    (_set(("template", "embedding"), "###"), f"{OBAMA_T1}: 'embedding' is not base64"),
    (
        _set(("template", "embedding"), base64.b64encode(bytes(4 * 127)).decode()),
        f"{OBAMA_T1}: embedding has 127 values, expected 128",
    ),
    (
        _set(("template", "embedding"), base64.b64encode(np.full(128, np.nan, "<f4").tobytes()).decode()),
        f"{OBAMA_T1}: embedding holds NaN or infinite values",
    ),
]


@pytest.mark.parametrize(("mutate", "expected"), SIGNED_REFUSALS)
def test_signed_but_refused(
    mutate: Callable[[Payload], None],
    expected: str,
    bundle: Bundle,
    key: Ed25519PrivateKey,
    model: tuple[str, int],
    read: Callable[[bytes], Bundle],
) -> None:
    payload = payload_of(write_bundle(bundle, key))
    mutate(payload)
    data = signed(json.dumps(payload).encode(), key)
    assert refusal(lambda: read(data)) == expected.format(model=model[0])


def test_a_bundle_is_current_until_its_expiry(
    bundle: Bundle, key: Ed25519PrivateKey, model: tuple[str, int]
) -> None:
    data = write_bundle(bundle, key)
    trusted = [public_key_hex(key)]
    assert read_bundle(data, trusted_keys=trusted, model_id=model[0], dimensions=model[1], now=LATER).subjects
    after = LATER + timedelta(seconds=1)
    assert (
        refusal(
            lambda: read_bundle(data, trusted_keys=trusted, model_id=model[0], dimensions=model[1], now=after)
        )
        == f"bundle expired at {LATER.isoformat()}"
    )
    with pytest.raises(ValueError, match="timezone-aware"):
        read_bundle(
            data, trusted_keys=trusted, model_id=model[0], dimensions=model[1], now=datetime(2026, 1, 1)
        )
