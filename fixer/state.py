"""Run state on disk: atomic JSON writes, the status.json document, and the state-dir lock."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from .errors import ErrorInfo, RunLocked
from .events import ErrorRaised, Event, PhaseChanged, Progress, ScanFinished
from .models import json_default, to_jsonable
from .shapes import Phase, RunData, StatusDoc, StatusError, StatusProgress
from .throttle import Clock, Later, WriteThrottle, call_later


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def write_json_atomic(path: Path, data: Any, mode: int | None = None) -> None:
    """Readers (and a run killed at any moment) see the old or the new file, never half of one."""
    write_text_atomic(path, json_text(data), mode)


def json_text(data: Any) -> str:
    """Compact, C-encoded JSON (indenting switches json to its pure-Python encoder, 6x slower on big
    reports), readable UTF-8; names with lone surrogates (os.listdir's escapes of non-UTF-8 bytes)
    are kept as \\udcxx escapes, which any JSON reader takes and UTF-8 cannot hold."""
    text = json.dumps(data, ensure_ascii=False, default=json_default)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(data, ensure_ascii=True, default=json_default)
    return text


def write_text_atomic(path: Path, text: str, mode: int | None = None) -> None:
    """Temp file beside `path`, then rename over it (atomic on POSIX and Windows). A lone surrogate (a
    non-UTF-8 file name from os.listdir) is written as its \\udcxx escape: the file stays valid UTF-8.
    `mode` is set on the temp file before it takes the name, so the file never exists with wider rights."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if mode is not None:
            os.chmod(tmp, mode)
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def read_json(path: Path, default: Any = None) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default


# The agent guide's phases: idle (nothing runs), scanning, resolving, downloading, complete (the run got to its end;
# failures are counted in data and listed in errors), error (the run could not finish: an input error, a crash,
# an interruption). Ours beside them: review (the panel holds the resolved files until the user approves), verifying.
RUNNING_PHASES: frozenset[Phase] = frozenset({"scanning", "resolving", "review", "downloading", "verifying"})
# The guide's data fields: always present, whatever the phase (scripts read them with ['...']).
SEED_DATA: dict[str, Any] = {"workflows_scanned": 0, "missing_models": 0, "civitai_matches": 0,
                             "huggingface_matches": 0, "downloads_successful": 0, "downloads_failed": 0,
                             "current_download": None}


def with_seed_data(doc: dict[str, Any], seed: dict[str, Any] | None = None) -> dict[str, Any]:
    """A status document (JSON types) whose data holds the guide's fields first, then the owner's."""
    raw = doc.get("data")
    data: dict[str, Any] = raw if isinstance(raw, dict) else {}
    return {**doc, "data": {**SEED_DATA, **(seed or {}), **data}}


def idle_document() -> dict[str, Any]:
    """status.json as it reads when nothing ever ran: phase idle, every field of the guide present."""
    return with_seed_data(to_jsonable(StatusDoc(timestamp=now_iso())))


class StatusDocument:
    """status.json of the file contract: {timestamp, phase, progress, data, errors}; thread-safe, written atomically.

    An event subscriber: phases, progress and errors come from the pipeline's events. `data` always holds
    the guide's fields (SEED_DATA; the scan's two from ScanFinished, the others from the owner, who knows
    the truth per model: `set_counts`), then whatever else the owner puts there (per-model rows for the panel).
    """

    def __init__(self, path: Path | None, min_interval: float = 0.25, *, clock: Clock = time.monotonic,
                 later: Later = call_later) -> None:
        self.path = path
        self._lock = threading.Lock()
        # status.json written at most every `min_interval` seconds, each change within it, phases at once.
        self.throttle = WriteThrottle(self._write, min_interval, clock=clock, later=later)
        self.doc = StatusDoc(timestamp=now_iso())
        self.seed: dict[str, Any] = dict(SEED_DATA)
        self._wrote: tuple[int, int, int] | None = None  # the file this document last wrote (or last saw)

    def __call__(self, event: Event) -> None:
        if isinstance(event, PhaseChanged):  # a phase that says how many items it works through starts at 0 of them
            self.update(phase=event.phase, progress=StatusProgress(0, event.total, 0.0) if event.total else None,
                        force=True)
        elif isinstance(event, Progress):
            self.set_progress(event.current, event.total)
        elif isinstance(event, ErrorRaised):
            self.add_error(event.error, event.details)
        elif isinstance(event, ScanFinished):
            report = event.report
            self.set_counts({"workflows_scanned": len(report.workflows),
                             "missing_models": sum(1 for m in report.models
                                                   if m.state in ("missing", "elsewhere", "unsafe"))})

    def set_counts(self, counts: dict[str, Any], force: bool = False) -> None:
        """The guide's counters (and ours beside them: local_matches, not_found, ...), as the owner knows them."""
        with self._lock:
            self.seed.update(counts)
            self.doc = replace(self.doc, timestamp=now_iso())
        self._written_or_due(force)

    def carry_over(self, previous: dict[str, Any] | None, keys: tuple[str, ...]) -> None:
        """Start from an earlier run's counts (`--download` after `--resolve`): the phases this run does not
        repeat keep their true figures instead of zeros."""
        data = previous.get("data") if isinstance(previous, dict) else None
        if isinstance(data, dict):
            self.set_counts({k: data[k] for k in keys if k in SEED_DATA and isinstance(data.get(k), int)
                             and not isinstance(data.get(k), bool) and data[k] >= 0})

    def reset(self) -> None:
        """A new run in the same process (the panel): no errors, counts or rows of the last one."""
        with self._lock:
            self.seed = dict(SEED_DATA)
            self.doc = replace(self.doc, timestamp=now_iso(), errors=[], data={}, progress=StatusProgress())

    def set_progress(self, current: int, total: int) -> None:
        pct = round(100.0 * current / total, 1) if total else 0.0
        self.update(progress=StatusProgress(current, total, pct))

    def add_error(self, error: ErrorInfo, details: str = "") -> None:
        """The file contract's entry {timestamp, error, details}, extended with the error's code and typed facts.

        Written when due, like progress: a burst (a scan's unreadable files) costs one write now and one when the
        interval ends, not one each."""
        facts = {f.name: getattr(error, f.name) for f in fields(error) if f.name not in ("code", "message")}
        with self._lock:
            self.doc.errors.append(StatusError(timestamp=now_iso(), error=error.message, details=details,
                                               code=error.code, **facts))
        self._written_or_due(False)

    def update(self, force: bool = False, *, phase: Phase | None = None, progress: StatusProgress | None = None,
               errors: list[StatusError] | None = None, queued: list[str] | None = None) -> None:
        with self._lock:
            doc = replace(self.doc, timestamp=now_iso())
            doc.phase = phase if phase is not None else doc.phase
            doc.progress = progress if progress is not None else doc.progress
            doc.errors = errors if errors is not None else doc.errors
            doc.queued = list(queued) if queued is not None else doc.queued
            self.doc = doc
        self._written_or_due(force)

    def set_run(self, counts: dict[str, Any], data: RunData, force: bool = False) -> None:
        """A run's counters and rows of one moment, in one write (when due, or forced). Set one after the
        other, the first call's write would carry the new counters beside the previous rows."""
        with self._lock:
            self.seed.update(counts)
            self.doc = replace(self.doc, timestamp=now_iso(), data=data)
        self._written_or_due(force)

    def set_data(self, data: RunData | dict[str, Any], force: bool = False) -> None:
        if isinstance(data, dict):  # a CLI command's own counts: the guide's fields among them are counters
            self.set_counts({k: v for k, v in data.items() if k in SEED_DATA})
            data = {k: v for k, v in data.items() if k not in SEED_DATA}
        with self._lock:
            self.doc = replace(self.doc, timestamp=now_iso(), data=data)
        self._written_or_due(force)

    def _written_or_due(self, force: bool) -> None:
        if self.path is not None:
            self.throttle.changed(force)

    def snapshot(self) -> dict[str, Any]:
        """status.json as JSON types: a copy, safe to hand to another thread or the page."""
        with self._lock:
            return with_seed_data(to_jsonable(self.doc), self.seed)

    def _write(self) -> None:
        if self.path is None:
            return
        write_json_atomic(self.path, self.snapshot())
        self.mark_seen()

    def mark_seen(self) -> None:
        """Take the file now on disk as this document's own (the last one written, or one found at start)."""
        self._wrote = file_identity(self.path)

    def written_elsewhere(self) -> bool:
        """status.json on disk is not what this document last wrote or saw: another process (a CLI run in the
        same state dir, `--status` settling a dead run) wrote it since. Each atomic write is a new inode."""
        return self.path is not None and file_identity(self.path) != self._wrote


def file_identity(path: Path | None) -> tuple[int, int, int] | None:
    """Which file is at `path` now (inode, mtime, size), None when none is."""
    try:
        st = os.stat(path) if path is not None else None
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size) if st is not None else None


