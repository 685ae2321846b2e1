"""What the ComfyUI panel asks of identity: the hash index kept warm in the background after each scan
(paced, and off when the settings say so), a workflow's lockfile ("Save lockfile"), the duplicates report
and its one-click fix."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..config import HashingConfig
from ..host.host import Host
from ..models import ModelStatus, to_jsonable
from ..shapes import IndexProgress
from ..transfer.records import DOWNLOADED_FILE, read_records
from .duplicates import deduplicate, find_duplicates
from .hash_index import BackgroundIndex, HashIndex, index_path
from .lockfile import build_lockfile
from .pace import ReadPace, never_busy, read_limit


@dataclass
class IdentityPanel:
    host: Host
    state_dir: Path
    root: str = ""
    hashing: Callable[[], HashingConfig] = HashingConfig  # the service's settings, read live
    busy: Callable[[], bool] = never_busy  # ComfyUI is running a prompt (fixer.comfy.runtime knows)
    _index: HashIndex | None = field(default=None, init=False, repr=False)
    _bg: BackgroundIndex | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _index_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def index(self) -> HashIndex:
        """The hash index, read from the state dir when first needed: the panel (its status is polled) is made
        without reading it."""
        with self._index_lock:
            if self._index is None:
                self._index = HashIndex(index_path(self.state_dir))
            return self._index

    def index_in_background(self) -> bool:
        """Start the background index unless one runs; never waits. A scan calls it after it answered. With
        background hashing off nothing starts (a running one stops within one piece: its pace sees it).
        True when it started one now."""
        with self._lock:
            if not self.hashing().background_hashing or (self._bg is not None and self._bg.running()):
                return False
            pace = ReadPace(self.hashing, self.busy)
            self._bg = BackgroundIndex(self.index, self.host, pace=pace).start()
            return True

    def progress(self) -> dict[str, Any]:
        """The background index as the panel shows it: `off` whenever the settings turn it off, `idle` before the
        first scan started it, else how far it got, with the read limit the settings say now. A copy of a few
        fields: O(1), reads nothing from disk and starts nothing (the status route asks it on every poll)."""
        settings = self.hashing()
        bg = self._bg
        if not settings.background_hashing:
            shown = IndexProgress("off")
        elif bg is None:
            shown = IndexProgress("idle")
        else:
            shown = replace(bg.progress)  # one copy: the hashing thread goes on updating its own
        shown.read_limit = read_limit(settings)
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
