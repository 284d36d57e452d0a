"""The console's refusals, through its real web application and database (Starlette's test client):
no session, the wrong role, a form without its CSRF token, a password guesser."""

from __future__ import annotations

import base64
import json
import re
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from edge_agent.console import views
from edge_agent.console.accounts import LoginRefused
from edge_agent.console.app import build_app
from edge_agent.console.received import record
from edge_agent.console.service import Console
from edge_agent.events.schema import MatchEvent, StatusMessage
from edge_agent.watchlist import audit
from tests.kits.clihelp import run_cli
from tests.kits.console_kit import CSRF, PASSWORD, console_settings, csrf_of, login, with_accounts


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    opened = with_accounts(Console.open(console_settings(tmp_path, None), with_ingest=False))
    yield opened
    opened.close()


@pytest.fixture
def client(console: Console) -> Iterator[TestClient]:
    with TestClient(build_app(console), base_url="http://127.0.0.1", follow_redirects=False) as made:
        yield made


@pytest.mark.parametrize(
    "path", ["/", "/reviewed", "/fleet", "/reports", "/audit", "/admin/accounts", "/events/x"]
)
def test_no_session_is_sent_to_the_login_page(client: TestClient, path: str) -> None:
    answer = client.get(path)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login"


def test_the_api_without_a_session_is_401_and_a_forged_cookie_is_no_session(client: TestClient) -> None:
    assert client.get("/api/events").status_code == 401
    client.cookies.set("edge_agent_session", "not-a-session")
    assert client.get("/api/events").status_code == 401
    assert client.get("/").status_code == 303


def test_a_reviewer_on_an_admin_page_is_refused_and_an_admin_is_not(client: TestClient) -> None:
    assert login(client, "rey") == 303
    empty = client.get("/")
    assert (
        empty.status_code == 200 and '<meta http-equiv="refresh" content="15">' in empty.text
    )  # waits for one
    for path in ("/admin/accounts", "/admin/watchlist"):
        assert client.get(path).status_code == 403
    token = csrf_of(client)
    made = client.post(
        "/admin/accounts",
        data={"username": "mallory", "password": "x" * 20, "role": "admin", "csrf_token": token},
    )
    assert made.status_code == 403
    client.post("/logout", data={"csrf_token": token})
    assert login(client, "ada") == 303
    assert client.get("/admin/accounts").status_code == 200


def test_a_form_without_its_csrf_token_is_refused(
    client: TestClient, console: Console, make_match_event: Callable[..., MatchEvent]
) -> None:
    event_id = _stored_event(console, make_match_event())
    # the login form: no token, and a token that is not the cookie's
    assert client.post("/login", data={"username": "rey", "password": PASSWORD}).status_code == 403
    client.get("/login")
    forged = {"username": "rey", "password": PASSWORD, "csrf_token": "forged"}
    assert client.post("/login", data=forged).status_code == 403
    assert login(client, "rey") == 303
    # logged in: a verdict and a logout without the session's token change nothing
    for data in ({"verdict": "confirmed"}, {"verdict": "confirmed", "csrf_token": "forged"}):
        assert client.post(f"/events/{event_id}/review", data=data).status_code == 403
    assert client.post("/logout", data={"csrf_token": "forged"}).status_code == 403
    assert client.get("/").status_code == 200  # still logged in
    assert console.db.row("SELECT state FROM events")["state"] == "open"  # type: ignore[index]
    assert console.db.row("SELECT COUNT(*) AS n FROM audit WHERE action = 'review'")["n"] == 0  # type: ignore[index]
    # with its token the same verdict is taken: the refusals above were the token's doing
    data = {"verdict": "confirmed", "csrf_token": csrf_of(client)}
    assert client.post(f"/events/{event_id}/review", data=data).status_code == 303


def test_five_wrong_passwords_slow_the_account_down(client: TestClient, console: Console) -> None:
    for _ in range(console.settings.console.login_attempts):
        assert login(client, "rey", "wrong password, again") == 401
    page = client.get("/login")
    token = CSRF.search(page.text)
    assert token is not None
    slowed = client.post("/login", data={"username": "rey", "password": PASSWORD, "csrf_token": token[1]})
    assert slowed.status_code == 429  # even the right password waits now
    assert 1 <= int(slowed.headers["retry-after"]) <= console.settings.console.login_lockout_s
    assert "too many failed logins" in slowed.text
    assert client.get("/").status_code == 303  # not logged in


