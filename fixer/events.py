"""Typed events the pipeline emits; the CLI, status.json, the log and the websocket subscribe."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable

from .errors import ErrorInfo
from .models import Resolution, ScanReport, Transfer
from .shapes import FailedCheck, Phase, RunSummary, VerifiedFile

log = logging.getLogger(__name__)


@dataclass
class Event:
    pass


@dataclass
class PhaseChanged(Event):
    phase: Phase
    total: int = 0


@dataclass
class Progress(Event):
    current: int
    total: int
    message: str = ""


@dataclass
class ScanFinished(Event):
    report: ScanReport


@dataclass
class ModelResolved(Event):
    resolution: Resolution


@dataclass
class ResolutionChanged(Event):
    """A resolved model's chosen source changed during the run (its first one failed at download time)."""

    resolution: Resolution


@dataclass
class TransferProgress(Event):
    transfer: Transfer


@dataclass
class TransferDone(Event):
    transfer: Transfer  # state done, failed or cancelled


@dataclass
class VerificationReport(Event):
    verified: list[VerifiedFile] = field(default_factory=list)
    failed: list[FailedCheck] = field(default_factory=list)


@dataclass
class ErrorRaised(Event):
    error: ErrorInfo
    details: str = ""


@dataclass
class RunFinished(Event):
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
