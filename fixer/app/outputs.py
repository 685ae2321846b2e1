"""The run's output files, each written by a subscriber to the run's events (the run itself writes none).

- status.json: `StatusDocument` (fixer/state.py) takes phases, progress and errors from the events;
  `RunStatus` here puts the run's rows and the agent guide's counters beside them.
- output/resolutions.json: `ResolutionsFile`, from every resolution a run or `--resolve` reaches.
- output/download_<n>_<file>.sh: written by the download queue per download (transfer/scripts.py);
  `ScriptsOfLastRun` keeps only the last run's inside ComfyUI, where the folder would otherwise grow by one
  file per download forever (the CLI keeps them all).
The application (application.py) subscribes them for every front-end: the CLI, the ComfyUI service.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..events import Event, ModelResolved, PhaseChanged, ResolutionChanged, RunFinished
from ..models import Resolution
from ..shapes import RunData
from ..state import StatusDocument, write_json_atomic
from ..throttle import Clock, Later, WriteThrottle, call_later

if TYPE_CHECKING:
    from .run import FixRun

RESOLUTIONS_FILE = "resolutions.json"


def plain_view(run: FixRun) -> RunData:
    return run.snapshot()


class RunStatus:
    """The run's rows (as the front-end shows them: `view`) and the agent guide's counters into status.json.

    Subscribed before the status document: on a phase change the rows are current when the document writes
    the new phase. The rows are built at once when a phase changes or the run ends, otherwise (a download's
    progress, a file's end) at most every interval of the document's throttle and the last change's at the
    latest one interval after it (a view is O(models): a download emits many events a second, and one build per
    file ending made a run O(files^2)); the document then writes them by its own throttle, so a change reaches
    the file within two intervals. Once the run has finished, later events (a download command after it, the
    next scan) leave its rows alone; `refresh` still writes them when the front-end changes one (a discarded
    part)."""

    def __init__(self, status: StatusDocument, view: Callable[[FixRun], RunData] = plain_view, *,
                 clock: Clock = time.monotonic, later: Later = call_later) -> None:
        self.status = status
        self.view = view
        self.run: FixRun | None = None
        self._live = False  # between follow() and the run's RunFinished
        self.refreshed_on: Event | None = None  # the event the rows were last built on (none: asked directly)
        self._rows = WriteThrottle(self._build, status.throttle.interval, clock=clock, later=later)
        self._building_on: Event | None = None  # the event a build due now is for
        self._force = False  # the build writes the document at once

    def follow(self, run: FixRun) -> None:
        self.run, self._live = run, True

    def __call__(self, event: Event) -> None:
        if not self._live:
            return
        self._live = not isinstance(event, RunFinished)
        if isinstance(event, PhaseChanged):  # the status document writes the phase right after this
            self.refresh(force=False)
        elif isinstance(event, RunFinished):
            self.refresh(force=True)
        else:
            self._building_on = event
            self._rows.changed()
            self._building_on = None
            return
        self.refreshed_on = event

    def refresh(self, force: bool = True) -> None:
        """The rows and counters as they are now; written at once with `force`."""
        self._force = force
        try:
            self._rows.changed(force=True)
        finally:
            self._force = False

    def _build(self) -> None:
        run = self.run
        if run is None:
            return
        self.refreshed_on = self._building_on
        self.status.set_run(run.seed_counts(), self.view(run), force=self._force)


class ResolutionsFile:
    """output/resolutions.json as far as the run got: a run stopped while searching leaves what it found, and
    --resume searches only the rest. Each run (a new "resolving" phase) starts it afresh: the earlier file
    stays until the first resolution (a run killed before it resumes from the earlier one), and a run that had
    nothing to resolve leaves an empty list once it moves on.

    Written by a WriteThrottle: at most every `interval` seconds, the last change at the latest `interval` after
    it and at once when the phase changes: when the searches of a big workflow end together, thirty
    resolutions arrive back to back, and rewriting the growing file for each (~55 ms on the event loop for 30)
    held back the downloads they had just started."""

    def __init__(self, output_dir: Path, interval: float = 0.25, *, clock: Clock = time.monotonic,
                 later: Later = call_later) -> None:
        self.path = output_dir / RESOLUTIONS_FILE
        self.found: dict[str, Resolution] = {}
        self.file = WriteThrottle(self._write, interval, clock=clock, later=later)

    def __call__(self, event: Event) -> None:
        if isinstance(event, PhaseChanged):
            if event.phase == "resolving":
                self.found = {}
                self.file.hold()
            else:
                self.file.flush()
        elif isinstance(event, (ModelResolved, ResolutionChanged)):
            self.found[event.resolution.name] = event.resolution
            self.file.changed()

    def _write(self) -> None:
        from .resolve import resolution_entry  # the sources' stack: loaded by a run, never by a scan

        write_json_atomic(self.path, [resolution_entry(r) for r in self.found.values()])


def prune_scripts(output_dir: Path, since: float) -> int:
    """The download scripts older than `since` removed; returns how many."""
    removed = 0
    for path in output_dir.glob("download_[0-9]*.sh"):  # transfer.scripts.script_name
        try:
            if path.stat().st_mtime < since:
                path.unlink()
                removed += 1
        except OSError:
            continue  # another process removed or is replacing it; not ours to fight over
    return removed


class ScriptsOfLastRun:
    """Inside ComfyUI the download scripts are only a record of the last run: when a run ends (complete or
    error) the older ones go."""

    def __init__(self, output_dir: Path) -> None:
        self.output_dir = output_dir
        self.since: float | None = None

    def __call__(self, event: Event) -> None:
        if not isinstance(event, PhaseChanged):
            return
        if event.phase == "resolving":
            self.since = time.time()
        elif event.phase in ("complete", "error") and self.since is not None:
            prune_scripts(self.output_dir, self.since)
            self.since = None
