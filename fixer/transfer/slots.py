"""Download slots: at most `max_concurrent` files at once, the waiting ones served from both ends of their sizes.

Why: a run's end is bound by its last file. In a plain queue (the workflow's order, often small files
first) the largest file starts last and then runs alone on its few connections while the other slots sit
idle. Largest first alone moves the problem: the tail is then made of small files, each mostly fixed cost
(the probe's round trips, the checks, the records) at a trickle of throughput. So one slot (the small lane)
takes the smallest file waiting and the others the largest: the small files' fixed costs hide behind the
large transfers, and the last files to run are mid-sized ones on all their connections. With one slot it is
largest first. A file whose size is not known yet counts as the largest (only fetching it tells, and a late
big file is the costly case); ties keep the order of submission.

No file waits forever: a file is passed over only by files submitted while it waits, each served once.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field


@dataclass(eq=False)
class _Waiter:
    size: float  # inf when unknown
    order: int
    fut: asyncio.Future[object] = field(repr=False)


class Slots:
    """An asyncio semaphore whose waiters are served by size: `acquire` returns the holder's token for
    `release`."""

    def __init__(self, slots: int) -> None:
        self._free = max(1, slots)
        self._lanes = slots >= 2  # a small lane beside the large ones
        self._small: object | None = None  # the token of the file holding the small lane
        self._waiting: list[_Waiter] = []  # a run's files: a scan per grant is cheap
        self._order = itertools.count()

    async def acquire(self, size: int | None) -> object:
        if self._free > 0 and not self._waiting:
            self._free -= 1
            return object()
        fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        waiter = _Waiter(float(size) if size is not None else float("inf"), next(self._order), fut)
        self._waiting.append(waiter)
        try:
            return await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release(fut.result())  # the slot was handed over as the waiter was cancelled: pass it on
            elif waiter in self._waiting:
                self._waiting.remove(waiter)
            raise

    def release(self, token: object) -> None:
        if token is self._small:
            self._small = None
        self._waiting = [w for w in self._waiting if not w.fut.done()]
        if not self._waiting:
            self._free += 1
            return
        token = object()
        if self._lanes and self._small is None:
            pick = min(self._waiting, key=lambda w: (w.size, w.order))
            self._small = token
        else:
            pick = min(self._waiting, key=lambda w: (-w.size, w.order))
        self._waiting.remove(pick)
        pick.fut.set_result(token)
