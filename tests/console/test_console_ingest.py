"""The console's ingest against a real mosquitto: each event once, nothing lost while the console is
down, nothing stored that a device did not send in its own name, and a verdict that waits out a broker
that is down."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.publish as publish
import pytest
from starlette.testclient import TestClient

from edge_agent.console import views
from edge_agent.console.app import build_app
from edge_agent.console.ingest import RESEND_S
from edge_agent.console.reviews import Verdict, review
from edge_agent.console.service import Console
from edge_agent.events.schema import MatchEvent
from edge_agent.fleet.central import read_envelope
from edge_agent.fleet.command import open_command
from edge_agent.signed import load_private_key, public_key_hex
from tests.kits.agent_kit import PREFIX
from tests.kits.broker import Broker, Subscriber
from tests.kits.console_kit import console_settings, csrf_of, login, with_accounts
from tests.kits.waiting import wait_until


def _publish(broker: Broker, topic: str, payload: bytes, retain: bool = False, qos: int = 1) -> None:
    publish.single(topic, payload, qos=qos, retain=retain, hostname="127.0.0.1", port=broker.port)


def _events(console: Console) -> list[str]:
    return [
        str(row["event_id"]) for row in console.db.rows("SELECT event_id FROM events ORDER BY received_at")
    ]


class SteppedClock:
    """The console's clock, moved on by the test (a long broker outage in no time)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def _result(nonce: str | None, **fields: Any) -> dict[str, Any]:
    """cam-a's answer to the review command with `nonce`: accepted unless `fields` say otherwise."""
    return {
        "schema": "edge-agent.cmd-result/1",
        "device_id": "cam-a",
        "at": "2026-12-04T10:00:00+00:00",
        "accepted": True,
        "reason": "ok",
        "message": "review done",
        "command": "review",
        "nonce": nonce,
        **fields,
    }


def _answer(broker: Broker, console: Console, nonce: str | None, **fields: Any) -> None:
    """`_result` sent, once the console has settled the event with it."""
    _publish(broker, f"{PREFIX}/cam-a/cmd/result", json.dumps(_result(nonce, **fields)).encode())
    wait_until(lambda: (row := console.db.row("SELECT answer FROM events")) is not None and bool(row[0]))


def _stored_match(broker: Broker, console: Console, event: MatchEvent) -> MatchEvent:
    """`event`, sent by cam-a and stored by the console."""
    _publish(broker, f"{PREFIX}/cam-a/events/match", event.to_json())
    wait_until(lambda: str(event.event_id) in _events(console))
    return event


def _verdict_sent(
    broker: Broker, console: Console, event: MatchEvent
) -> tuple[MatchEvent, Verdict, Subscriber]:
    """`event` stored, marked a wrong match, and its review command received once (and recorded as sent)
    by a subscriber on cam-a's review topic, which is returned."""
    assert console.ingest is not None
    _stored_match(broker, console, event)
    commands = Subscriber(broker, f"{PREFIX}/cam-a/cmd/review").start()
    verdict = review(
        console.db, console.signer, str(event.event_id), "false_match", "rey", "", console.clock()
    )
    console.ingest.wake()
    commands.wait_for(1)
    wait_until(lambda: _sends(console) == 1)
    return event, verdict, commands


def _status_online(broker: Broker, retain: bool = False, qos: int = 1) -> None:
    status = {
        "schema": "edge-agent.status/1",
        "device_id": "cam-a",
        "state": "online",
        "agent_version": "0.1.0",
    }
    _publish(broker, f"{PREFIX}/cam-a/status", json.dumps(status).encode(), retain=retain, qos=qos)


def _sends(console: Console) -> int:
    row = console.db.row("SELECT command_sends FROM events")
    return -1 if row is None else int(row[0])


@pytest.fixture
def clock() -> SteppedClock:
    return SteppedClock()


@pytest.fixture
def open_console(
    tmp_path: Path, broker: Broker, central_key_file: Path, clock: SteppedClock
) -> Iterator[Callable[[], Console]]:
    opened: list[Console] = []

    def make() -> Console:
        console = Console.open(console_settings(tmp_path, broker, command_key=central_key_file), clock=clock)
        assert console.ingest is not None
        console.ingest.start()
        assert console.ingest.subscription.subscribed.wait(10)
        opened.append(console)
        return console

    yield make
    for console in opened:
        console.close()


