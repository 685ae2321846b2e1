"""What the ComfyUI panel asks of identity: the hash index kept warm in the background after each scan
(paced, and off when the settings say so), a workflow's lockfile ("Save lockfile"), the duplicates report
and its one-click fix."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import HashingConfig
from ..host.host import Host
from ..models import ModelStatus, to_jsonable
from ..transfer.records import DOWNLOADED_FILE, read_records
from .duplicates import deduplicate, find_duplicates
from .hash_index import BackgroundIndex, HashIndex, IndexProgress, index_path
from .lockfile import build_lockfile
from .pace import ReadPace, never_busy


@dataclass
class IdentityPanel:
    host: Host
    state_dir: Path
    root: str = ""
    hashing: Callable[[], HashingConfig] = HashingConfig  # the service's settings, read live
    busy: Callable[[], bool] = never_busy  # ComfyUI is running a prompt (fixer.comfy.runtime knows)
    index: HashIndex = field(init=False)
    _bg: BackgroundIndex | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self.index = HashIndex(index_path(self.state_dir))

    def index_in_background(self) -> IndexProgress:
        """Start (or keep) the background index; never waits. A scan calls it after it answered. With
        background hashing off nothing starts (a running one stops within one piece: its pace sees it)."""
        with self._lock:
            if not self.hashing().background_hashing:
                return IndexProgress(state="off")
            if self._bg is None or not self._bg.running():
                pace = ReadPace(self.hashing, self.busy)
                self._bg = BackgroundIndex(self.index, self.host, pace=pace).start()
            return self._bg.progress

    def progress(self) -> dict[str, Any]:
        on = self.hashing().background_hashing
        bg = self._bg
        shown = bg.progress if bg is not None and (on or bg.running()) else IndexProgress("idle" if on else "off")
        return to_jsonable(shown)

    def lockfile(self, models: list[ModelStatus]) -> dict[str, Any]:
        """The lockfile of a scanned workflow (present files hashed, the index making it cheap)."""
        known: dict[str, list[str]] = {}
        for rec in read_records(self.state_dir / "output" / DOWNLOADED_FILE):
            if rec.get("state") == "done" and isinstance(rec.get("path"), str) and isinstance(rec.get("url"), str):
                known.setdefault(rec["path"], []).append(rec["url"])
        lock = build_lockfile(models, self.index, known)
        self.index.save()
        return to_jsonable(lock)

    def duplicates(self, fix: bool) -> dict[str, Any]:
        """The duplicates report over the last complete index (`index` says how far a running one got);
        with `fix`, each duplicate linked to its first copy."""
        if self._bg is not None and self._bg.running():
            return {"index": self.progress(), "report": None}
        if not self.index.files():
            # No complete index yet (or background hashing is off): the route runs on a thread and waits,
            # so only what can be a duplicate is hashed -- files whose size another file has too.
            self.index.scan(self.host, shared_sizes_only=True)
        report = find_duplicates((self.root, f) for f in self.index.files())
        if fix:
            report = deduplicate(report, self.index)
            self.index.save()
        return {"index": self.progress(), "report": to_jsonable(report)}
