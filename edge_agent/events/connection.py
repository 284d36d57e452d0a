"""How every MQTT client of ours is made: credentials, TLS and reconnect backoff from `MqttSettings`, and
connection failures told in one line naming the broker and the cause.

Shared by the long-lived clients (the publisher, the subscription) and the short-lived session
(`edge_agent.events.session`).
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import cast

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from edge_agent.errors import ConfigError
from edge_agent.events.settings import MqttSettings


def tls_context(settings: MqttSettings) -> ssl.SSLContext:
    """The TLS context for `settings` (system CAs unless `ca_file`); a one-line ConfigError for bad files."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if settings.ca_file is not None:
        try:
            context.load_verify_locations(cafile=str(settings.ca_file))
        except (OSError, ValueError):
            raise ConfigError(f"mqtt.ca_file {settings.ca_file}: not a readable PEM certificate") from None
    if settings.cert_file is not None and settings.key_file is not None:
        try:
            context.load_cert_chain(settings.cert_file, settings.key_file)
        except (OSError, ValueError):
            raise ConfigError(
                f"mqtt.cert_file {settings.cert_file} / mqtt.key_file {settings.key_file}: "
                "not a readable PEM certificate with its unencrypted private key"
            ) from None
    return context


def configure_client(client: mqtt.Client, settings: MqttSettings) -> None:
    """Credentials, TLS and reconnect backoff from `settings` on any paho client.

    A client certificate implies TLS even without `tls`/`ca_file`. Raises ConfigError for unreadable
    TLS files, before any connection is tried.
    """
    if settings.username is not None:
        password = settings.password.get_secret_value() if settings.password is not None else None
        client.username_pw_set(settings.username, password)
    if settings.uses_tls:
        client.tls_set_context(tls_context(settings))
    # paho annotates these as int but takes seconds as float (tests use sub-second backoff).
    client.reconnect_delay_set(cast(int, settings.reconnect_min_s), cast(int, settings.reconnect_max_s))


class ReportingClient(mqtt.Client):
    """paho's client, telling why a connection attempt failed: paho's loop swallows the socket error and
    its `on_connect_fail` callback does not carry it."""

    on_socket_error: Callable[[OSError], None] | None = None

    def reconnect(self) -> MQTTErrorCode:
        try:
            return super().reconnect()
        except OSError as exc:
            if self.on_socket_error is not None:
                self.on_socket_error(exc)
            raise


def new_client(settings: MqttSettings, client_id: str, *, clean_session: bool = True) -> ReportingClient:
    """An MQTT 3.1.1 client (paho's callback API 2) configured from `settings` (`configure_client`)."""
    client = ReportingClient(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=clean_session,
        protocol=mqtt.MQTTv311,
    )
    configure_client(client, settings)
    return client


def broker_address(settings: MqttSettings) -> str:
    return f"{settings.host}:{settings.port}"


def socket_error_text(address: str, exc: OSError, tls: bool) -> str:
    """Why a connection attempt failed, in one line. With TLS, a broker that resets or closes the connection
    during the handshake is most likely a plain MQTT port: the line says the handshake failed, not that
    the broker cannot be reached (it was reached)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"broker {address} certificate not trusted: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake with broker {address} failed: {exc.reason or exc}"
    closed = isinstance(exc, ConnectionResetError | ConnectionAbortedError | BrokenPipeError)
    if tls and closed:
        return (
            f"TLS handshake with broker {address} failed: the broker closed the connection "
            f"({exc.strerror or exc}); is it a plain MQTT port?"
        )
    return f"cannot reach broker {address}: {exc.strerror or exc}"


def reason_text(reason: ReasonCode) -> str:
    """A CONNACK's refusal as the end of a sentence ("not authorized")."""
    text = str(reason)
    return text[:1].lower() + text[1:]


def refused_text(address: str, reason: ReasonCode) -> str:
    return f"broker {address} refused the connection: {reason_text(reason)}"


def closed_early_text(address: str, tls: bool) -> str:
    """The broker hung up on the CONNECT without a CONNACK: on a plain connection, most likely a TLS port."""
    hint = "" if tls else " (a TLS port? set mqtt.tls and mqtt.ca_file)"
    return f"broker {address} closed the connection before accepting it{hint}"
