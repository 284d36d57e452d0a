"""The console's parts, made from the settings and held together: its database, accounts, MQTT ingest,
command signer and master watchlist."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from edge_agent.config import Settings
from edge_agent.console.accounts import Accounts
from edge_agent.console.database import ConsoleDatabase
from edge_agent.console.ingest import Clock, Ingest
from edge_agent.console.master import MasterSubjects
from edge_agent.console.reviews import CommandSigner
from edge_agent.events.database import utc_now
from edge_agent.watchlist.store import Watchlist

WatchlistOpener = Callable[[], Watchlist]


@dataclass
class Console:
    settings: Settings
    db: ConsoleDatabase
    accounts: Accounts
    ingest: Ingest | None  # None: a console that only manages accounts (the CLI's `adduser`)
    signer: CommandSigner | None
    master: MasterSubjects  # the master watchlist's subjects, for the pages
    open_master: WatchlistOpener | None = None  # for exports; the pages read subjects without it
    clock: Clock = field(default=utc_now)

    @classmethod
    def open(
        cls,
        settings: Settings,
        *,
        with_ingest: bool = True,
        open_master: WatchlistOpener | None = None,
        clock: Clock = utc_now,
    ) -> Console:
        db = ConsoleDatabase(settings.console.path)
        key = settings.console.command_key
        lifetime = timedelta(seconds=settings.console.command_lifetime_s)
        signer = None if key is None else CommandSigner(key, lifetime)
        ingest = Ingest(settings.mqtt, settings.console, db, signer, clock) if with_ingest else None
        master = MasterSubjects(settings.watchlist.path)
        accounts = Accounts(db, settings.console)
        return cls(settings, db, accounts, ingest, signer, master, open_master, clock)

    def close(self) -> None:
        if self.ingest is not None:
            self.ingest.close()
        self.db.close()