def test_each_event_is_stored_once_and_a_device_cannot_speak_for_another(
    broker: Broker, open_console: Callable[[], Console], make_match_event: Callable[..., MatchEvent]
) -> None:
    console = open_console()
    event = make_match_event(
        device_id="cam-a", face_jpeg=base64.b64encode(b"\xff\xd8\xff\xe0 a jpeg").decode()
    )
    topic = f"{PREFIX}/cam-a/events/match"
    for _ in range(2):  # the outbox re-sends until acknowledged: the same event twice
        _publish(broker, topic, event.to_json())
    _publish(broker, f"{PREFIX}/cam-b/events/match", make_match_event(device_id="cam-a").to_json())  # spoofed
    _publish(broker, topic, b"{not json")
    assert console.ingest is not None
    wait_until(lambda: console.ingest is not None and sum(console.ingest.counts.values()) >= 4)
    assert _events(console) == [str(event.event_id)]
    assert console.ingest.counts["duplicate"] == 1
    assert console.ingest.counts["refused"] == 2
    row = console.db.row("SELECT face_jpeg, payload FROM events")
    assert row is not None and bytes(row["face_jpeg"]).startswith(b"\xff\xd8\xff")
    assert "face_jpeg" not in json.loads(row["payload"])  # the chip is kept once, apart from the JSON


def test_events_sent_while_the_console_is_down_arrive_when_it_is_back(
    broker: Broker, open_console: Callable[[], Console], make_match_event: Callable[..., MatchEvent]
) -> None:
    first = open_console()
    before = make_match_event(device_id="cam-a")
    _publish(broker, f"{PREFIX}/cam-a/events/match", before.to_json())
    wait_until(lambda: len(_events(first)) == 1)
    first.close()  # the console stops; its persistent session stays with the broker
    missed = [make_match_event(device_id="cam-a") for _ in range(3)]
    for event in missed:
        _publish(broker, f"{PREFIX}/cam-a/events/match", event.to_json())
    again = open_console()
    wait_until(lambda: len(_events(again)) == 4)
    assert set(_events(again)) == {str(e.event_id) for e in [before, *missed]}


def test_status_and_health_reach_the_fleet_table(broker: Broker, open_console: Callable[[], Console]) -> None:
    console = open_console()
    _status_online(broker, retain=True)
    wait_until(lambda: console.db.row("SELECT status FROM devices WHERE device_id = 'cam-a'") is not None)
    row = console.db.row("SELECT status FROM devices WHERE device_id = 'cam-a'")
    assert row is not None and json.loads(row["status"])["state"] == "online"


def test_a_verdict_given_while_the_broker_is_down_is_signed_and_sent_when_it_is_back(
    broker: Broker,
    open_console: Callable[[], Console],
    make_match_event: Callable[..., MatchEvent],
    central_key_file: Path,
    clock: SteppedClock,
) -> None:
    console = open_console()
    assert console.ingest is not None
    event = _stored_match(broker, console, make_match_event(device_id="cam-a"))
    commands = Subscriber(broker, f"{PREFIX}/cam-a/cmd/#").start()
    broker.stop()
    wait_until(lambda: console.ingest is not None and not console.ingest.connected)
    verdict = review(
        console.db, console.signer, str(event.event_id), "false_match", "rey", "not him", console.clock()
    )
    assert console.ingest.send_waiting() == 0  # no broker: it waits, unsigned
    stored = console.db.row("SELECT command_sent_at, command_envelope, command_nonce FROM events")
    assert stored is not None and stored["command_sent_at"] is None and stored["command_envelope"] is None
    assert stored["command_nonce"] == verdict.nonce
    # the outage lasts longer than a command lives: the verdict must still reach the device current
    lifetime = timedelta(seconds=console.settings.console.command_lifetime_s)
    clock.now += 2 * lifetime
    back_at = clock.now
    broker.start()
    [sent] = [
        m for m in commands.wait_for(1, timeout_s=30) if read_envelope(m.payload).nonce == verdict.nonce
    ]
    assert sent.topic == f"{PREFIX}/cam-a/cmd/review"
    # what the device checks when it arrives: signed by the central key, for it, and current
    trusted = [public_key_hex(load_private_key(central_key_file))]
    command = open_command(sent.payload, trusted_keys=trusted, device_id="cam-a", now=back_at)
    assert (command.command, command.nonce, command.args["verdict"]) == (
        "review",
        verdict.nonce,
        "false_match",
    )
    assert command.issued_at == back_at and command.expires_at == back_at + lifetime
    wait_until(
        lambda: (row := console.db.row("SELECT command_sent_at FROM events")) is not None and bool(row[0])
    )
    _answer(broker, console, verdict.nonce, details={"embeddings_excluded": 3})
    commands.close()


def test_hostile_payloads_are_refused_and_acknowledged_so_ingest_never_stalls(
    broker: Broker, open_console: Callable[[], Console], make_match_event: Callable[..., MatchEvent]
) -> None:
    console = open_console()
    assert console.ingest is not None
    topic = f"{PREFIX}/cam-a/events/match"
    nested = b"[" * 100_000  # json.loads raises RecursionError on it, not a JSONDecodeError
    for _ in range(30):  # more than mosquitto's 20 messages in flight unacknowledged
        _publish(broker, topic, nested)
    good = make_match_event(device_id="cam-a")
    _publish(broker, topic, good.to_json())
    wait_until(lambda: _events(console) == [str(good.event_id)], timeout_s=20)
    assert console.ingest.counts["refused"] == 30
    assert console.ingest.last_refusal is not None and "nested too deeply" in console.ingest.last_refusal


