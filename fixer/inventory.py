"""What the user has: every model file under every registered folder path. No hashing at scan time."""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field

from .constants import MODEL_EXTENSIONS
from .host import Host
from .models import LocalFile


@dataclass
class Inventory:
    files: list[LocalFile] = field(default_factory=list)
    folder_paths: dict[str, list[str]] = field(default_factory=dict)
    _by_folder: dict[str, dict[str, LocalFile]] = field(default_factory=dict, repr=False)
    _by_basename: dict[str, list[LocalFile]] = field(default_factory=dict, repr=False)
    _by_size: dict[int, list[LocalFile]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        by_folder: dict[str, dict[str, LocalFile]] = defaultdict(dict)
        by_base: dict[str, list[LocalFile]] = defaultdict(list)
        by_size: dict[int, list[LocalFile]] = defaultdict(list)
        for f in self.files:
            by_folder[f.folder].setdefault(f.relpath, f)  # first registered path wins, as in get_full_path
            by_base[f.relpath.rsplit("/", 1)[-1].lower()].append(f)
            by_size[f.size].append(f)
        self._by_folder, self._by_basename, self._by_size = dict(by_folder), dict(by_base), dict(by_size)

    def lookup(self, folder: str, name: str) -> LocalFile | None:
        """The file a loader of `folder` would load for `name` (exact relative path)."""
        return self._by_folder.get(folder, {}).get(name.replace("\\", "/"))

    def named(self, basename: str) -> list[LocalFile]:
        """Files with this base name in any folder or subfolder, case-insensitive."""
        return list(self._by_basename.get(basename.rsplit("/", 1)[-1].lower(), []))

    def with_size(self, size: int) -> list[LocalFile]:
        return list(self._by_size.get(size, []))

    def folder_names(self) -> list[str]:
        return list(self.folder_paths)

    def relpaths(self, folder: str) -> set[str]:
        return set(self._by_folder.get(folder, {}))


def _walk(root: str, exts: frozenset[str]) -> list[tuple[str, str, int]]:
    """(relpath, abspath, size) for files under root, following links once per real directory."""
    out: list[tuple[str, str, int]] = []
    seen_dirs: set[tuple[int, int]] = set()
    stack = [(root, "")]
    while stack:
        path, rel = stack.pop()
        try:
            st = os.stat(path)
            if (st.st_dev, st.st_ino) in seen_dirs:
                continue  # a symlink loop
            seen_dirs.add((st.st_dev, st.st_ino))
            entries = list(os.scandir(path))
        except OSError:
            continue
        for e in entries:
            name = e.name
            if name.startswith(".") and name in (".git", ".cache", ".ipynb_checkpoints"):
                continue
            sub = f"{rel}/{name}" if rel else name
            try:
                if e.is_dir():
                    stack.append((e.path, sub))
                    continue
                ext = os.path.splitext(name)[1].lower()
                if ext not in MODEL_EXTENSIONS and not (exts and ext in exts):
                    continue
                out.append((sub, e.path, e.stat().st_size))
            except OSError:
                continue  # broken symlink or a file gone since the listing
    return out


def build_inventory(host: Host) -> Inventory:
    folders = host.folders()
    files: list[LocalFile] = []
    for folder, paths in folders.items():
        exts = host.extensions(folder)
        for root in paths:
            if not os.path.isdir(root):
                continue
            files.extend(LocalFile(folder, rel, path, size) for rel, path, size in _walk(root, exts))
    return Inventory(files=files, folder_paths=folders)
