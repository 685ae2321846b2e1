"""Checks a file must pass before it takes its final name, and the batch check of downloaded files.

safetensors: the whole structure is checked here, with no framework (safetensors' own reader
needs numpy or torch for that): an 8-byte little-endian header length, a UTF-8 JSON header,
then each tensor's dtype x shape matching its byte span, the spans contiguous from byte 0, and
the data exactly covering the rest of the file. Only the header is read. The header comes from
a stranger, so what parsing it may cost is bounded before it is parsed: its size (safetensors'
own limit) and its number of values; nesting beyond the parser's depth guard is refused, and
anything nested deeper than a header's three levels fails the type checks.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..constants import PICKLE_EXTENSIONS
from ..errors import IntegrityError
from ..state import write_text_atomic

MAX_HEADER_BYTES = 100 * 2**20  # safetensors' own limit
# A parsed JSON value costs up to ~30x its text: this bounds a header's parse to ~100 MiB of objects
# while leaving room for ~150,000 tensors (the largest real checkpoints hold a few thousand).
MAX_HEADER_VALUES = 1_000_000
DTYPE_BITS = {"BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "F8_E4M3FNUZ": 8,
              "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32,
              "I64": 64, "U64": 64, "F64": 64, "C64": 64, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6}

_SURROGATE = re.compile("[\ud800-\udfff]")


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


class _BadHeader(ValueError):
    """Raised inside the JSON parser's hooks; becomes an IntegrityError naming the file."""


def _no_float(text: str) -> float:
    raise _BadHeader(f"a number that is not an integer ({text[:20]})")


def _no_constant(text: str) -> float:
    raise _BadHeader(f"{text} (not JSON)")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise _BadHeader("a name given twice")
    for key in out:
        if _SURROGATE.search(key):
            raise _BadHeader(f"a name that is not valid Unicode ({key!r})")
    return out


def _parse_header(raw: bytes) -> dict:
    """The header as a dict, or _BadHeader; never a parse whose cost the file's author chooses."""
    # Each comma, colon or bracket is at most one parsed value (those inside names only overcount).
    values = raw.count(b",") + raw.count(b":") + raw.count(b"[") + raw.count(b"{")
    if values > MAX_HEADER_VALUES:
        raise _BadHeader(f"more than {MAX_HEADER_VALUES} values")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _BadHeader(f"bytes that are not UTF-8 at {e.start}") from None
    try:
        header = json.loads(text, parse_float=_no_float, parse_constant=_no_constant,
                            object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as e:
        raise _BadHeader(f"invalid JSON ({e.msg} at {e.pos})") from None
    except RecursionError:  # the parser's own depth guard; a real header is three levels deep
        raise _BadHeader("nesting deeper than a header has") from None
    except ValueError as e:  # _BadHeader, or an integer of thousands of digits
        raise _BadHeader(str(e) if isinstance(e, _BadHeader) else "an integer too long to be an offset") from None
    if not isinstance(header, dict):
        raise _BadHeader(f"a JSON {type(header).__name__} where an object belongs")
    return header


def _is_count(x: Any) -> bool:
    return type(x) is int and 0 <= x < 2**64


def _tensor_span(key: str, info: Any) -> tuple[int, int]:
    """(begin, end) of one tensor's bytes after checking that its dtype x shape fills them exactly."""
    if not isinstance(info, dict):
        raise _BadHeader(f"{key!r} is not a tensor entry")
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if dtype not in DTYPE_BITS:
        raise _BadHeader(f"{key!r} has an unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
        raise _BadHeader(f"{key!r} has no valid shape")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(o) for o in offsets)
            and offsets[0] <= offsets[1]):
        raise _BadHeader(f"{key!r} has no valid data_offsets")
    bits = math.prod(shape) * DTYPE_BITS[dtype]
    if bits % 8 or bits // 8 != offsets[1] - offsets[0]:
        raise _BadHeader(f"{key!r} is {dtype} {shape} ({bits / 8:g} bytes) but spans {offsets[1] - offsets[0]} bytes")
    return offsets[0], offsets[1]


def _check_metadata(meta: Any) -> None:
    if meta is None:  # safetensors reads a null __metadata__ as none
        return
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise _BadHeader("__metadata__ that is not text names and values")
    if any(_SURROGATE.search(v) for v in meta.values()):
        raise _BadHeader("__metadata__ text that is not valid Unicode")


def check_safetensors(path: str | os.PathLike, name: str = "") -> None:
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise IntegrityError("safetensors header", "at least 8 bytes", f"{size} bytes", name)
        (n,) = struct.unpack("<Q", raw)
        if n > MAX_HEADER_BYTES or 8 + n > size:
            raise IntegrityError("safetensors header length", f"at most {min(MAX_HEADER_BYTES, size - 8)}", n, name)
        raw = f.read(n)
    try:
        header = _parse_header(raw)
        del raw
        spans = []
        for key, info in header.items():
            if key == "__metadata__":
                _check_metadata(info)
            else:
                spans.append((*_tensor_span(key, info), key))
    except _BadHeader as e:
        raise IntegrityError("safetensors header", "a well-formed header", str(e), name) from None
    expected_end = 0
    for begin, end, key in sorted(spans):
        if begin != expected_end:
            raise IntegrityError("safetensors data_offsets", f"{key!r} to start at byte {expected_end}", begin, name)
        expected_end = end
    if 8 + n + expected_end != size:
        raise IntegrityError("safetensors data size", f"{8 + n + expected_end} bytes (from its header)",
                             f"{size} bytes", name)


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
    """The verification report: `verified` and `failed` entries, appended batch by batch."""

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
