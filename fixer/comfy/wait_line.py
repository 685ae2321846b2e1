"""A line of bounded length for the requests that must go one at a time (big bodies: read, decoded, scanned).

Big bodies go one at a time on purpose: reading several at once makes every socket read re-take the GIL
from the busy scan, and each decoded 16 MiB workflow holds hundreds of MiB. But a plain semaphore lets a
page (or twenty tabs) queue bodies without end, each waiting for all before it. Here at most `waiting`
callers wait behind the one being served; the next is answered at once, 503 with Retry-After and the code
`service_busy`, instead of minutes later. Every holder is itself bounded (a read deadline, the scan worker's), so
the longest wait is bounded too.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

from .web_guard import RequestRefused


class WaitLine:
    """`async with line:` serves `at_once` callers together and keeps at most `waiting` more in line."""

    def __init__(self, at_once: int = 1, waiting: int = 3, retry_after: int = 5, what: str = "big request"):
        self._slots = asyncio.Semaphore(at_once)
        self._limit = at_once + waiting
        self._inside = 0  # being served or waiting
        self.retry_after = retry_after
        self.what = what

    @property
    def inside(self) -> int:
        return self._inside

    async def __aenter__(self) -> None:
        if self._inside >= self._limit:
            raise RequestRefused(503, f"ComfyFixerSmart is busy with {self._inside} other {self.what}s; try again "
                                      f"in {self.retry_after} s.", code="service_busy", retry_after=self.retry_after)
        self._inside += 1
        try:
            await self._slots.acquire()
        except BaseException:  # cancelled while waiting (the client went away): leave the line
            self._inside -= 1
            raise

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self._slots.release()
        self._inside -= 1
