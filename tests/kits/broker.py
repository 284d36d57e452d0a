"""What tests need of mosquitto beyond the lab's launcher (edge_agent/lab/mosquitto.py): a test PKI, a
broker with persistent sessions, logins, TLS and faults to inject, and a test subscriber.

The broker keeps persistent sessions on disk: a graceful `stop()` (SIGTERM) saves them, so after `start()`
on the same port a subscriber with `clean_session=False` still gets the QoS 1 messages queued for it.
`kill()` (SIGKILL) loses whatever was not saved. Options: a password file (made with `mosquitto_passwd`),
and a TLS listener whose certificate is signed by a test CA made here with `cryptography` (optionally
requiring client certificates).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pydantic import SecretStr

from edge_agent.errors import EdgeAgentError
from edge_agent.events.settings import MqttSettings
from edge_agent.events.subscription import Subscription
from edge_agent.lab.mosquitto import HOST, LocalMosquitto, MosquittoError, MosquittoOptions, TlsListener

MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
# A subscriber account added to every password file, so tests can watch a broker that demands a login.
OBSERVER = ("observer", "observer-secret")


# ---- a test PKI ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    usage: x509.ObjectIdentifier | None,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=usage is None, path_length=None), critical=True)
    )
    if usage == ExtendedKeyUsageOID.SERVER_AUTH:
        alt_names: list[x509.GeneralName] = [
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address(HOST)),
        ]
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_pki(folder: Path) -> Pki:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate, as PEM files."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, server_key, client_key = _key(), _key(), _key()
    ca = _certificate("edge-agent test CA", ca_key, None, ca_key, None)
    server = _certificate("localhost", server_key, ca.subject, ca_key, ExtendedKeyUsageOID.SERVER_AUTH)
    client = _certificate("edge-1", client_key, ca.subject, ca_key, ExtendedKeyUsageOID.CLIENT_AUTH)
    pki = Pki(
        folder / "ca.pem",
        folder / "server.pem",
        folder / "server.key",
        folder / "client.pem",
        folder / "client.key",
    )
    for path, cert in ((pki.ca_cert, ca), (pki.server_cert, server), (pki.client_cert, client)):
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(pki.server_key, server_key)
    _write_key(pki.client_key, client_key)
    return pki


# ---- the broker ---------------------------------------------------------------------------------------


class BrokerError(RuntimeError):
    """The broker would not start or stop; the message carries its whole log, for the failing test."""


class Broker(LocalMosquitto):
    """The lab's mosquitto with what tests need: persistent sessions, a full log, optional logins (the
    observer account always added) and TLS, strict stops, and faults to inject (pause, kill, reload)."""

    def __init__(
        self,
        folder: Path,
        *,
        users: Mapping[str, str] | None = None,
        pki: Pki | None = None,
        require_certificate: bool = False,
        port: int | None = None,
    ) -> None:
        if require_certificate and pki is None:
            raise ValueError("require_certificate needs a TLS listener (pki)")
        self.pki = pki
        self.require_certificate = require_certificate
        self.users: dict[str, str] | None = None
        self.password_path = folder / "passwords"
        folder.mkdir(parents=True, exist_ok=True)
        if users is not None:
            self.set_users(users)
        tls = None
        if pki is not None:
            tls = TlsListener(pki.ca_cert, pki.server_cert, pki.server_key, require_certificate)
        password_file = self.password_path if users is not None else None
        options = MosquittoOptions(persistent=True, full_log=True, password_file=password_file, tls=tls)
        super().__init__(folder, options, port=port)

    def set_users(self, users: Mapping[str, str]) -> None:
        """Rewrites the password file (the observer stays); a running broker reads it on `reload()`."""
        accounts = {**users, OBSERVER[0]: OBSERVER[1]}
        fresh = self.password_path.with_suffix(".new")
        fresh.unlink(missing_ok=True)
        for index, (name, password) in enumerate(accounts.items()):
            flags = ["-b", "-c"] if index == 0 else ["-b"]
            subprocess.run(
                [MOSQUITTO_PASSWD, *flags, str(fresh), name, password], check=True, capture_output=True
            )
        fresh.replace(self.password_path)
        self.users = accounts

    # ---- life cycle ---------------------------------------------------------------------------------

    def start(self, timeout_s: float = 5.0) -> None:
        """Starts mosquitto and waits until the port accepts connections."""
        try:
            super().start(timeout_s)
        except MosquittoError as exc:
            raise BrokerError(f"{exc}\n{self.log()}") from None

    def stop(self, timeout_s: float = 5.0) -> bool:
        """Graceful: SIGTERM, so mosquitto saves its sessions and queued messages before it exits."""
        if not super().stop(timeout_s):
            raise BrokerError(f"mosquitto ignored SIGTERM for {timeout_s} s\n{self.log()}")
        return True

    def kill(self) -> bool:
        """SIGKILL: nothing saved since the last autosave survives."""
        if not super().kill():
            raise BrokerError(f"mosquitto ignored SIGKILL for 5.0 s\n{self.log()}")
        return True

    def restart(self) -> None:
        self.stop()
        self.start()

    def pause(self) -> None:
        """SIGSTOP: the broker holds its connections but answers nothing (acks stop coming)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def reload(self) -> None:
        """SIGHUP: mosquitto re-reads its password file."""
        assert self.process is not None
        self.process.send_signal(signal.SIGHUP)

    def log_count(self, text: str) -> int:
        return self.log().count(text)


