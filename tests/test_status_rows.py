"""status.json carries a run's counters and rows of the same moment (one write, not two half-updated ones), built at
most every interval and the last ones within it (fixer/throttle.py)."""

from __future__ import annotations

import json
import time

import fixer.state as state
from fixer.app.outputs import RunStatus
from fixer.events import Progress, RunFinished, TransferDone
from fixer.models import Transfer, TransferRequest
from fixer.shapes import Overall, RunData, RunSummary
from fixer.state import StatusDocument
from tests.test_throttle import FakeTime, counted_writes


class StubRun:
    """What RunStatus reads of a FixRun: the guide's counters (its rows come from the view below)."""

    def __init__(self) -> None:
        self.done = 0
        self.views = 0

    def seed_counts(self) -> dict[str, int]:
        return {"downloads_successful": self.done}


def view(run: StubRun) -> RunData:
    run.views += 1
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


def rows_on_a_fake_clock(tmp_path, monkeypatch) -> tuple[FakeTime, list, RunStatus, StubRun]:
    """A run's rows into status.json, the throttles on a fake clock, the file's writes counted."""
    fake = FakeTime()
    writes = counted_writes(monkeypatch, state)
    doc = StatusDocument(tmp_path / "status.json", min_interval=0.25, clock=fake.clock, later=fake.later)
    rows = RunStatus(doc, view, clock=fake.clock, later=fake.later)
    run = StubRun()
    rows.follow(run)
    return fake, writes, rows, run


def test_the_rows_of_a_burst_of_events_are_built_twice_and_the_last_reach_status_json(tmp_path, monkeypatch):
    fake, writes, rows, run = rows_on_a_fake_clock(tmp_path, monkeypatch)
    for i in range(40):  # a download's progress events, many a second
        run.done = i + 1
        rows(Progress(i + 1, 40))
        fake.advance(0.001)
    assert run.views == 1 and len(writes) == 1
    fake.advance(1)
    assert run.views == 2 and len(writes) == 2  # the last one's rows, built and written with no later event
    on_disk = json.loads((tmp_path / "status.json").read_text())["data"]
    assert on_disk["downloads_successful"] == 40 and on_disk["overall"]["bytes_done"] == 40
    rows(RunFinished(RunSummary(40, 0, 0, 0, 0, 0)))  # the end of the run: built and written at once
    assert run.views == 3 and len(writes) == 3


def test_the_last_rows_reach_status_json_without_a_later_event(tmp_path):
    """Fails on a941c31: rows due inside the interval were never built until the next event came (a stalled
    download showed its bytes of an earlier moment)."""
    doc = StatusDocument(tmp_path / "status.json", min_interval=0.05)
    rows = RunStatus(doc, view)
    run = StubRun()
    rows.follow(run)
    run.done = 1
    rows(Progress(1, 3))
    run.done = 2
    rows(Progress(2, 3))  # inside the interval: waits, and no event comes after it
    deadline = time.monotonic() + 5
    while json.loads((tmp_path / "status.json").read_text())["data"]["downloads_successful"] != 2:
        assert time.monotonic() < deadline, "the rows of the last event were never written"
        time.sleep(0.01)


def test_files_ending_one_after_another_share_the_rows_writes(tmp_path, monkeypatch):
    """Each file's end rebuilt every row and rewrote status.json at once: O(files^2) over a run (300 files, 300
    rewrites of 300 rows). Now a file's end is a change like any other: written within the interval."""
    fake, writes, rows, run = rows_on_a_fake_clock(tmp_path, monkeypatch)
    done = Transfer(request=TransferRequest(url="https://x/m.safetensors", folder="loras", filename="m.safetensors"),
                    target="/m.safetensors", part="/m.safetensors.part", state="done")
    for i in range(30):
        run.done = i + 1
        rows(TransferDone(done))
        fake.advance(0.002)
    assert run.views <= 2 and len(writes) <= 2
    fake.advance(1)
    assert json.loads((tmp_path / "status.json").read_text())["data"]["downloads_successful"] == 30
