"""Packs that are installed but did not load ("IMPORT FAILED": a dependency missing or too new).

Inside ComfyUI their node types are unknown, although their sources are right there in custom_nodes/:
the scan reads them statically (static_folders.PackSources) so their inputs still get folders, and the
report says which pack failed to import and why, from ComfyUI's own log line
`Cannot import <path> module for custom nodes: <reason>` (kept by `ImportFailureLog`, installed when this
pack is imported, and read back from ComfyUI's log buffer for the packs that loaded before it).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # ComfyUI's start-up builds ImportFailureLog; the models load when a scan asks
    from ..models import FailedPack

_FAILED = re.compile(r"Cannot import (.+?) module for custom nodes: (.*)", re.DOTALL)
_MAX_KEPT = 500  # pack failures kept: one per installed pack at most, bounded whatever a log holds
_MAX_REASON = 500


def parse_failure(message: str) -> tuple[str, str] | None:
    """(real pack path, reason) from one of ComfyUI's log messages, or None."""
    m = _FAILED.search(message)
    if m is None:
        return None
    reason = m.group(2).strip().splitlines()[0] if m.group(2).strip() else ""
    return os.path.realpath(m.group(1).strip()), reason[:_MAX_REASON]


def failures_in(lines: Iterable[Any]) -> dict[str, str]:
    """Pack path -> reason, from ComfyUI's log buffer (entries are strings or {"m": message} dicts)."""
    out: dict[str, str] = {}
    for entry in lines:
        message = entry.get("m") if isinstance(entry, dict) else entry
        found = parse_failure(message) if isinstance(message, str) else None
        if found and len(out) < _MAX_KEPT:
            out[found[0]] = found[1]
    return out


class ImportFailureLog(logging.Handler):
    """Keeps ComfyUI's "Cannot import ... module for custom nodes" warnings as they are logged."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.failures: dict[str, str] = {}
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            found = parse_failure(record.getMessage())
        except Exception:  # noqa: BLE001 - a log handler never raises into the logging code
            return
        if found:
            with self._guard:
                if len(self.failures) < _MAX_KEPT:
                    self.failures[found[0]] = found[1]


def failed_packs(readings: dict[str, Any], wanted: set[str], failures: dict[str, str]) -> list[FailedPack]:
    """The packs among `readings` (real path -> static Reading of a pack that did not load) that define any
    of the `wanted` node types, with ComfyUI's reason when its log said one."""
    from ..models import FailedPack

    return [FailedPack(os.path.basename(root), failures.get(root), sorted(wanted & set(reading.defs)))
            for root, reading in sorted(readings.items()) if wanted & set(reading.defs)]