# ---- a test subscriber --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool


def observer_settings(broker: Broker) -> MqttSettings:
    """How the test subscriber reaches `broker`: as the observer, over TLS to a TLS broker (with the
    client certificate when the broker asks for one), reconnecting quickly."""
    pki = broker.pki
    return MqttSettings(
        host=broker.host,
        port=broker.port,
        username=OBSERVER[0] if broker.users is not None else None,
        password=SecretStr(OBSERVER[1]) if broker.users is not None else None,
        ca_file=pki.ca_cert if pki is not None else None,
        cert_file=pki.client_cert if pki is not None and broker.require_certificate else None,
        key_file=pki.client_key if pki is not None and broker.require_certificate else None,
        keepalive_s=10,
        reconnect_min_s=0.1,
        reconnect_max_s=0.5,
    )


class Subscriber:
    """A persistent session (clean_session=False) with a QoS 1 subscription, collecting every message it
    receives in arrival order (thread-safe)."""

    def __init__(self, broker: Broker, topic: str = "#", client_id: str | None = None) -> None:
        self.broker = broker
        self.topic = topic
        self._messages: list[Received] = []
        self._changed = threading.Condition()
        self.subscription = Subscription(
            observer_settings(broker),
            topic,
            self._on_message,
            client_id=client_id or f"test-sub-{uuid.uuid4().hex[:8]}",
            persistent=True,
        )

    def _on_message(self, message: mqtt.MQTTMessage) -> None:
        with self._changed:
            self._messages.append(Received(message.topic, bytes(message.payload), bool(message.retain)))
            self._changed.notify_all()

    def start(self, timeout_s: float = 5.0) -> Subscriber:
        """Connects, subscribes, and waits for the broker's SUBACK."""
        try:
            self.subscription.start(timeout_s)
        except EdgeAgentError as exc:
            raise BrokerError(f"test subscriber: {exc}\n{self.broker.log()}") from None
        return self

    def close(self) -> None:
        self.subscription.close()

    def messages(self, topic: str | None = None) -> list[Received]:
        with self._changed:
            return [m for m in self._messages if topic is None or m.topic == topic]

    def wait_for(self, count: int, topic: str | None = None, timeout_s: float = 10.0) -> list[Received]:
        """Waits until `count` messages (on `topic`, if given) have arrived; returns them all.

        Raises AssertionError with what did arrive when the time is up."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                found = [m for m in self._messages if topic is None or m.topic == topic]
                remaining = deadline - time.monotonic()
                if len(found) >= count or remaining <= 0:
                    break
                self._changed.wait(remaining)
        if len(found) < count:
            raise AssertionError(f"{len(found)} of {count} messages on {topic or '#'} within {timeout_s} s")
        return found

    def wait_until(self, check: Callable[[list[Received]], bool], timeout_s: float = 10.0) -> list[Received]:
        """Waits until `check(all messages so far)` holds; returns the messages."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while not check(list(self._messages)):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"condition not met within {timeout_s} s: {self._messages[-5:]}")
                self._changed.wait(remaining)
            return list(self._messages)
