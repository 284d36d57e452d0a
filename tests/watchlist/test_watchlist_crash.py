"""kill -9 in the middle of batch enrolments: the reopened store is consistent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edge_agent.watchlist import audit
from edge_agent.watchlist.store import Watchlist
from tests.conftest import REPO


def test_a_killed_batch_enrolment_leaves_a_consistent_store(
    tmp_path: Path, project_descriptors: dict[Path, npt.NDArray[np.float32]]
) -> None:
    descriptors = tmp_path / "descriptors.npz"
    np.savez(descriptors, descriptors=np.stack(list(project_descriptors.values())))
    database = tmp_path / "wl.db"
    child = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "kits" / "crash_enrol.py"), str(database), str(descriptors)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert child.stdout is not None
    batches = 0
    deadline = time.monotonic() + 60
    while batches < 5 and time.monotonic() < deadline:
        line = child.stdout.readline()
        batches += line.startswith("batch")
    time.sleep(0.013)  # land somewhere inside the next batch
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert batches == 5, "the child did not get going"

    with Watchlist.open(database, model_id="dlib_resnet_v1", dimensions=128) as watchlist:
        print(watchlist.notices)
        subjects = watchlist.subjects(include_inactive=True)
        assert len(subjects) % 25 == 0 and len(subjects) >= 5 * 25, "a batch landed only in part"
        assert all(s.templates == 2 for s in subjects), "a subject without all its templates"
        template_ids = {int(r[0]) for r in watchlist.conn.execute("SELECT id FROM templates")}
        assert watchlist.index.keys() == template_ids, "orphan or missing vectors"
        check = audit.verify(watchlist.conn)
        assert check.ok, check.reason
        assert check.rows == len(subjects)
        orphans = watchlist.conn.execute(
            "SELECT count(*) FROM templates WHERE subject_id NOT IN (SELECT id FROM subjects)"
        ).fetchone()[0]
        assert orphans == 0