def test_every_answer_carries_the_security_headers_and_the_session_cookie_is_httponly(
    client: TestClient,
) -> None:
    page = client.get("/login")
    policy = [part.strip() for part in page.headers["content-security-policy"].split(";")]
    assert policy[0] == "default-src 'none'" and not any(
        p.startswith("script-src") for p in policy
    )  # no scripts
    assert "frame-ancestors 'none'" in policy and page.headers["x-frame-options"] == "DENY"
    token = CSRF.search(page.text)
    assert token is not None
    answer = client.post("/login", data={"username": "ada", "password": PASSWORD, "csrf_token": token[1]})
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie


def test_logging_out_ends_the_session_on_the_server(client: TestClient) -> None:
    assert login(client, "rey") == 303
    stolen = client.cookies.get("edge_agent_session")
    client.post("/logout", data={"csrf_token": csrf_of(client)})
    client.cookies.set("edge_agent_session", stolen or "")
    assert client.get("/").status_code == 303


def _stored_event(console: Console, event: MatchEvent) -> str:
    record(console.db, "match", json.loads(event.to_json()), console.clock())
    return str(event.event_id)


def test_a_verdict_is_taken_once_signed_for_its_device_and_audited_with_the_reviewer(
    tmp_path: Path, make_match_event: Callable[..., MatchEvent], central_key_file: Path
) -> None:
    key = central_key_file
    settings = console_settings(tmp_path, None, command_key=key)
    console = with_accounts(Console.open(settings, with_ingest=False))
    event_id = _stored_event(console, make_match_event(device_id="cam-a"))
    with TestClient(build_app(console), base_url="http://127.0.0.1", follow_redirects=False) as client:
        assert login(client, "rey") == 303
        queue = client.get("/")
        assert f'id="event-{event_id}"' in queue.text
        token = csrf_of(client)
        verdict = {"verdict": "confirmed", "comment": "checked the badge", "csrf_token": token}
        answer = client.post(f"/events/{event_id}/review", data=verdict)
        assert answer.status_code == 303 and answer.headers["location"] == f"/events/{event_id}"
        again = client.post(f"/events/{event_id}/review", data={**verdict, "verdict": "false_match"})
        assert again.status_code == 409 and "already reviewed by rey" in again.text
        assert f'id="event-{event_id}"' not in client.get("/").text  # no longer open
        log = client.get("/audit")
        assert log.status_code == 200 and "hash chain intact" in log.text and "checked the badge" in log.text
    row = console.db.row("SELECT state, reviewed_by, comment, command_nonce, command_envelope FROM events")
    assert row is not None and (row["state"], row["reviewed_by"], row["comment"]) == (
        "confirmed",
        "rey",
        "checked the badge",
    )
    assert row["command_envelope"] is None  # signed when sent (test_console_ingest), not before
    check = audit.verify_chain(console.db.conn)
    assert check.ok
    [entry] = [r for r in audit.rows(console.db.conn) if r.action == "review"]
    assert entry.actor == "rey" and entry.details["verdict"] == "confirmed"
    assert entry.details["command_nonce"] == row["command_nonce"] and len(row["command_nonce"]) == 32
    console.close()


def test_a_wrong_match_is_refused_when_no_key_can_tell_the_device(
    client: TestClient, console: Console, make_match_event: Callable[..., MatchEvent]
) -> None:
    event_id = _stored_event(console, make_match_event())
    assert login(client, "rey") == 303
    data = {"verdict": "false_match", "csrf_token": csrf_of(client)}
    answer = client.post(f"/events/{event_id}/review", data=data)
    assert answer.status_code == 409 and "console.command_key is not set" in answer.text
    assert console.db.row("SELECT state FROM events")["state"] == "open"  # type: ignore[index]


