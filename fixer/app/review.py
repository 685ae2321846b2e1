"""What a fix is about to download, before a byte moves: how many files, how many bytes, where each
one goes and how much room is left there.

One computation for both faces: the panel's "Download 6 models, 41.2 GB, into models/... (free:
120 GB)" and the CLI's [y/n/v] prompt. Pure apart from `free_bytes` (one statvfs per destination).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from ..errors import FixerError
from ..read.names import confine
from ..shapes import FolderTotal, PlanDoc, PlanFile
from .console import human_bytes


@dataclass
class Plan:
    files: list[PlanFile] = field(default_factory=list)
    free: dict[str, int | None] = field(default_factory=dict)  # destination folder -> free bytes there

    @property
    def total_bytes(self) -> int:
        return sum(f.size or 0 for f in self.files)

    @property
    def unknown_sizes(self) -> int:
        return sum(1 for f in self.files if f.size is None)

    @property
    def min_free(self) -> int | None:
        known = [v for v in self.free.values() if v is not None]
        return min(known) if known else None

    @property
    def fits(self) -> bool:
        """False only when the known sizes alone exceed the free space of some destination disk."""
        return self.min_free is None or self.total_bytes <= self.min_free

    def common_folder(self, base: str | os.PathLike[str] | None = None) -> str | None:
        """The deepest folder holding every destination, relative to `base` when inside it."""
        dirs = [os.path.dirname(f.path) for f in self.files if f.path]
        if not dirs:
            return None
        common = os.path.commonpath(dirs)
        if base is not None:
            base = os.path.realpath(base)
            if os.path.commonpath([common, base]) == base:
                rel = os.path.relpath(common, base)
                return "." if rel == "." else rel.replace(os.sep, "/") + "/"
        return common.rstrip(os.sep) + os.sep

    def headline(self, base: str | os.PathLike[str] | None = None) -> str:
        """'Download 6 models, 41.2 GB, into models/ (free: 120.0 GB)': the panel's button and the CLI prompt."""
        n = len(self.files)
        size = human_bytes(self.total_bytes) if self.files else "0 B"
        if self.unknown_sizes:
            size = (f"{size} + {self.unknown_sizes} of unknown size" if self.unknown_sizes < n
                    else f"{n} of unknown size")
        where = self.common_folder(base)
        free = self.min_free
        return (f"Download {n} model{'s' if n != 1 else ''}, {size}"
                + (f", into {where}" if where else "")
                + (f" (free: {human_bytes(free)})" if free is not None else ""))

    def by_folder(self, base: str | os.PathLike[str] | None = None) -> list[FolderTotal]:
        """Per destination folder: how many files, their known bytes, how many of unknown size, and where."""
        groups: dict[str, FolderTotal] = {}
        for f in self.files:
            g = groups.setdefault(f.folder, FolderTotal(folder=f.folder))
            g.count += 1
            g.bytes += f.size or 0
            g.unknown_sizes += f.size is None
            if f.path and g.into is None:
                g.into = Plan(files=[f]).common_folder(base)
                g.free_bytes = self.free.get(os.path.dirname(f.path))
        return list(groups.values())

    def doc(self, base: str | os.PathLike[str] | None = None) -> PlanDoc:
        """The plan as the panel reads it (status.json's data.plan)."""
        return PlanDoc(headline=self.headline(base), count=len(self.files), total_bytes=self.total_bytes,
                       unknown_sizes=self.unknown_sizes, free_bytes=self.min_free, fits=self.fits,
                       into=self.common_folder(base), files=list(self.files), folders=self.by_folder(base))


def destination(root_for: Callable[[str], str], folder: str, name: str) -> tuple[str | None, str | None]:
    """(the file's real destination path, None) or (None, why not): `root_for` maps a folder key to
    its first registered path and raises FixerError for a folder ComfyUI does not have."""
    try:
        return str(confine(root_for(folder), name)), None
    except FixerError as e:
        return None, str(e)


def free_bytes(path: str) -> int | None:
    """Free space on the disk `path` will be written to (its nearest existing ancestor)."""
    p = Path(path)
    while not p.exists():
        if p.parent == p:
            return None
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def make_plan(items: Iterable[tuple[str, str, int | None]], root_for: Callable[[str], str]) -> Plan:
    """A plan for (name, folder, size) items; sizes may be unknown (None)."""
    plan = Plan()
    for name, folder, size in items:
        path, problem = destination(root_for, folder, name)
        plan.files.append(PlanFile(name, folder, path, size, problem))
        if path:
            parent = os.path.dirname(path)
            if parent not in plan.free:
                plan.free[parent] = free_bytes(parent)
    return plan
