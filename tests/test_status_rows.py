"""status.json carries a run's counters and rows of the same moment (one write, not two half-updated ones)."""

from __future__ import annotations

import json

from fixer.app.outputs import RunStatus
from fixer.events import Progress
from fixer.shapes import Overall, RunData
from fixer.state import StatusDocument


class StubRun:
    """What RunStatus reads of a FixRun: the guide's counters (its rows come from the view below)."""

    def __init__(self) -> None:
        self.done = 0

    def seed_counts(self) -> dict[str, int]:
        return {"downloads_successful": self.done}


def view(run: StubRun) -> RunData:
    return RunData(run_id="r", workflow="w.json", models=[], overall=Overall(run.done, 3, 0.0, None), summary=None)


def test_a_due_refresh_writes_the_counters_and_the_rows_of_one_moment(tmp_path):
    status = StatusDocument(tmp_path / "status.json", min_interval=3600)  # only the first write is due
    run = StubRun()
    rows = RunStatus(status, view)
    rows.follow(run)
    run.done = 2
    rows(Progress(1, 3))
    doc = json.loads((tmp_path / "status.json").read_text())
    assert doc["data"]["downloads_successful"] == 2
    # The rows written beside them are those of the same moment (they were one refresh behind: the counters'
    # write went out with the previous rows, and the rows' own write was then not due).
    assert doc["data"]["overall"]["bytes_done"] == 2
