"""The sha256 of every model file, remembered by (device, inode, size, mtime): a second scan costs a stat.

The key is the file's identity on disk, not its path: hard links (deduplicated copies) share one entry,
a renamed or moved file keeps its hash, and any write changes the mtime and so drops the entry. The
index lives in the state directory (cache/hash_index.json), written atomically; entries not seen by a
full walk are dropped, so it stays the size of the model folders.

Hashing runs on a thread of its own (`BackgroundIndex`) with progress a scan or the panel can read:
nothing waits for it. Inside ComfyUI it is paced (fixer.identity.pace: a read limit, no reading while a
prompt runs, an off switch); hashes a fix or a command needs now are computed unpaced.

A safetensors header's own hash metadata (`modelspec.hash_sha256`,
`sshs_model_hash`) is kept as a hint beside the real hash, never instead of it: those hash the tensors
(or whatever the writer chose), and a header is as untrusted as the rest of the file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..host.host import Host, model_folders
from ..read.inventory import build_inventory
from ..shapes import IndexProgress
from ..state import json_text, read_json, write_text_atomic
from .pace import ReadPace
from .shapes import HashIndexFile

log = logging.getLogger("fixer.identity.hash_index")

CHUNK = 8 * 2**20
INDEX_VERSION = 1
MAX_HEADER = 16 * 2**20  # a safetensors header longer than this is not read for a hint
HINT_KEYS = ("modelspec.hash_sha256", "sshs_model_hash")
SAVE_EVERY_BYTES = 4 * 2**30  # a long first scan keeps its work when killed: saved every few GiB hashed


def index_path(state_dir: Path) -> Path:
    return Path(state_dir) / "cache" / "hash_index.json"


def stat_key(st: os.stat_result) -> str:
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


def header_hint(head: bytes) -> str | None:
    """The hash a safetensors header claims for itself (lower-case hex), from the file's first bytes; None
    when it is not a safetensors header or claims none. A hint: shown, never trusted as the file's sha256."""
    if len(head) < 8:
        return None
    (n,) = struct.unpack("<Q", head[:8])
    if n > MAX_HEADER or 8 + n > len(head):
        return None
    try:
        header = json.loads(head[8:8 + n])
    except (ValueError, UnicodeDecodeError):
        return None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict):
        return None
    for key in HINT_KEYS:
        value = meta.get(key)
        if isinstance(value, str):
            value = value.lower().removeprefix("0x")
            if len(value) == 64 and all(c in "0123456789abcdef" for c in value):
                return value
    return None


class HashingStopped(Exception):
    """The pace said stop in the middle of a file (background hashing turned off, or the index stopped)."""


def hash_file(path: str, progress: Callable[[int], None] | None = None,
              admit: Callable[[int], bool] | None = None) -> tuple[str, str | None]:
    """(sha256, header hint) of a file, read once in CHUNK pieces; `progress` gets each piece's length;
    `admit` (a pace) is asked before each piece and raises HashingStopped by answering False."""
    h = hashlib.sha256()
    hint = None
    with open(path, "rb") as f:
        left = os.fstat(f.fileno()).st_size  # what the pace is told each piece will be (never more than read)
        first = True
        while True:
            if admit is not None and not admit(max(0, min(CHUNK, left))):
                raise HashingStopped(path)
            chunk = f.read(CHUNK)
            if not chunk:
                break
            left -= len(chunk)
            if first:
                hint, first = header_hint(chunk), False
            h.update(chunk)
            if progress is not None:
                progress(len(chunk))
    return h.hexdigest(), hint


@dataclass(frozen=True)
class IndexedFile:
    folder: str
    relpath: str
    path: str
    size: int
    sha256: str
    hint: str | None = None
    key: str = ""  # device:inode:size:mtime -- files sharing it are already one file (hard links)


