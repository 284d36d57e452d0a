"""Where the agent keeps its data when the config names no path: one folder for the daemon and the CLI.

The service and an admin's `edge-agent watchlist enroll` must open the same watchlist and outbox, or an
enrolment lands in a database the daemon never reads. The folder is, in order:

1. `$STATE_DIRECTORY`, which systemd sets for a unit with `StateDirectory=edge-agent` (the first entry
   when it lists several): the daemon itself;
2. `/var/lib/edge-agent` when it exists and this user may write in it: the CLI run as the service's user
   (`sudo -u edge-agent edge-agent ...`) on an installed device, without any environment;
3. `edge-agent-data/` under the current folder: a development checkout, or a user who may not write the
   service's state. Falling back, rather than failing, keeps a checkout and a laptop working with no
   setup; `edge-agent config show` prints the paths in effect, so a wrong folder is seen at once.

A base module: the settings modules import it.
"""

from __future__ import annotations

import os
from pathlib import Path

STATE_DIRECTORY_VARIABLE = "STATE_DIRECTORY"
SERVICE_STATE_DIR = Path("/var/lib/edge-agent")
LOCAL_DATA_DIR = Path("edge-agent-data")


def data_dir() -> Path:
    """The folder for default data paths (see the module's docstring for the order and why)."""
    given = os.environ.get(STATE_DIRECTORY_VARIABLE, "").split(":")[0]
    if given:
        return Path(given)
    if SERVICE_STATE_DIR.is_dir() and os.access(SERVICE_STATE_DIR, os.W_OK | os.X_OK):
        return SERVICE_STATE_DIR
    return LOCAL_DATA_DIR


def default_data_path(name: str) -> Path:
    """`name` inside `data_dir()`, decided when the settings are built, not at import."""
    return data_dir() / name
