"""The JSON documents of models by identity (hash index, lockfile, sync, duplicates, identify, the shared
cache's locks), dataclasses in the form of fixer/shapes.py (fixer/schema.py derives their schema likewise).
Apart from it because only the identity commands use them: fixer/shapes.py is imported by every command, a
--scan included, and each dataclass costs its creation at import.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..errors import ErrorInfo


@dataclass
class HashIndexFile:
    """<state>/cache/hash_index.json: sha256 per device:inode:size:mtime_ns, and the safetensors header's own
    hash claim where it made one (a hint, never trusted)."""

    version: int
    entries: dict[str, str]
    hints: dict[str, str]


# How a lockfile entry's links were learned; "lockfile": read from a lockfile that named none of the others.
FoundBy = Literal["present", "downloaded", "workflow", "civitai", "lockfile"]


@dataclass
class LockEntry:
    """One model of models.lock.json: where it goes, its bytes, where they can be had, how that was learned."""

    name: str  # relative to the folder; may hold a subfolder
    folder: str
    size: int
    sha256: str
    urls: list[str]
    found_by: FoundBy
    workflows: list[str] = field(default_factory=list)


@dataclass
class LockFile:
    """models.lock.json: every model the workflows use, pinned by size and sha256."""

    lockfile_version: int
    generated_by: str
    created: str
    models: list[LockEntry]
    unresolved: list[str] = field(default_factory=list)  # folder/name used by a workflow but not on disk


SyncState = Literal["present", "linked", "copied", "downloaded", "failed"]


@dataclass
class SyncRow:
    name: str
    folder: str
    sha256: str
    size: int
    state: SyncState
    how: str  # in words: where the bytes came from
    path: str | None = None
    error: ErrorInfo | None = None


@dataclass
class SyncData:
    """status.json's `data` during `comfy-fixer sync` (and its --json output)."""

    rows: list[SyncRow]
    done: int
    failed: int
    downloaded: int
    linked: int


@dataclass
class DuplicateCopy:
    path: str
    folder: str
    relpath: str
    root: str  # the ComfyUI install it belongs to
    same_file_as_first: bool  # already a hard link of the copy kept: wastes nothing


@dataclass
class DuplicateGroup:
    sha256: str
    size: int
    copies: list[DuplicateCopy]
    wasted_bytes: int


@dataclass
class DuplicatesReport:
    """`comfy-fixer dupes` and GET /comfyfixer/duplicates: identical files, the space they waste, what a fix did."""

    roots: list[str]
    files: int
    groups: list[DuplicateGroup]
    wasted_bytes: int
    linked: int = 0
    symlinked: int = 0
    freed_bytes: int = 0
    skipped: list[str] = field(default_factory=list)


@dataclass
class IdentifiedFile:
    """A local file named by its sha256 on Civitai (also written beside it as <name>.civitai.info)."""

    path: str
    sha256: str
    model_id: int | None
    version_id: int | None
    model_name: str | None
    version_name: str | None
    url: str | None
    sidecar: str | None


@dataclass
class CacheLockOwner:
    """<cache>/locks/<sha256>.lock: who fetches that file into the shared cache now (touched while it works)."""

    host: str
    pid: int
    since: float
