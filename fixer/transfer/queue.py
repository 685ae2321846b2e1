"""The download queue: TransferManager holds the downloads of one run (CLI) or one ComfyUI session (panel).

At most `max_concurrent` files receiving bytes at once (a file's checks after its last byte overlap the next
one), served by size (slots.Slots: one slot for the smallest waiting, the rest for the largest); the same
target submitted twice is downloaded once.
Failures never raise out of `submit`/`wait`: they end as state "failed" with a message.
It also writes the file contract's outputs when given an output folder: a curl script per download,
`downloaded_models.json`, and the batch verification report every `verify_batch_every` files.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import aiohttp

from .. import events
from ..actionlog import action
from ..config import DownloadConfig
from ..errors import FixerError
from ..models import Transfer, TransferRequest
from ..read.names import confine
from ..upstream.http import RetryPolicy
from .engine import FileJob
from .failures import failure_event
from .policy import redact, strip_secret_query, with_url_token
from .protocol import open_session
from .records import DOWNLOADED_FILE, record_downloads
from .resume import part_path
from .scripts import write_script
from .settings import WRITE_THREADS
from .slots import Slots
from .verify import BatchReport, verify_batch, write_report

log = logging.getLogger("fixer.transfer")

REPORT_FILE = "verification_report.json"


class TransferManager:
    def __init__(self, config: DownloadConfig, secrets: dict[str, str], bus: events.EventBus | None = None,
                 output_dir: Path | None = None, retry: RetryPolicy | None = None):
        self.config = config
        self.secrets = dict(secrets)
        self.bus = bus
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.retry = retry or RetryPolicy(retries=config.retries)
        self.transfers: dict[str, Transfer] = {}
        self._unreachable: dict[str, tuple[str, float]] = {}  # host -> (why, when) it could not be reached
        self._tasks: dict[str, asyncio.Task[Any]] = {}
        self._slots: Slots | None = None
        self._session: aiohttp.ClientSession | None = None
        self._pool: ThreadPoolExecutor | None = None
        # One thread for the scripts and records, so they are written in the order the files were submitted
        # (scripts are numbered as written; a file's last record never overtaken by its first).
        self._records: ThreadPoolExecutor | None = None
        self._batch: list[Transfer] = []
        self._roots: dict[str, str] = {}  # target -> dest_root, for the resumable record
        # Records waiting for the records thread, and the rewrite that will take them (None: none is waiting).
        self._unrecorded: dict[str, Transfer] = {}
        self._recording: asyncio.Future[None] | None = None
        self._recording_lock = threading.Lock()
        self.report = BatchReport()

    # -- public ----------------------------------------------------------------------
    async def submit(self, req: TransferRequest, dest_root: str) -> Transfer:
        """Queue one download; returns its Transfer at once (the same one for a repeated target)."""
        # A token pasted into the link moves to this job's secrets, so the Transfer the panel, the
        # status and the records see never carries it.
        secrets = with_url_token(req.url, self.secrets, req.source)
        req = replace(req, url=strip_secret_query(req.url))
        try:
            target = str(confine(dest_root, req.filename))
        except FixerError as e:
            t = Transfer(request=req, target=os.path.join(dest_root, req.filename), part="", state="failed",
                         error=e.info())
            action("download_failed", target=t.target, url=redact(req.url), error=str(e), code=e.code)
            await self._finished(t)
            return t
        existing = self.transfers.get(target)
        if existing is not None and existing.state not in ("failed", "cancelled"):
            return existing  # queued, running or done: one download per target
        t = Transfer(request=req, target=target, part=str(part_path(target)), total=req.expected_size)
        self.transfers[target] = t
        self._roots[target] = dest_root
        self._tasks[target] = asyncio.create_task(self._run(t, dest_root, secrets), name=f"download {req.filename}")
        self._emit(events.TransferProgress(t))
        return t

    async def wait(self) -> list[Transfer]:
        """Until every submitted transfer has finished (done, failed or cancelled); then flushes reports."""
        while True:
            pending = [task for task in self._tasks.values() if not task.done()]
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
                continue
            await self._flush_batch()
            if any(not task.done() for task in self._tasks.values()):
                continue  # something was submitted while the report was written
            await self.close()
            return list(self.transfers.values())

    def cancel(self, target: str | None = None) -> None:
        """Cancel one download (by target path) or all; the .part and sidecar stay for a resume."""
        for key, task in self._tasks.items():
            if target is None or key == target or os.path.abspath(target) == key:
                task.cancel()

    async def close(self) -> None:
        """Release the HTTP session and write threads; a later submit opens new ones."""
        session, self._session = self._session, None
        pool, self._pool = self._pool, None
        records, self._records = self._records, None
        if session is not None:
            await session.close()
        for threads in (pool, records):
            if threads is not None:
                threads.shutdown(wait=True)

    # -- internals -------------------------------------------------------------------------
    def _session_factory(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            limit = max(1, self.config.max_concurrent) * max(1, self.config.connections_per_file) + 4
            self._session = open_session(self.config.extra_allowed_hosts, self.config.timeout_seconds, limit)
        return self._session

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=WRITE_THREADS, thread_name_prefix="fixer-write")
        return self._pool

    def _in_order(self, fn: Callable[..., object], *args: Any) -> asyncio.Future[None]:
        """`fn(*args)` on the records thread, after everything handed to it before; OSError is logged."""
        if self._records is None:
            self._records = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fixer-records")

        def guarded() -> None:
            try:
                fn(*args)
            except OSError as e:  # scripts and records are conveniences; they must not stop the download
                log.warning("could not write the download script or record (%s): %s", fn.__name__, e)

        return asyncio.get_running_loop().run_in_executor(self._records, guarded)

    def _record(self, t: Transfer) -> asyncio.Future[None]:
        """This download's entry in downloaded_models.json, as the Transfer is when it is written; the future
        is done once it is on disk. Records that wait for the records thread together are written in one
        rewrite: a run submitting 30 files rewrote the growing file 30 times in a row (O(n^2)) and its last,
        largest download waited for all of them before its first byte."""
        with self._recording_lock:  # the records thread takes the waiting records under it
            self._unrecorded[t.target] = t
            if self._recording is None:
                self._recording = self._in_order(self._write_records)
            return self._recording

    def _write_records(self) -> None:
        with self._recording_lock:
            waiting, self._unrecorded = list(self._unrecorded.values()), {}
            self._recording = None  # a record from now on needs a rewrite of its own
        if waiting and self.output_dir is not None:
            record_downloads(self.output_dir / DOWNLOADED_FILE, [(t, self._roots.get(t.target)) for t in waiting])

    async def _run(self, t: Transfer, dest_root: str, secrets: dict[str, str]) -> None:
        if self._slots is None:
            self._slots = Slots(self.config.max_concurrent)
        slots = self._slots
        try:
            queued: list[asyncio.Future[None]] = []
            if self.output_dir is not None:
                # Written by the download's own task, not by submit (a run submitting 30 files waited for 60
                # thread round trips before the last one was queued), and while it waits for its slot; the
                # record is on disk before the first byte is fetched, for --resume.
                req = t.request
                queued = [self._in_order(write_script, self.output_dir, req, t.target, req.expected_size),
                          self._record(t)]
            held = await slots.acquire(t.total)
            freed = False

            def free() -> None:
                # The slot bounds the files on the network: once a file's bytes are in, its checks (the hash
                # tail, the flush to disk, the header, the rename, ~0.05-0.2 s) overlap the next file's start.
                nonlocal freed
                if not freed:
                    freed = True
                    slots.release(held)

            try:
                for written in queued:
                    await written
                job = FileJob(t, dest_root, self.config, secrets, self._session_factory, self._executor(),
                              self._emit, self.retry, self._unreachable, fetched=free)
                await job.run()
            finally:
                free()
        except asyncio.CancelledError:
            if t.state not in ("done", "failed"):
                t.state = "cancelled"
        finally:
            await self._finished(t)
            if t.state == "done":
                self._batch.append(t)
                if len(self._batch) >= max(1, self.config.verify_batch_every):
                    await self._flush_batch()

    async def _finished(self, t: Transfer) -> None:
        self._emit(events.TransferDone(t))
        if t.state == "failed":  # every failure reaches status.json's errors[], in the agent guide's words
            self._emit(failure_event(t))
        if self.output_dir is not None:
            await self._record(t)

    async def _flush_batch(self) -> None:
        """The batch check (exists, size, header); recorded, never stops the run."""
        batch, self._batch = self._batch, []
        if not batch:
            return
        entries = [(t.request.model_name or t.request.filename, t.target, t.total) for t in batch]
        verified, failed = await asyncio.to_thread(verify_batch, entries)
        self.report.verified += verified
        self.report.failed += failed
        action("verify_batch", verified=len(verified), failed=len(failed))
        self._emit(events.VerificationReport(verified=verified, failed=failed))
        if self.output_dir is not None:
            try:
                write_report(self.output_dir / REPORT_FILE, self.report)
            except OSError as e:
                log.warning("could not write %s: %s", REPORT_FILE, e)

    def _emit(self, event: events.Event) -> None:
        if self.bus is not None:
            self.bus.emit(event)


async def download_one(req: TransferRequest, dest_root: str, config: DownloadConfig, secrets: dict[str, str],
                       bus: events.EventBus | None = None, output_dir: Path | None = None,
                       retry: RetryPolicy | None = None) -> Transfer:
    """Download one file and wait for it (the `get` command, tests)."""
    mgr = TransferManager(config, secrets, bus=bus, output_dir=output_dir, retry=retry)
    t = await mgr.submit(req, dest_root)
    await mgr.wait()
    return t
