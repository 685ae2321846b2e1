"""Download slots: at most `max_concurrent` files at once, and a freed slot goes to the largest file waiting.

Why largest first: a run's end is bound by its last file. In a plain queue (the workflow's order, often
small files first) the largest file starts last and then runs alone on its few connections while the
other slots sit idle; started first, it downloads beside the small ones and the tail is made of small
files that end quickly. A file whose size is not known yet counts as the largest (only fetching it
tells, and a late big file is the costly case). Ties keep the order of submission.

No file waits forever: a file is passed over only by files submitted while it waits, each served once.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools


class LargestFirst:
    """An asyncio semaphore whose waiters are served largest first (then in submission order)."""

    def __init__(self, slots: int) -> None:
        self._free = max(1, slots)
        self._waiting: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    async def acquire(self, size: int | None) -> None:
        if self._free > 0 and not self._waiting:
            self._free -= 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (-float(size) if size is not None else -float("inf"), next(self._order), fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # the slot was handed over as the waiter was cancelled: pass it on
            raise

    def release(self) -> None:
        while self._waiting:
            _, _, fut = heapq.heappop(self._waiting)
            if not fut.done():  # a cancelled waiter's future is done; skip it
                fut.set_result(None)
                return
        self._free += 1