def _lock_fd(fd: int) -> None:
    """An exclusive, non-blocking lock the OS drops when the process dies (OSError if held)."""
    if sys.platform == "win32":  # no flock: lock the first byte instead
        import msvcrt

        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        return
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


LOCK_NAME = ".comfyfixer.lock"


class StateLock:
    """One run per state directory: an exclusive lock file (fcntl), released on exit or process death."""

    def __init__(self, state_dir: Path, what: str = "run"):
        self.path = Path(state_dir) / LOCK_NAME
        self.what = what
        self._fd: int | None = None

    def acquire(self, record: bool = True) -> "StateLock":
        """Hold the lock; `record` writes who holds it into the file (a mere check leaves the last run's words)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _lock_fd(fd)
        except OSError:
            holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "unknown process"
            os.close(fd)
            raise RunLocked(str(self.path), holder) from None
        if record:
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, f"pid {os.getpid()} {self.what} since {now_iso()}".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "StateLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def running_holder(state_dir: Path) -> str | None:
    """Who holds the state dir's lock right now ("pid 123 comfy-fixer --auto since ..."), or None when no
    live process does: the OS drops the lock of a dead process, so a status.json still saying
    `downloading` with no holder is a run that was killed."""
    lock = StateLock(state_dir, "comfy-fixer --status")
    if not lock.path.exists():
        return None
    try:
        lock.acquire(record=False)
    except RunLocked as e:
        return e.holder
    lock.release()
    return None


def last_holder(state_dir: Path) -> str:
    """What the lock file says about the last run that held it (its pid, command and start)."""
    try:
        return (Path(state_dir) / LOCK_NAME).read_text(encoding="utf-8", errors="replace").strip()[:200]
    except OSError:
        return ""


INTERRUPTED_DETAILS = ("Nothing is lost: comfy-fixer --resume continues it (searches what was not searched, "
                       "downloads what was not downloaded, resumes partial files).")


def interrupted_error(how: str, phase: str) -> dict[str, str]:
    """errors[] for a run that stopped before its end: what it was doing and how to continue."""
    return {"timestamp": now_iso(), "error": f"Run interrupted ({how}) while {phase}",
            "details": INTERRUPTED_DETAILS, "code": "run_interrupted"}


def settled_status(state_dir: Path, who: str = "comfy-fixer --status") -> tuple[dict[str, Any], str | None]:
    """status.json as it truly is: idle when no run ever wrote one; a run whose document still says it is
    working but whose process is gone (killed, crashed, the machine rebooted) becomes `error` with an
    "interrupted" entry, written back so that scripts polling the file stop waiting. The one place that
    decides it, for `--status` and for the service inside ComfyUI (at its start and on its status route).
    Returns the document and who holds the state dir right now (None when no run is alive)."""
    path = state_dir / "status.json"
    doc = read_json(path)
    holder = running_holder(state_dir) if state_dir.is_dir() else None
    if not isinstance(doc, dict):
        return idle_document(), holder
    doc = with_seed_data(doc)
    if not isinstance(doc.get("errors"), list):
        doc["errors"] = []
    doc.setdefault("progress", {"current": 0, "total": 0, "percent": 0.0})
    if doc.get("phase") in RUNNING_PHASES and holder is None:
        last = last_holder(state_dir)
        how = f"its process is gone: {last}" if last else "its process is gone"
        doc["errors"] = [*doc["errors"], interrupted_error(how, str(doc.get("phase")))]
        doc["phase"], doc["data"]["current_download"] = "error", None
        doc["timestamp"] = now_iso()
        try:
            with StateLock(state_dir, who):
                write_json_atomic(path, doc)
        except (RunLocked, OSError):
            pass  # a new run took the state dir meanwhile: its document is the true one
    return doc, holder
