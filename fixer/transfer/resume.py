"""The `.part` file's sidecar: what was being fetched and which byte ranges are already on disk.

`<target>.part` holds the bytes at their final offsets (pieces arrive out of order);
`<target>.part.json` records the URL, the validator (ETag / X-Linked-Etag / Last-Modified),
the total size and the ranges written. A run killed at any moment leaves both behind; the next
run continues when the validator and size still match and starts over cleanly otherwise.
Ranges are recorded only after their bytes were handed to the kernel (pwrite returned), so a
killed process never claims bytes it did not write; the sidecar may lag, which only costs a
re-fetch of a few MiB.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

SIDECAR_SUFFIX = ".json"
PART_SUFFIX = ".part"
SIDECAR_VERSION = 1

Range = tuple[int, int]  # [start, end)


def part_path(target: str | os.PathLike[str]) -> Path:
    return Path(f"{target}{PART_SUFFIX}")


def sidecar_path(part: str | os.PathLike[str]) -> Path:
    return Path(f"{part}{SIDECAR_SUFFIX}")


def merge(ranges: list[Range]) -> list[Range]:
    """Sorted, non-overlapping, adjacent ranges joined."""
    out: list[Range] = []
    for start, end in sorted(r for r in ranges if r[1] > r[0]):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def gaps(done: list[Range], total: int) -> list[Range]:
    """The ranges of [0, total) not covered by `done`."""
    out: list[Range] = []
    pos = 0
    for start, end in merge(done):
        if start > pos:
            out.append((pos, min(start, total)))
        pos = max(pos, end)
    if pos < total:
        out.append((pos, total))
    return [r for r in out if r[1] > r[0]]


def covered(done: list[Range]) -> int:
    return sum(end - start for start, end in merge(done))


def prefix_end(done: list[Range]) -> int:
    """Length of the contiguous run of bytes from offset 0."""
    merged = merge(done)
    return merged[0][1] if merged and merged[0][0] == 0 else 0


@dataclass
class Sidecar:
    url: str  # the start URL (credentials stripped); the signed redirect target is never stored
    validator: str | None  # strong identity of the remote bytes; None when the server gave none
    total: int | None
    ranges: list[Range] = field(default_factory=list)
    sha256: str | None = None  # expected hash, when known
    version: int = SIDECAR_VERSION

    def matches(self, url: str, validator: str | None, total: int | None) -> bool:
        """May the bytes on disk be kept? Only when the remote file is provably the same one."""
        return (self.version == SIDECAR_VERSION and self.url == url and self.total == total
                and self.validator is not None and self.validator == validator)


def load(part: str | os.PathLike[str]) -> Sidecar | None:
    """The sidecar beside `part`, or None when absent or unreadable (then the .part is not trusted)."""
    try:
        data = json.loads(sidecar_path(part).read_text(encoding="utf-8"))
        ranges = [(int(a), int(b)) for a, b in data.get("ranges", [])]
        return Sidecar(url=str(data["url"]), validator=data.get("validator"), total=data.get("total"),
                       ranges=merge(ranges), sha256=data.get("sha256"), version=int(data.get("version", 0)))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save(part: str | os.PathLike[str], sidecar: Sidecar) -> None:
    """Write atomically (temp file + rename) so a kill mid-write leaves the previous sidecar."""
    path = sidecar_path(part)
    tmp = path.with_name(path.name + ".tmp")
    data = asdict(sidecar)
    data["ranges"] = [list(r) for r in merge(sidecar.ranges)]
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)


def discard(part: str | os.PathLike[str]) -> None:
    """Remove the .part and its sidecar (a fresh start)."""
    for p in (Path(part), sidecar_path(part), sidecar_path(part).with_name(sidecar_path(part).name + ".tmp")):
        try:
            p.unlink()
        except FileNotFoundError:
            pass
