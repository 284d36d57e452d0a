"""Child process of tests/watchlist/test_watchlist_crash.py: enrols batches until it is killed.

argv: database path, npz of real descriptors. Prints "batch N" after each committed batch.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from edge_agent.watchlist.records import Enrolment, NewSubject, NewTemplate
from edge_agent.watchlist.store import Watchlist


def main() -> None:
    database, descriptors_file = Path(sys.argv[1]), Path(sys.argv[2])
    descriptors = np.load(descriptors_file)["descriptors"]
    expires = datetime.now(UTC) + timedelta(days=30)
    with Watchlist.open(database, model_id="dlib_resnet_v1", dimensions=128) as watchlist:
        batch = 0
        while True:
            enrolments = [
                Enrolment(
                    NewSubject(f"person {batch}-{i}", "crash", "crash test", "case", "child", expires),
                    (
                        NewTemplate(descriptors[i % len(descriptors)], 0.9, f"{i:064x}"),
                        NewTemplate(descriptors[(i + 1) % len(descriptors)], 0.8, f"{i + 1:064x}"),
                    ),
                )
                for i in range(25)
            ]
            watchlist.enroll_many(enrolments)
            batch += 1
            print(f"batch {batch}", flush=True)


if __name__ == "__main__":
    main()
