"""Checks a file must pass before it takes its final name, and the seeds' batch check.

safetensors: the header is parsed here (8-byte little-endian length, JSON, largest
`data_offsets` end) because that gives the expected file size for an "expected vs actual"
message; then `safetensors.safe_open` confirms the rest (offsets contiguous, dtype x shape
consistent with each tensor's byte span, the data exactly covering the file). safe_open maps
the file and reads only the header, so it costs no tensor loading and no extra full read.
"""

from __future__ import annotations

import json
import os
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..constants import PICKLE_EXTENSIONS
from ..errors import IntegrityError
from ..state import write_text_atomic

MAX_HEADER_BYTES = 100 * 2**20  # safetensors' own limit


def is_pickle(name: str) -> bool:
    return os.path.splitext(name.lower())[1] in PICKLE_EXTENSIONS


def pickle_warning(name: str) -> str | None:
    if not is_pickle(name):
        return None
    return (f"{os.path.basename(name)} is a pickle-based format that can run code when loaded; "
            "prefer a .safetensors version if one exists")


def check_size(path: str | os.PathLike, expected: int | None, name: str = "") -> int:
    actual = os.path.getsize(path)
    if expected is not None and actual != expected:
        raise IntegrityError("size", f"{expected} bytes", f"{actual} bytes", name)
    return actual


def check_sha256(actual: str, expected: str | None, name: str = "") -> None:
    if expected and actual.lower() != expected.lower():
        raise IntegrityError("sha256", expected.lower(), actual.lower(), name)


def safetensors_expected_size(path: str | os.PathLike, name: str = "") -> int:
    """File size the header promises (8 + header length + end of the last tensor's data)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise IntegrityError("safetensors header", "at least 8 bytes", f"{size} bytes", name)
        (n,) = struct.unpack("<Q", raw)
        if n > MAX_HEADER_BYTES or 8 + n > size:
            raise IntegrityError("safetensors header length", f"at most {min(MAX_HEADER_BYTES, size - 8)}", n, name)
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise IntegrityError("safetensors header", "valid JSON", f"unreadable ({e})", name) from None
    if not isinstance(header, dict):
        raise IntegrityError("safetensors header", "a JSON object", type(header).__name__, name)
    end = 0
    for key, info in header.items():
        if key == "__metadata__":
            continue
        try:
            end = max(end, int(info["data_offsets"][1]))
        except (TypeError, KeyError, IndexError, ValueError):
            raise IntegrityError("safetensors header", "data_offsets for every tensor",
                                 f"none for {key!r}", name) from None
    return 8 + n + end


def check_safetensors(path: str | os.PathLike, name: str = "") -> None:
    expected = safetensors_expected_size(path, name)
    actual = os.path.getsize(path)
    if expected != actual:
        raise IntegrityError("safetensors data size", f"{expected} bytes (from its header)", f"{actual} bytes", name)
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="np"):
            pass
    except SafetensorError as e:
        raise IntegrityError("safetensors structure", "a well-formed file", str(e), name) from None


def looks_safetensors(name: str) -> bool:
    return name.lower().endswith((".safetensors", ".sft"))


def check_file(path: str | os.PathLike, expected_size: int | None, name: str = "") -> None:
    """Exists, size, and for safetensors the header (the batch check; no hashing)."""
    if not os.path.isfile(path):
        raise IntegrityError("file", "present", "missing", name)
    check_size(path, expected_size, name)
    if looks_safetensors(name or str(path)):
        check_safetensors(path, name)


@dataclass
class BatchReport:
    """The seeds' verification report: `verified` and `failed` entries, appended batch by batch."""

    verified: list[dict] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"), "verified": self.verified, "failed": self.failed,
                "counts": {"verified": len(self.verified), "failed": len(self.failed)}}


def verify_batch(entries: list[tuple[str, str, int | None]]) -> tuple[list[dict], list[dict]]:
    """Check (name, path, expected size) entries; returns (verified, failed). Never raises."""
    verified: list[dict] = []
    failed: list[dict] = []
    for name, path, size in entries:
        entry: dict = {"name": name, "path": path}
        try:
            check_file(path, size, name)
            entry["size"] = os.path.getsize(path)
            warning = pickle_warning(name)
            if warning:
                entry["warning"] = warning
            verified.append(entry)
        except (IntegrityError, OSError) as e:
            entry["error"] = str(e)
            failed.append(entry)
    return verified, failed


def write_report(path: Path, report: BatchReport) -> None:
    write_text_atomic(path, json.dumps(report.to_json(), indent=2))