def test_what_is_stored_is_the_validated_payload_so_a_string_false_is_false(
    broker: Broker, open_console: Callable[[], Console], make_match_event: Callable[..., MatchEvent]
) -> None:
    console = open_console()
    event = json.loads(make_match_event(device_id="cam-a").to_json())
    event["distance"] = str(event["distance"])  # lax JSON: pydantic takes "0.41" for a number
    _publish(broker, f"{PREFIX}/cam-a/events/match", json.dumps(event).encode())
    wait_until(lambda: len(_events(console)) == 1)
    verdict = review(console.db, console.signer, event["event_id"], "false_match", "rey", "", console.clock())
    _answer(broker, console, verdict.nonce, accepted="false", reason="invalid_args", message="no such event")
    row = console.db.row("SELECT payload, answer FROM events")
    assert row is not None and json.loads(row["payload"])["distance"] == float(event["distance"])
    assert json.loads(row["answer"])["accepted"] is False
    shown = views.event(console.db, event["event_id"], {})
    assert shown is not None and shown.answer_line == "refused (invalid_args): no such event"


def test_a_database_that_refuses_writes_holds_the_messages_and_stores_them_in_order_once_it_can(
    broker: Broker, open_console: Callable[[], Console], make_match_event: Callable[..., MatchEvent]
) -> None:
    console = with_accounts(open_console())
    assert console.ingest is not None
    client = TestClient(build_app(console), base_url="http://127.0.0.1", follow_redirects=False)
    assert login(client, "rey") == 303
    with console.db.reading() as conn:
        conn.execute("PRAGMA query_only = ON")  # every write fails, as on a full or broken disk
    sent = [make_match_event(device_id="cam-a") for _ in range(3)]
    for event in sent:
        _publish(broker, f"{PREFIX}/cam-a/events/match", event.to_json())
    wait_until(lambda: console.ingest is not None and console.ingest.held == 3)
    assert _events(console) == [] and console.ingest.last_store_error is not None
    _status_online(broker, qos=0)  # as health is sent
    wait_until(lambda: console.ingest is not None and console.ingest.counts["dropped"] == 1)
    assert console.ingest.held == 3  # not held: nobody would send it again, and the next replaces it
    fleet = client.get("/fleet")  # a reviewer sees it
    assert fleet.status_code == 200 and "3 message(s) held, not yet stored" in fleet.text
    refused = client.post("/logout", data={"csrf_token": csrf_of(client)})  # a write: one line, no 500
    assert refused.status_code == 503 and "database cannot be used now" in refused.text
    with console.db.reading() as conn:
        conn.execute("PRAGMA query_only = OFF")
    console.ingest.wake()
    wait_until(lambda: len(_events(console)) == 3)
    assert console.ingest.held == 0
    received = [str(row[0]) for row in console.db.rows("SELECT event_id FROM events ORDER BY rowid")]
    assert received == [str(event.event_id) for event in sent]
    # each was acknowledged once stored: a restart gets none of them again
    console.close()
    again = open_console()
    assert again.ingest is not None
    later = make_match_event(device_id="cam-a")
    _publish(broker, f"{PREFIX}/cam-a/events/match", later.to_json())
    wait_until(lambda: len(_events(again)) == 4)
    assert again.ingest.counts["duplicate"] == 0 and again.ingest.counts["match"] == 1


def test_a_retained_status_does_not_make_a_silent_device_look_seen(
    broker: Broker, open_console: Callable[[], Console], clock: SteppedClock
) -> None:
    _status_online(broker, retain=True)
    first = open_console()  # a new console gets the retained status: the device's row, seen "now"
    wait_until(lambda: first.db.row("SELECT last_seen FROM devices") is not None)
    seen = first.db.row("SELECT last_seen FROM devices")
    first.close()
    clock.now += timedelta(hours=6)  # the device said nothing since
    again = open_console()  # its subscription gets the same retained status again
    assert again.ingest is not None
    wait_until(lambda: again.ingest is not None and again.ingest.counts["status"] >= 1)
    assert again.db.row("SELECT last_seen FROM devices") == seen


