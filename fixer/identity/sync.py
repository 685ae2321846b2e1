"""Make a ComfyUI root hold a lockfile's files, verified: each is already there (same sha256), linked from
the same bytes elsewhere under the root, linked from the shared cache, or downloaded (into the cache when
there is one, so every root and machine sharing it downloads each file once).

Nothing is overwritten and nothing deleted: a different file at a lockfile's place fails that entry
(file_differs) and stays as it is; files the lockfile does not list are left alone.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ..actionlog import action
from ..config import DownloadConfig
from ..constants import civitai_base_url
from ..errors import ErrorInfo, FixerError, UnsafePath
from ..host.host import target_root
from ..models import TransferRequest
from ..transfer.queue import download_one
from .cache import SharedCache
from .hash_index import HashIndex
from .links import link_new, place_of
from .lockfile import ParsedLockfile
from .shapes import LockEntry, SyncData, SyncRow

log = logging.getLogger("fixer.identity.sync")


@dataclass
class SyncTarget:
    """The root being synced: its folders (host.folders()), the types each lists, its hash index."""

    folders: dict[str, list[str]]
    extensions: Callable[[str], frozenset[str]]
    index: HashIndex
    config: DownloadConfig
    secrets: dict[str, str]
    cache: SharedCache | None = None
    cache_wait: float | None = None  # seconds to wait behind another machine's lock (None: while it lives)


def _source_of(url: str) -> str:
    """Which token a URL may get (both services share one origin behind a mirror: the path tells)."""
    return "civitai" if "/api/download/" in urlsplit(url).path or url.startswith(civitai_base_url()) else ""


async def _download(entry: LockEntry, dest_root: str, filename: str, target: SyncTarget) -> str:
    """The entry's bytes fetched into dest_root/filename from its first URL that gives them (size and
    sha256 checked by the transfer engine as they arrive); the path, or FixerError."""
    if not entry.urls:
        raise FixerError(f"{entry.folder}/{entry.name}: the lockfile gives no URL and these bytes are nowhere "
                         "under this root or in the cache; copy the file here or add its link",
                         code="not_found_upstream")
    last: ErrorInfo | None = None
    for url in entry.urls:
        req = TransferRequest(url=url, folder=entry.folder, filename=filename, expected_size=entry.size,
                              sha256=entry.sha256, source=_source_of(url), model_name=entry.name)
        t = await download_one(req, dest_root, target.config, target.secrets)
        if t.state == "done":
            return t.target
        last = t.error
    assert last is not None
    raise FixerError(last.message, code=last.code, status=last.status, needs_token=last.needs_token,
                     service=last.service)


def _local_copy(entry: LockEntry, index: HashIndex, dest: Path) -> str | None:
    """A file under the root with the entry's bytes (the index's word checked against the file as it is now)."""
    for f in index.with_sha256(entry.sha256):
        if f.size == entry.size and os.path.realpath(f.path) != os.path.realpath(dest) \
                and index.sha256(f.path) == entry.sha256:
            return f.path
    return None


async def sync_entry(entry: LockEntry, target: SyncTarget) -> SyncRow:
    row = SyncRow(name=entry.name, folder=entry.folder, sha256=entry.sha256, size=entry.size, state="failed", how="")
    try:
        root = target_root(target.folders, entry.folder, name=entry.name, extensions=target.extensions)
        dest = place_of(root, entry.name)
        row.path = str(dest)
        if os.path.lexists(dest):
            have = await asyncio.to_thread(target.index.sha256, str(dest))
            if have != entry.sha256:
                raise FixerError(f"{dest} is already there with other bytes (sha256 {have or 'unreadable'}); it was "
                                 "not overwritten: move it away and sync again", code="file_differs")
            row.state, row.how = "present", "already there"
            return row
        local = _local_copy(entry, target.index, dest)
        if local is not None:
            kind = link_new(local, dest)
            row.state, row.how = "linked", f"{kind} of {local} (same sha256)"
        elif target.cache is not None:
            ext = os.path.splitext(entry.name)[1].lower()

            async def fetch(tmp: Path) -> tuple[Path, bool]:
                return Path(await _download(entry, str(tmp), f"{entry.sha256}{ext}", target)), True

            obj, fetched = await target.cache.ensure(entry.sha256, entry.size, fetch, target.cache_wait)
            kind = link_new(obj, dest)
            row.state = "downloaded" if fetched else "linked"
            row.how = f"{kind} of {obj}" + (" (downloaded into the cache)" if fetched else " (shared cache)")
        else:
            await _download(entry, root, entry.name, target)
            row.state, row.how = "downloaded", "downloaded"
        target.index.remember(str(dest), entry.sha256)
    except FileExistsError:
        row.error = ErrorInfo("file_differs", f"{row.path} appeared while syncing; it was not overwritten")
    except UnsafePath as e:
        row.error = e.info()
    except FixerError as e:
        row.error = e.info()
    except OSError as e:
        row.error = ErrorInfo("error", f"{entry.folder}/{entry.name}: {e.strerror or e} ({e.filename or row.path})")
    action("sync_entry", folder=entry.folder, name=entry.name, sha256=entry.sha256, state=row.state, how=row.how,
           code=row.error.code if row.error else None)
    return row


def sync_data(rows: list[SyncRow]) -> SyncData:
    return SyncData(rows=rows, done=sum(r.state != "failed" for r in rows),
                    failed=sum(r.state == "failed" for r in rows),
                    downloaded=sum(r.state == "downloaded" for r in rows),
                    linked=sum(r.state == "linked" for r in rows))


async def sync_lockfile(parsed: ParsedLockfile, target: SyncTarget,
                        on_row: Callable[[SyncRow, int, int], None] | None = None) -> SyncData:
    """Every entry synced, `max_concurrent` at a time; refused entries end as failed rows."""
    rows: list[SyncRow] = [SyncRow(name=r.label, folder="", sha256="", size=0, state="failed", how="refused",
                                   error=r.error) for r in parsed.refused]
    total = len(parsed.entries) + len(rows)
    sem = asyncio.Semaphore(max(1, target.config.max_concurrent))

    async def one(entry: LockEntry) -> None:
        async with sem:
            row = await sync_entry(entry, target)
        rows.append(row)
        if on_row is not None:
            on_row(row, len(rows), total)

    await asyncio.gather(*(one(e) for e in parsed.entries))
    target.index.save()
    return sync_data(rows)
