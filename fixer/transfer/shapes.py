"""The downloader's own documents (output/downloaded_models.json, status.json's `data` during `--download` /
`--resume`, output/verification_report.json: the batch check of downloaded files), dataclasses in the form of
fixer/shapes.py (fixer/schema.py derives their schema likewise).
Apart from it because only the downloader uses them: fixer/shapes.py is imported by every command, a --scan
included, and each dataclass costs its creation at import.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ErrorInfo


@dataclass
class DownloadRecord:
    """One entry of output/downloaded_models.json: enough to resume it (`--resume`), never a token."""

    name: str  # the name the workflow uses
    filename: str  # the file written, relative to its folder (a pasted link's file keeps its own name)
    folder: str
    path: str
    dest_root: str | None
    url: str
    source: str
    state: str
    size: int | None
    expected_size: int | None
    sha256: str | None
    expected_sha256: str | None
    error: ErrorInfo | None
    warning: str | None


@dataclass
class DownloadRecords:
    downloads: list[DownloadRecord]


@dataclass
class FileProgress:
    name: str
    folder: str
    target: str
    state: str
    bytes_done: int
    total: int | None
    speed: float
    eta: float | None
    error: ErrorInfo | None
    warning: str | None


@dataclass
class DownloadsOverall:
    files: int
    active: int
    done: int
    failed: int
    bytes_done: int
    total: int | None
    speed: float
    eta: float | None
    percent: float | None


@dataclass
class DownloadsData:
    """status.json's `data` during `comfy-fixer --download` / `--resume`: plain JSON, no URLs, no tokens."""

    files: list[FileProgress]
    overall: DownloadsOverall


# --- output/verification_report.json: the batch check of downloaded files ---------------------------
@dataclass
class VerifiedFile:
    """A downloaded file that passed the batch check (present, its size, a safetensors header)."""

    name: str
    path: str
    size: int
    warning: str | None  # a pickle-based format: it can run code when loaded


@dataclass
class FailedCheck:
    """A downloaded file that did not pass the batch check, and why."""

    name: str
    path: str
    error: str


@dataclass
class VerificationCounts:
    verified: int
    failed: int


@dataclass
class VerificationDoc:
    """output/verification_report.json: every batch checked during the run so far."""

    timestamp: str
    verified: list[VerifiedFile]
    failed: list[FailedCheck]
    counts: VerificationCounts