def test_an_unanswered_verdict_is_sent_again_when_its_device_comes_online_and_until_it_answers(
    broker: Broker,
    open_console: Callable[[], Console],
    make_match_event: Callable[..., MatchEvent],
    clock: SteppedClock,
) -> None:
    """Devices keep no broker session: a command published while one is away is dropped, though the
    broker acknowledged it."""
    console = open_console()
    assert console.ingest is not None
    _, verdict, commands = _verdict_sent(broker, console, make_match_event(device_id="cam-a"))

    def sent_times(count: int) -> None:  # received, and its sending recorded before the clock moves on
        commands.wait_for(count)
        wait_until(lambda: _sends(console) == count)

    clock.now += timedelta(seconds=10)
    _status_online(broker)  # the device is back
    sent_times(2)
    clock.now += timedelta(seconds=1)
    _status_online(broker)  # it says "online" again (its audit head moved): not a return, nothing due
    wait_until(lambda: console.ingest is not None and console.ingest.counts["status"] == 2)
    assert console.ingest.due() == []
    clock.now += timedelta(seconds=RESEND_S + 1)  # the wait doubled at the second send: not yet
    assert console.ingest.due() == []
    clock.now += timedelta(seconds=RESEND_S)  # and still no answer
    console.ingest.wake()
    sent_times(3)
    sent = commands.messages()
    nonces = {read_envelope(message.payload).nonce for message in sent}
    assert nonces == {verdict.nonce} and len({message.payload for message in sent}) == 3  # each signed anew
    _answer(broker, console, verdict.nonce, details={"embeddings_excluded": 2})
    clock.now += timedelta(days=1)
    assert console.ingest.due() == []  # answered: never sent again
    assert _sends(console) == 3
    commands.close()


def test_a_refusal_for_now_does_not_settle_a_verdict_which_is_sent_again_until_accepted(
    broker: Broker,
    open_console: Callable[[], Console],
    make_match_event: Callable[..., MatchEvent],
    clock: SteppedClock,
) -> None:
    """A device whose clock is behind after boot refuses the command as not yet valid: that is not the
    device's answer to the verdict, and neither is "expired" from an old copy replayed on the broker."""
    console = open_console()
    assert console.ingest is not None
    event, verdict, commands = _verdict_sent(broker, console, make_match_event(device_id="cam-a"))
    for reason in ("not_yet_valid", "expired"):
        _publish(
            broker,
            f"{PREFIX}/cam-a/cmd/result",
            json.dumps(
                _result(verdict.nonce, accepted=False, reason=reason, message=f"command {reason}")
            ).encode(),
        )
    wait_until(lambda: len(console.db.rows("SELECT id FROM results")) == 2)
    shown = views.event(console.db, str(event.event_id), {})
    assert shown is not None and shown.answer is None
    assert shown.refused_for_now == "refused for now (expired: command expired)"
    clock.now += timedelta(seconds=RESEND_S + 1)
    assert [str(row["event_id"]) for row in console.ingest.due()] == [str(event.event_id)]
    _answer(broker, console, verdict.nonce, details={"embeddings_excluded": 1})
    settled = views.event(console.db, str(event.event_id), {})
    assert (
        settled is not None and settled.answer_line is not None and settled.answer_line.startswith("accepted")
    )
    assert console.ingest.due() == []
    commands.close()


def test_messages_held_across_a_broker_that_lost_the_session_are_all_stored_in_order(
    broker: Broker, open_console: Callable[[], Console], make_match_event: Callable[..., MatchEvent]
) -> None:
    """The held messages' packet ids belong to a session the broker no longer has: they are stored, not
    acknowledged into the new one, and the new session's messages queue behind them."""
    console = open_console()
    assert console.ingest is not None
    subscription = console.ingest.subscription
    with console.db.reading() as conn:
        conn.execute("PRAGMA query_only = ON")
    before = [make_match_event(device_id="cam-a") for _ in range(3)]
    for event in before:
        _publish(broker, f"{PREFIX}/cam-a/events/match", event.to_json())
    wait_until(lambda: console.ingest is not None and console.ingest.held == 3)
    broker.stop()
    for saved in (broker.folder / "data").iterdir():  # the broker forgets every session
        saved.unlink()
    broker.start()
    wait_until(
        lambda: subscription.generation == 2 and bool(subscription.client.is_connected()), timeout_s=20
    )
    assert subscription.session_since == 2  # a new session: the old packet ids mean nothing now
    after = [make_match_event(device_id="cam-a") for _ in range(3)]
    for event in after:
        _publish(broker, f"{PREFIX}/cam-a/events/match", event.to_json())
    wait_until(lambda: console.ingest is not None and console.ingest.held == 6)
    with console.db.reading() as conn:
        conn.execute("PRAGMA query_only = OFF")
    console.ingest.wake()
    wait_until(lambda: len(_events(console)) == 6)
    stored = [str(row[0]) for row in console.db.rows("SELECT event_id FROM events ORDER BY rowid")]
    assert stored == [str(event.event_id) for event in [*before, *after]]
