"""Checks a file must pass before it takes its final name, and the batch check of downloaded files.

safetensors: the structure is checked by the safetensors library itself (the reader ComfyUI loads the
file with): the header's JSON, every tensor's dtype x shape against its byte span, the spans tiling the
data from byte 0, and the data covering the rest of the file exactly. It memory-maps the file and
parses only the header. One bound stays ours: the library parses the whole header into memory, up to
its 100 MB limit, at about nine times the header's size when it lists many small tensors (a 90 MiB
header of 1.4 million entries peaked at 1.2 GB and 30 s in benchmarks), so a header with more values
than any real checkpoint holds is refused before the library sees it, by counting its separators.
"""

from __future__ import annotations

import json
import os
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from ..constants import is_pickle
from ..errors import IntegrityError
from ..models import to_jsonable
from ..state import write_text_atomic
from .shapes import FailedCheck, VerificationCounts, VerificationDoc, VerifiedFile

MAX_HEADER_BYTES = 100_000_000  # the library's own limit on a header's length
# Each parsed value costs the library ~100 bytes: this keeps a hostile header's parse near 100 MiB
# while leaving room for ~150,000 tensors (the largest real checkpoints hold a few thousand).
MAX_HEADER_VALUES = 1_000_000
_COUNT_CHUNK = 2**20


def pickle_warning(name: str) -> str | None:
    if not is_pickle(name):
        return None
    return (f"{os.path.basename(name)} is a pickle-based format that can run code when loaded; "
            "prefer a .safetensors version if one exists")


def check_size(path: str | os.PathLike[str], expected: int | None, name: str = "") -> int:
    actual = os.path.getsize(path)
    if expected is not None and actual != expected:
        raise IntegrityError("size", f"{expected} bytes", f"{actual} bytes", name)
    return actual


def check_sha256(actual: str, expected: str | None, name: str = "") -> None:
    if expected and actual.lower() != expected.lower():
        raise IntegrityError("sha256", expected.lower(), actual.lower(), name)


def _header_values(f: BinaryIO, length: int) -> int:
    """An upper bound of the number of JSON values in the next `length` bytes: each comma, colon or
    opening bracket starts at most one (those inside names only overcount). Read in chunks."""
    count = 0
    while length > 0:
        chunk = f.read(min(_COUNT_CHUNK, length))
        if not chunk:
            break
        length -= len(chunk)
        count += chunk.count(b",") + chunk.count(b":") + chunk.count(b"[") + chunk.count(b"{")
    return count


_warm_lock = threading.Lock()
_warm_started = False


def warm_safetensors() -> None:
    """Import safetensors and numpy (its np framework, which `check_safetensors` opens with) on a thread of
    their own, once per process, while a download is still receiving bytes: the import (~0.1-0.5 s, mostly
    numpy) otherwise sits between the last byte and the final name. The check itself imports them as
    before; Python's module locks make it wait for this thread's import rather than import twice."""
    global _warm_started
    with _warm_lock:
        if _warm_started:
            return
        _warm_started = True
    threading.Thread(target=_import_safetensors, name="fixer-warm-safetensors", daemon=True).start()


def _import_safetensors() -> None:
    try:
        import numpy  # noqa: F401  (safe_open(framework="np") imports it)
        import safetensors  # noqa: F401
    except ImportError:  # the check reports a missing library where it needs it
        pass


def check_safetensors(path: str | os.PathLike[str], name: str = "") -> None:
    """IntegrityError unless safetensors reads `path` as a well-formed file."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise IntegrityError("safetensors header", "at least 8 bytes", f"{size} bytes", name)
        (n,) = struct.unpack("<Q", raw)
        if n > MAX_HEADER_BYTES or 8 + n > size:
            raise IntegrityError("safetensors header length", f"at most {min(MAX_HEADER_BYTES, size - 8)}", n, name)
        if _header_values(f, n) > MAX_HEADER_VALUES:
            raise IntegrityError("safetensors header", "a header a model can have",
                                 f"more than {MAX_HEADER_VALUES} values", name)
    from safetensors import SafetensorError, safe_open  # imports numpy: only when a file is checked

    try:
        with safe_open(os.fspath(path), framework="np"):
            pass
    except SafetensorError as e:
        reason = str(e).removeprefix("Error while deserializing header: ")
        declared = _declared_size(path, n) if "not fully covered" in reason else None
        if declared is not None and declared != size:  # a cut download: say by how much
            raise IntegrityError("safetensors data size", f"{declared} bytes (from its header)", f"{size} bytes",
                                 name) from None
        raise IntegrityError("safetensors header", "a well-formed file", reason, name) from None


def _declared_size(path: str | os.PathLike[str], n: int) -> int | None:
    """The file size the header's tensor spans add up to, for the message about a cut file (the library
    has judged the header well-formed JSON of bounded size by then)."""
    with open(path, "rb") as f:
        f.seek(8)
        try:
            header = json.loads(f.read(n))
            ends = [info["data_offsets"][1] for key, info in header.items() if key != "__metadata__"]
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            return None
    return 8 + n + max(ends, default=0) if all(isinstance(e, int) for e in ends) else None


def looks_safetensors(name: str) -> bool:
    return name.lower().endswith((".safetensors", ".sft"))


def check_file(path: str | os.PathLike[str], expected_size: int | None, name: str = "") -> None:
    """Exists, size, and for safetensors the header (the batch check; no hashing)."""
    if not os.path.isfile(path):
        raise IntegrityError("file", "present", "missing", name)
    check_size(path, expected_size, name)
    if looks_safetensors(name or str(path)):
        check_safetensors(path, name)


@dataclass
class BatchReport:
    """The verification report: `verified` and `failed` entries, appended batch by batch."""

    verified: list[VerifiedFile] = field(default_factory=list)
    failed: list[FailedCheck] = field(default_factory=list)

    def document(self) -> VerificationDoc:
        counts = VerificationCounts(verified=len(self.verified), failed=len(self.failed))
        return VerificationDoc(timestamp=time.strftime("%Y-%m-%dT%H:%M:%S"), verified=list(self.verified),
                               failed=list(self.failed), counts=counts)


def verify_batch(entries: list[tuple[str, str, int | None]]) -> tuple[list[VerifiedFile], list[FailedCheck]]:
    """Check (name, path, expected size) entries; returns (verified, failed). Never raises."""
    verified: list[VerifiedFile] = []
    failed: list[FailedCheck] = []
    for name, path, size in entries:
        try:
            check_file(path, size, name)
            verified.append(VerifiedFile(name, path, os.path.getsize(path), pickle_warning(name)))
        except (IntegrityError, OSError) as e:
            failed.append(FailedCheck(name, path, str(e)))
    return verified, failed


def write_report(path: Path, report: BatchReport) -> None:
    write_text_atomic(path, json.dumps(to_jsonable(report.document()), indent=2))
