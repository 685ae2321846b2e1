"""The terminal view of a run: live per-file bars with speed and ETA on a TTY, plain lines otherwise."""

from __future__ import annotations

import shutil
import sys
import threading
import time
from typing import TextIO

from ..events import Event, ModelResolved, TransferDone, TransferProgress
from ..models import Transfer
from ..transfer.progress import eta_seconds


def human_bytes(n: float | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def human_eta(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


# Without a terminal (a pipe, CI, an agent's log) no bars are drawn: a plain progress line at most this often,
# so a long download is never minutes of silence (every progress event of a flowing download can print one).
PLAIN_EVERY = 5.0
NAME_CELLS = 28
# Everything on a bar line besides the name and the bar, at its widest ("100.0% 999.9 KB/s ETA
# 9:59:59 downloading" and the brackets): the bar gets the rest, so the state is never cut off.
FIXED_CELLS = 45


def bar_line(t: Transfer, width: int) -> str:
    name = t.request.model_name or t.request.filename
    if len(name) > NAME_CELLS:  # the end of a name tells files apart (…_v2.safetensors)
        name = "…" + name[-(NAME_CELLS - 1):]
    frac = t.bytes_done / t.total if t.total else 0.0
    cells = max(5, width - 1 - NAME_CELLS - FIXED_CELLS)  # 80 columns still fit
    filled = int(frac * cells)
    eta = human_eta(eta_seconds(t.bytes_done, t.total, t.speed))
    return (f"{name:<{NAME_CELLS}} [{'#' * filled}{'-' * (cells - filled)}] {frac * 100:5.1f}% "
            f"{human_bytes(t.speed)}/s ETA {eta} {t.state}")


def done_line(t: Transfer) -> str:
    """One finished file, as the terminal shows it."""
    where = f"{t.request.folder}/{t.request.filename}"
    if t.state == "done":
        return f"done      {where} ({human_bytes(t.total)}, sha256 verified)"
    if t.state == "cancelled":
        kept = " (the bytes so far are kept: --resume continues)" if t.bytes_done else ""
        return f"cancelled {where}{kept}"
    return f"{t.state:<9} {where}: {t.error.message if t.error else 'no reason given'}"


class ConsoleProgress:
    """An event subscriber. Redraws at most 5 times a second; never raises into the run."""

    def __init__(self, stream: TextIO | None = None, live: bool | None = None, report_done: bool = True):
        self.stream = stream or sys.stderr
        self.report_done = report_done  # False: the command prints each file's result itself, once
        self.live = self.stream.isatty() if live is None else live
        self.transfers: dict[str, Transfer] = {}
        self._drawn = 0
        self._last = 0.0
        self._last_plain = time.monotonic()
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        with self._lock:
            if isinstance(event, ModelResolved):
                res = event.resolution
                c = res.chosen
                self._print(f"resolved  {res.name}: {c.source} ({c.confidence:.2f}) {c.reason}" if c
                            else f"not found {res.name}: {res.why or 'no source had it'}")
            elif isinstance(event, TransferProgress):
                self.transfers[event.transfer.target] = event.transfer
                self._redraw()
                self._plain_line()
            elif isinstance(event, TransferDone):
                t = event.transfer
                self.transfers.pop(t.target, None)
                if self.report_done:
                    self._print(done_line(t))
                else:
                    self._redraw(force=True)

    def _plain_line(self) -> None:
        now = time.monotonic()
        if self.live or now - self._last_plain < PLAIN_EVERY:
            return
        self._last_plain = now
        active = [t for t in self.transfers.values() if t.state in ("downloading", "verifying")]
        if not active:
            return
        done = sum(t.bytes_done for t in active)
        total = sum(t.total or 0 for t in active)
        speed = sum(t.speed for t in active)
        names = ", ".join(t.request.model_name or t.request.filename for t in active[:3])
        more = f" and {len(active) - 3} more" if len(active) > 3 else ""
        print(f"progress  {human_bytes(done)} / {human_bytes(total)} at {human_bytes(speed)}/s, ETA "
              f"{human_eta(eta_seconds(done, total, speed))}: {names}{more}", file=self.stream, flush=True)

    def _print(self, line: str) -> None:
        self._clear()
        print(line, file=self.stream, flush=True)
        self._redraw(force=True)

    def _clear(self) -> None:
        if self.live and self._drawn:
            self.stream.write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0

    def _redraw(self, force: bool = False) -> None:
        if not self.live or (not force and time.monotonic() - self._last < 0.2):
            return
        self._last = time.monotonic()
        self._clear()
        width = shutil.get_terminal_size((100, 20)).columns
        active = list(self.transfers.values())
        lines = [bar_line(t, width) for t in active]
        if active:
            done = sum(t.bytes_done for t in active)
            total = sum(t.total or 0 for t in active)
            speed = sum(t.speed for t in active)
            lines.append(f"overall: {human_bytes(done)} / {human_bytes(total)} at {human_bytes(speed)}/s, "
                         f"ETA {human_eta(eta_seconds(done, total, speed))}")
        for line in lines:
            self.stream.write(line[:width - 1] + "\n")
        self.stream.flush()
        self._drawn = len(lines)
