"""The CPU time one document may cost the scan: a backstop behind linear-time extraction.

Every step of reading a workflow is linear in its size, so an honest 16 MiB workflow costs well under a
second. A document that still runs past its budget is refused by name, and the rest of the scan goes on.
Measured as this thread's CPU time: inside ComfyUI the scan runs in a thread beside the event loop and the
sampler, whose work must neither count against it nor stretch it.
"""

from __future__ import annotations

import time
from typing import Callable

from ..errors import WorkflowError

SCAN_CPU_SECONDS = 5.0


def _cpu_clock() -> Callable[[], float]:
    """This thread's CPU seconds. On Linux from getrusage (~10 us): `time.thread_time()` (clock_gettime of the
    thread's CPU clock) was measured at 2 us idle but 10-36 ms right after real work on a virtual machine."""
    try:
        import resource

        thread = resource.RUSAGE_THREAD  # Linux only

        def rusage() -> float:
            r = resource.getrusage(thread)
            return r.ru_utime + r.ru_stime

        return rusage
    except (ImportError, AttributeError):  # Windows (GetThreadTimes, cheap), macOS
        return time.thread_time


thread_cpu = _cpu_clock()


class Budget:
    def __init__(self, label: str, seconds: float | None = None):
        self.label = label
        self.seconds = SCAN_CPU_SECONDS if seconds is None else seconds
        self._cpu_start = thread_cpu()
        self._wall_deadline = time.monotonic() + self.seconds

    def check(self) -> None:
        """WorkflowError once the document has cost more CPU time than its budget.

        The thread's CPU clock is a system call, the monotonic clock ~0.1 us: this thread cannot have used
        more CPU time than has passed, so the CPU clock is read only once the wall clock says the budget
        could be spent."""
        if time.monotonic() <= self._wall_deadline:
            return
        used = thread_cpu() - self._cpu_start
        if used > self.seconds:
            raise WorkflowError(self.label, f"reading it took more than {self.seconds:g} s of CPU time, more "
                                "than any workflow needs; it was not scanned (is it machine-made?)")
        self._wall_deadline = time.monotonic() + (self.seconds - used)
