"""Log files of a run: `ACTION: {json}` lines for decisions, and the search history."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

log = logging.getLogger("fixer.action")
# json.dumps with any option builds a new JSONEncoder per call (~1 us of each ~14 us line; a --scan writes one per
# missing model); one encoder with the same options writes the same text.
_encode = json.JSONEncoder(default=str, sort_keys=True).encode


def action(kind: str, **fields: object) -> None:
    """One decision, machine-readable, in the `ACTION: {json}` form of the file contract."""
    log.info("ACTION: %s", _encode({"action": kind, **fields}))


def open_run_log(log_dir: Path, prefix: str) -> logging.Handler:
    """Attach log/<prefix>_YYYYMMDD_HHMMSS.log to the engine's logger; the caller removes it."""
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / f"{prefix}_{time.strftime('%Y%m%d_%H%M%S')}.log"
    handler = logging.FileHandler(path, encoding="utf-8", errors="backslashreplace")  # non-UTF-8 names stay a line
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    root = logging.getLogger("fixer")
    root.addHandler(handler)
    if not log.propagate:  # a ComfyUI service in this process keeps ACTION lines off the console
        log.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
    return handler


def close_run_log(handler: logging.Handler) -> None:
    logging.getLogger("fixer").removeHandler(handler)
    log.removeHandler(handler)
    handler.close()


def keep_actions_in(log_dir: Path) -> logging.Handler:
    """Inside ComfyUI: every engine log line goes to log/comfyfixer.log (rotated), and the ACTION lines
    go only there, not into ComfyUI's console, where a scan on each workflow load would flood it."""
    from logging.handlers import RotatingFileHandler

    log_dir.mkdir(parents=True, exist_ok=True)
    path = str(log_dir / "comfyfixer.log")
    engine = logging.getLogger("fixer")
    for h in engine.handlers:
        if getattr(h, "baseFilename", None) == path:
            return h  # a second service over the same state dir (tests, a reload) shares the file
    handler = RotatingFileHandler(path, maxBytes=5 * 2**20, backupCount=3, encoding="utf-8", errors="backslashreplace")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    engine.addHandler(handler)
    if engine.level == logging.NOTSET or engine.level > logging.INFO:
        engine.setLevel(logging.INFO)
    log.propagate = False
    log.addHandler(handler)
    return handler
