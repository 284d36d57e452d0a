"""Reviewers and admins: argon2id password hashes, logins that slow a guesser down, server-side sessions.

- Passwords are hashed with argon2id (`argon2-cffi`'s defaults, RFC 9106's second recommendation) and
  re-hashed at the next login when those parameters change. A login for an unknown name still runs
  one hash, so the answer's timing does not tell which names exist.
- Failed logins slow a guesser down, per account and address, per address and per account
  (`edge_agent.console.throttle`). Addresses are the client's as the web server sees it; behind a
  TLS-terminating proxy that is the proxy's, unless it is listed in `console.trusted_proxies` (its
  X-Forwarded-For is read then).
- A session is a random token in an HttpOnly cookie; the database keeps only its SHA-256, with the
  session's CSRF token and its expiry. Logging out deletes the row: the cookie is worthless after.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from edge_agent.console.database import ConsoleDatabase
from edge_agent.console.settings import ConsoleSettings
from edge_agent.console.throttle import Attempt, LoginThrottle
from edge_agent.errors import EdgeAgentError
from edge_agent.events.database import db_time
from edge_agent.watchlist import audit

Role = Literal["reviewer", "admin"]
ROLES: tuple[Role, ...] = ("reviewer", "admin")
MIN_PASSWORD = 12
MAX_PASSWORD = 1024
_USERNAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._-")


class AccountError(EdgeAgentError):
    """An account that cannot be made or changed; one line saying why."""


@dataclass(frozen=True)
class Account:
    username: str
    role: Role

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True)
class Session:
    account: Account
    csrf_token: str
    expires_at: str


@dataclass(frozen=True)
class LoginRefused:
    """A login that was not let in: a wrong name or password, or one that must wait first."""

    message: str
    retry_after_s: float | None = None  # set when the attempt was refused unread (slowed down)


class Accounts:
    def __init__(self, db: ConsoleDatabase, settings: ConsoleSettings) -> None:
        self.db = db
        self.settings = settings
        self.hasher = PasswordHasher()
        self.throttle = LoginThrottle(db, settings)
        self._dummy_hash = self.hasher.hash(secrets.token_hex(16))

    # ---- accounts --------------------------------------------------------------------------------

    def create(self, username: str, password: str, role: str, by: str, now: datetime) -> Account:
        name = check_username(username)
        if role not in ROLES:
            raise AccountError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        check_password(password)
        hashed = self.hasher.hash(password)
        with self.db.transaction() as conn:
            if conn.execute("SELECT 1 FROM accounts WHERE username = ?", (name,)).fetchone():
                raise AccountError(f"account {name!r} already exists")
            conn.execute(
                "INSERT INTO accounts (username, role, password_hash, created_at, created_by) "
                "VALUES (?, ?, ?, ?, ?)",
                (name, role, hashed, db_time(now), by),
            )
            audit.append(
                conn,
                actor=by,
                action="account_created",
                subject_id=None,
                details={"username": name, "role": role},
                at=now,
            )
        return Account(name, role)

    def set_password(self, username: str, password: str, by: str, now: datetime) -> None:
        check_password(password)
        hashed = self.hasher.hash(password)
        with self.db.transaction() as conn:
            changed = conn.execute(
                "UPDATE accounts SET password_hash = ? WHERE username = ?", (hashed, username)
            ).rowcount
            if not changed:
                raise AccountError(f"no account {username!r}")
            conn.execute("DELETE FROM sessions WHERE username = ?", (username,))
            audit.append(
                conn, actor=by, action="password_set", subject_id=None, details={"username": username}, at=now
            )

    def listed(self) -> list[dict[str, str]]:
        return [
            dict(row)
            for row in self.db.rows(
                "SELECT username, role, created_at, created_by FROM accounts ORDER BY username"
            )
        ]

    # ---- logins ----------------------------------------------------------------------------------

    def login(self, username: str, password: str, address: str, now: float) -> Account | LoginRefused:
        """The account, when the name and password are right and neither the account nor the address
        must wait; else why not. `now` is wall-clock seconds (time.time())."""
        name = username.strip().lower()
        attempt = self.throttle.begin(name, address, now)
        if not isinstance(attempt, Attempt):
            return LoginRefused(f"too many failed logins: try again in {attempt:.0f} s", attempt)
        row = self.db.row("SELECT username, role, password_hash FROM accounts WHERE username = ?", name)
        if row is None or len(password) > MAX_PASSWORD:
            self._check(self._dummy_hash, password[:MAX_PASSWORD])
            return LoginRefused("wrong user name or password")
        if not self._check(str(row["password_hash"]), password):
            return LoginRefused("wrong user name or password")
        self.throttle.succeeded(attempt, now)
        if self.hasher.check_needs_rehash(str(row["password_hash"])):
            with self.db.transaction() as conn:
                conn.execute(
                    "UPDATE accounts SET password_hash = ? WHERE username = ?",
                    (self.hasher.hash(password), name),
                )
        return Account(str(row["username"]), str(row["role"]))  # type: ignore[arg-type]

    def _check(self, hashed: str, password: str) -> bool:
        try:
            return bool(self.hasher.verify(hashed, password))
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    # ---- sessions --------------------------------------------------------------------------------

    def open_session(self, account: Account, address: str, now: datetime) -> str:
        """A new session for `account` (audited, with the address it came from); returns the token for
        its cookie (stored only as its hash)."""
        token = secrets.token_urlsafe(32)
        expires = now + timedelta(hours=self.settings.session_hours)
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM sessions WHERE expires_at <= ?", (db_time(now),))
            conn.execute(
                "INSERT INTO sessions (token_sha256, username, csrf_token, created_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (_digest(token), account.username, secrets.token_urlsafe(32), db_time(now), db_time(expires)),
            )
            details = {"address": address, "role": account.role}
            audit.append(
                conn, actor=account.username, action="login", subject_id=None, details=details, at=now
            )
        return token

    def session(self, token: str | None, now: datetime) -> Session | None:
        if not token or len(token) > 128:
            return None
        row = self.db.row(
            "SELECT s.csrf_token, s.expires_at, a.username, a.role FROM sessions s "
            "JOIN accounts a ON a.username = s.username WHERE s.token_sha256 = ? AND s.expires_at > ?",
            _digest(token),
            db_time(now),
        )
        if row is None:
            return None
        account = Account(str(row["username"]), str(row["role"]))  # type: ignore[arg-type]
        return Session(account, str(row["csrf_token"]), str(row["expires_at"]))

    def close_session(self, token: str | None, now: datetime) -> None:
        if not token:
            return
        with self.db.transaction() as conn:
            row = conn.execute(
                "SELECT username FROM sessions WHERE token_sha256 = ?", (_digest(token),)
            ).fetchone()
            if row is None:
                return
            conn.execute("DELETE FROM sessions WHERE token_sha256 = ?", (_digest(token),))
            audit.append(
                conn, actor=str(row["username"]), action="logout", subject_id=None, details={}, at=now
            )


def check_username(username: str) -> str:
    name = username.strip().lower()
    if not 1 <= len(name) <= 64 or not set(name) <= _USERNAME_CHARS:
        raise AccountError("a user name is 1 to 64 of a-z, 0-9, '.', '_' and '-'")
    return name


def check_password(password: str) -> None:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise AccountError(f"a password has {MIN_PASSWORD} to {MAX_PASSWORD} characters")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
