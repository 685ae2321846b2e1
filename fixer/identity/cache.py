"""One store of model files for many ComfyUI roots and machines, by sha256, on any shared file system.

Layout under the cache directory: `sha256/ab/abcd...` (the verified files, read-only by convention),
`locks/<sha256>.lock` (who is fetching a file now), `tmp/<sha256>/` (the fetch in progress, its .part
resumable by whoever holds the lock next). An entry appears only by renaming a file whose size and
sha256 were checked, so a half-written or wrong entry is never there to be used.

The lock works across machines without flock (unreliable over NFS and SMB): it is a file created with
O_CREAT|O_EXCL, holding its owner (host, pid, since). The holder touches it every HEARTBEAT seconds; a
lock untouched for STALE_AFTER seconds (its owner died, its machine went away) is taken over: renamed
away under a name of our own, then re-created by us with O_EXCL, so of several waiters noticing at once
only one goes on. Time is the file server's: a lock's mtime is compared with that of a file we just
touched in the same directory, so machines' clocks need not agree.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from ..actionlog import action
from ..errors import FixerError, IntegrityError
from ..state import json_text
from .hash_index import hash_file
from .shapes import CacheLockOwner

log = logging.getLogger("fixer.identity.cache")

HEARTBEAT = 5.0
STALE_AFTER = 60.0
POLL = 0.2


def is_sha256(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


@dataclass
class CacheLock:
    path: Path
    owner: str

    def touch(self) -> None:
        try:
            os.utime(self.path)
        except OSError as e:
            log.warning("cannot refresh the cache lock %s: %s", self.path, e)

    def release(self) -> None:
        """Removed only while it is still ours (taken over as stale, it belongs to the new holder)."""
        try:
            if self.path.read_text(encoding="utf-8") == self.owner:
                os.unlink(self.path)
        except OSError:
            pass


class SharedCache:
    def __init__(self, root: str | os.PathLike[str], stale_after: float = STALE_AFTER, heartbeat: float = HEARTBEAT):
        self.root = Path(root).expanduser().resolve()
        self.stale_after = stale_after
        self.heartbeat = heartbeat
        self.me = f"{socket.gethostname()}-{os.getpid()}"

    def object_path(self, sha256: str) -> Path:
        if not is_sha256(sha256):  # the name of a file in the cache: only ever 64 hex digits
            raise FixerError(f"not a sha256: {sha256!r}", code="lockfile_invalid")
        return self.root / "sha256" / sha256[:2] / sha256

    def tmp_dir(self, sha256: str) -> Path:
        return self.root / "tmp" / sha256

    def lookup(self, sha256: str, size: int) -> Path | None:
        """The verified entry for these bytes, or None. Size is checked again (someone may have truncated it)."""
        p = self.object_path(sha256)
        try:
            return p if p.stat().st_size == size else None
        except OSError:
            return None

    # -- the lock ---------------------------------------------------------------------
    def _lock_path(self, sha256: str) -> Path:
        return self.root / "locks" / f"{sha256}.lock"

    def try_lock(self, sha256: str) -> CacheLock | None:
        path = self._lock_path(sha256)
        path.parent.mkdir(parents=True, exist_ok=True)
        owner = json_text(CacheLockOwner(host=socket.gethostname(), pid=os.getpid(), since=time.time()))
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return None
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(owner)
        return CacheLock(path, owner)

    def _fs_now(self) -> float:
        """The file server's time now: the mtime of a file of ours touched just now in the locks folder."""
        clock = self.root / "locks" / f".clock-{self.me}"
        clock.touch()
        return clock.stat().st_mtime

    def _take_over_if_stale(self, sha256: str) -> bool:
        """Move a stale lock out of the way (True when we did); a live one (touched lately) stays."""
        path = self._lock_path(sha256)
        try:
            age = self._fs_now() - path.stat().st_mtime
            holder = path.read_text(encoding="utf-8")[:300]
        except OSError:
            return False  # gone already: the next try_lock decides
        if age < self.stale_after:
            return False
        aside = path.with_name(f".{path.name}.stale-{self.me}")
        try:
            os.rename(path, aside)
            os.unlink(aside)
        except OSError:
            return False  # another waiter moved it first
        action("cache_lock_taken_over", sha256=sha256, holder=holder, age_seconds=round(age, 1))
        return True

    async def _heartbeat(self, lock: CacheLock) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            await asyncio.to_thread(lock.touch)

    # -- an entry ----------------------------------------------------------------------
    async def ensure(self, sha256: str, size: int, fetch: Callable[[Path], Awaitable[tuple[Path, bool]]],
                     max_wait: float | None = None) -> tuple[Path, bool]:
        """The entry for these bytes, fetched once among every process sharing the cache: (path, fetched by
        us). `fetch(tmp_dir)` returns (a complete file inside tmp_dir, whether
        its sha256 was checked as it arrived); it is checked (size, sha256) and renamed into place. Waits behind
        a live lock; FixerError(cache_busy) after max_wait."""
        began = time.monotonic()
        while True:
            found = self.lookup(sha256, size)
            if found is not None:
                return found, False
            lock = await asyncio.to_thread(self.try_lock, sha256)
            if lock is not None:
                try:
                    found = self.lookup(sha256, size)  # finished by the holder we waited behind
                    if found is not None:
                        return found, False
                    return await self._fetch_locked(lock, sha256, size, fetch), True
                finally:
                    lock.release()
            if await asyncio.to_thread(self._take_over_if_stale, sha256):
                continue
            if max_wait is not None and time.monotonic() - began > max_wait:
                raise FixerError(f"the shared cache's lock on {sha256[:12]} stayed busy for {max_wait:.0f} s "
                                 f"({self._lock_path(sha256)}); run sync again later", code="cache_busy")
            await asyncio.sleep(POLL)

    async def _fetch_locked(self, lock: CacheLock, sha256: str, size: int,
                            fetch: Callable[[Path], Awaitable[tuple[Path, bool]]]) -> Path:
        beat = asyncio.create_task(self._heartbeat(lock))
        try:
            tmp = self.tmp_dir(sha256)
            tmp.mkdir(parents=True, exist_ok=True)
            got, verified = await fetch(tmp)
            await asyncio.to_thread(self._check, got, sha256, size, verified)
            dest = self.object_path(sha256)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(got, dest)
            action("cache_stored", sha256=sha256, size=size, path=str(dest))
            return dest
        finally:
            beat.cancel()

    @staticmethod
    def _check(path: Path, sha256: str, size: int, verified: bool) -> None:
        """What a fetcher left becomes an entry only with the right size and sha256: read again unless the
        fetcher hashed the bytes as they arrived (`verified`: the transfer engine checked the sha256)."""
        actual = path.stat().st_size
        if actual != size:
            path.unlink(missing_ok=True)
            raise IntegrityError("size", f"{size} bytes", f"{actual} bytes", path.name)
        if not verified:
            digest, _ = hash_file(str(path))
            if digest != sha256:
                path.unlink(missing_ok=True)
                raise IntegrityError("sha256", sha256, digest, path.name)

    async def store_local(self, src: str, sha256: str, size: int) -> Path:
        """A local file (hashed by the index) put into the cache, so other roots and machines link it: a hard
        link when the cache is on the same file system, else a copy that is hashed again before it counts."""

        async def fetch(tmp: Path) -> tuple[Path, bool]:
            dest = tmp / sha256
            dest.unlink(missing_ok=True)
            try:
                os.link(src, dest)
                return dest, False
            except OSError:
                await asyncio.to_thread(shutil.copyfile, src, dest)
                return dest, False

        path, _ = await self.ensure(sha256, size, fetch)
        return path
