"""The one rule of the files a run rewrites as it goes (fixer/throttle.py), and the writers that follow it:
status.json (StatusDocument), output/resolutions.json (ResolutionsFile); the rows (RunStatus): test_status_rows."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import fixer.app.outputs as outputs
import fixer.state as state
from fixer.app.outputs import ResolutionsFile
from fixer.errors import ErrorInfo
from fixer.events import ModelResolved, PhaseChanged, Progress
from fixer.models import Resolution
from fixer.state import StatusDocument
from fixer.throttle import WriteThrottle, call_later


class FakeTime:
    """A clock the test moves, and the timers it fires when their time comes (in the order they are due)."""

    def __init__(self) -> None:
        self.now = 100.0
        self.timers: list[tuple[float, Callable[[], None], list[bool]]] = []

    def clock(self) -> float:
        return self.now

    def later(self, delay: float, fn: Callable[[], None]) -> Callable[[], None]:
        cancelled = [False]
        self.timers.append((self.now + delay, fn, cancelled))
        return lambda: cancelled.__setitem__(0, True)

    def pending(self) -> list[float]:
        return sorted(when for when, _, cancelled in self.timers if not cancelled[0])

    def advance(self, seconds: float) -> None:
        """Time passes: each timer due by then fires at its own moment (a timer may set another)."""
        end = self.now + seconds
        while True:
            due = sorted((t for t in self.timers if t[0] <= end and not t[2][0]), key=lambda t: t[0])
            if not due:
                break
            when, fn, cancelled = due[0]
            self.timers.remove(due[0])
            self.now = when
            fn()
        self.now = end


def throttle_with(fake: FakeTime, interval: float = 1.0) -> tuple[WriteThrottle, list[float]]:
    writes: list[float] = []
    return WriteThrottle(lambda: writes.append(fake.now), interval, clock=fake.clock, later=fake.later), writes


def test_a_burst_of_changes_is_one_write_at_once_and_one_when_the_interval_ends():
    fake = FakeTime()
    throttle, writes = throttle_with(fake)
    for _ in range(50):
        throttle.changed()
        fake.advance(0.01)
    assert writes == [100.0]  # the first at once, the other 49 wait
    assert fake.pending() == [101.0]  # one trailing write, not one per change
    fake.advance(5)
    assert writes == [100.0, 101.0]  # nothing happened after the burst, yet its last change is written


def test_the_last_change_is_written_within_the_interval_after_it_with_no_later_event():
    fake = FakeTime()
    throttle, writes = throttle_with(fake, interval=1.0)
    throttle.changed()
    fake.advance(0.3)
    throttle.changed()  # the change to be written: at the latest 1.0 s after it
    fake.advance(0.69)
    assert writes == [100.0]  # not before the interval since the last write ends (no faster than the rule)
    fake.advance(0.02)
    assert writes == [100.0, 101.0] and writes[-1] - 100.3 <= 1.0
    fake.advance(10)
    assert writes == [100.0, 101.0]  # nothing unwritten: no more writes


def test_a_forced_change_is_written_at_once_and_takes_the_pending_write_with_it():
    fake = FakeTime()
    throttle, writes = throttle_with(fake)
    throttle.changed()
    fake.advance(0.125)
    throttle.changed()
    fake.advance(0.125)
    throttle.changed(force=True)  # a phase change: written now, inside the interval
    assert writes == [100.0, 100.25]
    assert fake.pending() == []  # it carried the waiting change: no second write for it
    fake.advance(5)
    assert writes == [100.0, 100.25]


def test_a_held_change_waits_for_the_next_write_and_flush_writes_what_is_unwritten():
    fake = FakeTime()
    throttle, writes = throttle_with(fake)
    throttle.flush()
    assert writes == []  # nothing changed: nothing to write
    throttle.hold()
    fake.advance(5)
    assert writes == [] and fake.pending() == []
    throttle.flush()
    assert writes == [105.0]
    throttle.flush()
    assert writes == [105.0]


def test_a_timer_that_fires_as_it_is_cancelled_does_not_write_for_a_later_change():
    fake = FakeTime()
    writes: list[float] = []
    fired: list[Callable[[], None]] = []

    def later(delay: float, fn: Callable[[], None]) -> Callable[[], None]:
        fired.append(fn)  # like a threading.Timer already running when cancel() comes: it fires anyway
        return lambda: None

    throttle = WriteThrottle(lambda: writes.append(fake.now), 1.0, clock=fake.clock, later=later)
    throttle.changed()
    throttle.changed()  # timer 1
    throttle.changed(force=True)  # written; timer 1 cancelled too late
    fake.now += 0.5
    throttle.changed()  # timer 2
    fired[0]()
    assert writes == [100.0, 100.0]  # timer 1 wrote nothing: the change is timer 2's, due at 101.0
    fired[1]()
    assert writes == [100.0, 100.0, 100.5]


def test_a_failed_write_leaves_the_change_unwritten_for_the_next_try():
    fake = FakeTime()
    calls: list[float] = []

    def write() -> None:
        calls.append(fake.now)
        if len(calls) == 1:
            raise OSError(28, "No space left on device")

    throttle = WriteThrottle(write, 1.0, clock=fake.clock, later=fake.later)
    with pytest.raises(OSError):
        throttle.changed()
    throttle.flush()
    assert len(calls) == 2


def test_the_trailing_write_runs_on_the_loop_of_the_change_else_on_a_timer_thread():
    ran: list[threading.Thread] = []
    done = threading.Event()

    def note() -> None:
        ran.append(threading.current_thread())
        done.set()

    async def on_loop() -> None:
        call_later(0.01, note)
        for _ in range(200):
            if done.is_set():
                return
            await asyncio.sleep(0.01)

    asyncio.run(on_loop())
    assert ran == [threading.current_thread()]  # the loop's own thread: a run's rows are touched from no other
    done.clear()
    call_later(0.01, note)
    assert done.wait(5)
    assert ran[1] is not threading.current_thread()


# --- the three writers -----------------------------------------------------------------------------------------
def counted_writes(monkeypatch: pytest.MonkeyPatch, module: object) -> list[tuple[str, object]]:
    """Every write_json_atomic of `module`: (file name, what was written)."""
    writes: list[tuple[str, object]] = []
    real = state.write_json_atomic

    def write(path: Path, data: object, mode: int | None = None) -> None:
        writes.append((path.name, data))
        real(path, data, mode)

    monkeypatch.setattr(module, "write_json_atomic", write)
    return writes


def test_status_json_takes_a_burst_of_errors_and_progress_in_two_writes_the_last_holding_them_all(
        tmp_path, monkeypatch):
    fake = FakeTime()
    writes = counted_writes(monkeypatch, state)
    doc = StatusDocument(tmp_path / "status.json", min_interval=0.25, clock=fake.clock, later=fake.later)
    for i in range(40):  # a scan's unreadable files and its progress, back to back
        doc(Progress(i + 1, 40))
        doc.add_error(ErrorInfo("workflow_unreadable", f"Failed to parse {i}.json"))
    assert len(writes) == 1
    fake.advance(0.25)  # no event after the burst: the trailing write carries it
    assert len(writes) == 2
    final = json.loads((tmp_path / "status.json").read_text())
    assert final["progress"]["current"] == 40 and len(final["errors"]) == 40
    doc(PhaseChanged("complete"))  # a phase is written at once, inside the interval
    assert len(writes) == 3 and json.loads((tmp_path / "status.json").read_text())["phase"] == "complete"


def test_status_json_gets_the_last_error_of_a_burst_without_a_later_event(tmp_path):
    """Fails on a941c31: the errors after the first waited for the next event (a scan that then stalls, or a
    run killed later, left them out of status.json)."""
    doc = StatusDocument(tmp_path / "status.json", min_interval=0.05)
    for i in range(3):
        doc.add_error(ErrorInfo("workflow_unreadable", f"Failed to parse {i}.json"))
    deadline = time.monotonic() + 5
    while len(json.loads((tmp_path / "status.json").read_text())["errors"]) < 3:
        assert time.monotonic() < deadline, "the burst's last errors were never written"
        time.sleep(0.01)


def test_resolutions_json_takes_a_burst_in_two_writes_and_a_phase_change_writes_at_once(tmp_path, monkeypatch):
    fake = FakeTime()
    writes = counted_writes(monkeypatch, outputs)
    out = ResolutionsFile(tmp_path, interval=0.25, clock=fake.clock, later=fake.later)
    (tmp_path / "resolutions.json").write_text('[{"filename": "earlier.safetensors"}]')
    out(PhaseChanged("resolving"))
    fake.advance(5)
    assert writes == []  # the earlier run's file stays until the first resolution
    for i in range(30):  # thirty searches ending together
        out(ModelResolved(Resolution(f"m{i}.safetensors", "loras", None)))
    assert len(writes) == 1
    fake.advance(0.25)
    assert len(writes) == 2 and len(json.loads((tmp_path / "resolutions.json").read_text())) == 30
    out(ModelResolved(Resolution("late.safetensors", "loras", None)))
    out(PhaseChanged("downloading"))  # the search ended: everything it found is on disk now
    assert len(writes) == 3 and json.loads((tmp_path / "resolutions.json").read_text())[-1]["filename"] == \
        "late.safetensors"
    fake.advance(5)
    assert len(writes) == 3


def test_a_run_that_resolved_nothing_leaves_an_empty_resolutions_json_once_it_moves_on(tmp_path):
    fake = FakeTime()
    out = ResolutionsFile(tmp_path, clock=fake.clock, later=fake.later)
    (tmp_path / "resolutions.json").write_text('[{"filename": "earlier.safetensors"}]')
    out(PhaseChanged("resolving"))
    out(PhaseChanged("complete"))
    assert json.loads((tmp_path / "resolutions.json").read_text()) == []


def test_a_run_killed_after_a_change_it_had_no_event_for_leaves_it_in_status_json(tmp_path):
    """A real process holding the state dir writes its phase, then two errors inside the interval, then goes quiet
    (a long step with no event); killed once the interval has passed, its status.json holds both, and settling the
    dead run adds the interrupted entry after them. Fails on a941c31 (the second error waited for an event)."""
    import os
    import signal
    import subprocess
    import sys

    from fixer.state import settled_status
    from tests.conftest import ROOT

    child = f"""
