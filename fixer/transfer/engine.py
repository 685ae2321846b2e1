"""The downloader: one file, several ranged connections, hashed while it arrives, verified, renamed.

How one file is fetched (`FileJob.run`):
1. Safety first: the target is confined to the model folder, the start URL must be allowed,
   pickle formats may be refused; a final file already on disk is never overwritten.
2. Probe: `GET url` with `Range: bytes=0-`, following redirects by hand so each hop is checked
   (policy.check_redirect; names are checked as they resolve, protocol.open_session) and the token
   is sent only to its own origin. The answer tells the size, whether ranges work and the validator
   (HF X-Linked-Etag, else ETag, else Last-Modified): protocol.remote_of.
3. Resume or start over: the sidecar beside `<name>.part` is kept only when URL, size and
   validator match. Free space for what is left (plus a margin) is checked before a byte is written.
4. Fetch: the missing ranges become pieces (pieces.PieceQueue) for up to `connections_per_file`
   workers (one stream when the server ignores Range or the file is small); workers pwrite at
   offsets from a thread pool and a hashing thread follows the contiguous prefix
   (pieces.PrefixHasher). Memory stays bounded: about 2 MiB per connection.
5. Verify (size, sha256 when known, safetensors header) and `os.replace` onto the final name
   (finish.check, finish.place).

Transient failures (timeouts, resets, a trickle below LOW_SPEED_BYTES_PER_S, 408/429/5xx) are
retried per piece with exponential backoff and jitter, honouring Retry-After up to the policy's cap
(fixer.upstream.http.RetryPolicy); a longer wait and 401/403/404/410 end the file at once with a message
that says what to do (fixer.upstream.http.http_error).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import shutil
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Callable, Mapping
from urllib.parse import urljoin, urlsplit

import aiohttp

from .. import events
from ..actionlog import action
from ..config import DownloadConfig
from ..constants import hf_offline
from ..errors import DownloadError, DownloadTooLarge, ErrorInfo, FixerError, IntegrityError, NotEnoughSpace, error_info
from ..models import Transfer
from ..read.names import confine
from ..upstream.http import RetryPolicy, asked_wait, is_dns_failure
from .finish import check as check_part
from .finish import place
from .pieces import Piece, PieceQueue, PrefixHasher, datasync, plan_pieces, pwrite_all
from .policy import (
    Origin,
    auth_headers,
    check_redirect,
    check_start_url,
    redact,
    strip_secret_query,
    token_name_for,
    with_url_token,
)
from .protocol import (
    REDIRECT_STATUS,
    LinkExpired,
    Remote,
    Retryable,
    ValidatorChanged,
    content_range_total,
    describe,
    refusal,
    remote_of,
    strip_etag,
)
from .resume import PART_SUFFIX, Range, Sidecar, covered, gaps, merge, part_path, prefix_end
from .resume import discard as discard_part
from .resume import load as load_sidecar
from .resume import save as save_sidecar
from .settings import (
    FAST_CONNECTION,
    LOW_SPEED_BYTES_PER_S,
    MAX_PIECE,
    MAX_REDIRECTS,
    MAX_RESTARTS,
    MIN_PIECE,
    MIN_SPLIT_SIZE,
    PROGRESS_INTERVAL,
    REQUEST_SHARE,
    SIDECAR_INTERVAL,
    UNREACHABLE_MEMO_SECONDS,
    WRITE_CHUNK,
)
from .verify import looks_safetensors, pickle_warning, warm_safetensors

log = logging.getLogger("fixer.transfer")


def moving_average(previous: float | None, sample: float, weight: float = 0.3) -> float:
    """An exponentially weighted average: the recent samples count most (a link's speed drifts)."""
    return sample if previous is None else previous + weight * (sample - previous)


class FileJob:
    """One Transfer from start to final name. `run()` never raises except CancelledError."""

    def __init__(self, transfer: Transfer, dest_root: str, config: DownloadConfig, secrets: dict[str, str],
                 session_factory: Callable[[], aiohttp.ClientSession], pool: ThreadPoolExecutor,
                 emit: Callable[[events.Event], None], retry: RetryPolicy,
                 unreachable: dict[str, tuple[str, float]] | None = None,
                 fetched: Callable[[], None] | None = None):
        self.t = transfer
        # Called once every byte is in (before the checks): the queue lets the next file start meanwhile.
        self.fetched = fetched
        # Hosts this run could not reach at all, shared by the manager's jobs: the next file from the
        # same host fails at once instead of spending its own retries (an offline machine, a dead mirror).
        self.unreachable = unreachable if unreachable is not None else {}
        self.req = transfer.request
        self.dest_root = dest_root
        self.config = config
        self.session_factory = session_factory
        self.pool = pool
        self.emit = emit
        self.retry = retry
        self.start_url = strip_secret_query(self.req.url)
        self.secrets = with_url_token(self.req.url, secrets, self.req.source)
        self.label = self.req.model_name or self.req.filename
        self.done: list[Range] = []
        self.fd: int | None = None
        self.hasher: PrefixHasher | None = None
        self.sidecar: Sidecar | None = None
        self.connections_used = 0
        self.ceiling: tuple[int, str] = (0, "")  # (bytes, why): set by each attempt before any byte is read
        self._active = 0
        self._streams = 0  # responses whose first bytes arrived (see _first_data)
        # What a request costs on this link, for the smallest piece worth one (_piece_floor): the wait from a
        # range request to its answer, and the bytes per second one connection gets (moving averages).
        self._request_wait: float | None = None
        self._connection_speed: float | None = None
        self._refreshing: asyncio.Future[None] | None = None  # one link renewal shared by all connections
        self._samples: deque[tuple[float, int]] = deque()
        self._last_emit = 0.0
        self._last_sidecar = 0.0

    # -- entry -------------------------------------------------------------------------
    async def run(self) -> Transfer:
        t = self.t
        lock_fd: int | None = None
        try:
            self._prepare()
            lock_fd = lock_target(self.t.part, self.label)
            if os.path.exists(t.target):  # the holder we waited behind may have just finished it
                raise DownloadError(f"{self.label}: {t.target} already exists; it was not overwritten. "
                                    "Move it away to download again", code="already_exists")
            for restart in range(MAX_RESTARTS + 1):
                try:
                    await self._attempt()
                    break
                except ValidatorChanged as e:
                    self._close_part(keep=False)
                    action("download_restart", target=t.target, reason=str(e), attempt=restart + 1)
                    if restart == MAX_RESTARTS:
                        raise DownloadError(f"{self.label}: the file kept changing on the server while it "
                                            "downloaded; try again later", code="file_changed") from None
            t.state = "done"
            t.speed = 0.0
            action("download_done", target=t.target, size=t.total, sha256=t.sha256, source=self.req.source,
                   connections=self.connections_used)
        except asyncio.CancelledError:
            self._close_part(keep=True)
            t.state = "cancelled"
            t.speed = 0.0
            action("download_cancelled", target=t.target, kept_part=os.path.exists(t.part))
            raise
        except FixerError as e:
            self._fail(e.info(), keep=not isinstance(e, (IntegrityError, DownloadTooLarge)))
        except Exception as e:  # an unexpected bug must still end as one failed file, not a dead run
            if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
                # The .part cannot finish on this disk; kept, it would only hold the space others need.
                self._fail(ErrorInfo("disk_full", f"{self.label}: the disk filled up while writing {t.part} "
                                     f"({e.strerror}); the partial file was removed to give the space back. Free "
                                     "some space and run again", folder=os.path.dirname(t.part)), keep=False)
            else:
                log.exception("download of %s failed unexpectedly", self.label)
                self._fail(error_info(e, f"{self.label}: unexpected error {type(e).__name__}: {e}"), keep=True)
        finally:
            if lock_fd is not None:
                unlock_target(lock_fd, self.t.part)
            self.emit(events.TransferProgress(t))
        return t

    def _fail(self, info: ErrorInfo, keep: bool) -> None:
        self._close_part(keep=keep)
        self.t.state = "failed"
        self.t.error = replace(info, part_kept=keep and os.path.exists(self.t.part))
        self.t.speed = 0.0
        action("download_failed", target=self.t.target, url=redact(self.start_url), error=info.message,
               code=info.code)

    def _prepare(self) -> None:
        """Checks that need no network: path, host, pickle policy, an existing final file."""
        req = self.req
        target = confine(self.dest_root, req.filename)
        self.t.target = str(target)
        self.t.part = str(part_path(target))
        check_start_url(self.start_url, self.config.extra_allowed_hosts)
        if hf_offline() and token_name_for(self.start_url, req.source) == "HF_TOKEN":
            raise DownloadError(f"{self.label}: HF_HUB_OFFLINE is set, so nothing is downloaded from Hugging Face; "
                                "unset it to download", code="hf_offline")
        warning = pickle_warning(req.filename)
        if warning:
            if not self.config.allow_pickle:
                raise DownloadError(f"{self.label}: refusing a pickle-format file ({os.path.basename(req.filename)}) "
                                    "because download.allow_pickle is false; look for a .safetensors version",
                                    code="pickle_refused")
            self.t.warning = warning
            action("pickle_warning", target=self.t.target)
        if target.exists():
            if not os.path.exists(self.t.part):  # a run killed between the rename and this cleanup
                discard_part(self.t.part)
            raise DownloadError(f"{self.label}: {target} already exists; it was not overwritten. "
                                "Move it away to download again", code="already_exists")
        target.parent.mkdir(parents=True, exist_ok=True)
        confine(self.dest_root, req.filename)  # again: mkdir must not have walked through a symlink

    # -- one attempt from probe to rename ----------------------------------------------------
    async def _attempt(self) -> None:
        t = self.t
        resp: aiohttp.ClientResponse | None  # None once handed to the fetch, which closes it
        resp, remote = await self._probe_with_retries()
        try:
            expected = self.req.expected_size or remote.linked_size or remote.total
            announced = remote.total if remote.total is not None else remote.linked_size
            if expected is not None and announced is not None and announced != expected:
                raise IntegrityError("size", f"{expected} bytes", f"{announced} bytes announced by the server",
                                     self.label)
            t.total = expected
            sidecar = self._resume_or_fresh(remote)
            left = (t.total - covered(self.done)) if t.total is not None else 0
            self._check_space(left)
            self.ceiling = self._ceiling()
            split = (remote.ranges and t.total is not None and t.total >= MIN_SPLIT_SIZE)
            connections = max(1, self.config.connections_per_file) if split else 1
            self._open_part(sidecar)
            t.state = "downloading"
            action("download_start", target=t.target, url=redact(self.start_url), source=self.req.source,
                   size=t.total, resumed_bytes=covered(self.done), ranges=remote.ranges,
                   connections=connections)
            self._progress(force=True)
            await self._fetch_all(resp, remote, connections)
            resp = None
        finally:
            if resp is not None:
                resp.close()
        if self.fetched is not None:
            self.fetched()
        await self._verify_and_place(remote)

    async def _probe_with_retries(self) -> tuple[aiohttp.ClientResponse, Remote]:
        host = urlsplit(self.start_url).hostname or ""
        why, when = self.unreachable.get(host, ("", -UNREACHABLE_MEMO_SECONDS))
        if time.monotonic() - when < UNREACHABLE_MEMO_SECONDS:
            raise DownloadError(f"{self.label}: {why} (another download from {host} just gave up; "
                                "check the network or the address, then run again)", code="unreachable", service=host)
        attempt = 0
        while True:
            try:
                return await self._probe()
            except LinkExpired as e:
                if attempt >= 1:
                    raise DownloadError(f"{self.label}: {e} twice in a row, right after {redact(self.start_url)} "
                                        "issued it; the source is misbehaving, try again later",
                                        code="link_broken") from None
                attempt += 1
            except Retryable as e:
                # A name that does not resolve rarely starts resolving within seconds: one more try only.
                if attempt >= (min(1, self.retry.retries) if e.dns else self.retry.retries):
                    if e.unreachable:
                        self.unreachable[host] = (str(e), time.monotonic())
                    raise DownloadError(f"{self.label}: {e} (gave up after {attempt + 1} attempts; try again later)",
                                        code=e.code, status=e.status, retry_after=e.retry_after, service=host) from None
                delay = self.retry.delay(attempt, e.retry_after)
                action("download_retry", target=self.t.target, error=str(e), wait=round(delay, 2), attempt=attempt + 1)
                await asyncio.sleep(delay)
                attempt += 1

    async def _probe(self) -> tuple[aiohttp.ClientResponse, Remote]:
        resp, hops = await self._open(self.start_url, {"Range": "bytes=0-"})
        return resp, remote_of(resp, hops)

    async def _open(self, url: str, headers: dict[str, str]
                    ) -> tuple[aiohttp.ClientResponse, list[Mapping[str, str]]]:
        """GET following redirects by hand: each hop checked, the token only on its own origin."""
        session = self.session_factory()
        hops: list[Mapping[str, str]] = []  # each redirect's headers
        for _ in range(MAX_REDIRECTS + 1):
            hdrs = {"Accept-Encoding": "identity", **headers,
                    **auth_headers(url, self.secrets, self.start_url, self.req.source)}
            try:
                resp = await session.get(url, headers=hdrs, allow_redirects=False)
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
                raise Retryable(f"cannot reach {urlsplit(url).hostname}: {describe(e)}", unreachable=True,
                                dns=is_dns_failure(e)) from None
            if resp.status in REDIRECT_STATUS and "Location" in resp.headers:
                hops.append(resp.headers)
                location = urljoin(url, resp.headers["Location"])
                resp.release()
                check_redirect(url, location, self.config.extra_allowed_hosts)
                url = location
                continue
            if resp.status >= 400:
                await self._raise_for_status(resp)
            return resp, hops
        raise DownloadError(f"{self.label}: too many redirects (more than {MAX_REDIRECTS}) from "
                            f"{redact(self.start_url)}; the link is broken", code="link_broken")

    async def _raise_for_status(self, resp: aiohttp.ClientResponse) -> None:
        status = resp.status
        if status in (401, 403, 404, 410) and Origin.of(str(resp.url)) != Origin.of(self.start_url):
            resp.release()
            raise LinkExpired(f"{resp.url.host} refused the signed download link (HTTP {status})")
        try:
            body = await resp.content.read(65536)
        except (aiohttp.ClientError, asyncio.TimeoutError):
            body = b""
        finally:
            resp.release()
        wait = asked_wait(status, resp.headers)
        if status in self.retry.statuses and (wait is None or wait <= self.retry.max_retry_after):
            raise Retryable(f"HTTP {status} from {resp.url.host}", wait, status=status)
        raise refusal(status, resp.headers, body, self.start_url, self.label, self.req.source, self.secrets)

    # -- state on disk ---------------------------------------------------------------
    def _resume_or_fresh(self, remote: Remote) -> Sidecar:
        """The ranges already on disk (self.done) if they can be kept, and the sidecar that will record them."""
        old = load_sidecar(self.t.part)
        if old and os.path.exists(self.t.part) and remote.ranges and old.matches(
                self.start_url, remote.validator, self.t.total):
            self.done = [r for r in old.ranges if self.t.total is None or r[1] <= self.t.total]
            action("download_resume", target=self.t.target, bytes_on_disk=covered(self.done))
        else:
            if old or os.path.exists(self.t.part):
                action("download_fresh", target=self.t.target,
                       reason="no sidecar" if not old else "the remote file changed or does not support ranges")
            discard_part(self.t.part)
            self.done = []
        self.sidecar = Sidecar(url=self.start_url, validator=remote.validator, total=self.t.total,
                               ranges=list(self.done), sha256=self.req.sha256)
        return self.sidecar

    def _check_space(self, needed: int) -> None:
        where = str(Path(self.t.target).parent)
        free = shutil.disk_usage(where).free
        want = needed + self.config.min_free_margin_bytes
        if free < want:
            raise NotEnoughSpace(want, free, where)

    def _ceiling(self) -> tuple[int, str]:
        """The most bytes this file may have: the declared size, else the configured maximum or what the
        disk holds less the reserve, whichever is smaller (with the reason, for the message)."""
        if self.t.total is not None:
            return self.t.total, "its declared size"
        where = os.path.dirname(self.t.part)
        room = covered(self.done) + shutil.disk_usage(where).free - self.config.min_free_margin_bytes
        if room < self.config.max_undeclared_bytes:
            return max(room, 0), f"no size was declared, and the free space of {where} less the reserve ends there"
        return self.config.max_undeclared_bytes, "no size was declared: download.max_undeclared_bytes"

    def _past_ceiling(self, end: int) -> None:
        limit, why = self.ceiling
        if end > limit:
            raise DownloadTooLarge(self.label, end, limit, why)

    def _open_part(self, sidecar: Sidecar) -> None:
        self.fd = os.open(self.t.part, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o644)
        save_sidecar(self.t.part, sidecar)
        self.hasher = PrefixHasher(self.fd)
        self.hasher.advance(prefix_end(self.done))
        self.t.bytes_done = covered(self.done)

    def _part_fd(self) -> int:
        """The open .part, read at each write: once it is closed no write may go to a reused descriptor."""
        if self.fd is None:
            raise RuntimeError(f"{self.t.part} is not open")  # pieces are fetched only between open and close
        return self.fd

    def _close_part(self, keep: bool) -> None:
        if self.hasher:
            self.hasher.abort()
            self.hasher = None
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if keep and self.sidecar and os.path.exists(self.t.part):
            self.sidecar.ranges = list(self.done)
            try:
                save_sidecar(self.t.part, self.sidecar)
            except OSError as e:  # a full disk: the last sidecar written stays valid (saves are atomic)
                log.warning("could not update the resume record of %s: %s", self.t.part, e)
        elif not keep:
            discard_part(self.t.part)
            self.done = []

    # -- fetching -----------------------------------------------------------------------
    async def _fetch_all(self, probe: aiohttp.ClientResponse, remote: Remote, connections: int) -> None:
        t = self.t
        if t.total is None:  # no length known: one stream to EOF
            spans: list[tuple[int, int | None]] = [(0, None)]
        elif connections > 1:
            spans = list(plan_pieces(gaps(self.done, t.total), t.total, connections))
        else:
            spans = list(gaps(self.done, t.total))
        pieces = PieceQueue(spans, connections)
        handoff = probe if pieces.first is not None and pieces.first.start == 0 else None
        if handoff is None:
            probe.close()
        if not remote.ranges and pieces.first is not None and handoff is None:
            raise ValidatorChanged("the server stopped honouring ranges")
        self.connections_used = min(connections, len(pieces)) or 1
        workers = [asyncio.create_task(self._worker(pieces, remote, handoff if i == 0 else None))
                   for i in range(self.connections_used)]
        try:
            await asyncio.gather(*workers)
        except BaseException:
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            if handoff is not None:
                handoff.close()
            raise

    async def _worker(self, pieces: PieceQueue, remote: Remote, handoff: aiohttp.ClientResponse | None) -> None:
        self._active += 1
        try:
            while True:
                piece = pieces.take(self._piece_floor())
                if piece is None:
                    return
                began = time.monotonic()
                try:
                    await self._fetch_piece(piece, remote, handoff)
                finally:
                    pieces.done(piece)
                handoff = None
                own_speed = ((piece.end or piece.start) - piece.start) / max(time.monotonic() - began, 1e-6)
                self._connection_speed = moving_average(self._connection_speed, own_speed)
                if own_speed > FAST_CONNECTION and self._active > 2:
                    # This connection alone is faster than any per-connection CDN limit: the server does
                    # not throttle connections, so more of them only cost CPU (a LAN mirror, localhost).
                    return
        finally:
            self._active -= 1

    async def _fetch_piece(self, piece: Piece, remote: Remote, handoff: aiohttp.ClientResponse | None) -> None:
        """Fetch the piece (to EOF when its end is unknown), retrying transient failures from where it stopped."""
        failures = 0
        while True:
            pos = self._reached(piece.start, piece.end)
            if piece.end is not None and pos >= piece.end:
                return
            piece.pos = before = pos
            try:
                resp = handoff or await self._open_range(pos, piece.end, remote)
                handoff = None
                reached = await self._stream(resp, piece)
                if piece.end is None or reached >= piece.end:
                    return
                raise Retryable(f"the connection closed at byte {reached} of {piece.end}")
            except (Retryable, LinkExpired) as e:
                pos = self._reached(piece.start, piece.end)
                if pos - before >= WRITE_CHUNK:
                    failures = 0  # it made progress: a flaky link, not a dead one
                if failures >= self.retry.retries:
                    raise DownloadError(f"{self.label}: {e} (gave up after {failures + 1} attempts at byte {pos}; "
                                        "run again to resume)",
                                        code=e.code if isinstance(e, Retryable) else "link_broken",
                                        status=getattr(e, "status", None), retry_after=getattr(e, "retry_after", None),
                                        service=urlsplit(self.start_url).hostname) from None
                delay = self.retry.delay(failures, getattr(e, "retry_after", None))
                action("download_retry", target=self.t.target, error=str(e), at=pos, wait=round(delay, 2),
                       attempt=failures + 1)
                failures += 1
                await asyncio.sleep(delay)

    async def _refresh_link(self, remote: Remote, why: str) -> None:
        """Ask the start URL for a new signed link; the bytes on disk stay valid if the file did not change."""
        refreshing = self._refreshing
        if refreshing is None:
            refreshing = self._refreshing = asyncio.ensure_future(self._resolve_again(remote, why))
        try:
            await asyncio.shield(refreshing)
        finally:
            if refreshing.done() and self._refreshing is refreshing:
                self._refreshing = None

    async def _resolve_again(self, remote: Remote, why: str) -> None:
        action("download_relink", target=self.t.target, reason=why)
        resp, hops = await self._open(self.start_url, {"Range": "bytes=0-0"})
        try:
            linked = next((strip_etag(h.get("X-Linked-Etag")) for h in hops if h.get("X-Linked-Etag")), None)
            validator = linked or strip_etag(resp.headers.get("ETag")) or resp.headers.get("Last-Modified")
            if validator != remote.validator:
                raise ValidatorChanged("the file on the server changed while its download link was renewed")
            remote.url = str(resp.url)
        finally:
            resp.close()

    def _reached(self, start: int, end: int | None) -> int:
        """Where a piece starting at `start` has to continue: the end of the written run from `start`."""
        for a, b in self.done:
            if a <= start < b:
                return b if end is None else min(b, end)
        return start

    def _piece_floor(self) -> int | None:
        """The smallest piece worth a request on this link: one whose bytes take REQUEST_SHARE times the wait
        for a range request's answer (a connection idles that long between two pieces). None until both are
        measured. On localhost or a near mirror that is MIN_PIECE, so the last pieces shrink and the hash ends
        with the bytes; on a CDN 50 ms away at 25 MB/s it is ~10 MB, about the planned size: nothing changes."""
        if self._request_wait is None or self._connection_speed is None:
            return None
        return int(min(MAX_PIECE, max(MIN_PIECE, self._request_wait * self._connection_speed * REQUEST_SHARE)))

    async def _open_range(self, pos: int, end: int | None, remote: Remote) -> aiohttp.ClientResponse:
        if end is None:
            raise ValidatorChanged("the stream broke and the server does not support resuming")
        headers = {"Range": f"bytes={pos}-{end - 1}"}
        if remote.if_range:
            headers["If-Range"] = remote.if_range
        used = remote.url
        asked = time.monotonic()
        try:
            resp, _ = await self._open(used, headers)
        except LinkExpired as e:
            if remote.url == used:  # else another connection already renewed it meanwhile
                await self._refresh_link(remote, str(e))
            resp, _ = await self._open(remote.url, headers)
        self._request_wait = moving_average(self._request_wait, time.monotonic() - asked)
        etag = strip_etag(resp.headers.get("ETag"))
        if resp.status == 200 or (remote.etag and etag and etag != remote.etag):
            resp.close()
            raise ValidatorChanged("the file on the server changed (ETag or range support) since the download began")
        cr = content_range_total(resp.headers.get("Content-Range"))
        if resp.status != 206 or cr is None or cr[0] != pos or (cr[1] is not None and cr[1] != self.t.total):
            resp.close()
            raise Retryable(f"unexpected answer to a range request (HTTP {resp.status}, "
                            f"{resp.headers.get('Content-Range')})")
        return resp

    async def _stream(self, resp: aiohttp.ClientResponse, piece: Piece) -> int:
        """Copy the body into the .part from `piece.pos` up to `piece.end` (read anew each time: an idle
        connection may take the tail); returns the offset reached. Checks for stalls.

        Chunks are written as they came off the socket (pwritev of a list, no joining), one write
        in flight per connection while the next chunks are read.
        """
        loop = asyncio.get_running_loop()
        pos = piece.pos
        asked_end = piece.end
        chunks: list[bytes] = []
        size = 0
        pending: asyncio.Future[None] | None = None
        pending_range = (0, 0)
        window_start = last_write = time.monotonic()
        window_bytes = 0
        timeout = self.config.timeout_seconds
        streaming = False
        try:
            while piece.end is None or pos + size < piece.end:
                try:
                    data = await resp.content.readany()
                except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
                    raise Retryable(f"download interrupted: {describe(e)}") from None
                if not data:
                    break
                if not streaming:
                    streaming = True
                    self._first_data()
                end = piece.end
                if end is not None and pos + size + len(data) > end:
                    if end == self.t.total:  # past the file's last byte, not merely into the next piece
                        self._past_ceiling(pos + size + len(data))
                    data = data[: max(0, end - pos - size)]  # an open-ended or split request runs past the piece
                elif end is None:
                    self._past_ceiling(pos + size + len(data))
                chunks.append(data)
                size += len(data)
                piece.pos = pos + size
                window_bytes += len(data)
                now = time.monotonic()
                if now - window_start >= timeout:
                    if window_bytes < LOW_SPEED_BYTES_PER_S * (now - window_start):
                        raise Retryable(f"the server sent only {window_bytes} bytes in {now - window_start:.1f} s "
                                        f"(stalled; timeout {timeout:g} s)")
                    window_start, window_bytes = now, 0
                # Also write (and so report progress) at least every PROGRESS_INTERVAL on a slow link.
                if size >= WRITE_CHUNK or (end is not None and pos + size >= end) or \
                        now - last_write >= PROGRESS_INTERVAL:
                    last_write = now
                    if pending is not None:
                        await pending
                        self._written(*pending_range)
                    pending_range = (pos, pos + size)
                    pending = loop.run_in_executor(self.pool, pwrite_all, self._part_fd(), chunks, pos)
                    pos += size
                    chunks, size = [], 0
            if pending is not None:
                await pending
                self._written(*pending_range)
                pending = None
            if chunks:
                await loop.run_in_executor(self.pool, pwrite_all, self._part_fd(), chunks, pos)
                self._written(pos, pos + size)
                pos += size
            return pos
        except BaseException:
            if pending is not None:  # the bytes handed to the kernel count; never claim unwritten ones
                try:
                    await asyncio.shield(pending)
                except BaseException:
                    pass
                else:
                    self._written(*pending_range)
            raise
        finally:
            if asked_end is not None and pos >= asked_end:
                resp.release()  # the whole answer was read: the connection can serve the next piece
            else:
                resp.close()

    def _first_data(self) -> None:
        """A response's first bytes arrived. Once every connection streams, the safetensors check's imports
        (numpy: ~80 ms, mostly holding the GIL) load on a thread while the bytes arrive, not after the last one.
        Started before the connections opened, they held up the event loop that opens them: each started
        50-70 ms late, which the transfer never made up (benchmarks/download_bench.py)."""
        self._streams += 1
        if self._streams == self.connections_used and looks_safetensors(self.req.filename):
            warm_safetensors()

    def _written(self, start: int, end: int) -> None:
        self.done = merge(self.done + [(start, end)])
        self.t.bytes_done = covered(self.done)
        if self.hasher:
            self.hasher.advance(prefix_end(self.done))
        now = time.monotonic()
        if now - self._last_sidecar >= SIDECAR_INTERVAL and self.sidecar:
            self._last_sidecar = now
            self.sidecar.ranges = list(self.done)
            save_sidecar(self.t.part, self.sidecar)
        self._progress()

    def _progress(self, force: bool = False) -> None:
        now = time.monotonic()
        self._samples.append((now, self.t.bytes_done))
        while len(self._samples) > 2 and now - self._samples[0][0] > 2.0:
            self._samples.popleft()
        t0, b0 = self._samples[0]
        if now > t0:
            self.t.speed = (self.t.bytes_done - b0) / (now - t0)
        if force or now - self._last_emit >= PROGRESS_INTERVAL:
            self._last_emit = now
            self.emit(events.TransferProgress(self.t))

    # -- verification hand-off ------------------------------------------------------------
    async def _verify_and_place(self, remote: Remote) -> None:
        t = self.t
        total = t.total if t.total is not None else covered(self.done)
        if t.total is None:
            t.total = total
        missing = gaps(self.done, total)
        if missing:
            raise DownloadError(f"{self.label}: bytes {missing[0][0]}-{missing[0][1]} never arrived",
                                code="bytes_missing")
        t.state = "verifying"
        t.speed = 0.0
        self._progress(force=True)
        assert self.hasher is not None and self.fd is not None
        self.hasher.finish(total)
        t.sha256 = await asyncio.to_thread(self.hasher.result)
        self.hasher = None
        # On disk before it takes its name: after a power cut a verified name must not hold a short file.
        await asyncio.to_thread(datasync, self.fd)
        os.close(self.fd)
        self.fd = None
        expected_sha256 = self.req.sha256 or remote.linked_sha256
        await asyncio.to_thread(check_part, t.part, self.req, self.req.expected_size or total, t.sha256,
                                expected_sha256, self.label)
        place(t.part, t.target)
        t.bytes_done = total
        action("verify", target=t.target, size=total, sha256=t.sha256, expected_sha256=expected_sha256)


def lock_target(part: str, label: str) -> int | None:
    """Hold `<part>.lock` (flock) while one process downloads this target.

    Two runs with different state dirs (the CLI beside the ComfyUI panel) could otherwise share one
    .part: one discarding or renaming it while the other still writes. The second is refused.
    The lock file is removed by its holder; a stale one (a killed run) holds no lock and is reused.
    """
    try:
        import fcntl
    except ImportError:  # Windows: no flock; the state-dir lock is the only guard there
        return None
    path = f"{part}.lock"
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise DownloadError(f"{label}: another ComfyFixerSmart process is downloading "
                                f"{part.removesuffix(PART_SUFFIX)} right now; wait for it to finish, "
                                "then run again", code="target_busy") from None
        try:
            current = os.stat(path).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(fd).st_ino:
            return fd
        os.close(fd)  # its holder removed it between our open and flock: lock the file now there


def unlock_target(fd: int, part: str) -> None:
    try:
        os.unlink(f"{part}.lock")  # while still holding it, so no one locks a file about to vanish
    except FileNotFoundError:
        pass
    os.close(fd)
