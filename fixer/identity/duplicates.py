"""Identical model files across folders and ComfyUI installs, the space they waste, and the fix: one copy
kept, every other replaced by a hard link to it (a symlink where a hard link cannot be made).

The fix never removes bytes that exist nowhere else: a duplicate is replaced only after both it and the kept
copy are confirmed (by the index, keyed by inode, size and mtime) to still hold the group's sha256, and the
replacement is a link renamed over it (links.replace_with_link), so a kill at any moment leaves every name
holding the same bytes as before.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable

from ..actionlog import action
from .hash_index import HashIndex, IndexedFile
from .links import replace_with_link
from .shapes import DuplicateCopy, DuplicateGroup, DuplicatesReport

log = logging.getLogger("fixer.identity.duplicates")


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def find_duplicates(files: Iterable[tuple[str, IndexedFile]]) -> DuplicatesReport:
    """(root, indexed file) pairs -> groups of two or more names holding the same bytes. A name reached twice
    (a symlinked folder) counts once; a hard link of the first copy is listed but wastes nothing."""
    by_sha: dict[str, list[tuple[str, IndexedFile]]] = {}
    seen_real: set[str] = set()
    roots: list[str] = []
    count = 0
    for root, f in files:
        if root not in roots:
            roots.append(root)
        real = os.path.realpath(f.path)
        if real in seen_real or f.size == 0:
            continue
        seen_real.add(real)
        count += 1
        by_sha.setdefault(f.sha256, []).append((root, f))
    groups: list[DuplicateGroup] = []
    for sha, members in by_sha.items():
        if len(members) < 2:
            continue
        members.sort(key=lambda m: (roots.index(m[0]), m[1].folder, m[1].relpath))
        first = members[0][1].path
        copies = [DuplicateCopy(path=f.path, folder=f.folder, relpath=f.relpath, root=root,
                                same_file_as_first=i > 0 and _same_file(first, f.path))
                  for i, (root, f) in enumerate(members)]
        distinct = 1 + sum(1 for c in copies[1:] if not c.same_file_as_first)
        groups.append(DuplicateGroup(sha256=sha, size=members[0][1].size, copies=copies,
                                     wasted_bytes=members[0][1].size * (distinct - 1)))
    groups.sort(key=lambda g: -g.wasted_bytes)
    return DuplicatesReport(roots=roots, files=count, groups=groups, wasted_bytes=sum(g.wasted_bytes for g in groups))


def deduplicate(report: DuplicatesReport, index: HashIndex) -> DuplicatesReport:
    """Link every duplicate of each group to its first copy; the report says what was done and skipped."""
    for g in report.groups:
        keep = g.copies[0].path
        if index.sha256(keep) != g.sha256:
            report.skipped.append(f"{keep}: changed since it was hashed; scan again")
            continue
        for c in g.copies[1:]:
            if c.same_file_as_first or _same_file(keep, c.path):
                continue
            if index.sha256(c.path) != g.sha256:
                report.skipped.append(f"{c.path}: changed since it was hashed; left as it is")
                continue
            try:
                kind = replace_with_link(keep, c.path)
            except OSError as e:
                report.skipped.append(f"{c.path}: {e.strerror or e}; left as it is")
                continue
            c.same_file_as_first = True
            if kind == "hardlink":
                report.linked += 1
            else:
                report.symlinked += 1
            report.freed_bytes += g.size
            action("dedupe_link", kept=keep, replaced=c.path, link=kind, size=g.size, sha256=g.sha256)
        g.wasted_bytes = g.size * sum(1 for c in g.copies[1:] if not c.same_file_as_first)
    report.wasted_bytes = sum(g.wasted_bytes for g in report.groups)
    return report
