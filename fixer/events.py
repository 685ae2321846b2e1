"""Typed events the pipeline emits; the CLI, status.json, the log and the websocket subscribe."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from .errors import ErrorInfo
from .models import Resolution, ScanReport, Transfer
from .record import Record
from .shapes import Phase, RunSummary

if TYPE_CHECKING:  # a batch check's files: the downloader's shapes, out of a --scan's imports
    from .transfer.shapes import FailedCheck, VerifiedFile

log = logging.getLogger(__name__)


@dataclass(eq=False, repr=False)
class Event(Record):
    """What the pipeline tells its subscribers (the bus hands each event to every one of them)."""


@dataclass(eq=False, repr=False)
class PhaseChanged(Event):
    """The run entered a phase of the file contract; `total` is how many items the phase works through."""

    phase: Phase
    total: int = 0


@dataclass(eq=False, repr=False)
class Progress(Event):
    """How far the current phase is: `current` of `total` items."""

    current: int
    total: int
    message: str = ""


@dataclass(eq=False, repr=False)
class ScanFinished(Event):
    """The scan of the workflows ended; its report holds every model and node it found."""

    report: ScanReport


@dataclass(eq=False, repr=False)
class ModelResolved(Event):
    """A missing model's search ended: where it can be had, or why not."""

    resolution: Resolution


@dataclass(eq=False, repr=False)
class ResolutionChanged(Event):
    """A resolved model's chosen source changed during the run (its first one failed at download time)."""

    resolution: Resolution


@dataclass(eq=False, repr=False)
class TransferProgress(Event):
    """A download moved on (bytes, speed, state)."""

    transfer: Transfer


@dataclass(eq=False, repr=False)
class TransferDone(Event):
    """A download ended."""

    transfer: Transfer  # state done, failed or cancelled


@dataclass(eq=False, repr=False)
class VerificationReport(Event):
    """A batch check of downloaded files: those that passed and those that did not."""

    verified: list[VerifiedFile] = field(default_factory=list)
    failed: list[FailedCheck] = field(default_factory=list)


@dataclass(eq=False, repr=False)
class ErrorRaised(Event):
    """An error the run reports and goes on after (status.json's `errors`)."""

    error: ErrorInfo
    details: str = ""


@dataclass(eq=False, repr=False)
class RunFinished(Event):
    """A fix run ended: how many models ended in each final state."""

    summary: RunSummary


Subscriber = Callable[[Event], None]


class EventBus:
    """Fan-out to subscribers; a failing subscriber is logged, never breaks the run."""

    def __init__(self) -> None:
        self._subs: list[Subscriber] = []

    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        self._subs.append(fn)
        return lambda: self._subs.remove(fn) if fn in self._subs else None

    def emit(self, event: Event) -> None:
        for fn in list(self._subs):
            try:
                fn(event)
            except Exception:  # a UI/log subscriber must not stop a download
                log.exception("event subscriber %r failed on %s", fn, type(event).__name__)
