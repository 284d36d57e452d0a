"""Failed logins, counted so that a password guesser is slowed down and the people who work here are not.

Each attempt is counted three ways, and refused without its password being read while any of them must
wait:

- one account from one address: `console.login_attempts` failures (a reviewer's own typos, or a guesser
  at one name);
- one address over all accounts: 4 times that (a guesser spraying names from one place);
- one account over all addresses: 10 times that (a guesser spread over many).

The last two do not apply to an account at an address it has logged in from before (in the last 90
days): a stranger who knows a name cannot lock its owner out of her usual place, however many
addresses he has, nor a guesser behind the office's NAT lock out the colleagues who work there (his
own account-and-address count still stops him).

The wait is `console.login_lockout_s`, doubled at each failure past the limit, up to an hour. An IPv6
address counts by its /64, the block one subscriber gets, so a guesser cannot walk through addresses
of his own block. The attempt is counted *before* the password is checked (argon2 takes a tenth of a
second), in one transaction with the check of the wait, so guesses sent in parallel see each other's
counts. A correct login undoes its own count: it clears the account's counts (only its password could
do that) and takes its one attempt off the address's, never the address's earlier failures, so an
account of his own does not let a guesser reset them. Failures are forgotten a day after the last one,
well past the longest wait. The counts are kept under the SHA-256 of what they count, not the names
typed, and purged a day after their last failure.
"""

from __future__ import annotations

import hashlib
import ipaddress
import sqlite3
from dataclasses import dataclass

from edge_agent.console.database import ConsoleDatabase
from edge_agent.console.settings import ConsoleSettings

LONGEST_WAIT_S = 3600.0
FORGET_S = 86400.0  # failures a day old are forgotten (longer than the longest wait)
KNOWN_S = 90 * 86400.0  # how long an account's successful login from an address is remembered
ADDRESS_FACTOR = 4  # one address may fail this many times the limit over all accounts
ACCOUNT_FACTOR = 10  # one account may fail this many times the limit over all addresses


@dataclass(frozen=True)
class Attempt:
    """One login attempt, already counted as a failure until `LoginThrottle.succeeded` says otherwise."""

    pair: str
    address: str
    account: str


class LoginThrottle:
    def __init__(self, db: ConsoleDatabase, settings: ConsoleSettings) -> None:
        self.db = db
        self.limit = settings.login_attempts
        self.lockout_s = settings.login_lockout_s

    def begin(self, name: str, address: str, now: float) -> Attempt | float:
        """The attempt, counted; or how many seconds it must wait first (and then it is not counted)."""
        place = address_block(address)
        attempt = Attempt(_key("pair", f"{name}@{place}"), _key("address", place), _key("account", name))
        with self.db.transaction() as conn:
            limits = [(attempt.pair, self.limit)]
            if not _known(conn, attempt.pair, now):
                limits += [
                    (attempt.address, self.limit * ADDRESS_FACTOR),
                    (attempt.account, self.limit * ACCOUNT_FACTOR),
                ]
            wait = max(self._wait(conn, key, limit, now) for key, limit in limits)
            if wait > 0:
                return wait
            conn.execute("DELETE FROM login_failures WHERE last_at < ?", (now - FORGET_S,))
            for key in (attempt.pair, attempt.address, attempt.account):
                conn.execute(
                    "INSERT INTO login_failures (key, failures, last_at) VALUES (?, 1, ?) "
                    "ON CONFLICT (key) DO UPDATE SET last_at = excluded.last_at, failures = CASE "
                    "WHEN excluded.last_at - last_at > ? THEN 1 ELSE failures + 1 END",
                    (key, now, FORGET_S),
                )
        return attempt

    def succeeded(self, attempt: Attempt, now: float) -> None:
        """The password was right: the account's counts go, the address keeps its earlier failures, and
        the address is remembered as one this account logs in from."""
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM login_failures WHERE key IN (?, ?)", (attempt.pair, attempt.account))
            conn.execute(
                "UPDATE login_failures SET failures = max(0, failures - 1) WHERE key = ?", (attempt.address,)
            )
            conn.execute("DELETE FROM known_logins WHERE last_at < ?", (now - KNOWN_S,))
            conn.execute(
                "INSERT INTO known_logins (key, last_at) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET last_at = excluded.last_at",
                (attempt.pair, now),
            )

    def _wait(self, conn: sqlite3.Connection, key: str, limit: int, now: float) -> float:
        row = conn.execute("SELECT failures, last_at FROM login_failures WHERE key = ?", (key,)).fetchone()
        if row is None or now - float(row["last_at"]) > FORGET_S or int(row["failures"]) < limit:
            return 0.0
        over = int(row["failures"]) - limit
        wait = min(LONGEST_WAIT_S, self.lockout_s * 2.0 ** min(over, 20))
        return max(0.0, float(row["last_at"]) + wait - now)


def address_block(address: str) -> str:
    """What an address counts as: itself (IPv4), its /64 (IPv6), or the text given (not an address)."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{parsed}/64", strict=False))
    return str(parsed)


def _known(conn: sqlite3.Connection, pair: str, now: float) -> bool:
    row = conn.execute("SELECT last_at FROM known_logins WHERE key = ?", (pair,)).fetchone()
    return row is not None and now - float(row["last_at"]) <= KNOWN_S


def _key(kind: str, value: str) -> str:
    """What a count is kept under: its kind and the SHA-256 of the name or address (a typed name can be
    anything, and anything long)."""
    return f"{kind}:{hashlib.sha256(value.encode()).hexdigest()}"
