"""The downloader's own documents (output/downloaded_models.json, status.json's `data` during `--download` /
`--resume`), dataclasses in the form of fixer/shapes.py (fixer/schema.py derives their schema likewise).
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
