"""How fast the background hash index may read: a byte budget per second and a pause while ComfyUI works.

The first index reads every model byte once (hundreds of GB on a big install). It competes with ComfyUI
loading models for a prompt, so it reads at most `hash_read_mb_per_s` (the settings' value, read live: a
change applies from the next piece), reads nothing while the host says it is busy (ComfyUI executing or
queueing a prompt), and stops within one piece when background hashing is turned off. Hashes a fix or a
user's command needs are computed without a pace: they are never held back by it.

The clock and the wait are injected, so tests check the pace with a fake clock instead of timing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..config import HashingConfig

MB = 10**6
BUSY_POLL = 1.0  # seconds between looks at a busy host
MAX_CREDIT = 1.0  # seconds of unused budget a window keeps


def never_busy() -> bool:
    return False


def read_limit(settings: HashingConfig) -> int:
    """The settings' read limit in bytes a second (0: none)."""
    return max(0, int(settings.hash_read_mb_per_s)) * MB


@dataclass
class ReadPace:
    """Called before each piece a background hash reads (`admit`); False means stop reading."""

    settings: Callable[[], HashingConfig]  # live: the page may change it while the index runs
    busy: Callable[[], bool] = never_busy
    clock: Callable[[], float] = time.monotonic
    stop: threading.Event = field(default_factory=threading.Event)
    wait: Callable[[float], object] | None = None  # default: stop.wait (a stop ends any wait at once)
    on_pause: Callable[[bool], None] | None = None  # told when a pause for a busy host starts and ends
    _since: float | None = field(default=None, init=False)  # start of the current budget window
    _read: int = field(default=0, init=False)  # bytes admitted since then
    _rate: int = field(default=0, init=False)  # the rate that window was measured at (bytes/s)

    def _sleep(self, seconds: float) -> None:
        (self.wait or self.stop.wait)(seconds)

    def stopped(self) -> bool:
        return self.stop.is_set() or not self.settings().background_hashing

    def limit(self) -> int:
        """The read limit in bytes a second now (0: none)."""
        return read_limit(self.settings())

    def admit(self, n: int) -> bool:
        """Wait until `n` more bytes may be read; False when hashing in the background should stop."""
        if self.busy():
            if self.on_pause is not None:
                self.on_pause(True)
            while not self.stopped() and self.busy():
                self._sleep(BUSY_POLL)
            if self.on_pause is not None:
                self.on_pause(False)
            self._since = None  # the budget starts afresh: the pause is not credit for a burst
        if self.stopped():
            return False
        rate = self.limit()
        if rate <= 0:
            return True
        now = self.clock()
        if self._since is None or rate != self._rate or now - (self._since + self._read / rate) > MAX_CREDIT:
            # A new window: at the start, after a change of limit, or after a while without reading (files
            # already hashed): time not spent reading is no credit for a burst beyond MAX_CREDIT.
            self._since, self._read, self._rate = now, 0, rate
        due = self._since + self._read / rate  # when the bytes read so far have used up their time
        if due > now:
            self._sleep(due - now)
            if self.stopped():
                return False
        self._read += n
        return True
