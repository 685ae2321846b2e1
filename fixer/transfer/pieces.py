"""Pieces and work stealing: how a file's missing bytes are cut up, handed to connections, written at
their offsets and hashed in order.

The missing ranges are cut into pieces handed out in file order (`PieceQueue`); when none is left, an
idle connection takes the second half of the piece with the most left (a slow connection's), so the
last bytes never wait on one straggler. Connections write at offsets from a thread pool
(`pwrite_all`); `PrefixHasher` follows the contiguous prefix in its own thread, reading it back from
the page cache, so sha256 is ready moments after the last byte and the event loop never hashes.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from .resume import Range
from .settings import HASH_BLOCK, MAX_PIECE, MIN_PIECE, PIECES_PER_CONNECTION, SPREAD_PIECE, STEAL_MIN, SYNC_EVERY

datasync = getattr(os, "fdatasync", os.fsync)  # Windows has only fsync


def plan_pieces(todo: list[Range], total: int, connections: int) -> list[Range]:
    """Cut the missing ranges into pieces, in file order, sized so each connection gets several; a file too
    small for that gets one piece per connection (up to SPREAD_PIECE each) rather than more, smaller ones:
    every piece is a request, which costs CPU on both ends."""
    connections = max(1, connections)
    spread = min(SPREAD_PIECE, -(-total // connections))
    size = min(MAX_PIECE, max(MIN_PIECE, total // (connections * PIECES_PER_CONNECTION), spread))
    pieces: list[Range] = []
    for start, end in todo:
        pos = start
        while pos < end:
            pieces.append((pos, min(end, pos + size)))
            pos += size
    return pieces


@dataclass(eq=False)
class Piece:
    """A byte range one connection fetches; `end` moves down when an idle connection takes its tail."""

    start: int
    end: int | None  # None: to EOF (size unknown)
    pos: int = -1  # the next byte expected from the connection (bytes read, written or not)

    def __post_init__(self) -> None:
        if self.pos < 0:
            self.pos = self.start

    @property
    def left(self) -> int:
        return 0 if self.end is None else max(0, self.end - self.pos)


class PieceQueue:
    """The pieces still to fetch and those in flight; an idle connection steals the tail of the slowest."""

    def __init__(self, spans: list[tuple[int, int | None]], connections: int = 1):
        self._queued: deque[Piece] = deque(Piece(a, b) for a, b in spans)
        self._queued_bytes = sum(b - a for a, b in spans if b is not None)
        self._connections = max(1, connections)
        self._inflight: set[Piece] = set()

    def __len__(self) -> int:
        return len(self._queued)

    @property
    def first(self) -> Piece | None:
        return self._queued[0] if self._queued else None

    def take(self, floor: int | None = None) -> Piece | None:
        """The next piece in file order, else a stolen tail; None when nothing is worth taking.

        With a `floor` (the smallest piece worth a request on this link: see FileJob._piece_floor), the file's
        last pieces get smaller as the queue empties (`_shrink`): connections at one speed then end their last
        pieces one after another in file order instead of together, and the hash keeps up with them (n pieces
        of 8 MiB ending together left 56 MiB to hash after the last byte)."""
        if not self._queued:
            piece = self._steal()
        else:
            piece = self._queued.popleft()
            if piece.end is not None:
                if floor is not None:
                    self._shrink(piece, piece.end, floor)
                self._queued_bytes -= piece.end - piece.start
        if piece is not None:
            self._inflight.add(piece)
        return piece

    def done(self, piece: Piece) -> None:
        self._inflight.discard(piece)

    def _shrink(self, piece: Piece, end: int, floor: int) -> None:
        """Cut a piece just taken (`end` its end) to a 2n-th of what was queued with it (guided scheduling by
        factoring), never under `floor`. The rest goes back in front, joined to the next piece when they touch, so
        the pieces after a cut keep shrinking with the queue instead of alternating big and small; a rest under
        the floor (not worth its request) stays with the piece. The rest's bytes stay counted as queued: take()
        counts off only what the piece keeps."""
        rest_start = piece.start + max(floor, self._queued_bytes // (2 * self._connections))
        if end - rest_start < floor:
            return
        rest_end = end
        following = self._queued[0] if self._queued else None
        if following is not None and following.start == end and following.end is not None:
            self._queued.popleft()
            rest_end = following.end
        self._queued.appendleft(Piece(rest_start, rest_end))
        piece.end = rest_start

    def _steal(self) -> Piece | None:
        """Nothing queued: take the second half of the piece with the most left (a slow connection's)."""
        victim = max(self._inflight, key=lambda p: p.left, default=None)
        if victim is None or victim.end is None or victim.left < STEAL_MIN:
            return None
        mid = victim.pos + victim.left // 2
        tail = Piece(mid, victim.end)
        victim.end = mid  # its connection stops at mid; the bytes it already asked for beyond are dropped
        return tail


class Flusher:
    """fdatasync of one .part, asked for each time the hash passes another SYNC_EVERY bytes, run on the one
    flush thread of the process (`flush_pool`). The disk's writeback (~12 ms per 16 MiB on an ordinary ext4
    disk) used to run in the hash thread: 16 of them for a 256 MiB file held the hash up, so it trailed the last
    byte by ~50 ms. A request while this file's flush runs is served by one more flush after it. One thread for
    all downloads, not one per file: each thread that allocates takes a malloc arena of its own, and a thread per
    file cost a 30-file fix ~15 MiB of peak memory."""

    def __init__(self, fd: int):
        self._fd = fd
        self._lock = threading.Lock()
        self._running: Future[None] | None = None
        self._again = False
        self.error: OSError | None = None

    def request(self) -> None:
        with self._lock:
            if self._running is not None and not self._running.done():
                self._again = True
                return
            self._running = flush_pool().submit(self._flush)

    def close(self) -> None:
        """Wait for this file's flush under way (the descriptor is closed after this)."""
        with self._lock:
            running = self._running
        if running is not None:
            running.result()

    def _flush(self) -> None:
        while True:
            try:
                datasync(self._fd)
            except OSError as e:  # the final flush (the engine's own) says it again; keep the first reason
                self.error = self.error or e
            with self._lock:
                if not self._again:
                    return
                self._again = False


_FLUSH_POOL: ThreadPoolExecutor | None = None
_FLUSH_POOL_LOCK = threading.Lock()


def flush_pool() -> ThreadPoolExecutor:
    """The process's one flush thread, started on the first flush (flushes of different files queue: the disk
    writes them one after the other anyway)."""
    global _FLUSH_POOL
    with _FLUSH_POOL_LOCK:
        if _FLUSH_POOL is None:
            _FLUSH_POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fixer-flush")
        return _FLUSH_POOL


class PrefixHasher:
    """sha256 of the file's contiguous prefix, computed in its own thread as the prefix grows.

    Reads back from the .part (the page cache still holds bytes just written), so pieces may
    arrive in any order and no data is kept in memory for the hash.
    """

    def __init__(self, fd: int):
        self._fd = fd
        self._h = hashlib.sha256()
        self._hashed = 0
        self._synced = 0
        self._avail = 0
        self._final: int | None = None
        self._cond = threading.Condition()
        self._abort = False
        self.error: BaseException | None = None
        self._flusher = Flusher(fd)
        self._thread = threading.Thread(target=self._run, name="fixer-sha256", daemon=True)
        self._thread.start()

    def advance(self, prefix_end: int) -> None:
        with self._cond:
            if prefix_end > self._avail:
                self._avail = prefix_end
                if prefix_end - self._hashed >= HASH_BLOCK:
                    # Woken per block, not per write: each wake-up costs both threads the GIL's hand-over.
                    self._cond.notify()

    def finish(self, total: int) -> None:
        with self._cond:
            self._final = total
            self._avail = max(self._avail, total)
            self._cond.notify()

    def abort(self) -> None:
        with self._cond:
            self._abort = True
            self._cond.notify()
        self._thread.join()
        self._flusher.close()

    def result(self) -> str:
        """Blocks until the whole file is hashed (call from a thread)."""
        self._thread.join()
        self._flusher.close()
        if self.error:
            raise self.error
        if self._flusher.error:
            raise self._flusher.error
        return self._h.hexdigest()

    def _run(self) -> None:
        buf = bytearray(HASH_BLOCK)
        view = memoryview(buf)
        try:
            while True:
                with self._cond:
                    while not self._abort and self._final is None and self._avail - self._hashed < HASH_BLOCK:
                        self._cond.wait()  # a whole block to hash, or the end (finish hashes the rest)
                    if self._abort or (self._final is not None and self._hashed >= self._final):
                        return
                    want = min(HASH_BLOCK, self._avail - self._hashed)
                n = pread_into(self._fd, view[:want], self._hashed)
                if n <= 0:
                    raise OSError(f"the .part file is shorter than the {self._avail} bytes written")
                self._h.update(view[:n])
                self._hashed += n
                if self._hashed - self._synced >= SYNC_EVERY:
                    self._flusher.request()
                    self._synced = self._hashed
        except BaseException as e:  # surfaced by result(); a thread must not die silently
            self.error = e


# Windows has no pread/pwrite: there a lock makes seek + read/write one step for all threads.
_SEEK_LOCK = threading.Lock()


def pwrite_all(fd: int, chunks: list[bytes], offset: int) -> None:
    """Write the chunks at `offset` (pwritev where the OS has it), continuing after short writes."""
    if not hasattr(os, "pwritev"):
        for chunk in chunks:
            pwrite_one(fd, chunk, offset)
            offset += len(chunk)
        return
    views = [memoryview(c) for c in chunks]
    while views:
        n = os.pwritev(fd, views[:1024], offset)  # IOV_MAX
        offset += n
        while views and n >= len(views[0]):
            n -= len(views[0])
            views.pop(0)
        if views and n:
            views[0] = views[0][n:]


def pwrite_one(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        if hasattr(os, "pwrite"):
            n = os.pwrite(fd, view, offset)
        else:
            with _SEEK_LOCK:
                os.lseek(fd, offset, os.SEEK_SET)
                n = os.write(fd, view)
        view = view[n:]
        offset += n


def pread_into(fd: int, view: memoryview, offset: int) -> int:
    if hasattr(os, "preadv"):
        return os.preadv(fd, [view], offset)
    if hasattr(os, "pread"):
        data = os.pread(fd, len(view), offset)
    else:
        with _SEEK_LOCK:
            os.lseek(fd, offset, os.SEEK_SET)
            data = os.read(fd, len(view))
    view[: len(data)] = data
    return len(data)