class HashIndex:
    """sha256 per (device, inode, size, mtime); thread-safe. `path` None: in memory only (tests, one run)."""

    def __init__(self, path: Path | None):
        self.path = path
        self._lock = threading.Lock()
        self._entries: dict[str, str] = {}
        self._hints: dict[str, str] = {}
        self._files: list[IndexedFile] = []
        self._by_sha: dict[str, list[IndexedFile]] = {}
        self._dirty = False  # entries added since the file was read or written
        if path is not None:
            self._load(path)

    def _load(self, path: Path) -> None:
        data = read_json(path, {})
        if not isinstance(data, dict) or data.get("version") != INDEX_VERSION:
            return
        entries, hints = data.get("entries"), data.get("hints")
        if isinstance(entries, dict):  # the file is ours, but a broken one must not break a scan
            self._entries = {k: v for k, v in entries.items()
                             if isinstance(k, str) and isinstance(v, str) and len(v) == 64}
        if isinstance(hints, dict):
            self._hints = {k: v for k, v in hints.items() if k in self._entries and isinstance(v, str)}

    # -- one file -----------------------------------------------------------------------
    def known(self, path: str) -> str | None:
        """The sha256 of `path` if the index has it for the file as it is now (one stat, no read)."""
        try:
            key = stat_key(os.stat(path))
        except OSError:
            return None
        with self._lock:
            return self._entries.get(key)

    def sha256(self, path: str, progress: Callable[[int], None] | None = None) -> str | None:
        """The file's sha256, hashed now unless the index has it; None when it cannot be read."""
        return self._sha256_keyed(path, progress)[0]

    def _sha256_keyed(self, path: str, progress: Callable[[int], None] | None = None,
                      admit: Callable[[int], bool] | None = None) -> tuple[str | None, str]:
        """(sha256 or None, the stat key it belongs to): one stat when the index has the file."""
        try:
            st = os.stat(path)
        except OSError:
            return None, ""
        key = stat_key(st)
        with self._lock:
            if key in self._entries:
                return self._entries[key], key
        try:
            digest, hint = hash_file(path, progress, admit)
            after = os.stat(path)
        except HashingStopped:
            return None, key
        except OSError as e:
            log.warning("Cannot read %s to hash it: %s", path, e)
            return None, key
        if stat_key(after) != key:  # written to while we read it: the digest belongs to no version of it
            return None, key
        with self._lock:
            self._entries[key] = digest
            self._dirty = True
            if hint:
                self._hints[key] = hint
        return digest, key

    def remember(self, path: str, sha256: str) -> None:
        """A hash learned without reading the file (a download verified it as it arrived)."""
        try:
            key = stat_key(os.stat(path))
        except OSError:
            return
        with self._lock:
            self._entries[key] = sha256.lower()
            self._dirty = True

    # -- every model file --------------------------------------------------------------
    def scan(self, host: Host, progress: IndexProgress | None = None, stop: threading.Event | None = None,
             pace: ReadPace | None = None, shared_sizes_only: bool = False) -> list[IndexedFile]:
        """Hash every model file of the host's model folders (the index's own first); keeps the list for
        `with_sha256` and saves the index. Files are those the scan's inventory lists. `pace` bounds and
        pauses the reading (the background index); `shared_sizes_only` hashes only files whose size another
        file has too -- all a duplicates report needs, when no complete index exists."""
        progress = progress if progress is not None else IndexProgress()
        progress.state = "walking"
        if pace is not None:
            stop = pace.stop
            progress.read_limit = pace.limit()
        host_folders = model_folders(host.folders())
        inventory = build_inventory(host)
        files = [f for f in inventory.files if f.folder in host_folders]
        if shared_sizes_only:
            sizes = Counter(f.size for f in files)
            files = [f for f in files if f.size > 0 and sizes[f.size] > 1]
        progress.files_total, progress.bytes_total = len(files), sum(f.size for f in files)
        progress.state = "hashing"
        out: list[IndexedFile] = []
        seen: set[str] = set()
        unsaved = 0
        for f in files:
            if (stop is not None and stop.is_set()) or (pace is not None and pace.stopped()):
                break
            before = progress.hashed_bytes

            def moved(n: int) -> None:
                progress.bytes_done += n
                progress.hashed_bytes += n

            digest, key = self._sha256_keyed(f.path, moved, pace.admit if pace is not None else None)
            if pace is not None:
                progress.read_limit = pace.limit()
            if pace is not None and pace.stopped():
                break  # this file's digest, if any, was cut short: not counted as done
            if progress.hashed_bytes == before:
                progress.bytes_done += f.size
            progress.files_done += 1
            unsaved += progress.hashed_bytes - before
            if digest is None:
                continue
            seen.add(key)
            out.append(IndexedFile(f.folder, f.relpath, f.path, f.size, digest, self._hints.get(key), key))
            if unsaved >= SAVE_EVERY_BYTES:
                self.save(keep=None)
                unsaved = 0
        complete = progress.files_done == len(files)
        with self._lock:
            self._files = out
            by_sha: dict[str, list[IndexedFile]] = {}
            for item in out:
                by_sha.setdefault(item.sha256, []).append(item)
            self._by_sha = by_sha
        self.save(keep=seen if complete and not shared_sizes_only else None)
        progress.state = "done" if complete else "stopped"
        return out

    def files(self) -> list[IndexedFile]:
        with self._lock:
            return list(self._files)

    def with_sha256(self, sha256: str) -> list[IndexedFile]:
        """Files of the last scan holding these bytes (each still checked by the caller before use)."""
        with self._lock:
            return list(self._by_sha.get(sha256.lower(), []))

    def save(self, keep: set[str] | None = None) -> None:
        """Write the index; with `keep` (the keys a full walk saw) entries of files gone are dropped."""
        if self.path is None:
            return
        with self._lock:
            if not self._dirty and (keep is None or len(keep) == len(self._entries)):
                return  # nothing learned and nothing gone: a second scan writes nothing
            self._dirty = False
            entries = {k: v for k, v in self._entries.items() if keep is None or k in keep}
            hints = {k: v for k, v in self._hints.items() if k in entries}
            if keep is not None:
                self._entries, self._hints = entries, hints
        try:
            write_text_atomic(self.path, json_text(HashIndexFile(INDEX_VERSION, entries, hints)))
        except OSError as e:
            log.warning("Cannot write the hash index %s: %s", self.path, e)


@dataclass
class BackgroundIndex:
    """The index built on a thread of its own: `start` returns at once, `progress` says how far it got."""

    index: HashIndex
    host: Host
    progress: IndexProgress = field(default_factory=IndexProgress)
    pace: ReadPace | None = None  # the panel's index is paced; a command's (`comfy-fixer hashes`) is not
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    started: float = 0.0

    def __post_init__(self) -> None:
        if self.pace is not None:
            self._stop = self.pace.stop
            self.pace.on_pause = self._paused

    def _paused(self, paused: bool) -> None:
        self.progress.state = "paused" if paused else "hashing"

    def start(self) -> BackgroundIndex:
        if self._thread is None or not self._thread.is_alive():
            self.progress = IndexProgress(state="walking")
            self.started = time.monotonic()
            self._thread = threading.Thread(target=self._run, name="fixer-hash-index", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self.index.scan(self.host, self.progress, self._stop, self.pace)
        except Exception as e:  # a bug here must not take a scan or ComfyUI with it
            log.exception("the hash index failed")
            self.progress.state, self.progress.error = "failed", f"{type(e).__name__}: {e}"

    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> IndexProgress:
        if self._thread is not None:
            self._thread.join(timeout)
        return self.progress

    def stop(self) -> None:
        self._stop.set()