import sys, time
from pathlib import Path
from fixer.errors import ErrorInfo
from fixer.state import StateLock, StatusDocument
state = Path({str(tmp_path)!r})
lock = StateLock(state, "throttle test").acquire()
doc = StatusDocument(state / "status.json", min_interval=0.1)
doc.update(phase="downloading", force=True)
doc.add_error(ErrorInfo("download_failed", "first"))
doc.add_error(ErrorInfo("download_failed", "second"))
print("ready", flush=True)
time.sleep(60)
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", child], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 10
        while [e["error"] for e in json.loads((tmp_path / "status.json").read_text())["errors"]] != ["first",
                                                                                                    "second"]:
            assert time.monotonic() < deadline, "the second error never reached status.json"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    doc, holder = settled_status(tmp_path)
    assert holder is None and doc["phase"] == "error"
    assert [e.get("code") for e in doc["errors"]] == ["download_failed", "download_failed", "run_interrupted"]


def test_writes_from_several_threads_never_overlap():
    active, most = [0], [0]

    def write() -> None:
        active[0] += 1
        most[0] = max(most[0], active[0])
        time.sleep(0.0005)
        active[0] -= 1

    throttle = WriteThrottle(write, 0.001)
    threads = [threading.Thread(target=lambda: [throttle.changed(force=i % 2 == 0) for i in range(20)])
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    time.sleep(0.01)  # the last trailing write, if one is pending
    assert most[0] == 1
