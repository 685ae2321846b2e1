"""downloaded_models.json: one entry per download, enough to resume it (`--resume`), never a token."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, Iterable

from ..models import Transfer, TransferRequest, to_jsonable
from ..state import read_json, write_text_atomic
from .policy import strip_secret_query
from .shapes import DownloadRecord

DOWNLOADED_FILE = "downloaded_models.json"


def transfer_record(t: Transfer, dest_root: str | None = None) -> DownloadRecord:
    """One entry of downloaded_models.json: enough to resume it (`--resume`), never a token."""
    req = t.request
    return DownloadRecord(name=req.model_name or req.filename, filename=req.filename, folder=req.folder,
                          path=t.target, dest_root=dest_root, url=strip_secret_query(req.url), source=req.source,
                          state=t.state, size=t.total if t.total is not None else req.expected_size,
                          expected_size=req.expected_size, sha256=t.sha256, expected_sha256=req.sha256,
                          error=t.error, warning=t.warning)


_RECORDS_LOCK = threading.Lock()  # records are rewritten from worker threads; one writer at a time


def record_downloads(path: Path, downloads: Iterable[tuple[Transfer, str | None]]) -> None:
    """Add or replace these targets' entries in downloaded_models.json (kept across runs), in one rewrite: each
    as its Transfer is now, with the destination root its download went to."""
    fresh = {t.target: to_jsonable(transfer_record(t, dest_root)) for t, dest_root in downloads}
    with _RECORDS_LOCK:
        entries = [e for e in read_records(path) if e.get("path") not in fresh]
        entries.extend(fresh.values())
        write_text_atomic(path, json.dumps({"downloads": entries}, indent=2))


def read_records(path: Path) -> list[dict[str, Any]]:
    data = read_json(path)
    entries = data.get("downloads", []) if isinstance(data, dict) else []
    return [e for e in entries if isinstance(e, dict)]


def request_from_record(entry: dict[str, Any]) -> TransferRequest:
    return TransferRequest(url=entry["url"], folder=entry.get("folder") or "", filename=entry["filename"],
                           expected_size=entry.get("expected_size"), sha256=entry.get("expected_sha256"),
                           source=entry.get("source") or "", model_name=entry.get("name") or "")