def test_accounts_are_added_from_the_command_line_with_a_hashed_password(tmp_path: Path) -> None:
    config = tmp_path / "console.toml"
    config.write_text(f'[console]\npath = "{tmp_path / "console.db"}"\n')
    made = run_cli(
        "--config",
        config,
        "console",
        "adduser",
        "ada",
        "--role",
        "admin",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert made.returncode == 0, made.stderr
    short = run_cli("--config", config, "console", "adduser", "bob", "--password-stdin", stdin="short\n")
    assert short.returncode == 1 and short.stderr.count("\n") == 1 and "12 to 1024 characters" in short.stderr
    stored = sqlite3.connect(tmp_path / "console.db").execute(
        "SELECT username, role, password_hash FROM accounts"
    )
    [(name, role, hashed)] = stored.fetchall()
    assert (name, role) == ("ada", "admin") and hashed.startswith("$argon2id$") and PASSWORD not in hashed


def test_the_wait_doubles_with_each_failure_after_the_limit_and_old_failures_are_forgotten(
    console: Console,
) -> None:
    accounts, limit = console.accounts, console.settings.console.login_attempts
    lockout = console.settings.console.login_lockout_s
    for second in range(limit):
        assert isinstance(
            accounts.login("rey", "wrong password!!", "10.0.0.1", 1000.0 + second), LoginRefused
        )
    last = 1000.0 + limit - 1
    refused = accounts.login("rey", PASSWORD, "10.0.0.1", last + 1)
    assert isinstance(refused, LoginRefused) and refused.retry_after_s == pytest.approx(lockout - 1)
    # after the wait, one more wrong password doubles it
    assert isinstance(accounts.login("rey", "wrong password!!", "10.0.0.1", last + lockout + 1), LoginRefused)
    doubled = accounts.login("rey", PASSWORD, "10.0.0.1", last + lockout + 2)
    assert isinstance(doubled, LoginRefused) and doubled.retry_after_s == pytest.approx(2 * lockout - 1)
    # a guesser who waits out the longest wait between guesses does not reset the count: one more an
    # hour later doubles it again
    hour_later = last + lockout + 1 + 3601
    assert accounts.login("rey", "wrong password!!", "10.0.0.1", hour_later).message.startswith("wrong")  # type: ignore[union-attr]
    again = accounts.login("rey", PASSWORD, "10.0.0.1", hour_later + 1)
    assert isinstance(again, LoginRefused) and again.retry_after_s == pytest.approx(4 * lockout - 1)
    # a day after the last failure it is forgotten, and the right password gets in
    next_day = hour_later + 86401
    assert not isinstance(accounts.login("rey", PASSWORD, "10.0.0.1", next_day), LoginRefused)


def test_one_reviewer_s_typos_do_not_lock_out_another_at_the_same_address_nor_the_same_one_elsewhere(
    console: Console,
) -> None:
    accounts, limit = console.accounts, console.settings.console.login_attempts
    for second in range(limit):
        accounts.login("rey", "wrong password!!", "10.0.0.1", 1000.0 + second)
    assert isinstance(accounts.login("rey", PASSWORD, "10.0.0.1", 1010.0), LoginRefused)
    assert not isinstance(accounts.login("ada", PASSWORD, "10.0.0.1", 1011.0), LoginRefused)
    assert not isinstance(accounts.login("rey", PASSWORD, "10.0.0.2", 1012.0), LoginRefused)
    # one address guessing over many names is slowed down too, at four times the limit, except for an
    # account that logs in from there (a colleague behind the same NAT)
    assert not isinstance(accounts.login("ada", PASSWORD, "10.9.9.9", 1999.0), LoginRefused)
    sprayed = [
        accounts.login(f"user{n}", "guess guess guess", "10.9.9.9", 2000.0 + n) for n in range(4 * limit)
    ]
    assert all(isinstance(outcome, LoginRefused) and outcome.retry_after_s is None for outcome in sprayed)
    after = accounts.login("rey", PASSWORD, "10.9.9.9", 2000.0 + 4 * limit)
    assert isinstance(after, LoginRefused) and after.retry_after_s is not None
    assert not isinstance(accounts.login("ada", PASSWORD, "10.9.9.9", 2001.0 + 4 * limit), LoginRefused)
    # and what is kept is hashed: no name or address typed is in the table
    keys = " ".join(str(row["key"]) for row in console.db.rows("SELECT key FROM login_failures"))
    assert "rey" not in keys and "10.0.0.1" not in keys and "user1" not in keys


@pytest.mark.parametrize("trusted", [True, False])
def test_behind_a_trusted_proxy_the_throttle_counts_each_client_and_elsewhere_ignores_the_header(
    tmp_path: Path, trusted: bool
) -> None:
    proxies = ["127.0.0.1"] if trusted else []
    console = with_accounts(
        Console.open(console_settings(tmp_path, None, trusted_proxies=proxies), with_ingest=False)
    )
    app = build_app(console)
    proxy = ("127.0.0.1", 40000)  # every request comes from the proxy on this machine
    with TestClient(app, base_url="http://127.0.0.1", follow_redirects=False, client=proxy) as client:
        for _ in range(console.settings.console.login_attempts):
            assert login(client, "rey", "wrong password!!", forwarded_for="198.51.100.7") == 401
        assert login(client, "rey", forwarded_for="198.51.100.7") == 429
        # another client behind the same proxy: its own count when the proxy is trusted; where it is
        # not, the header is anyone's to write and changes nothing
        assert login(client, "rey", forwarded_for="203.0.113.9") == (303 if trusted else 429)
    console.close()


@pytest.mark.parametrize("path", ["/login-as-admin", "/loginx", "/static"])
def test_only_the_login_page_and_the_style_sheet_are_public_not_what_merely_starts_like_them(
    client: TestClient, path: str
) -> None:
    answer = client.get(path)
    assert answer.status_code == 303 and answer.headers["location"] == "/login"


def test_with_secure_cookies_the_cookies_are_secure_and_host_only(tmp_path: Path) -> None:
    console = with_accounts(
        Console.open(console_settings(tmp_path, None, secure_cookies=True), with_ingest=False)
    )
    with TestClient(build_app(console), base_url="https://127.0.0.1", follow_redirects=False) as client:
        assert login(client, "rey") == 303
        names = {cookie.name for cookie in client.cookies.jar}
        assert names == {"__Host-edge_agent_login_csrf", "__Host-edge_agent_session"}
        assert all(cookie.secure and cookie.path == "/" for cookie in client.cookies.jar)
        assert client.get("/").status_code == 200
    console.close()


def test_the_queue_pages_through_every_open_match_newest_first(
    client: TestClient, console: Console, make_match_event: Callable[..., MatchEvent]
) -> None:
    start = datetime(2026, 12, 1, tzinfo=UTC)
    made = [
        _stored_event(console, make_match_event(captured_at=start + timedelta(minutes=n)))
        for n in range(views.PAGE + 5)
    ]
    assert login(client, "rey") == 303
    assert 'http-equiv="refresh"' not in client.get("/").text  # a comment being typed is never reloaded away
    first, second = client.get("/"), client.get("/?page=1")
    shown = [re.findall(r'id="event-([0-9a-f-]+)"', page.text) for page in (first, second)]
    assert shown[0] == made[::-1][: views.PAGE] and shown[1] == made[4::-1]  # the oldest five on page 2
    assert 'href="?page=1"' in first.text and 'href="?page=0"' in second.text
    api = client.get("/api/events?page=1").json()
    assert (api["total"], api["pages"], len(api["events"])) == (views.PAGE + 5, 2, 5)


def test_the_fleet_page_shows_a_device_whose_audit_anchor_is_malformed(
    client: TestClient, console: Console
) -> None:
    nested = base64.b64encode(b"[" * 6000).decode()  # within the schema's size, too deep for json.loads
    status = {
        "schema": "edge-agent.status/1",
        "device_id": "cam-odd",
        "state": "online",
        "agent_version": "0.1.0",
        "audit_anchor": {
            "format": "edge-agent-audit-anchor",
            "version": 1,
            "payload": nested,
            "signer": "0" * 64,
            "signature": "0" * 128,
        },
    }
    record(console.db, "status", json.loads(StatusMessage.model_validate(status).to_json()), console.clock())
    assert login(client, "rey") == 303
    fleet = client.get("/fleet")
    assert fleet.status_code == 200 and "cam-odd" in fleet.text


def test_a_stranger_with_many_addresses_cannot_lock_an_account_out_of_where_it_logs_in_from(
    console: Console,
) -> None:
    accounts, limit = console.accounts, console.settings.console.login_attempts
    assert not isinstance(accounts.login("ada", PASSWORD, "192.0.2.10", 1000.0), LoginRefused)  # her desk
    guesses = [(f"198.51.100.{n}", 1001.0 + n * limit + k) for n in range(10) for k in range(limit)]
    for address, at in guesses:  # ten times the limit, from ten addresses
        accounts.login("ada", "guess guess guess", address, at)
    late = guesses[-1][1] + 1
    stranger = accounts.login("ada", PASSWORD, "203.0.113.5", late)
    assert isinstance(stranger, LoginRefused) and stranger.retry_after_s is not None  # a new place waits
    assert not isinstance(
        accounts.login("ada", PASSWORD, "192.0.2.10", late + 1), LoginRefused
    )  # hers does not


def test_an_ipv6_address_counts_by_its_64_block(console: Console) -> None:
    accounts, limit = console.accounts, console.settings.console.login_attempts
    for n in range(limit):  # a new address of the same /64 for each guess
        accounts.login("rey", "guess guess guess", f"2001:db8:1:2::{n + 1:x}", 1000.0 + n)
    slowed = accounts.login("rey", PASSWORD, "2001:db8:1:2:ffff::9", 1000.0 + limit)
    assert isinstance(slowed, LoginRefused) and slowed.retry_after_s is not None
    assert not isinstance(accounts.login("rey", PASSWORD, "2001:db8:1:3::1", 1000.0 + limit), LoginRefused)


def test_guesses_sent_in_parallel_are_counted_before_their_passwords_are_checked(console: Console) -> None:
    accounts, limit = console.accounts, console.settings.console.login_attempts
    with ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = list(
            pool.map(lambda n: accounts.login("rey", f"guess number {n:04d}", "10.1.1.1", 1000.0), range(20))
        )
    checked = [o for o in outcomes if isinstance(o, LoginRefused) and o.retry_after_s is None]
    assert len(checked) == limit  # the rest were refused unread


def test_a_form_too_large_or_without_its_length_is_refused_before_it_is_read(client: TestClient) -> None:
    csrf = CSRF.search(client.get("/login").text)
    assert csrf is not None
    big = {"username": "rey", "password": PASSWORD, "csrf_token": csrf[1], "pad": "x" * 70_000}
    assert client.post("/login", data=big).status_code == 413
    upload = client.post("/login", data={"csrf_token": csrf[1]}, files={"f": ("f.bin", b"x" * 100)})
    assert upload.status_code == 400  # no file is taken, even small
    chunked = client.post(
        "/login",
        content=iter([b"username=rey"]),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert chunked.status_code == 411
    assert login(client, "rey") == 303  # none of it counted as a login attempt


def test_a_database_that_cannot_be_read_gives_one_line_not_a_traceback(
    client: TestClient, console: Console
) -> None:
    assert login(client, "rey") == 303
    console.db.conn.close()  # as a broken disk would leave it: every statement fails
    answer = client.get("/fleet")
    assert answer.status_code == 503 and "database cannot be used now" in answer.text
    assert "Traceback" not in answer.text and answer.headers["x-frame-options"] == "DENY"


@pytest.mark.parametrize("proxy", ["*", "0.0.0.0/0.0.0.0", "::0/0", "0.0.0.0/1", "proxy.example.org"])
def test_trusting_a_range_of_clients_as_proxies_is_refused_in_the_config(tmp_path: Path, proxy: str) -> None:
    config = tmp_path / "console.toml"
    config.write_text(f'[console]\ntrusted_proxies = ["{proxy}"]\n')
    checked = run_cli("config", "validate", config)
    assert checked.returncode != 0 and checked.stderr.count("\n") == 1
    assert "console.trusted_proxies" in checked.stderr


def test_named_proxies_are_kept_as_uvicorn_reads_them(tmp_path: Path) -> None:
    settings = console_settings(tmp_path, None, trusted_proxies=[" 10.0.0.1 ", "192.168.4.0/24", "::1"])
    assert settings.console.trusted_proxies == ["10.0.0.1", "192.168.4.0/24", "::1"]
