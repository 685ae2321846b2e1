"""The one timing rule of the files a run rewrites as it goes (status.json, its rows, output/resolutions.json)."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from asyncio import AbstractEventLoop

Clock = Callable[[], float]
Cancel = Callable[[], None]
# Calls a function once after a delay in seconds; returns what cancels that call.
Later = Callable[[float, Callable[[], None]], Cancel]


def call_later(delay: float, fn: Callable[[], None]) -> Cancel:
    """`fn` after `delay` seconds: on the event loop running in this thread when there is one (the writers'
    state belongs to it: a run's rows, the resolutions found, touched from no other thread), else on a daemon
    timer thread (a scan outside any loop; the writer locks what it reads)."""
    # asyncio is not imported here: a --scan never loads it (start-up time), and unloaded no loop can be running.
    loaded = sys.modules.get("asyncio")
    loop: AbstractEventLoop | None = None
    if loaded is not None:
        try:
            loop = loaded.get_running_loop()
        except RuntimeError:
            loop = None
    if loop is not None:
        return loop.call_later(delay, fn).cancel
    timer = threading.Timer(delay, fn)
    timer.name = "fixer-trailing-write"
    timer.daemon = True  # a process ending never waits for it: its last phase is a forced write anyway
    timer.start()
    return timer.cancel


class WriteThrottle:
    """Writes at most once every `interval` seconds, the last change at the latest `interval` after it, and at
    once when forced: a burst of changes (a download's progress, thirty searches ending together, a scan's
    unreadable files) costs one write now and one when the interval ends, never one each, and never leaves its
    last change unwritten while nothing else happens.

    `write` is called with the throttle's lock held: writes never overlap, so the file on disk is always the one
    built last (a timer's write cannot land after a forced one with older contents). It must not wait for
    another thread that is calling this throttle.

    A run killed (SIGKILL, power loss) loses at worst the changes of the last `interval` seconds before it died,
    those waiting for the trailing write; what is forced (a phase change, a file done, the end of the run, an
    interruption the process sees) is on disk before the next step. Worse only when: a writer feeds another
    (RunStatus's rows into status.json: their intervals add up); the change was made on an event loop that is
    then blocked (its trailing write runs on that loop once it is free); its loop closed before the write was due
    (the write never runs: the next change after that moment is due and written at once, and every run ends with
    a forced write). The file a kill leaves is still whole (the writers' writes are atomic) and the
    recovery unchanged: `--status` settles the dead run, `--resume` searches again what resolutions.json lacks.
    """

    def __init__(self, write: Callable[[], None], interval: float, *, clock: Clock = time.monotonic,
                 later: Later = call_later) -> None:
        self.write = write
        self.interval = interval
        self._clock = clock
        self._later = later
        # Re-entrant: a write that changes what it writes (and so calls `changed`) asks for one more, not a deadlock.
        self._lock = threading.RLock()
        self._last: float | None = None  # when the last write started (None: never)
        self._unwritten = False
        self._cancel: Cancel | None = None  # the pending trailing write
        self._timers = 0  # which one it is: a timer that fired as it was cancelled must not act for a later one

    def changed(self, force: bool = False) -> None:
        """Something to write: written now when forced or due, else when the interval since the last write ends."""
        with self._lock:
            self._unwritten = True
            wait = 0.0 if self._last is None else self.interval - (self._clock() - self._last)
            if force or wait <= 0:
                self._write()
            elif self._cancel is None:
                self._timers += 1
                timer = self._timers
                self._cancel = self._later(wait, lambda: self._due(timer))

    def hold(self) -> None:
        """A change that waits for the next write (a later change, `flush`) instead of having one of its own:
        the file as it is still says more than the change would (a new run's empty list)."""
        with self._lock:
            self._cancel_timer()
            self._unwritten = True

    def flush(self) -> None:
        """Whatever change is unwritten, written now."""
        with self._lock:
            if self._unwritten:
                self._write()

    def _due(self, timer: int) -> None:
        with self._lock:
            if timer != self._timers or self._cancel is None:
                return  # cancelled (a write came first) or replaced by a later timer
            self._cancel = None
            if self._unwritten:
                self._write()

    def _write(self) -> None:
        self._cancel_timer()
        self._unwritten, self._last = False, self._clock()
        try:
            self.write()
        except BaseException:
            self._unwritten = True  # the next change or forced write tries again
            raise

    def _cancel_timer(self) -> None:
        if self._cancel is not None:
            self._cancel()
            self._cancel = None
