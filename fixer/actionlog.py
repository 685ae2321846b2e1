"""Log files of a run: `ACTION: {json}` lines for decisions, and the search history."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

log = logging.getLogger("fixer")


def action(kind: str, **fields: object) -> None:
    """One decision, machine-readable, in the seed's `ACTION: {json}` form."""
    log.info("ACTION: %s", json.dumps({"action": kind, **fields}, default=str, sort_keys=True))


def open_run_log(log_dir: Path, prefix: str) -> logging.Handler:
    """Attach log/<prefix>_YYYYMMDD_HHMMSS.log to the engine's logger; the caller removes it."""
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / f"{prefix}_{time.strftime('%Y%m%d_%H%M%S')}.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    root = logging.getLogger("fixer")
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
    return handler


def close_run_log(handler: logging.Handler) -> None:
    logging.getLogger("fixer").removeHandler(handler)
    handler.close()
